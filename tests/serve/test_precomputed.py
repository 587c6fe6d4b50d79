"""Precomputed candidate lists (issue 14, item 2) over real processes: ``belong train``, ``belong candidates
precompute`` into the test Redis, and two ``belong serve`` processes on the same artifact, one reading the stored
lists on its cold path and one running the live path."""

from __future__ import annotations

import json
import math
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


def _until(fetch, ok, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = fetch()
        if ok(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_own_events_make_the_stored_list_stale_answered_then_refreshed(small_store: Path, precomputed) -> None:
    """A join leaves the stored communities list standing (the live rules remove the joined community); a leave
    marks it stale (here and in Redis): the next cold request answers from it at once (``cache: stale``) while a
    background run of the live path refreshes it, after which it is a fresh stored list again, answering as the
    live path does."""
    out, version, prefix, _job, client = precomputed
    user = "u7"
    key = f"{prefix}{version}:communities:{user}"
    stale_key = f"{prefix}{version}:stale"
    env = {"BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_READ_AUTH": "false", "BELONG_PRECOMPUTED_REDIS": REDIS_URL,
           "BELONG_PRECOMPUTED_PREFIX": prefix, "BELONG_CACHE_USERS": "1"}  # every other user evicts u7's list

    def get(u: str) -> dict:
        r = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 10}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def post(kind: str, target: str) -> None:
        r = c.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
            {"event_id": f"pc-{kind}-{secrets.token_hex(4)}", "ts": "2026-11-01T12:00:00Z", "type": kind,
             "actor": user, "target": target}]})
        assert r.status_code == 202, r.text

    with run_server(small_store, env, "--models", str(out)) as (base, _), httpx.Client(base_url=base) as c:
        first = get(user)
        assert first["cache"] == "precomputed"
        top = first["items"][0]["id"]
        made_at = decode(client.get(key))[0]
        post("join", top)
        assert client.exists(key) and client.zscore(stale_key, f"communities:{user}") is None
        assert client.zscore(stale_key, f"content:{user}") is not None  # a new community brings new content
        get("u8")  # evicts u7
        joined = get(user)
        assert joined["cache"] == "precomputed" and not joined["degraded"]
        assert top not in [it["id"] for it in joined["items"]]  # removed by the live rules
        assert [it["id"] for it in joined["items"]] == [it["id"] for it in first["items"][1:]] + \
            [it["id"] for it in joined["items"]][9:]

        post("leave", top)
        marked = client.zscore(stale_key, f"communities:{user}")
        assert marked is not None and marked >= made_at and client.exists(key)
        get("u8")
        stale = get(user)
        assert stale["cache"] == "stale" and not stale["degraded"] and stale["items"]
        # the background run wrote the refreshed list back and spent the mark
        stored = _until(lambda: decode(client.get(key)), lambda d: d[0] > made_at)
        assert stored[0] >= marked
        assert _until(lambda: client.zscore(stale_key, f"communities:{user}"), lambda z: z is None) is None
        live = get(user)  # the refreshed list in the process's cache
        assert live["cache"] == "hit"
        get("u8")
        again = get(user)
        assert again["cache"] == "precomputed" and _view(again) == _view(live)
        reads = c.get("/readyz").json()["precomputed"]
        assert reads["reads"]["stale"] == 1 and reads["marked_stale"] >= 1  # content:u7 is still marked


def test_refreshed_by_the_job_the_api_answers_stale_until_then(small_store: Path, precomputed) -> None:
    """``BELONG_PRECOMPUTED_REFRESH=job``: the API answers a stale list without running the live path (no run shares
    its core); ``belong candidates precompute --stale`` refreshes exactly the marked people, dated when it read the
    state, and spends their marks."""
    out, version, prefix, _job, client = precomputed
    user = "u10"
    key = f"{prefix}{version}:communities:{user}"
    stale_key = f"{prefix}{version}:stale"
    env = {"BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_READ_AUTH": "false", "BELONG_PRECOMPUTED_REDIS": REDIS_URL,
           "BELONG_PRECOMPUTED_PREFIX": prefix, "BELONG_CACHE_USERS": "1", "BELONG_PRECOMPUTED_REFRESH": "job"}

    def get(u: str) -> dict:
        r = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 10}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    with run_server(small_store, env, "--models", str(out)) as (base, _), httpx.Client(base_url=base) as c:
        assert get(user)["cache"] == "precomputed"
        made_at = decode(client.get(key))[0]
        r = c.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
            {"event_id": f"pc-accept-{secrets.token_hex(4)}", "ts": "2026-11-01T12:00:00Z", "type": "friend_accept",
             "actor": user, "target": "u13"}]})
        assert r.status_code == 202, r.text
        get("u11")  # evicts u10
        stale = get(user)
        assert stale["cache"] == "stale" and not stale["degraded"] and stale["items"]
        time.sleep(0.5)
        assert decode(client.get(key))[0] == made_at  # nobody refreshed it in the API
        job = subprocess.run([BELONG, "candidates", "precompute", "--store", str(small_store), "--models", str(out),
                              "--redis", REDIS_URL, "--prefix", prefix, "--surface", "communities", "--stale",
                              "--json"], capture_output=True, text=True, timeout=900,
                             env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        assert job.returncode == 0, job.stderr[-2000:]
        meta = json.loads(job.stdout)
        # both people of the friendship (and any person an earlier test of this module marked)
        assert meta["scope"] == "the lists marked stale" and meta["users"] >= 2
        assert decode(client.get(key))[0] == meta["state_read_at"] > made_at
        assert client.zcard(stale_key) == 0
        get("u11")
        assert get(user)["cache"] == "precomputed"
        bad = subprocess.run([BELONG, "candidates", "precompute", "--store", str(small_store), "--models", str(out),
                              "--redis", REDIS_URL, "--prefix", prefix, "--stale", "--limit", "3"],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and "stale" in bad.stderr


def test_stale_marks_are_read_back_by_a_new_process(redis_url: str) -> None:
    """A process that starts after the events (a restarted replica) reads the marks from Redis; a list made after
    its mark is fresh."""
    import redis

    from belong.domain import Event, EventType, Surface, TargetKind
    from belong.errors import ValidationError
    from belong.serve.precomputed import PrecomputedLists, _encode

    client = redis.Redis.from_url(redis_url)
    prefix = f"belong:test:cand:{secrets.token_hex(4)}:"
    rows = ((3, 0.5, (("trending", 1, 0.5, "why", ()),), ()),)
    one, two = PrecomputedLists(client, prefix), PrecomputedLists(client, prefix)
    try:
        client.set(one.key("v1", Surface.COMMUNITIES, "a"), _encode(time.time() - 5, rows))
        client.set(one.key("v1", Surface.COMMUNITIES, "b"), _encode(time.time() - 5, rows))
        assert one.entry("v1", Surface.COMMUNITIES, "a").created > 0
        ts = 1_790_000_000_000_000
        assert one.mark_stale([Event(event_id="e1", ts_us=ts, type=EventType.LEAVE, actor="a", target="c1",
                                     target_kind=TargetKind.COMMUNITY),
                               Event(event_id="e2", ts_us=ts, type=EventType.JOIN, actor="b", target="c2",
                                     target_kind=TargetKind.COMMUNITY)],
                              "v1") == 3
        assert one.entry("v1", Surface.COMMUNITIES, "a").created == -math.inf
        assert one.entry("v1", Surface.COMMUNITIES, "b").created > 0  # a join leaves the communities list
        fresh = two.entry("v1", Surface.COMMUNITIES, "a")  # the other process: marks read from Redis
        assert fresh is not None and fresh.created == -math.inf and two.counts["stale"] == 1
        client.set(one.key("v1", Surface.COMMUNITIES, "a"), _encode(time.time() + 1, rows))  # the job made it again
        assert two.entry("v1", Surface.COMMUNITIES, "a").created > 0
        with pytest.raises(ValidationError, match="BELONG_PRECOMPUTED_REFRESH"):
            PrecomputedLists.from_env({"BELONG_PRECOMPUTED_REDIS": redis_url, "BELONG_PRECOMPUTED_REFRESH": "later"})
    finally:
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)


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
