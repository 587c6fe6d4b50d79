"""The per-list rules memo of the engine: a repeated request reuses the last rules answer only while nothing the
communities rules read has changed — any event of the user or any community change runs them again on the live
state, even when the cached list itself was not invalidated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from belong.domain import Community, EntityStatus, Event, EventType, Surface, TargetKind
from belong.serve.engine import Engine
from belong.serve.feature_reader import FeatureReader
from belong.serve.metrics import Metrics
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, build_version

TS = 1_900_000_000_000_000


@pytest.fixture(scope="module")
def engine(small_store: Path) -> Engine:
    registry = ModelRegistry()
    registry.add(build_version(str(small_store)), activate=True)
    features = FeatureReader.open(None, prefix="memo:", budget_ms=50, breaker_s=1)
    # a miss waits for its list however slow the machine (each request here runs in its own event loop: a run
    # left to finish in the background would never fill the cache)
    return Engine(registry, features, Metrics(), ServeSettings().with_(budget_sources_ms=60_000))


def _ids(engine: Engine, user: str, k: int = 10) -> list[str]:
    body = orjson.loads(asyncio.run(engine.recommend(Surface.COMMUNITIES, user, k)))
    return [it["id"] for it in body["items"]]


def _user_with_answer(engine: Engine) -> str:
    state = engine.model().state
    for u in state.users.ids[:200]:
        if len(_ids(engine, u)) >= 5:
            return u
    raise AssertionError("no user with five recommendations")


def test_repeated_requests_reuse_the_rules_answer(engine: Engine) -> None:
    user = _user_with_answer(engine)
    first = _ids(engine, user)
    entry, _ = engine.cache.get(Surface.COMMUNITIES, user, engine.model().version)
    assert entry is not None and entry.memo.kept is not None
    kept = entry.memo.kept
    assert _ids(engine, user) == first and entry.memo.kept is kept  # nothing changed: the same answer, not recomputed
    assert _ids(engine, user, 5) == first[:5] and entry.memo.kept is not kept  # another k: recomputed


@pytest.mark.parametrize("change", ["ban", "block", "join"])
def test_a_change_the_rules_read_is_seen_by_the_next_request(engine: Engine, change: str) -> None:
    user = _user_with_answer(engine)
    before = _ids(engine, user)
    _ids(engine, user)  # the memo is filled
    state = engine.model().state
    gone = before[0]
    if change == "ban":  # a community change: no event of this user, no cache invalidation
        state.add_community(Community(id=gone, name=gone, created_at_us=1, status=EntityStatus.BANNED))
    else:  # the user's own event folded into the state only: the cached list itself is left as it was
        etype = EventType.BLOCK if change == "block" else EventType.JOIN
        state.apply(Event(event_id=f"memo-{change}-{user}", ts_us=TS, type=etype, actor=user, target=gone,
                          target_kind=TargetKind.COMMUNITY))
    assert engine.cache.get(Surface.COMMUNITIES, user, engine.model().version)[0] is not None
    after = _ids(engine, user)
    assert gone not in after and after[: len(before) - 1] == before[1:]  # the rest moves up, in order


def test_serialised_items_are_reused_only_while_everything_they_are_made_of_is_equal(engine: Engine) -> None:
    from belong.features.registry import defaults

    state = engine.model().state
    user = _user_with_answer(engine)
    store = engine.features.store
    store.write("user", {user: defaults("user")}, 1)
    store.write("community", {c: defaults("community") | {"community_size": 5} for c in state.communities.ids}, 1)
    first = orjson.loads(asyncio.run(engine.recommend(Surface.COMMUNITIES, user, 10, private=True)))
    entry, _ = engine.cache.get(Surface.COMMUNITIES, user, engine.model().version)
    assert entry is not None and entry.serialized is not None
    done = entry.serialized
    again = orjson.loads(asyncio.run(engine.recommend(Surface.COMMUNITIES, user, 10, private=True)))
    assert again["items"] == first["items"] and again["request_id"] != first["request_id"]
    assert entry.serialized is done  # reused, not rebuilt
    top = first["items"][0]["id"]
    store.write("community", {top: defaults("community") | {"community_size": 999}}, 2)  # a fresher stored row
    changed = orjson.loads(asyncio.run(engine.recommend(Surface.COMMUNITIES, user, 10, private=True)))
    assert entry.serialized is not done
    assert changed["items"][0]["features"] != first["items"][0]["features"]
    assert changed["items"][1:] == first["items"][1:]


def _features(engine: Engine, user: str) -> dict[str, dict]:
    body = orjson.loads(asyncio.run(engine.recommend(Surface.COMMUNITIES, user, 10, private=True)))
    return {it["id"]: it["features"] for it in body["items"]}


def test_hydrated_features_follow_friends_and_members_without_invalidation(engine: Engine) -> None:
    state = engine.model().state
    user = _user_with_answer(engine)
    friend, stranger = f"memo-friend-of-{user}", f"memo-stranger-of-{user}"
    state.apply(Event(event_id=f"memo-fa-{user}", ts_us=TS, type=EventType.FRIEND_ACCEPT, actor=friend, target=user,
                      target_kind=TargetKind.USER))
    first = _features(engine, user)
    entry, _ = engine.cache.get(Surface.COMMUNITIES, user, engine.model().version)
    assert entry is not None and entry.memo.hydration is not None
    assert _features(engine, user) == first and entry.memo.items is not None
    items = entry.memo.items
    _features(engine, user)
    assert entry.memo.items is items  # nothing changed: not hydrated (nor explained) again
    top = next(iter(first))
    # a stranger joins: only the member count of that community moves
    state.apply(Event(event_id=f"memo-sj-{user}", ts_us=TS, type=EventType.JOIN, actor=stranger, target=top,
                      target_kind=TargetKind.COMMUNITY))
    second = _features(engine, user)
    assert second[top]["members"] == first[top]["members"] + 1
    assert second[top]["friends_in"] == first[top]["friends_in"]
    assert {c: f for c, f in second.items() if c != top} == {c: f for c, f in first.items() if c != top}
    # the user's friend joins it: an event of the friend only (the user's own counter does not move)
    rev = state.user_rev[state.users.index[user]]
    state.apply(Event(event_id=f"memo-fj-{user}", ts_us=TS, type=EventType.JOIN, actor=friend, target=top,
                      target_kind=TargetKind.COMMUNITY))
    assert state.user_rev[state.users.index[user]] == rev
    third = _features(engine, user)
    assert third[top]["members"] == first[top]["members"] + 2
    assert third[top]["friends_in"] == first[top]["friends_in"] + 1
