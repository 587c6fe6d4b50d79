"""The heap keeper (belong.serve.heap): what a tick freezes, what a full collection then walks, what reference
counting and a sweep still reclaim, and the keeper running inside a real server."""

from __future__ import annotations

import asyncio
import gc
import re
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from belong.serve.heap import HeapKeeper
from serve_helpers import run_server


class Node:
    """A tracked object that can hold a reference (a cycle when it holds itself)."""

    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen by it (the test process's collector as it was)."""
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.collect()


def test_a_tick_freezes_the_survivors_so_a_full_collection_no_longer_walks_them() -> None:
    kept = [Node() for _ in range(5_000)]
    assert all(gc.is_tracked(n) for n in kept)
    keeper = HeapKeeper(every_s=1.0)
    before = gc.get_freeze_count()
    keeper.tick()
    assert gc.get_freeze_count() - before >= len(kept)
    gc.collect()  # a full collection: the frozen objects are in none of the generations it walks
    walked = {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
    assert not any(id(n) in walked for n in kept)
    assert keeper.stats.ticks == 1 and keeper.stats.tick_max_ms > 0


def test_frozen_objects_without_cycles_are_still_freed_by_reference_counting() -> None:
    n = Node()
    alive = weakref.ref(n)
    HeapKeeper(every_s=1.0).tick()
    del n
    assert alive() is None  # freed at once: no collection needed


def test_a_cycle_that_dies_after_the_freeze_waits_for_the_sweep() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    keeper = HeapKeeper(every_s=1.0, sweep_s=60.0)
    keeper.tick()
    del a, b
    gc.collect()
    assert alive() is not None  # frozen: the collector does not see the cycle
    found = keeper.sweep()
    assert alive() is None
    assert found >= 2 and keeper.stats.swept_objects == found and keeper.stats.sweeps == 1
    assert gc.get_freeze_count() > 0  # the sweep freezes what survived again


def test_a_cycle_that_is_garbage_at_the_tick_is_collected_by_the_tick() -> None:
    a = Node()
    a.other = a
    alive = weakref.ref(a)
    del a
    HeapKeeper(every_s=1.0).tick()  # young collection first: the cycle is unreachable, so it goes
    assert alive() is None


def test_the_keeper_runs_on_its_period_and_sweeps_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    keeper = HeapKeeper(every_s=0.01, sweep_s=0.05)

    async def go() -> None:
        task = asyncio.create_task(keeper.run())
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(go())
    assert keeper.stats.ticks >= 5
    assert keeper.stats.sweeps >= 1
    d = keeper.as_dict()
    assert d["ticks"] == keeper.stats.ticks and d["frozen"] == gc.get_freeze_count()


def test_off_means_no_ticks_and_bad_periods_are_refused() -> None:
    keeper = HeapKeeper(every_s=0.0)
    asyncio.run(keeper.run())  # returns at once
    assert keeper.stats.ticks == 0
    with pytest.raises(ValueError, match="every_s"):
        HeapKeeper(every_s=-1.0)


def test_a_server_runs_the_keeper_and_reports_it_in_metrics(small_store: Path) -> None:
    with run_server(small_store, {"BELONG_GC_FREEZE_S": "0.05", "BELONG_GC_SWEEP_S": "0.5"}) as (base, _), \
            httpx.Client(base_url=base, timeout=30) as c:
        users = c.get("/v1/recommendations/communities", params={"user_id": "u1", "k": 5})
        assert users.status_code in (200, 404), users.text
        deadline = time.monotonic() + 20
        while True:
            text = c.get("/metrics").text
            ticks = float(re.search(r"^belong_heap_ticks_total (\S+)$", text, re.M).group(1))
            sweeps = float(re.search(r"^belong_heap_sweeps_total (\S+)$", text, re.M).group(1))
            frozen = float(re.search(r"^belong_heap_frozen_objects (\S+)$", text, re.M).group(1))
            if ticks >= 3 and sweeps >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ticks >= 3 and sweeps >= 1
        assert frozen > 0


def test_the_settings_read_the_periods_and_refuse_negative_ones() -> None:
    from belong.errors import ValidationError
    from belong.serve.settings import ServeSettings

    s = ServeSettings.from_env({"BELONG_GC_FREEZE_S": "0.5", "BELONG_GC_SWEEP_S": "0"})
    assert (s.gc_freeze_s, s.gc_sweep_s) == (0.5, 0.0)
    assert (ServeSettings.from_env({}).gc_freeze_s, ServeSettings.from_env({}).gc_sweep_s) == (1.0, 3600.0)
    with pytest.raises(ValidationError, match="BELONG_GC_FREEZE_S"):
        ServeSettings.from_env({"BELONG_GC_FREEZE_S": "-1"})
