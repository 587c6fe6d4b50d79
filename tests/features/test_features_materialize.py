"""Materialisation from either event-log backend writes exactly the as-of rows of FeatureState."""

from __future__ import annotations

import pytest

from belong.eventlog import open_store
from belong.features.materialize import default_as_of, materialize
from belong.features.online import MATERIALIZED_AT, InProcessFeatureStore
from belong.features.state import EventCursor, FeatureState


def _fill(store, world) -> None:
    store.append(world.events)
    store.upsert_users(world.users_table)
    store.upsert_communities(world.communities_table)
    store.upsert_content(world.content_table)


def _snapshot(online: InProcessFeatureStore, world) -> list[dict]:
    reqs = ([("user", u) for u in world.users] + [("community", c) for c in world.communities]
            + [("content", x) for x in world.content])
    return online.read_many(reqs)


@pytest.mark.postgres
def test_sqlite_and_postgres_materialise_the_same_rows(world, tmp_path, postgres_schema_url):
    t = world.query_times[2]
    snapshots = []
    for spec in (tmp_path / "store", postgres_schema_url):
        with open_store(spec) as store:
            _fill(store, world)
            online = InProcessFeatureStore()
            seen: list[tuple[str, int]] = []
            report = materialize(store, online, t, batch_size=97,
                                 progress=lambda stage, n, total, seen=seen: seen.append((stage, n)))
            assert report.events == sum(1 for s in world.events["ts_us"].to_pylist() if s < t)
            assert sum(n for stage, n in seen if stage == "events") == report.events
            snapshots.append(_snapshot(online, world))
    assert snapshots[0] == snapshots[1]
    state = FeatureState(world.catalog)
    EventCursor(state, [world.events]).advance_to(t)
    direct = [state.row(e, k, t) | {MATERIALIZED_AT: t} for e, k in
              [("user", u) for u in world.users] + [("community", c) for c in world.communities]
              + [("content", x) for x in world.content]]
    assert snapshots[0] == direct


def test_rematerialising_later_moves_the_rows_forward(world, tmp_path):
    with open_store(tmp_path / "store") as store:
        _fill(store, world)
        online = InProcessFeatureStore()
        early, late = world.query_times[0], default_as_of(store)
        materialize(store, online, early)
        before = online.read("user", "u1")
        report = materialize(store, online)  # default: one microsecond after the last event
        after = online.read("user", "u1")
    assert report.as_of_us == late == max(world.events["ts_us"].to_pylist()) + 1
    assert (before[MATERIALIZED_AT], after[MATERIALIZED_AT]) == (early, late)
    assert len(online) == len(world.users) + len(world.communities) + len(world.content)
