"""Pieces of the server on their own: API keys, settings, the candidate cache's invalidation."""

from __future__ import annotations

import time

import pytest

from belong.domain import Surface, parse_event
from belong.errors import ValidationError
from belong.pipeline.types import Candidate, Merged, Reason
from belong.serve.auth import AuthError, KeyChecker, Role
from belong.serve.cache import CandidateCache, Entry
from belong.serve.settings import ServeSettings


def test_keys_roles_and_messages() -> None:
    keys = KeyChecker(frozenset({"w1"}), frozenset({"a1"}))
    assert keys.check("Bearer w1", Role.WRITE) is Role.WRITE
    assert keys.check("bearer a1", Role.WRITE) is Role.ADMIN
    assert keys.check("Bearer a1", Role.ADMIN) is Role.ADMIN
    for header, status in ((None, 401), ("", 401), ("Bearer", 401), ("Token w1", 401), ("Bearer nope", 401),
                           ("Bearer w1", 403)):
        with pytest.raises(AuthError) as err:
            keys.check(header, Role.ADMIN)
        assert err.value.status == status and err.value.message
    with pytest.raises(AuthError) as err:  # no keys configured: nobody may write
        KeyChecker(frozenset(), frozenset()).check("Bearer anything", Role.WRITE)
    assert err.value.status == 401


def test_settings_from_env() -> None:
    s = ServeSettings.from_env({"BELONG_API_KEYS_WRITE": " a, b ,,", "BELONG_BUDGET_SOURCES_MS": "12.5",
                                "BELONG_CACHE_USERS": "10"})
    assert s.write_keys == frozenset({"a", "b"}) and s.admin_keys == frozenset()
    assert s.budget_sources_ms == 12.5 and s.cache_users == 10 and s.redis_url is None
    assert s.with_(redis_url="redis://x", budget_features_ms=None).redis_url == "redis://x"
    with pytest.raises(ValidationError) as err:
        ServeSettings.from_env({"BELONG_BUDGET_FEATURES_MS": "fast"})
    assert err.value.field == "BELONG_BUDGET_FEATURES_MS"
    with pytest.raises(ValidationError):
        ServeSettings.from_env({"BELONG_CANDIDATE_TTL_S": "-1"})


def _ranked(*items: int) -> list[tuple[Merged, float]]:
    out = []
    for rank, i in enumerate(items):
        m = Merged(i)
        m.hits["src"] = (rank, Candidate(i, "src", 1.0, Reason("")))
        out.append((m, 1.0 / (rank + 1)))
    return out


def _event(etype: str, actor: str, target: str) -> object:
    return parse_event({"event_id": f"{etype}-{actor}-{target}", "ts": 1_700_000_000, "type": etype,
                        "actor": actor, "target": target})


def test_cache_ttl_lru_and_version() -> None:
    cache = CandidateCache(ttl_s=0.05, max_users=2)
    cache.put(Surface.COMMUNITIES, "a", Entry("v1", time.monotonic(), _ranked(1, 2), {}))
    assert cache.get(Surface.COMMUNITIES, "a", "v1")[1] is True
    assert cache.get(Surface.COMMUNITIES, "a", "v2") == (None, False)  # another version's indices never leak
    time.sleep(0.06)
    entry, fresh = cache.get(Surface.COMMUNITIES, "a", "v1")
    assert entry is not None and not fresh  # expired: still the last good list
    cache.put(Surface.COMMUNITIES, "b", Entry("v1", time.monotonic(), _ranked(3), {}))
    cache.put(Surface.COMMUNITIES, "c", Entry("v1", time.monotonic(), _ranked(4), {}))
    assert len(cache) == 2 and cache.get(Surface.COMMUNITIES, "a", "v1")[0] is None  # least recently used went


def test_cache_invalidation_by_event() -> None:
    cache = CandidateCache(ttl_s=60, max_users=100)
    for s in Surface:
        for u in ("a", "b"):
            cache.put(s, u, Entry("v1", time.monotonic(), _ranked(1, 2, 3), {}))
    cache.on_event(_event("join", "a", "c2"), 2, "v1")
    entry, _ = cache.get(Surface.COMMUNITIES, "a", "v1")
    assert [m.item for m, _ in entry.ranked] == [1, 3]  # the joined community left the list at once
    assert cache.get(Surface.CONTENT, "a", "v1")[0] is None  # new community, new content: recomputed
    cache.on_event(_event("friend_accept", "a", "b"), None, "v1")
    assert all(cache.get(s, u, "v1")[0] is None for s in Surface for u in ("a", "b"))
    cache.put(Surface.PEOPLE, "b", Entry("v1", time.monotonic(), _ranked(1), {}))
    cache.on_event(_event("view", "b", "x1"), None, "v1")  # engagement: the rules see it; the list stays
    assert cache.get(Surface.PEOPLE, "b", "v1")[0] is not None


def test_proxy_headers_setting() -> None:
    assert ServeSettings.from_env({}).proxy_headers is False
    assert ServeSettings.from_env({"BELONG_PROXY_HEADERS": "true"}).proxy_headers is True
    with pytest.raises(ValidationError) as err:
        ServeSettings.from_env({"BELONG_PROXY_HEADERS": "sometimes"})
    assert err.value.field == "BELONG_PROXY_HEADERS"


def test_recommendation_query_parsing_names_the_bad_parameter() -> None:
    from belong.domain import AgeGroup
    from belong.serve.params import OPENAPI_PARAMETERS, parse_recommendation_query

    q = parse_recommendation_query({"user_id": "u1", "k": "7", "debug": "true"})
    assert (q.user_id, q.k, q.debug, q.new_user) == ("u1", 7, True, None)
    assert parse_recommendation_query({"user_id": "u1"}).k == 20
    new = parse_recommendation_query({"user_id": "new", "locale": "fr-FR", "age_group": "teen", "interests": "a,b"})
    assert new.new_user is not None and new.new_user.age_group is AgeGroup.TEEN and new.new_user.locale == "fr-FR"
    for bad, field in (({}, "user_id"), ({"user_id": ""}, "user_id"), ({"user_id": "x" * 129}, "user_id"),
                       ({"user_id": "u", "k": "0"}, "k"), ({"user_id": "u", "k": "101"}, "k"),
                       ({"user_id": "u", "k": "2.5"}, "k"), ({"user_id": "u", "debug": "maybe"}, "debug"),
                       ({"user_id": "u", "age_group": "elder"}, "age_group"),
                       ({"user_id": "u", "locale": "not a locale"}, "locale"), ({"user_id": "u", "arm": ""}, "arm"),
                       ({"user_id": "u", "arm": "a" * 65}, "arm")):
        with pytest.raises(ValidationError) as err:
            parse_recommendation_query(bad)
        assert err.value.field == field
    assert parse_recommendation_query({"user_id": "u1", "arm": "blend"}).arm == "blend"
    assert [p["name"] for p in OPENAPI_PARAMETERS] == ["user_id", "k", "debug", "locale", "age_group", "interests",
                                                       "arm"]


def test_cached_lists_are_packed_out_of_the_collectors_sight_and_unpack_identically() -> None:
    import gc

    from belong.serve.cache import Packed

    ranked = []
    for i in range(200):
        m = Merged(i)
        m.hits["a"] = (i, Candidate(i, "a", 1.0 / (i + 1), Reason(f"because {i}", {"because_of": f"c{i}"})))
        m.hits["b"] = (i + 1, Candidate(i, "b", 0.5, Reason("")))
        m.features["p_join"] = 0.1
        ranked.append((m, 2.0 - i / 100))
    cache = CandidateCache(ttl_s=60, max_users=10)
    cache.put(Surface.COMMUNITIES, "u", Entry("v1", time.monotonic(), ranked, {"removed": [(1, "f", "why")]}))
    entry, fresh = cache.get(Surface.COMMUNITIES, "u", "v1")
    assert entry is not None and fresh and isinstance(entry.ranked, Packed)
    for _ in range(10):  # a pass untracks the tuples whose items it already untracked: a few passes for nesting
        gc.collect()
    assert not any(map(gc.is_tracked, entry.ranked.rows))  # 200 items: none scanned by a full collection again
    assert not gc.is_tracked(entry.ranked.rows)
    back = entry.ranked[10:12]
    assert [(m.item, s) for m, s in back] == [(10, 1.9), (11, 1.89)]
    m, _ = back[0]
    assert m.hits["a"][0] == 10 and m.hits["a"][1].reason.data == {"because_of": "c10"}
    assert m.hits["b"][1].score == 0.5 and m.features == {"p_join": 0.1}
    assert len(entry.ranked) == 200 and [x.item for x, _ in entry.ranked][:3] == [0, 1, 2]
    light, score = entry.ranked.light(10, 11)[0]  # rules and selection read no reasons: not unpacked
    assert (light.item, score, light.hits["a"][0], light.hits["a"][1].score) == (10, 1.9, 10, 1.0 / 11)
    assert light.hits["a"][1].reason.text == "" and light.features == {"p_join": 0.1}
    full = entry.ranked.full(10)
    assert full is not None and full.hits["a"][1].reason.text == "because 10"
    assert entry.ranked.full(999) is None


def test_a_candidate_ttl_of_zero_keeps_no_list() -> None:
    """BELONG_CANDIDATE_TTL_S=0: no candidate cache at all (the closed loop's answers depend on the state only)."""
    from belong.domain import Surface
    from belong.serve.cache import CandidateCache, Entry

    for ttl, kept in ((0.0, False), (300.0, True)):
        cache = CandidateCache(ttl, 10)
        cache.put(Surface.COMMUNITIES, "u1", Entry("v1", 0.0, []))
        entry, _ = cache.get(Surface.COMMUNITIES, "u1", "v1")
        assert (entry is not None) is kept and len(cache) == int(kept)
