"""Keeping the garbage collector's pauses short while the caches grow.

CPython's collector runs a *full* collection each time the objects that survived the young collections have grown
by a quarter since the last full one, and a full collection walks every tracked object (containers) the process
holds: the loaded models, and every cached list with its memo. On a serving process both grow — the cache keeps 85
to 90 objects for each person answered — so the pauses lengthen as the process warms, and land on whichever
request triggers them (100 to 400 ms on a 100,000-person world: the p99 of a cold-request load).

Two moves, both through :mod:`gc`'s own freeze (the permanent generation: never walked, still freed by reference
counting when nothing refers to an object any more, e.g. a cached list evicted):

* :func:`settle_heap` at start, after the models load: one full collection, then everything is frozen.
* :class:`HeapKeeper` while serving: every ``every_s`` seconds, collect the young generations (cheap: what requests
  made since the last tick) and freeze what survived. Full collections then walk only what survived since the last
  tick, so they stay short however large the cache grows.

The price: a reference *cycle* that becomes garbage after it was frozen is not reclaimed by the collector (objects
without cycles are freed by reference counting as usual). :meth:`HeapKeeper.sweep` (every ``sweep_s``; 0: never)
unfreezes, collects everything once and freezes again, and reports what it reclaimed (``swept_objects``): the
measure of that leak (``belong bench serve`` prints it)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

log = logging.getLogger("belong.serve")


def settle_heap() -> None:
    """Move the objects of the models loaded so far out of the garbage collector's view (``gc.freeze``): a model
    holds millions of long-lived objects, and a full collection walking them all is a latency spike of tens of
    milliseconds in whichever request triggers it. Collections then scan only what requests allocate."""
    gc.collect()
    gc.freeze()


@dataclass(slots=True)
class HeapStats:
    ticks: int = 0
    tick_seconds: float = 0.0  # CPU time spent in ticks (young collections + freeze)
    tick_max_ms: float = 0.0
    sweeps: int = 0
    sweep_seconds: float = 0.0
    swept_objects: int = 0  # unreachable objects the sweeps found: cycles frozen before they became garbage


class HeapKeeper:
    """Freeze what survives the young collections every ``every_s`` seconds; sweep every ``sweep_s`` (module
    docstring). ``every_s`` 0: off (the collector runs as CPython configures it)."""

    def __init__(self, every_s: float, sweep_s: float = 0.0) -> None:
        if every_s < 0 or sweep_s < 0:
            raise ValueError("HeapKeeper: every_s and sweep_s must be >= 0")
        self.every_s = every_s
        self.sweep_s = sweep_s
        self.stats = HeapStats()

    def tick(self) -> None:
        """Collect generations 0 and 1, then freeze every tracked object left (the survivors)."""
        t0 = time.perf_counter()
        gc.collect(1)
        gc.freeze()
        ms = (time.perf_counter() - t0) * 1e3
        self.stats.ticks += 1
        self.stats.tick_seconds += ms / 1e3
        self.stats.tick_max_ms = max(self.stats.tick_max_ms, ms)

    def sweep(self) -> int:
        """Unfreeze, collect everything, freeze again; the unreachable objects found (a full pause: rare)."""
        t0 = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.stats.sweeps += 1
        self.stats.sweep_seconds += time.perf_counter() - t0
        self.stats.swept_objects += found
        return found

    def release(self) -> None:
        """Hand everything frozen back to the collector (a service closing: what it held can be reclaimed; a
        keeper still running elsewhere in the process freezes the survivors again at its next tick)."""
        if self.stats.ticks or self.stats.sweeps:
            gc.unfreeze()

    async def run(self) -> None:
        """Tick every ``every_s`` and sweep every ``sweep_s`` until cancelled (a task of the serving process)."""
        if self.every_s <= 0:
            return
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self.every_s)
            try:
                if self.sweep_s > 0 and time.monotonic() - last_sweep >= self.sweep_s:
                    found = self.sweep()
                    last_sweep = time.monotonic()
                    log.info("heap sweep reclaimed %d objects", found)
                else:
                    self.tick()
            except Exception:  # noqa: BLE001 - never let the keeper stop the server
                log.exception("heap keeper tick failed")

    def as_dict(self) -> dict[str, float | int]:
        s = self.stats
        return {"every_s": self.every_s, "sweep_s": self.sweep_s, "ticks": s.ticks,
                "tick_seconds": round(s.tick_seconds, 4), "tick_max_ms": round(s.tick_max_ms, 3),
                "sweeps": s.sweeps, "sweep_seconds": round(s.sweep_seconds, 4), "swept_objects": s.swept_objects,
                "frozen": gc.get_freeze_count()}
