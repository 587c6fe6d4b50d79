"""Online feature store: the same contract on Redis (real server) and in-process; one round trip per read."""

from __future__ import annotations

import uuid

import pytest

from belong.errors import ValidationError
from belong.features.online import (
    MATERIALIZED_AT,
    InProcessFeatureStore,
    RedisFeatureStore,
    open_feature_store,
    stale_features,
)
from belong.features.registry import defaults


@pytest.fixture()
def redis_store(redis_url):
    store = RedisFeatureStore(redis_url, prefix=f"belong:test:{uuid.uuid4().hex}:")
    yield store
    store.clear()
    store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request):
    if request.param == "memory":
        yield InProcessFeatureStore()
    else:
        yield request.getfixturevalue("redis_store")


def test_write_then_read_round_trips_values_and_timestamp(store):
    row = defaults("user") | {
        "user_activity_7d": 4, "user_account_age_days": 1.5, "user_locale": "pt-BR",
        "user_community_ids": ["c1", "c2"], "user_friend_degrees": {"f": 3},
    }
    assert store.write("user", {"u1": row}, 1234) == 1
    got = store.read("user", "u1")
    assert got.pop(MATERIALIZED_AT) == 1234
    assert got == row
    assert store.read("user", "u1", ["user_locale"]) == {"user_locale": "pt-BR", MATERIALIZED_AT: 1234}


def test_missing_entities_and_values_read_as_defaults(store):
    store.write("community", {"c": {"community_size": 7}}, 10)
    unknown, partial = store.read_many([("community", "nope"), ("community", "c")])
    assert unknown == defaults("community") | {MATERIALIZED_AT: None}
    assert partial == defaults("community") | {"community_size": 7, MATERIALIZED_AT: 10}
    # defaults are fresh copies: mutating one row never leaks into the next read
    unknown["community_tags"].append("x")
    assert store.read("community", "nope")["community_tags"] == []


def test_write_replaces_the_whole_row(store):
    store.write("content", {"x": {"content_kind": "post", "content_engagement_7d": 3}}, 1)
    store.write("content", {"x": {"content_kind": "event"}}, 2)
    got = store.read("content", "x")
    assert (got["content_kind"], got["content_engagement_7d"], got[MATERIALIZED_AT]) == ("event", 0, 2)


def test_bad_input_is_named(store):
    with pytest.raises(ValidationError, match="unknown feature 'user_shoe_size'"):
        store.write("user", {"u": {"user_shoe_size": 1}}, 1)
    with pytest.raises(ValidationError, match="not a stored feature of 'user'"):
        store.write("user", {"u": {"community_size": 1}}, 1)
    with pytest.raises(ValidationError, match="user_friend_count: must be a int"):
        store.write("user", {"u": {"user_friend_count": "many"}}, 1)
    with pytest.raises(ValidationError, match="entity"):
        store.write("user_user", {"u": {}}, 1)
    with pytest.raises(ValidationError, match="key"):
        store.read_many([("user", "")])
    with pytest.raises(ValidationError, match="is not a feature of 'community'"):
        store.read_many([("community", "c")], ["user_locale"])
    with pytest.raises(ValidationError, match="ts_us"):
        store.write("user", {"u": {}}, -1)


@pytest.mark.redis
def test_redis_read_many_is_one_pipelined_round_trip(redis_store):
    redis_store.write("community", {f"c{i}": {"community_size": i} for i in range(50)}, 5)
    client = redis_store._client
    executes = []
    original = client.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = original(*args, **kwargs)
        run = pipe.execute

        def execute(*a, **kw):
            executes.append(len(pipe.command_stack))
            return run(*a, **kw)

        pipe.execute = execute
        return pipe

    def hmget_calls() -> int:
        return int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))

    before = hmget_calls()
    client.pipeline = counting_pipeline
    try:
        rows = redis_store.read_many([("user", "u")] + [("community", f"c{i}") for i in range(50)])
    finally:
        client.pipeline = original
    after = hmget_calls()
    assert executes == [51]  # one execute() carrying all 51 reads
    assert after - before >= 51  # the server saw the HMGETs (other clients may add their own)
    assert [r["community_size"] for r in rows[1:]] == list(range(50))


@pytest.mark.redis
def test_clear_only_touches_its_prefix(redis_url):
    a = RedisFeatureStore(redis_url, prefix=f"belong:test:{uuid.uuid4().hex}:")
    b = RedisFeatureStore(redis_url, prefix=f"belong:test:{uuid.uuid4().hex}:")
    try:
        a.write("user", {"u": {"user_friend_count": 1}}, 1)
        b.write("user", {"u": {"user_friend_count": 2}}, 1)
        assert a.clear() == 1
        assert a.read("user", "u")[MATERIALIZED_AT] is None
        assert b.read("user", "u")["user_friend_count"] == 2
    finally:
        a.clear()
        b.clear()


@pytest.mark.redis
def test_open_feature_store(redis_url):
    assert isinstance(open_feature_store(None), InProcessFeatureStore)
    with open_feature_store(redis_url, prefix="belong:test:open:") as s:
        assert isinstance(s, RedisFeatureStore)
    with pytest.raises(ValidationError, match="redis://"):
        open_feature_store("http://localhost:6379")


def test_empty_request_and_staleness(store):
    assert store.read_many([]) == []
    store.write("user", {"u": {"user_activity_1d": 2}}, 1_000_000)
    row = store.read("user", "u", ["user_activity_1d", "user_locale"])
    assert stale_features(row, 1_000_000 + 3600 * 1_000_000) == []  # exactly at 1 h freshness: still fresh
    assert stale_features(row, 1_000_001 + 3600 * 1_000_000) == ["user_activity_1d"]  # locale keeps a day
    assert stale_features(store.read("user", "never", ["user_locale"]), 0) == ["user_locale"]


def test_unreachable_redis_is_a_store_error():
    from belong.errors import StoreError

    with pytest.raises(StoreError, match="cannot reach Redis"):
        RedisFeatureStore("redis://127.0.0.1:1/0")


def test_hydrate_rejects_bad_requests():
    from belong.features.assemble import hydrate

    store = InProcessFeatureStore()
    with pytest.raises(ValidationError, match="request: has 1 entries for 2 candidates"):
        hydrate(store, "communities", "u", ["a", "b"], [{}])
    with pytest.raises(ValidationError, match="communities surface only"):
        hydrate(store, "people", "u", ["v"], [{"uc_text_similarity": 0.3}])
    with pytest.raises(ValidationError, match="surface"):
        hydrate(store, "guilds", "u", ["v"])
    rows = hydrate(store, "people", "u", ["v"], [{"src_fof_score": 0.5}])
    assert rows[0]["src_fof_score"] == 0.5 and rows[0]["uu_mutual_friends"] == 0


@pytest.mark.redis
def test_split_reads_on_the_held_connection_never_read_another_requests_replies(redis_store):
    redis_store.write("community", {"a": {"community_size": 1}, "b": {"community_size": 2}}, 5)
    first = redis_store.begin_read_many([("community", "a"), ("community", "b")])  # in flight together
    second = redis_store.begin_read_many([("community", "b")])
    assert second()[0]["community_size"] == 2  # collected first: a's replies are kept for a, not returned here
    assert [r["community_size"] for r in first()] == [1, 2]
    forgotten = redis_store.begin_read_many([("community", "a")])  # never collected: later reads skip its reply
    waits = [redis_store.begin_read_many([("community", k)]) for k in "ba"]
    assert waits[1]()[0]["community_size"] == 1 and waits[0]()[0]["community_size"] == 2
    assert forgotten()[0]["community_size"] == 1  # still its own reply, whenever it is collected
    assert redis_store.read_many([("community", "a"), ("community", "b")])[1]["community_size"] == 2


@pytest.mark.redis
def test_a_failed_connection_fails_every_read_in_flight_then_reconnects(redis_store, redis_url):
    import redis as redis_lib

    redis_store.write("community", {"a": {"community_size": 1}}, 5)
    redis_store.read_many([("community", "a")])
    redis_store.begin_read_many([("community", "a")])()  # the thread's held connection exists, nothing in flight
    conn = redis_store._local.conn  # noqa: SLF001
    conn.send_command("CLIENT", "ID")
    held_id = conn.read_response()
    redis_lib.Redis.from_url(redis_url).execute_command("CLIENT", "KILL", "ID", held_id)
    reads = []
    for _ in range(2):
        try:
            reads.append(redis_store.begin_read_many([("community", "a")]))
        except Exception:  # noqa: BLE001 - the send itself may already fail; that read is failed too
            pass
    for wait in reads:
        with pytest.raises(Exception):  # noqa: B017 - a connection error, never a row
            wait()
    assert redis_store.begin_read_many([("community", "a")])()[0]["community_size"] == 1  # reconnected
