"""The live state never disagrees with the event log: only rows the log inserted change it (issue 13, finding 2),
on both backends, in every process and after a restart. In-process apps (FastAPI's TestClient runs the real app and
its lifespan) over a real store holding the toy world."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from belong.datasets import write_world
from belong.eventlog import open_store
from belong.serve.app import create_app
from belong.serve.service import Service
from belong.serve.settings import ServeSettings
from belong.testing.toy_world import toy_world
from serve_helpers import WRITE_KEY, auth


@pytest.fixture(params=["sqlite", "postgres"])
def toy_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    spec = str(tmp_path / "store") if request.param == "sqlite" else request.getfixturevalue("postgres_schema_url")
    with open_store(spec) as st:
        write_world(st, toy_world(), progress=False)
    return spec


@contextmanager
def running(spec: str) -> Iterator[tuple[TestClient, Service]]:
    settings = ServeSettings.from_env({"BELONG_API_KEYS_WRITE": WRITE_KEY})
    app = create_app(spec, settings=settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.05)
        yield client, app.state.service


def is_member(svc: Service, user: str, community: str) -> bool:
    st = svc.registry.active.state  # type: ignore[union-attr]
    return bool(st.members.has(st.users.index[user], st.communities.index[community]))


def post(client: TestClient, *events: dict) -> dict:
    r = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": list(events)})
    assert r.status_code == 202, r.text
    return r.json()


def stored_types(spec: str, event_id: str) -> list[str]:
    with open_store(spec, create=False) as st:
        return [r["type"] for r in st.read_events().to_pylist() if r["event_id"] == event_id]


def test_one_event_id_twice_in_a_batch_folds_only_the_stored_row(toy_store: str) -> None:
    with running(toy_store) as (client, svc):
        assert not is_member(svc, "carol", "rust")
        view = {"event_id": "dup-1", "ts": "2024-01-20T00:00:00Z", "type": "view", "actor": "carol",
                "target": "post-rust-1"}
        join = {"event_id": "dup-1", "ts": "2024-01-20T00:00:01Z", "type": "join", "actor": "carol", "target": "rust"}
        assert post(client, view, join) == {"accepted": 1, "duplicates": 1}
        assert stored_types(toy_store, "dup-1") == ["view"]
        assert not is_member(svc, "carol", "rust"), "the join the log did not store changed the live state"


def _join_then_leave(spec: str) -> str:
    """The stored join of alice to python (a later stored leave undid it)."""
    with open_store(spec, create=False) as st:
        rows = st.read_events(types=["join"]).to_pylist()
    return next(r["event_id"] for r in rows if r["actor"] == "alice" and r["target"] == "python")


def test_a_resent_join_undone_by_a_stored_leave_stays_undone_after_a_restart(toy_store: str) -> None:
    join_id = _join_then_leave(toy_store)
    resent = {"event_id": join_id, "ts": "2023-11-14T22:13:20Z", "type": "join", "actor": "alice",
              "target": "python"}
    fresh = {"event_id": "after-restart-1", "ts": "2024-01-20T00:00:00Z", "type": "view", "actor": "alice",
             "target": "post-rust-1"}
    for attempt in range(2):  # a freshly started process (twice: nothing carried over between them)
        with running(toy_store) as (client, svc):
            assert not is_member(svc, "alice", "python")
            got = post(client, resent, {**fresh, "event_id": f"after-restart-{attempt}"})
            assert got == {"accepted": 1, "duplicates": 1}
            assert not is_member(svc, "alice", "python"), "a re-sent, already stored join made her a member again"


def test_two_processes_on_one_store_fold_only_what_each_inserted(toy_store: str) -> None:
    """B re-sends what A stored, mixed with a new event: B's state changes only by its new row."""
    join = {"event_id": "p-join", "ts": "2024-01-20T00:00:00Z", "type": "join", "actor": "carol", "target": "zig"}
    leave = {"event_id": "p-leave", "ts": "2024-01-20T00:01:00Z", "type": "leave", "actor": "carol",
             "target": "zig"}
    with running(toy_store) as (a, svc_a), running(toy_store) as (b, svc_b):
        assert post(a, join) == {"accepted": 1, "duplicates": 0}
        assert is_member(svc_a, "carol", "zig")
        assert post(a, leave) == {"accepted": 1, "duplicates": 0}
        assert not is_member(svc_a, "carol", "zig")
        new = {"event_id": "p-view", "ts": "2024-01-20T00:02:00Z", "type": "view", "actor": "carol",
               "target": "post-rust-1"}
        assert post(b, join, new) == {"accepted": 1, "duplicates": 1}
        assert not is_member(svc_b, "carol", "zig")
