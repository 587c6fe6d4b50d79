"""FeatureState: exact window edges, membership and friendship folding, and a brute-force reference check."""

from __future__ import annotations

import math

import pytest
from features_helpers import DAY, T0, log

from belong.features.state import EventCursor, FeatureState


def _state_at(events, t: int, catalog=None) -> FeatureState:
    state = FeatureState(catalog)
    EventCursor(state, [events]).advance_to(t)
    return state


def test_window_edges_are_half_open():
    t = T0 + 30 * DAY
    events = log(
        (t - 28 * DAY - 1, "message", "u", "c"),  # just outside 28d
        (t - 28 * DAY, "message", "u", "c"),  # exactly on the 28d edge: inside
        (t - 7 * DAY - 1, "message", "u", "c"),  # outside 7d, inside 28d
        (t - 7 * DAY, "view", "u", "c"),  # on the 7d edge
        (t - DAY, "reaction", "u", "x", {"target_kind": "content"}),  # on the 1d edge
        (t - 1, "click", "u", "c"),  # last microsecond before t
        (t, "message", "u", "c"),  # at t: never counted as of t
        (t + 1, "message", "u", "c"),
    )
    state = _state_at(events, t)
    row = state.user_row("u", t)
    assert (row["user_activity_1d"], row["user_activity_7d"], row["user_activity_28d"]) == (2, 3, 5)
    assert state.content_row("x", t)["content_engagement_1d"] == 1
    # one microsecond later the events on the 28d and 1d edges fall out and the event at t comes in
    later = _state_at(events, t + 1).user_row("u", t + 1)
    assert (later["user_activity_1d"], later["user_activity_7d"], later["user_activity_28d"]) == (2, 3, 5)


def test_reading_a_row_at_or_before_a_folded_event_is_refused():
    events = log((T0, "join", "u", "c"))
    state = _state_at(events, T0 + 1)
    with pytest.raises(ValueError, match="point-in-time"):
        state.user_row("u", T0)
    with pytest.raises(ValueError, match="out of time order"):
        state.apply(T0 - 1, "join", "v", "c", "community")


def test_membership_friendship_growth_and_neighbors():
    events = log(
        (T0, "join", "a", "c1"),
        (T0, "join", "a", "c1"),  # a repeated join changes nothing
        (T0 + 1, "join", "b", "c1"),
        (T0 + 2, "join", "a", "c2"),
        (T0 + 3, "join", "b", "c2"),
        (T0 + 4, "join", "c", "c2"),
        (T0 + 10 * DAY, "join", "d", "c1"),
        (T0 + 10 * DAY, "leave", "b", "c1"),
        (T0 + 10 * DAY + 1, "leave", "b", "c1"),  # a leave of a non-member changes nothing
        (T0 + 10 * DAY, "friend_accept", "a", "b"),
        (T0 + 10 * DAY, "friend_accept", "c", "a"),
        (T0 + 10 * DAY + 5, "friend_remove", "b", "a"),
        (T0 + 10 * DAY + 6, "block", "c", "d"),
        (T0 + 10 * DAY + 6, "report", "c", "c1", {"target_kind": "community"}),
    )
    t = T0 + 11 * DAY
    state = _state_at(events, t)
    c1 = state.community_row("c1", t)
    assert c1["community_size"] == 2  # a, d
    assert c1["community_new_members_7d"] == 0  # size 2 a week ago (a, b), 2 now (a, d)
    assert c1["community_growth_7d"] == 0.0
    # c1 = {a, d}, c2 = {a, b, c}: co-members 1, Jaccard 1 / 4
    assert c1["community_neighbors"] == {"c2": 0.25}
    a = state.user_row("a", t)
    assert a["user_community_ids"] == ["c1", "c2"]
    assert a["user_friend_count"] == 1 and a["user_friend_degrees"] == {"c": 1}
    assert a["user_friend_communities"] == {"c2": 1}
    assert a["user_interactions"] == {"b": 2, "c": 1}
    c = state.user_row("c", t)
    assert c["user_blocked_users"] == ["d"] and c["user_blocked_communities"] == ["c1"]
    # as of just after the first joins, c1 grew from 0 to 2 within the week
    early = _state_at(events, T0 + 5)
    assert early.community_row("c1", T0 + 5)["community_new_members_7d"] == 2
    assert early.community_row("c1", T0 + 5)["community_growth_7d"] == 2.0


def _reference(events, t: int):
    """Brute force from the raw event list: memberships, friends, windowed activity as of t."""
    member: dict[tuple[str, str], bool] = {}
    friends: dict[frozenset, bool] = {}
    acts: dict[str, list[int]] = {}
    for e in events.to_pylist():
        if e["ts_us"] >= t:
            break
        if e["type"] in ("join", "leave"):
            member[(e["actor"], e["target"])] = e["type"] == "join"
        elif e["type"] in ("friend_accept", "friend_remove"):
            friends[frozenset((e["actor"], e["target"]))] = e["type"] == "friend_accept"
        if e["type"] in ("message", "reaction", "voice_minutes", "view", "click"):
            acts.setdefault(e["actor"], []).append(e["ts_us"])
    return member, friends, acts


def test_state_matches_brute_force_reference(world):
    for t in world.query_times:
        state = _state_at(world.events, t, world.catalog)
        member, friends, acts = _reference(world.events, t)
        week_ago_member, _, _ = _reference(world.events, t - 7 * DAY)
        for u in world.users:
            row = state.user_row(u, t)
            mine = sorted(c for (uu, c), m in member.items() if uu == u and m)
            fr = sorted(next(iter(p - {u})) for p, f in friends.items() if f and u in p)
            assert row["user_community_ids"] == mine
            assert sorted(row["user_friend_degrees"]) == fr
            for days, name in ((1, "user_activity_1d"), (7, "user_activity_7d"), (28, "user_activity_28d")):
                assert row[name] == sum(1 for s in acts.get(u, []) if t - days * DAY <= s < t)
        for c in world.communities:
            row = state.community_row(c, t)
            members = {u for (u, cc), m in member.items() if cc == c and m}
            before = sum(1 for (u, cc), m in week_ago_member.items() if cc == c and m)
            assert row["community_size"] == len(members)
            assert row["community_new_members_7d"] == len(members) - before
            for other, jac in row["community_neighbors"].items():
                others = {u for (u, cc), m in member.items() if cc == other and m}
                assert math.isclose(jac, len(members & others) / len(members | others))
        assert state.user_row("u0", t)["user_age_group"] == world.catalog.users["u0"].age_group
        assert state.user_row("u24", t)["user_age_group"] == "unknown"  # not in the catalogue: default
