"""The serving feature read: the same model inputs as :func:`belong.features.hydrate`, candidate rows cached in
process (a warm request reads only the user's row, and only the names its surface needs), degraded when the store
is unreachable."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from belong.domain import Surface
from belong.errors import ValidationError
from belong.features import hydrate
from belong.features.online import MATERIALIZED_AT, InProcessFeatureStore
from belong.features.registry import HOUR_S, defaults
from belong.serve.feature_reader import USER_INPUTS, BudgetRedisFeatureStore, FeatureReader, user_names
from belong.serve.rowcache import RowCache, entity_ttl_s
from belong.serve.settings import ServeSettings
from serve_helpers import free_port


class CountingStore(InProcessFeatureStore):
    """An in-process store that records what each read asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[list[tuple[str, str]], dict[str, list[str]]]] = []

    def _read(self, requests: list[tuple[str, str]], fields: dict[str, list[str]]) -> list[Any]:
        self.reads.append((list(requests), fields))
        return super()._read(requests, fields)


def _world(store: InProcessFeatureStore) -> None:
    store.write("user", {
        "u": defaults("user") | {"user_locale": "en-US", "user_interests": ["games", "art"],
                                 "user_community_ids": ["c1", "c2"], "user_friend_communities": {"c3": 2},
                                 "user_blocked_communities": ["c4"], "user_friend_degrees": {"v": 3, "w": 1},
                                 "user_interactions": {"v": 5}, "user_activity_7d": 9},
        "v": defaults("user") | {"user_friend_degrees": {"u": 2, "w": 1}, "user_community_ids": ["c1"],
                                 "user_blocked_users": ["x"]},
    }, 100)
    store.write("community", {
        "c3": defaults("community") | {"community_size": 40, "community_locale": "en", "community_tags": ["art"],
                                       "community_neighbors": {"c1": 0.25, "c2": 0.5}},
        "c4": defaults("community") | {"community_size": 7, "community_locale": "fr"},
    }, 100)
    store.write("content", {"p1": defaults("content") | {"content_kind": "post", "content_community_id": "c3"}}, 100)


@pytest.mark.parametrize(("surface", "items"), [
    (Surface.COMMUNITIES, ["c3", "c4", "never-written"]),
    (Surface.PEOPLE, ["v", "nobody"]),
    (Surface.CONTENT, ["p1"]),
])
def test_same_inputs_as_hydrate_cold_and_warm(surface: Surface, items: list[str]) -> None:
    store = CountingStore()
    _world(store)
    expected = hydrate(store, surface, "u", items)
    reader = FeatureReader(store, breaker_s=1.0, rows=RowCache(60.0, 100))
    for _ in range(2):  # cold (rows read from the store), then warm (candidate rows from the cache)
        online, why = reader.read(surface, "u", items)
        assert why is None and online is not None
        assert online.user == {n: expected[0][n] for n in USER_INPUTS}
        assert [online.user | row for row in online.items] == expected
    cold, warm = store.reads[-2:]
    assert len(cold[0]) == 1 + len(items)
    assert warm[0] == [("user", "u")]  # one round trip still, for the user's row only


def test_user_row_reads_only_what_the_surface_needs() -> None:
    needed = user_names(Surface.COMMUNITIES)
    assert needed is not None and set(USER_INPUTS) <= set(needed)
    assert {"user_community_ids", "user_friend_communities", "user_blocked_communities"} <= set(needed)
    assert "user_interactions" not in needed and "user_friend_degrees" not in needed
    assert user_names(Surface.PEOPLE) is None  # candidates are users: every user feature is read
    store = CountingStore()
    _world(store)
    FeatureReader(store, breaker_s=1.0).read(Surface.COMMUNITIES, "u", ["c3"])
    assert store.reads[-1][1]["user"] == list(needed)
    assert "community_neighbors" in store.reads[-1][1]["community"]


def test_cached_rows_expire_and_new_values_show() -> None:
    store = CountingStore()
    _world(store)
    reader = FeatureReader(store, breaker_s=1.0, rows=RowCache(0.05, 100))
    first, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"])
    store.write("community", {"c3": {"community_size": 41}}, 200)
    cached, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"])
    assert first is not None and cached is not None
    assert cached.items[0]["community_size"] == 40  # within the cache's ttl: the row read before
    time.sleep(0.06)
    later, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"])
    assert later is not None and later.items[0]["community_size"] == 41
    assert store.reads[-1][0] == [("user", "u"), ("community", "c3")]


def test_user_row_is_never_cached() -> None:
    store = InProcessFeatureStore()
    _world(store)
    reader = FeatureReader(store, breaker_s=1.0, rows=RowCache(60.0, 100))
    reader.read(Surface.COMMUNITIES, "u", ["c3"])
    store.write("user", {"u": {"user_activity_7d": 1}}, 200)
    online, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"])
    assert online is not None and online.user["user_activity_7d"] == 1


def test_row_cache_ttl_cap_eviction_and_off() -> None:
    assert entity_ttl_s("community", 60.0) == 60.0
    assert entity_ttl_s("community", 10 * HOUR_S) == HOUR_S  # never kept longer than the row's freshness
    cache = RowCache(60.0, max_rows=2)
    cache.put_many("community", [("a", {"x": 1}), ("b", {"x": 2})], now=0.0)
    cache.put_many("community", [("c", {"x": 3})], now=1.0)
    assert cache.get_many("community", ["a", "b", "c"], now=2.0) == [None, {"x": 2}, {"x": 3}]
    assert cache.get_many("community", ["b", "c"], now=60.5) == [None, {"x": 3}]  # b expired at 60, c at 61
    assert len(cache) == 1
    off = RowCache(0.0, 10)
    off.put_many("community", [("a", {"x": 1})])
    assert len(off) == 0


def test_read_many_names_per_entity() -> None:
    store = InProcessFeatureStore()
    _world(store)
    user, comm = store.read_many([("user", "u"), ("community", "c3")], {"user": ["user_locale"]})
    assert user == {"user_locale": "en-US", MATERIALIZED_AT: 100}
    assert comm["community_size"] == 40 and "community_neighbors" in comm


def test_unreachable_store_degrades_and_opens_the_breaker() -> None:
    store = BudgetRedisFeatureStore(f"redis://127.0.0.1:{free_port()}/0", prefix="belong:test:", timeout_s=0.2)
    rows = RowCache(60.0, 100)
    rows.put_many("community", [("c3", defaults("community"))])  # a warm candidate still needs the user's row
    reader = FeatureReader(store, breaker_s=30.0, rows=rows)
    assert reader.read(Surface.COMMUNITIES, "u", ["c3"]) == (None, "features_unavailable")
    t0 = time.perf_counter()
    assert reader.read(Surface.COMMUNITIES, "u", ["c3"]) == (None, "features_unavailable")
    assert time.perf_counter() - t0 < 0.01  # breaker open: the store is not asked
    reader.close()


def test_cache_settings_from_env() -> None:
    s = ServeSettings.from_env({"BELONG_FEATURE_CACHE_S": "5", "BELONG_FEATURE_CACHE_ROWS": "10"})
    assert s.feature_cache_s == 5.0 and s.feature_cache_rows == 10
    assert ServeSettings.from_env({}).feature_cache_s > 0  # on by default
    for name, raw in (("BELONG_FEATURE_CACHE_S", "-1"), ("BELONG_FEATURE_CACHE_ROWS", "0"),
                      ("BELONG_FEATURE_CACHE_S", "soon")):
        with pytest.raises(ValidationError) as err:
            ServeSettings.from_env({name: raw})
        assert err.value.field == name


def test_memo_reuses_assembled_rows_until_a_stored_row_changes() -> None:
    store = InProcessFeatureStore()
    _world(store)
    reader = FeatureReader(store, breaker_s=1.0, rows=RowCache(0.0, 1))  # every row read from the store
    memo: dict = {}
    first, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"], memo)
    again, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"], memo)
    assert first is not None and again is not None
    assert again.items[0] is first.items[0]  # same materialisations: the assembled row is reused
    store.write("community", {"c3": {"community_size": 41}}, 300)
    changed, _ = reader.read(Surface.COMMUNITIES, "u", ["c3"], memo)
    assert changed is not None and changed.items[0]["community_size"] == 41
    expected = hydrate(store, Surface.COMMUNITIES, "u", ["c3"])[0]
    # identical to assembling from scratch, in JSON (memoised rows keep lists as tuples)
    assert orjson.dumps(changed.user | changed.items[0]) == orjson.dumps(expected)



def test_an_unassembled_read_gives_the_same_row_times_and_no_inputs() -> None:
    """A non-admin answer shows no feature rows: the read is made (and can degrade) as before, the rows' times
    key the answer's reuse, but nothing is assembled and nothing goes into the memo."""
    store = InProcessFeatureStore()
    _world(store)
    reader = FeatureReader(store, breaker_s=1.0, rows=RowCache(60.0, 100))
    memo: dict = {}
    bare, why = reader.finish(reader.start(Surface.COMMUNITIES, "u", ["c3", "c4"]), ["c3", "c4"], memo,
                              assemble=False)
    assert why is None and bare is not None and bare.user == {} and bare.items == [] and memo == {}
    full, _ = reader.finish(reader.start(Surface.COMMUNITIES, "u", ["c3", "c4"]), ["c3", "c4"], {})
    assert full is not None and full.items and bare.keys == full.keys and bare.keys is not None
    cold, _ = reader.finish(reader.start(Surface.COMMUNITIES, "u", ["never-written"]), ["never-written"], {},
                            assemble=False)
    assert cold is not None and cold.keys is None  # a row of defaults has no time: never reused
    down = FeatureReader(store, breaker_s=60.0)
    down._open_until = time.monotonic() + 60  # the breaker is open: degraded either way
    assert down.finish(down.start(Surface.COMMUNITIES, "u", ["c3"]), ["c3"], assemble=False) == \
        (None, "features_unavailable")


def test_started_read_collects_likely_rows_and_reads_late_ones_after() -> None:
    store = CountingStore()
    _world(store)
    reader = FeatureReader(store, breaker_s=1.0, rows=RowCache(60.0, 100))
    pending = reader.start(Surface.COMMUNITIES, "u", ["c3"])  # the head of the list: sent before the rules run
    online, why = reader.finish(pending, ["c4", "c3"])  # c4 was not expected: read after, c3 came with the user
    assert why is None and online is not None
    assert [r[0] for r in store.reads[-2:]] == [[("user", "u"), ("community", "c3")], [("community", "c4")]]
    expected = hydrate(store, Surface.COMMUNITIES, "u", ["c4", "c3"])
    assert [online.user | row for row in online.items] == expected


def test_redis_split_read_equals_a_plain_read(redis_url: str) -> None:
    from belong.features.online import RedisFeatureStore

    store = RedisFeatureStore(redis_url, prefix="belong:test:split:")
    try:
        store.clear()
        _world(store)
        reqs = [("user", "u"), ("community", "c3"), ("community", "missing")]
        wait = store.begin_read_many(reqs)
        assert wait() == store.read_many(reqs)
        assert store.begin_read_many(reqs[:1], ["user_locale"])() == store.read_many(reqs[:1], ["user_locale"])
    finally:
        store.clear()
        store.close()
