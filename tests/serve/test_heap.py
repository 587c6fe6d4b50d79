"""The heap keeper (belong.serve.heap): full collections held off (young ones still reclaim cycles), what a
sweep reclaims, the thresholds given back, and the keeper inside a real server."""

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

from belong.serve.heap import FULL_OFF, HeapKeeper
from serve_helpers import run_server


class Node:
    """A tracked object that can hold a reference (a cycle when it holds itself)."""

    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """Each test starts with no keeper holding (another test's open service aside) and leaves none."""
    from belong.serve import heap

    held, saved, before = set(heap._holders), heap._saved, gc.get_threshold()
    heap._holders.clear()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    yield
    heap._holders.clear()
    heap._holders.update(held)
    heap._saved = saved
    gc.set_threshold(*before)


def _full_collections() -> int:
    return gc.get_stats()[2]["collections"]


def test_held_no_full_collection_runs_however_many_objects_survive() -> None:
    keeper = HeapKeeper()
    keeper.hold()
    assert keeper.held and gc.get_threshold()[2] == FULL_OFF
    full = _full_collections()
    kept = []
    for _ in range(300_000):  # survivors enough for several automatic full collections
        kept.append(Node())
    assert _full_collections() == full
    keeper.release()
    assert not keeper.held and gc.get_threshold()[2] != FULL_OFF
    for _ in range(300_000):
        kept.append(Node())
    assert _full_collections() > full  # CPython's own again


def test_two_keepers_in_one_process_give_the_thresholds_back_when_the_last_releases() -> None:
    before = gc.get_threshold()
    a, b = HeapKeeper(), HeapKeeper()
    a.hold()
    b.hold()
    a.release()
    assert gc.get_threshold()[2] == FULL_OFF  # b still holds
    a.release()  # twice: nothing more
    b.release()
    assert gc.get_threshold() == before


def test_held_young_cycles_are_still_collected() -> None:
    keeper = HeapKeeper()
    keeper.hold()
    a = Node()
    a.other = a
    alive = weakref.ref(a)
    del a
    gc.collect(0)
    assert alive() is None


def test_held_objects_without_cycles_are_freed_by_reference_counting() -> None:
    keeper = HeapKeeper()
    keeper.hold()
    n = Node()
    gc.collect(1)
    gc.collect(1)  # survived into the oldest generation
    alive = weakref.ref(n)
    del n
    assert alive() is None


def test_an_old_cycle_waits_for_the_sweep() -> None:
    keeper = HeapKeeper(sweep_s=60.0)
    keeper.hold()
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.collect(1)
    gc.collect(1)  # both now in generation 2
    del a, b
    for _ in range(50):
        gc.collect(1)  # young collections never look at generation 2
    assert alive() is not None
    found = keeper.sweep()
    assert alive() is None
    assert found >= 2 and keeper.stats.swept_objects == found and keeper.stats.sweeps == 1
    assert keeper.stats.sweep_max_ms > 0


def test_the_keeper_sweeps_on_its_period_and_auto_full_keeps_cpython_behaviour() -> None:
    keeper = HeapKeeper(sweep_s=0.02)

    async def go() -> None:
        task = asyncio.create_task(keeper.run())
        deadline = time.monotonic() + 10  # each sweep is a full collection of this (large) test process: under
        while keeper.stats.sweeps < 3 and time.monotonic() < deadline:  # load 0.3 s held fewer than three of them
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(go())
    assert keeper.stats.sweeps >= 3
    assert keeper.as_dict()["sweeps"] == keeper.stats.sweeps
    never = HeapKeeper()
    asyncio.run(never.run())  # sweep_s 0: returns at once
    assert never.stats.sweeps == 0
    auto = HeapKeeper(auto_full=True)
    before = gc.get_threshold()
    auto.hold()
    assert not auto.held and gc.get_threshold() == before
    with pytest.raises(ValueError, match="sweep_s"):
        HeapKeeper(sweep_s=-1.0)


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m is not None, name
    return float(m.group(1))


def test_a_server_holds_full_collections_and_reports_its_collector(small_store: Path) -> None:
    with run_server(small_store, {"BELONG_GC_SWEEP_S": "0.2"}) as (base, _), \
            httpx.Client(base_url=base, timeout=30) as c:
        text = c.get("/metrics").text
        assert _metric(text, "belong_heap_held") == 1.0
        assert _metric(text, 'belong_gc_collections_total{generation="0"}') > 0
        import time

        deadline = time.monotonic() + 20
        while _metric(c.get("/metrics").text, "belong_heap_sweeps_total") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _metric(c.get("/metrics").text, "belong_heap_sweeps_total") >= 2
    with run_server(small_store, {"BELONG_GC_AUTO_FULL": "true"}) as (base, _), \
            httpx.Client(base_url=base, timeout=30) as c:
        assert _metric(c.get("/metrics").text, "belong_heap_held") == 0.0


def test_the_settings_read_the_keeper_and_refuse_a_negative_period() -> None:
    from belong.errors import ValidationError
    from belong.serve.settings import ServeSettings

    s = ServeSettings.from_env({"BELONG_GC_AUTO_FULL": "true", "BELONG_GC_SWEEP_S": "30"})
    assert (s.gc_auto_full, s.gc_sweep_s) == (True, 30.0)
    d = ServeSettings.from_env({})
    assert (d.gc_auto_full, d.gc_sweep_s) == (False, 0.0)
    with pytest.raises(ValidationError, match="BELONG_GC_SWEEP_S"):
        ServeSettings.from_env({"BELONG_GC_SWEEP_S": "-1"})
