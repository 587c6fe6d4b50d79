"""Forget a user (issue 13, finding 7): ``DELETE /v1/users/{id}`` and ``belong forget``, then search every store for
the id — the SQLite file bytes (also after VACUUM) or every PostgreSQL table, the Redis keys and values, an export,
a newly trained artifact's files, and the API's answers for every other user — and find it nowhere. Real stores,
real Redis, the real app (FastAPI's TestClient runs it with its lifespan)."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from belong.datasets import write_world
from belong.domain import parse_event, parse_user
from belong.eventlog import open_store
from belong.features import materialize
from belong.features.online import open_feature_store
from belong.serve.app import create_app
from belong.serve.settings import ServeSettings
from belong.simulate import simulate
from belong.training.train import train
from cli_runner import run_cli
from serve_helpers import ADMIN_KEY, WRITE_KEY, auth

GONE = "zq-forget-me-7c1"  # no other id contains it
T = 1_790_000_000  # seconds: after the simulated history


def _their_events(users: list[str], communities: list[str], content: list[str]) -> list[dict]:
    ev = []
    for i, c in enumerate(communities[:4]):
        ev.append({"event_id": f"g-join-{i}", "ts": T + i, "type": "join", "actor": GONE, "target": c})
        ev.append({"event_id": f"g-msg-{i}", "ts": T + 10 + i, "type": "message", "actor": GONE, "target": c})
    for i, u in enumerate(users[:10]):  # well connected: friends of friends see them
        ev.append({"event_id": f"g-fr-{i}", "ts": T + 20 + i, "type": "friend_accept",
                   "actor": GONE if i % 2 else u, "target": u if i % 2 else GONE})
    ev.append({"event_id": "g-req", "ts": T + 40, "type": "friend_request", "actor": users[20], "target": GONE})
    ev.append({"event_id": "g-block", "ts": T + 41, "type": "block", "actor": GONE, "target": users[21]})
    for i, x in enumerate(content[:3]):
        ev.append({"event_id": f"g-view-{i}", "ts": T + 50 + i, "type": "view", "actor": GONE, "target": x})
    return ev


def encodings(user_id: str) -> tuple[bytes, ...]:
    """The byte forms an id takes in stored files: UTF-8 (SQLite, JSON, text) and UTF-32-LE (numpy strings)."""
    return user_id.encode(), user_id.encode("utf-32-le")


def files_holding(root: Path, user_id: str) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and any(n in p.read_bytes() for n in encodings(user_id))]


@pytest.fixture(params=["sqlite", "postgres"])
def world_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, list[str]]]:
    spec = str(tmp_path / "store") if request.param == "sqlite" else request.getfixturevalue("postgres_schema_url")
    ids: dict[str, list[str]] = {}
    with open_store(spec) as st:
        for part in simulate(300, 30, seed=5):
            write_world(st, part, progress=False)
            ids.setdefault("users", []).extend(part.users.column("id").to_pylist())
            ids.setdefault("communities", []).extend(part.communities.column("id").to_pylist())
            ids.setdefault("content", []).extend(part.content.column("id").to_pylist())
        st.upsert_users([parse_user({"id": GONE, "created_at": T - 86_400, "age_group": "adult", "locale": "en",
                                     "interests": ["gaming"]})])
        st.append([parse_event(e) for e in _their_events(ids["users"], ids["communities"], ids["content"])])
    return spec, ids


@pytest.fixture()
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own in the test Redis db; its keys are deleted afterwards."""
    import redis as redis_lib

    name = f"belong:test-forget:{uuid.uuid4().hex[:8]}:"
    yield name
    r = redis_lib.Redis.from_url(redis_url)
    for k in r.scan_iter(match=f"{name}*"):
        r.delete(k)


@contextmanager
def running(spec: str, redis_url: str, prefix: str, models: Path) -> Iterator[TestClient]:
    settings = ServeSettings.from_env({"BELONG_API_KEYS_WRITE": WRITE_KEY, "BELONG_API_KEYS_ADMIN": ADMIN_KEY,
                                       "BELONG_REDIS_URL": redis_url, "BELONG_FEATURES_PREFIX": prefix,
                                       "BELONG_MODELS_DIR": str(models), "BELONG_BUDGET_SOURCES_MS": "30000",
                                       "BELONG_BUDGET_FEATURES_MS": "2000", "BELONG_READ_AUTH": "false"})
    with TestClient(create_app(spec, settings=settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.05)
        yield client


def _answers(client: TestClient, ids: dict[str, list[str]]) -> str:
    """Every answer a caller can get about everyone else: the three surfaces (with debug traces), similar users
    and similar communities."""
    out = []
    for u in ids["users"][:60]:
        for surface in ("people", "communities", "content"):
            r = client.get(f"/v1/recommendations/{surface}", params={"user_id": u, "k": 100, "debug": "true"},
                           headers=auth(ADMIN_KEY))  # debug needs the admin key
            assert r.status_code == 200, r.text
            out.append(r.text)
        out.append(client.get(f"/v1/users/{u}/similar", params={"k": 100}).text)
    for c in ids["communities"]:
        out.append(client.get(f"/v1/communities/{c}/similar", params={"k": 100}).text)
    return "\n".join(out)


def _store_holds(spec: str) -> list[str]:
    """Where the store's own bytes or rows still hold the id."""
    if not spec.startswith("postgresql://"):
        files = [p for p in Path(spec).iterdir() if p.is_file()]
        return [p.name for p in files if any(n in p.read_bytes() for n in encodings(GONE))]
    import psycopg

    with psycopg.connect(spec) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        return [t for t in tables if conn.execute(
            f'SELECT count(*) FROM "{t}" x WHERE x::text LIKE %s', (f"%{GONE}%",)).fetchone()[0]]


@pytest.mark.slow
def test_a_forgotten_user_is_nowhere(world_store: tuple[str, dict[str, list[str]]], redis_url: str, prefix: str,
                                     tmp_path: Path) -> None:
    spec, ids = world_store
    models = tmp_path / "models"
    with open_store(spec, create=False) as st, open_feature_store(redis_url, prefix=prefix) as features:
        materialize(st, features)
    old = train(spec, models)
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis_url)
    assert r.exists(f"{prefix}user:{GONE}")

    with running(spec, redis_url, prefix, models) as client:
        assert GONE in _answers(client, ids), "before: other users are shown them"
        assert client.delete(f"/v1/users/{GONE}").status_code == 401
        assert client.delete(f"/v1/users/{GONE}", headers=auth(WRITE_KEY)).status_code == 403
        got = client.delete(f"/v1/users/{GONE}", headers=auth(ADMIN_KEY))
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["events_deleted"] == len(_their_events(ids["users"], ids["communities"], ids["content"]))
        assert body["user_rows_deleted"] == 1 and body["feature_rows_deleted"] == 1
        assert body["feature_rows_scrubbed"] == 12  # 10 friends, a requester, a blocked user name them
        assert body["artifacts_to_retrain"] == [Path(old["path"]).name]
        assert not r.exists(f"{prefix}user:{GONE}")
        assert GONE not in _answers(client, ids), "after: nobody is shown them, at once"
        late = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
            {"event_id": "g-join-0", "ts": T, "type": "join", "actor": GONE, "target": ids["communities"][0]},
            {"event_id": "late-1", "ts": T + 99, "type": "friend_accept", "actor": ids["users"][3], "target": GONE},
            {"event_id": "late-2", "ts": T + 99, "type": "join", "actor": ids["users"][3],
             "target": ids["communities"][1]}]})
        assert late.status_code == 202 and late.json() == {"accepted": 1, "duplicates": 0, "forgotten": 2}
        assert GONE not in _answers(client, ids)

    assert _store_holds(spec) == []
    if not spec.startswith("postgresql://"):
        with sqlite3.connect(Path(spec) / "events.sqlite3") as conn:
            conn.execute("VACUUM")
        assert _store_holds(spec) == []
    assert [k for k in r.scan_iter(match=f"{prefix}*") if GONE.encode() in k] == []
    assert [k for k in r.scan_iter(match=f"{prefix}*")
            if any(GONE.encode() in v for v in r.hgetall(k).values())] == []
    with open_store(spec, create=False) as st:
        st.export_parquet(tmp_path / "export.parquet")
        assert st.forgotten([GONE]) == {GONE}
    assert GONE not in str(pq.read_table(tmp_path / "export.parquet").to_pylist())
    new = train(spec, models)
    assert files_holding(Path(new["path"]), GONE) == []

    # a restarted server (the newest artifact, the log) knows nothing of them either
    with running(spec, redis_url, prefix, models) as client:
        assert GONE not in _answers(client, ids)


def test_belong_forget_cli(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture) -> None:
    spec = str(tmp_path / "store")
    with open_store(spec) as st:
        for part in simulate(120, 12, seed=2):
            write_world(st, part, progress=False)
        users = st.users().column("id").to_pylist()
        st.upsert_users([parse_user({"id": GONE, "created_at": T, "age_group": "adult", "locale": "en"})])
        st.append([parse_event({"event_id": "c-1", "ts": T, "type": "friend_accept", "actor": users[0],
                                "target": GONE})])
        with open_feature_store(redis_url, prefix=prefix) as features:
            materialize(st, features)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "forget", GONE, "--store", spec, "--redis", redis_url,
                                   "--prefix", prefix, "--json")
    assert code == 0, stderr
    import orjson

    out = orjson.loads(stdout)
    assert (out["events_deleted"], out["user_rows_deleted"], out["feature_rows_deleted"]) == (1, 1, 1)
    assert _store_holds(spec) == []
    assert run_cli(monkeypatch, capsys, "forget", "", "--store", spec)[0] == 2
    assert run_cli(monkeypatch, capsys, "forget", GONE, "--store", str(tmp_path / "nothing"))[0] == 2


def test_a_user_forgotten_through_one_process_is_masked_in_another(tmp_path: Path) -> None:
    """Two API processes on one store: B masks the user A forgot within its poll interval."""
    from belong.testing.toy_world import toy_world

    spec = str(tmp_path / "store")
    with open_store(spec) as st:
        write_world(st, toy_world(), progress=False)
        users = [u for u in st.users().column("id").to_pylist() if u != "bob"]
    settings = ServeSettings.from_env({"BELONG_API_KEYS_ADMIN": ADMIN_KEY, "BELONG_READ_AUTH": "false"})
    app_a, app_b = create_app(spec, settings=settings), create_app(spec, settings=settings)
    svc_b = app_b.state.service
    svc_b.forget_poll_s = 0.05
    with TestClient(app_a) as a, TestClient(app_b) as b:
        for client in (a, b):
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        def answers() -> str:
            return "\n".join(b.get(f"/v1/recommendations/{s}", params={"user_id": u, "k": 50}).text
                             for u in users for s in ("people", "communities", "content"))

        assert "bob" in answers()
        assert a.delete("/v1/users/bob", headers=auth(ADMIN_KEY)).status_code == 200
        deadline = time.monotonic() + 30
        while "bob" in svc_b.registry.active.state.users.index:
            assert time.monotonic() < deadline, "B never noticed"
            time.sleep(0.05)
        assert "bob" not in answers()
