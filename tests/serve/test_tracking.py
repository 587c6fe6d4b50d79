"""Exact in-process feature rows: Redis reports every changed key (``CLIENT TRACKING``), the row cache drops it, and
a lost invalidation feed falls back to the time-bounded mode (no user row kept) until it is back. Real Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from belong.domain import Surface
from belong.features.online import RedisFeatureStore
from belong.features.registry import defaults
from belong.serve.feature_reader import FeatureReader
from belong.serve.rowcache import RowCache
from belong.serve.tracking import InvalidationListener


def _until(cond, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


@pytest.fixture
def world(redis_url: str):
    prefix = f"belong:test:tracking:{uuid.uuid4().hex[:8]}:"
    store = RedisFeatureStore(redis_url, prefix=prefix)
    store.write("user", {"u": defaults("user") | {"user_locale": "en-US", "user_activity_7d": 3}}, 100)
    store.write("community", {"c1": defaults("community") | {"community_size": 10},
                              "c2": defaults("community") | {"community_size": 20}}, 100)
    reader = FeatureReader.open(redis_url, prefix=prefix, budget_ms=500, breaker_s=0.01, cache_s=60,
                                cache_rows=1000, tracking=True)
    assert reader.rows.listener is not None and reader.rows.listener.wait_connected(5)
    yield store, reader, redis.Redis.from_url(redis_url)
    reader.close()
    store.clear()
    store.close()


def _read(reader: FeatureReader) -> tuple[dict, list[dict]]:
    online, why = reader.read(Surface.COMMUNITIES, "u", ["c1", "c2"])
    assert why is None
    return online.user, online.items


def test_user_row_reused_until_redis_reports_a_change(world) -> None:
    store, reader, _ = world
    assert reader.row_cache_mode == "exact"
    user, items = _read(reader)
    assert user["user_locale"] == "en-US" and items[1]["community_size"] == 20
    misses = dict(reader.rows.misses)
    user2, _ = _read(reader)
    assert user2 == user
    assert reader.rows.misses == misses  # user and both communities from the cache: no round trip
    assert reader.rows.hits["user"] >= 1 and reader.rows.hits["community"] >= 2
    store.write("user", {"u": defaults("user") | {"user_locale": "fr-FR"}}, 200)
    store.write("community", {"c2": defaults("community") | {"community_size": 99}}, 200)
    # each row's invalidation arrives on its own (keyspace notifications): wait for both, in either order
    assert _until(lambda: _read(reader)[0]["user_locale"] == "fr-FR" and _read(reader)[1][1]["community_size"] == 99)
    assert reader.rows.invalidations >= 2


def test_a_read_that_raced_a_write_is_not_kept(world) -> None:
    store, reader, _ = world
    rows = reader.rows
    since = rows.mark()
    stale = {"community_size": 10}
    store.write("community", {"c1": defaults("community") | {"community_size": 11}}, 300)
    assert _until(lambda: rows.mark() > since)  # the invalidation arrived after the read was "sent"
    rows.put_many("community", [("c1", stale)], since=since)
    assert rows.get_many("community", ["c1"]) == [None]
    rows.put_many("community", [("c1", stale)], since=rows.mark())  # a read sent after it is kept
    assert rows.get_many("community", ["c1"]) == [stale]


@pytest.mark.parametrize("which", [0, 1], ids=["listener", "tracker"])
def test_lost_feed_falls_back_to_time_bounded_then_recovers(world, which: int) -> None:
    store, reader, admin = world
    listener = reader.rows.listener
    _read(reader)
    ids = listener.client_ids
    admin.execute_command("CLIENT", "KILL", "ID", ids[which])
    assert _until(lambda: reader.row_cache_mode == "time-bounded")
    assert len(reader.rows) == 0  # everything kept while exact is dropped
    before = reader.rows.misses["user"]
    _read(reader)
    _read(reader)
    assert reader.rows.misses["user"] == before + 2  # the user's row is read fresh every time meanwhile
    assert _until(lambda: reader.row_cache_mode == "exact")  # reconnected by itself
    assert listener.client_ids != ids and listener.resets >= 1
    _read(reader)
    store.write("user", {"u": defaults("user") | {"user_locale": "de-DE"}}, 400)
    assert _until(lambda: _read(reader)[0]["user_locale"] == "de-DE")


def test_without_tracking_user_rows_are_never_kept(redis_url: str) -> None:
    prefix = f"belong:test:tracking:{uuid.uuid4().hex[:8]}:"
    store = RedisFeatureStore(redis_url, prefix=prefix)
    store.write("user", {"u": defaults("user") | {"user_locale": "en-US"}}, 100)
    reader = FeatureReader.open(redis_url, prefix=prefix, budget_ms=500, breaker_s=0.01, cache_s=60,
                                cache_rows=1000, tracking=False)
    try:
        assert reader.row_cache_mode == "time-bounded"
        _read(reader)
        store.write("user", {"u": defaults("user") | {"user_locale": "fr-FR"}}, 200)
        assert _read(reader)[0]["user_locale"] == "fr-FR"  # at once: read from Redis every time
        assert reader.rows.hits["user"] == 0
    finally:
        reader.close()
        store.clear()
        store.close()


def test_invalidations_for_other_prefixes_are_ignored() -> None:
    class Feed:
        events = __import__("collections").deque()

    rows = RowCache(60.0, 100, Feed(), "p:")  # type: ignore[arg-type]
    Feed.events.append("live")
    from belong.serve.tracking import LIVE
    Feed.events.clear()
    Feed.events.append(LIVE)
    rows.put_many("community", [("c1", {"a": 1})], since=rows.mark())
    Feed.events.extend([b"q:community:c1", b"p:user:c1"])
    assert rows.get_many("community", ["c1"]) == [{"a": 1}]
    Feed.events.append(b"p:community:c1")
    assert rows.get_many("community", ["c1"]) == [None]


def test_listener_close_stops_its_thread(redis_url: str) -> None:
    listener = InvalidationListener(redis_url, "belong:test:none:").start()
    assert listener.wait_connected(5)
    listener.close()
    assert not listener._thread.is_alive()  # noqa: SLF001


def test_a_whole_materialisation_clears_the_cache_at_once(world) -> None:
    from belong.serve.rowcache import BULK_CLEAR

    store, reader, _ = world
    _read(reader)
    assert len(reader.rows) > 0
    rows = {f"bulk{i}": defaults("community") | {"community_size": i} for i in range(BULK_CLEAR + 500)}
    rows["c2"] = defaults("community") | {"community_size": 77}
    listener = reader.rows.listener
    store.write("community", rows, 500)
    assert _until(lambda: len(listener.events) > BULK_CLEAR)
    t0 = time.perf_counter()
    since = reader.rows.mark()
    assert time.perf_counter() - t0 < 0.05  # a clear, not 5,500 key-by-key invalidations
    assert len(reader.rows) == 0 and reader.row_cache_mode == "exact"
    assert since == reader.rows._floor  # noqa: SLF001 - reads sent before the clear are not kept
    assert _until(lambda: _read(reader)[1][1]["community_size"] == 77)
