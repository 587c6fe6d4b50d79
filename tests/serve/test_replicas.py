"""``belong serve --workers 2`` (issue 14, item 5): two real replica processes behind one port, fed by a real Redis
Stream: an event accepted by one replica changes the other's answers within a bounded delay; a replica started
afterwards catches up from the log."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from belong.serve.replica import without_workers
from serve_helpers import WRITE_KEY, auth, run_server

REDIS_URL = os.environ.get("BELONG_TEST_REDIS_URL")
NATS_URL = os.environ.get("BELONG_TEST_NATS_URL", "nats://127.0.0.1:4222")
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs BELONG_TEST_REDIS_URL")


def _replica_clients(base: str, n: int) -> dict[str, httpx.Client]:
    """One keep-alive client (one connection) per replica, found by opening connections until each answered."""
    found: dict[str, httpx.Client] = {}
    deadline = time.monotonic() + 120
    while len(found) < n and time.monotonic() < deadline:
        c = httpx.Client(base_url=base, timeout=60)
        r = c.get("/readyz")
        rid = r.json().get("replica", {}).get("id") if r.status_code == 200 else None
        if rid and rid not in found:
            found[rid] = c
        else:
            c.close()
            time.sleep(0.05)
    assert len(found) == n, f"only {len(found)} replicas answered"
    return found


def _ids(c: httpx.Client, user: str) -> list[str]:
    r = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 10})
    assert r.status_code == 200 and not r.json()["degraded"], r.text
    return [it["id"] for it in r.json()["items"]]


def _drop_stream(url: str, key: str) -> None:
    if url.startswith("nats://"):
        import asyncio

        import nats

        async def drop() -> None:
            nc = await nats.connect(url)
            await nc.jetstream().delete_stream("".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key))
            await nc.close()

        asyncio.run(drop())
    else:
        import redis

        redis.Redis.from_url(url).delete(key)


@pytest.mark.parametrize(("broker", "user"), [("redis", "u5"), ("nats", "u6")])
def test_an_event_accepted_by_one_replica_changes_the_others_answers(small_store: Path, broker: str,
                                                                     user: str) -> None:
    url = REDIS_URL if broker == "redis" else NATS_URL
    key = f"belong:test:events:{secrets.token_hex(4)}"
    env = {"BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_EVENT_STREAM": url or "", "BELONG_EVENT_STREAM_KEY": key}
    try:
        _two_replicas_then_one(small_store, env, user, broker)
    finally:
        _drop_stream(url or "", key)


def _two_replicas_then_one(small_store: Path, env: dict[str, str], user: str, broker: str) -> None:
    with run_server(small_store, env, "--workers", "2") as (base, _):
        clients = _replica_clients(base, 2)
        a, b = clients.values()
        top = _ids(a, user)[0]
        assert _ids(b, user)[0] == top  # both replicas built the same state from the log, and cached the list
        r = a.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
            {"event_id": f"rep-{secrets.token_hex(4)}", "ts": "2026-11-01T12:00:00Z", "type": "join", "actor": user,
             "target": top}]})
        assert r.status_code == 202 and r.json()["accepted"] == 1
        assert top not in _ids(a, user)
        t0 = time.monotonic()
        while top in _ids(b, user):
            assert time.monotonic() - t0 < 5.0, "the other replica did not fold the event within 5 s"
            time.sleep(0.01)
        ready_b = b.get("/readyz").json()["replica"]
        assert ready_b["broker"].startswith(broker) and ready_b["folded"] == 1
        assert ready_b["lag_ms_p99"] is not None and ready_b["lag_ms_p99"] < 5000
        assert a.get("/readyz").json()["replica"]["published"] == 1
        for c in clients.values():
            c.close()
    # a replica started afterwards reads the log, the source of truth: the join is there
    with run_server(small_store, env) as (base, _), httpx.Client(base_url=base, timeout=60) as c:
        assert top not in _ids(c, user)
        assert c.get("/readyz").json()["replica"]["folded"] == 0  # from the log, not the stream


def test_workers_need_a_stream_and_the_flag_is_stripped_for_the_replicas(small_store: Path) -> None:
    import subprocess
    import sys

    belong = str(Path(sys.executable).with_name("belong"))
    env = {k: v for k, v in os.environ.items() if k != "BELONG_EVENT_STREAM"}
    done = subprocess.run([belong, "serve", "--store", str(small_store), "--workers", "2"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 2 and "BELONG_EVENT_STREAM" in done.stderr
    assert without_workers(["serve", "--workers", "3", "--port", "1", "--workers=2"]) == ["serve", "--port", "1"]
