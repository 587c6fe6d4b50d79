"""Precomputed candidate lists (issue 14, item 2) over real processes: ``belong train``, ``belong candidates
precompute`` into the test Redis, and two ``belong serve`` processes on the same artifact, one reading the stored
lists on its cold path and one running the live path."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from belong import surfaces
from belong.serve.precomputed import decode
from serve_helpers import WRITE_KEY, auth, run_server

REDIS_URL = os.environ.get("BELONG_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs BELONG_TEST_REDIS_URL")
BELONG = str(Path(sys.executable).with_name("belong"))
USERS = [f"u{i}" for i in range(0, 60, 3)]


def _ranked_toml(tmp: Path) -> Path:
    shipped = surfaces.load("communities_ranked").to_dict()
    shipped["scorer"].update({"users": 300, "rounds": 60, "min_data_in_leaf": 20})
    from belong.toml_writer import dumps

    path = tmp / "ranked_small.toml"
    path.write_text(dumps(shipped), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def precomputed(small_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """(models dir, version, key prefix, the job's JSON): the lists of every active person's communities."""
    import redis

    tmp = tmp_path_factory.mktemp("precomputed")
    out = tmp / "models"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([BELONG, "train", "--store", str(small_store), "--out", str(out), "--surface",
                           str(_ranked_toml(tmp)), "--json"], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    version = json.loads(done.stdout)["version"]
    prefix = f"belong:test:cand:{secrets.token_hex(4)}:"
    job = subprocess.run([BELONG, "candidates", "precompute", "--store", str(small_store), "--models", str(out),
                          "--redis", REDIS_URL, "--prefix", prefix, "--surface", "communities", "--json"],
                         capture_output=True, text=True, timeout=900, env=env)
    assert job.returncode == 0, job.stderr[-2000:]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield out, version, prefix, json.loads(job.stdout), client
    finally:
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)


def _view(body: dict) -> list[tuple]:
    return [(it["id"], it["score"], it["source"], tuple(it["sources"]), it["explanation"]) for it in body["items"]]


def test_stored_lists_answer_the_cold_path_exactly_as_the_live_path(small_store: Path, precomputed) -> None:
    out, version, prefix, job, client = precomputed
    assert job["version"] == version and job["surfaces"] == ["communities"] and job["lists"] == job["users"] > 700
    assert client.exists(f"{prefix}{version}:communities:u0")
    common = {"BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_READ_AUTH": "false"}
    live: dict[str, list] = {}
    with run_server(small_store, common, "--models", str(out)) as (base, _), httpx.Client(base_url=base) as c:
        for u in USERS:
            body = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 10}, timeout=60).json()
            assert body["cache"] == "miss" and not body["degraded"]
            live[u] = _view(body)
    env = {**common, "BELONG_PRECOMPUTED_REDIS": REDIS_URL, "BELONG_PRECOMPUTED_PREFIX": prefix}
    with run_server(small_store, env, "--models", str(out)) as (base, _), httpx.Client(base_url=base) as c:
        for u in USERS:
            body = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 10}, timeout=60).json()
            assert body["cache"] == "precomputed" and not body["degraded"]
            assert _view(body) == live[u], u
        ready = c.get("/readyz").json()["precomputed"]
        assert ready["reads"]["hit"] == len(USERS) and ready["share_served"] == 1.0
        assert ready["job"]["version"] == version and 0 <= ready["age_s_max"] < 3600
        assert 'belong_precomputed_total{result="hit"} 20.0' in c.get("/metrics").text


def test_a_join_deletes_the_stored_list_and_the_live_answer_refreshes_it(small_store: Path, precomputed) -> None:
    out, version, prefix, _job, client = precomputed
    user = "u7"
    key = f"{prefix}{version}:communities:{user}"
    env = {"BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_READ_AUTH": "false", "BELONG_PRECOMPUTED_REDIS": REDIS_URL,
           "BELONG_PRECOMPUTED_PREFIX": prefix, "BELONG_CACHE_USERS": "1"}  # every other user evicts u7's list
    with run_server(small_store, env, "--models", str(out)) as (base, _), httpx.Client(base_url=base) as c:
        first = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 10}, timeout=60).json()
        assert first["cache"] == "precomputed"
        top = first["items"][0]["id"]
        made_at = decode(client.get(key))[0]
        r = c.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
            {"event_id": f"pc-join-{secrets.token_hex(4)}", "ts": "2026-11-01T12:00:00Z", "type": "join",
             "actor": user, "target": top}]})
        assert r.status_code == 202, r.text
        assert not client.exists(key), "the person's own event deletes their stored list"
        c.get("/v1/recommendations/communities", params={"user_id": "u8", "k": 10}, timeout=60)  # evicts u7
        after = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 10}, timeout=60).json()
        assert after["cache"] == "miss" and not after["degraded"]
        assert top not in [it["id"] for it in after["items"]]
        stored = decode(client.get(key))  # the live run wrote the refreshed list back
        assert stored[0] > made_at
        again = c.get("/v1/recommendations/communities", params={"user_id": "u8", "k": 10}, timeout=60)
        assert again.status_code == 200
        third = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 10}, timeout=60).json()
        assert third["cache"] == "precomputed" and _view(third) == _view(after)


def test_a_forgotten_person_leaves_every_stored_people_list(redis_url: str) -> None:
    """DELETE /v1/users/{id} (issue 13's forgetting) reaches the stored lists: the person's own are deleted, and
    others' stored people lists never serve them again (read through the real Redis)."""
    import redis

    from belong.domain import Surface
    from belong.serve.precomputed import PrecomputedLists, _encode

    client = redis.Redis.from_url(redis_url)
    lists = PrecomputedLists(client, f"belong:test:cand:{secrets.token_hex(4)}:")
    rows = tuple((item, 1.0 / (item + 1), (("similar_people", item, 0.5, "why", (("n", 2),)),), (("f", 1.0),))
                 for item in (3, 5, 8))
    for user in ("u1", "u2"):
        client.set(lists.key("v1", Surface.PEOPLE, user), _encode(time.time(), rows))
    try:
        before = lists.entry("v1", Surface.PEOPLE, "u1")
        assert before is not None and before.ranked.head(3) == [3, 5, 8]
        assert before.ranked[0][0].hits["similar_people"][1].reason.data == {"n": 2}  # the row round-trips
        lists.forget_users("v1", ["u2"], {5})
        assert not client.exists(lists.key("v1", Surface.PEOPLE, "u2"))
        after = lists.entry("v1", Surface.PEOPLE, "u1")
        assert after is not None and after.ranked.head(3) == [3, 8]
        assert lists.entry("v1", Surface.PEOPLE, "u2") is None and lists.counts["miss"] == 1
    finally:
        for user in ("u1", "u2"):
            client.delete(lists.key("v1", Surface.PEOPLE, user))


def test_the_job_for_the_people_named(small_store: Path, precomputed, tmp_path: Path) -> None:
    """``--users-file``: only those people's lists (the day's active people); a person the store does not know
    is refused by name (exit 2)."""
    out, version, _prefix, _job, client = precomputed
    prefix = f"belong:test:cand:{secrets.token_hex(4)}:"
    people = tmp_path / "people.txt"
    people.write_text("u9\nu3\nu9\n")
    cmd = [BELONG, "candidates", "precompute", "--store", str(small_store), "--models", str(out), "--redis",
           REDIS_URL, "--prefix", prefix, "--surface", "communities", "--json", "--users-file", str(people)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    try:
        job = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert job.returncode == 0, job.stderr[-2000:]
        meta = json.loads(job.stdout)
        assert meta["users"] == meta["lists"] == 2 and meta["scope"] == "the people named"
        keys = sorted(k.decode() for k in client.scan_iter(f"{prefix}{version}:communities:*", count=1000))
        assert keys == [f"{prefix}{version}:communities:u3", f"{prefix}{version}:communities:u9"]
        made_at, rows = decode(client.get(f"{prefix}{version}:communities:u3"))
        assert rows and made_at > _job["made_at"]  # (other tests append events: the lists may differ now)
        people.write_text("u3\nnobody-here\n")
        bad = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert bad.returncode == 2 and "users" in bad.stderr and "nobody-here" in bad.stderr
    finally:
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
