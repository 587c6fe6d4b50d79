"""The experiment store's conformance suite, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from belong.errors import UnknownIdError, ValidationError
from belong.experiments.declaration import parse
from belong.experiments.store import Exposure, open_experiments
from experiment_helpers import declaration


def test_create_get_list_stop_and_history(store_spec: str) -> None:
    with open_experiments(store_spec) as store:
        exp = store.create(parse(declaration()), now_us=1_000)
        assert exp.version == 1 and exp.status == "running" and exp.layer_range == (0, 10_000)
        with pytest.raises(ValidationError) as err:
            store.create(parse(declaration()))
        assert err.value.field == "name"
    with open_experiments(store_spec) as store:  # durable: another connection sees it
        got = store.get("explore_more")
        assert got.declaration == exp.declaration and got.layer_range == exp.layer_range
        assert [e.name for e in store.experiments()] == ["explore_more"]
        assert [e.name for e in store.running(now_us=exp.declaration.start_us + 1)] == ["explore_more"]
        stopped = store.stop("explore_more", now_us=exp.declaration.start_us + 10)
        assert stopped.version == 2 and stopped.status == "stopped"
        assert stopped.declaration.stop_us == exp.declaration.start_us + 10
        assert store.running(now_us=exp.declaration.start_us + 1) == []
        with pytest.raises(ValidationError):
            store.stop("explore_more")
        hist = store.history("explore_more")
        assert [(h["version"], h["change"], h["status"]) for h in hist] == [(1, "create", "running"),
                                                                            (2, "stop", "stopped")]
        with pytest.raises(UnknownIdError):
            store.get("nope")


def test_layer_ranges_are_exclusive_and_freed_by_stop(store_spec: str) -> None:
    with open_experiments(store_spec) as store:
        a = store.create(parse(declaration(name="a", traffic=0.6)))
        with pytest.raises(ValidationError) as err:
            store.create(parse(declaration(name="b", traffic=0.6)))
        assert err.value.field == "traffic"
        b = store.create(parse(declaration(name="b", traffic=0.4)))
        assert a.layer_range == (0, 6000) and b.layer_range == (6000, 10_000)
        other = store.create(parse(declaration(name="c", layer="people", surface="people", traffic=1.0,
                                               primary_metric="pymk_accepts", arms=[{"name": "x", "weight": 0.5},
                                                                                    {"name": "y", "weight": 0.5}])))
        assert other.layer_range == (0, 10_000)
        store.stop("a")
        assert store.create(parse(declaration(name="d", traffic=0.5))).layer_range == (0, 5000)


def test_forced_arms_clusters_and_exposures(store_spec: str) -> None:
    with open_experiments(store_spec) as store:
        store.create(parse(declaration()))
        store.force("explore_more", "u1", "treatment")
        store.force("explore_more", "u1", "control")  # the last one wins
        with pytest.raises(ValidationError) as err:
            store.force("explore_more", "u2", "nope")
        assert err.value.field == "arm"
        assert store.forced("explore_more") == {"u1": "control"}
        exp = store.save_clusters("explore_more", {"u1": "c0", "u2": "c0", "u3": "c1"}, {"cut_share": 0.25})
        assert exp.meta["clustering"] == {"cut_share": 0.25}
        assert store.clusters("explore_more") == {"u1": "c0", "u2": "c0", "u3": "c1"}
        rows = [Exposure("explore_more", f"r{i}", "u1", "u1", "control", "communities", 100 + i) for i in range(3)]
        assert store.log_exposures(rows) == 3
        assert store.log_exposures(rows[:2]) == 0  # idempotent per request id
    with open_experiments(store_spec) as store:
        assert store.exposures("explore_more") == rows
        assert [h["change"] for h in store.history("explore_more")] == ["create", "clusters"]
