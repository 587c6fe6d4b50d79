"""Keeping the garbage collector's pauses short while the caches grow.

CPython's collector runs a *full* collection each time the objects that survived the young collections have grown
by a quarter since the last full one, and a full collection walks every tracked object (containers) the process
holds outside the frozen set: every cached list with its memo. On a serving process the cache keeps 85 to 90
objects for each person answered, so the full pauses lengthen as the process warms and land on whichever request
triggers them: 100 to 400 ms on a 100,000-person world, 6 to 45 ms every ~130 cold requests at 1,000,000 people even
with the survivors frozen once a second (docs/SCALING.md). That is the p99 of a cold-request load.

What a serving process does instead:

* :func:`settle_heap` after the models load: one full collection, then everything is frozen (``gc.freeze``: the
  permanent generation, never walked, still freed by reference counting).
* :meth:`HeapKeeper.hold`: automatic *full* collections off (generation 2's threshold out of reach); the young
  collections run as CPython configures them, so short-lived garbage, cycles included, is reclaimed as before, and
  anything without a cycle is freed by reference counting the moment nothing refers to it (a cached list evicted).
  What is left unreclaimed is a reference cycle that became garbage only after it survived two young collections.
  Measured on the 1,000,000-person world: a full collection after 3,000 cold requests found **0** such objects
  (``belong bench serve`` reports the same through a final sweep).
* :meth:`HeapKeeper.sweep` every ``sweep_s`` (0: never, the default): one full collection, reported
  (``swept_objects``): for a deployment whose own code makes long-lived cycles. It is a pause proportional to the
  objects the caches hold.

``auto_full=True`` (``BELONG_GC_AUTO_FULL``) keeps CPython's behaviour."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("belong.serve")

#: generation 2's threshold while held: more young collections than a process makes in its life
FULL_OFF = 2**31 - 1
_holders: set[int] = set()  # the keepers holding full collections off (ids), in this process
_saved: tuple[int, int, int] | None = None  # the thresholds before the first of them


def settle_heap() -> None:
    """Move the objects of the models loaded so far out of the garbage collector's view (``gc.freeze``): a model
    holds millions of long-lived objects, and a full collection walking them all is a latency spike of tens of
    milliseconds in whichever request triggers it. Collections then scan only what requests allocate."""
    gc.collect()
    gc.freeze()


@dataclass(slots=True)
class HeapStats:
    sweeps: int = 0
    sweep_seconds: float = 0.0
    sweep_max_ms: float = 0.0
    swept_objects: int = 0  # unreachable objects the sweeps found: cycles that became garbage after surviving


class HeapKeeper:
    """Automatic full collections off while held; a full sweep every ``sweep_s`` (module docstring)."""

    def __init__(self, auto_full: bool = False, sweep_s: float = 0.0) -> None:
        if sweep_s < 0:
            raise ValueError("HeapKeeper: sweep_s must be >= 0")
        self.auto_full = auto_full
        self.sweep_s = sweep_s
        self.stats = HeapStats()
        self._holding = False

    @property
    def held(self) -> bool:
        return self._holding

    def hold(self) -> None:
        """Stop automatic full collections (young ones go on); a no-op with ``auto_full`` or when held already.
        The collector is the process's: with several keepers (apps) in one process, the thresholds come back when
        the last one releases."""
        if self.auto_full or self._holding:
            return
        global _saved
        if not _holders:
            _saved = gc.get_threshold()
            gc.set_threshold(_saved[0], _saved[1], FULL_OFF)
        _holders.add(id(self))
        self._holding = True

    def release(self) -> None:
        """Give the collector its thresholds back (a service closing; the last keeper holding)."""
        if not self._holding:
            return
        self._holding = False
        _holders.discard(id(self))
        if not _holders and _saved is not None:
            gc.set_threshold(*_saved)

    def sweep(self) -> int:
        """One full collection (everything but the frozen models); the unreachable objects it found."""
        t0 = time.perf_counter()
        found = gc.collect()
        ms = (time.perf_counter() - t0) * 1e3
        s = self.stats
        s.sweeps += 1
        s.sweep_seconds += ms / 1e3
        s.sweep_max_ms = max(s.sweep_max_ms, ms)
        s.swept_objects += found
        return found

    async def run(self) -> None:
        """Sweep every ``sweep_s`` until cancelled (a task of the serving process); returns at once when 0."""
        if self.sweep_s <= 0:
            return
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                found = self.sweep()
                log.info("heap sweep reclaimed %d objects", found)
            except Exception:  # noqa: BLE001 - never let the keeper stop the server
                log.exception("heap sweep failed")

    def as_dict(self) -> dict[str, Any]:
        s = self.stats
        return {"auto_full": self.auto_full, "held": self.held, "sweep_s": self.sweep_s, "sweeps": s.sweeps,
                "sweep_seconds": round(s.sweep_seconds, 4), "sweep_max_ms": round(s.sweep_max_ms, 3),
                "swept_objects": s.swept_objects,
                "collections": [g["collections"] for g in gc.get_stats()]}
