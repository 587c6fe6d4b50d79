"""Training sets: point-in-time features (nothing at or after a row's ts reaches it) and labels per surface."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from features_helpers import DAY, T0, impression, log

from belong.domain import Surface
from belong.errors import ValidationError
from belong.features.assemble import CANDIDATE_ENTITY, candidate_features
from belong.features.registry import SURFACE_FEATURES
from belong.features.state import EventCursor, FeatureState
from belong.features.training import build_training_set

FEATURES = list(SURFACE_FEATURES[Surface.COMMUNITIES])


def _features(table: pa.Table, columns=FEATURES) -> list[dict]:
    return table.select(columns).to_pylist()


def test_a_change_at_or_after_the_label_time_never_reaches_the_row():
    t = T0 + 10 * DAY
    before = [
        (T0, "join", "u", "c1"),
        (T0 + DAY, "join", "f", "c2"),
        (T0 + DAY, "friend_accept", "u", "f"),
        (t - 1, "message", "u", "c1"),
        impression(t, "u", "c2", "communities"),
    ]
    at_and_after = [
        (t, "join", "u", "c3"),  # exactly at the label's ts: excluded (strictly before only)
        (t, "message", "u", "c1"),
        (t, "join", "g", "c2"),
        (t, "friend_accept", "u", "g"),
        (t + 1, "join", "h", "c2"),
        (t + DAY, "leave", "f", "c2"),
        (t + DAY, "friend_remove", "u", "f"),
    ]
    row = build_training_set(log(*before), "communities").to_pylist()[0]
    assert row["user_communities_joined"] == 1  # c1 only; the join of c3 at t is not visible
    assert row["user_activity_1d"] == 1  # the message at t - 1, not the one at t
    assert row["user_friend_count"] == 1
    assert row["community_size"] == 1  # f; g joined at t, h after
    assert row["uc_friends_inside"] == 1
    full = build_training_set(log(*before, *at_and_after), "communities")
    assert _features(full) == [{k: row[k] for k in FEATURES}]
    assert full["joined"].to_pylist() == [0]  # c3 is not the candidate; c2 was not joined by u


@pytest.mark.parametrize("seed", range(4))
def test_random_later_events_never_change_earlier_rows(world, seed):
    rng = random.Random(seed)
    cut = world.query_times[len(world.query_times) // 2]
    imps = [impression(cut, rng.choice(world.users), c, "communities", request=f"r{i}", position=i)
            for i, c in enumerate(world.communities)]
    early = [r for r in world.events.to_pylist() if r["ts_us"] < cut]
    late = [r for r in world.events.to_pylist() if r["ts_us"] >= cut]
    rows = pa.table({"user_id": [i[2] for i in imps], "item_id": [i[3] for i in imps], "ts_us": [cut] * len(imps)})
    only_early = build_training_set(pa.Table.from_pylist(early, schema=world.events.schema), "communities", rows,
                                    catalog=world.catalog)
    rng.shuffle(late)
    some_late = late[: rng.randrange(len(late) + 1)]
    mixed = build_training_set(pa.Table.from_pylist(early + some_late, schema=world.events.schema), "communities",
                               rows, catalog=world.catalog)
    assert _features(only_early) == _features(mixed)


def test_rows_match_an_independent_fold_per_row(world):
    rng = random.Random(3)
    stamps = [rng.choice(world.events["ts_us"].to_pylist()) for _ in range(12)] + world.query_times
    for surface, items in ((Surface.COMMUNITIES, world.communities), (Surface.PEOPLE, world.users),
                           (Surface.CONTENT, world.content)):
        users = [rng.choice(world.users) for _ in stamps]
        cands = [rng.choice([i for i in items if i != u]) for u in users]
        rows = pa.table({"user_id": users, "item_id": cands, "ts_us": stamps})
        table = build_training_set(world.events, surface, rows, catalog=world.catalog)
        cols = list(SURFACE_FEATURES[surface])
        for got in table.to_pylist():
            t = got["ts_us"]
            state = FeatureState(world.catalog)
            EventCursor(state, [world.events]).advance_to(t)
            u, c = got["user_id"], got["item_id"]
            want = candidate_features(surface, u, state.user_row(u, t), c, state.row(CANDIDATE_ENTITY[surface], c, t))
            assert {k: got[k] for k in cols} == {k: want[k] for k in cols}


def test_community_labels_window_last_touch_retention_and_strong_negatives():
    events = log(
        impression(T0, "u", "c1", "communities", "r1", 0),
        impression(T0, "u", "c2", "communities", "r1", 1),
        impression(T0, "u", "c3", "communities", "r1", 2),
        impression(T0, "u", "c4", "communities", "r1", 3),
        impression(T0, "u", "c5", "communities", "r1", 4),
        (T0, "join", "u", "c5"),  # at the impression's own ts: neither a feature nor a label of that row
        impression(T0 + DAY, "u", "c1", "communities", "r2", 0),  # the later impression gets the credit
        (T0 + 2 * DAY, "join", "u", "c1"),
        (T0 + 3 * DAY, "leave", "u", "c1"),  # left within 7 days: not retained
        (T0 + 8 * DAY, "join", "u", "c2"),  # outside the 7-day window: shown, not taken
        (T0 + DAY, "report", "u", "c3", {"target_kind": "community"}),
        (T0 + 1, "join", "u", "c4"),
        impression(T0 + 20 * DAY, "v", "c1", "communities", "r3", 0),
        (T0 + 20 * DAY + 5, "join", "v", "c1"),  # retention not observable: the log ends 1 day later
        (T0 + 21 * DAY, "message", "v", "c1"),
    )
    table = build_training_set(events, "communities")
    got = {(r["request_id"], r["item_id"]): (r["joined"], r["retained_7d"], r["label"], r["weight"])
           for r in table.to_pylist()}
    assert got == {
        ("r1", "c1"): (0, 0, 0, 1.0),
        ("r1", "c2"): (0, 0, 0, 1.0),
        ("r1", "c3"): (0, 0, -1, 3.0),
        ("r1", "c4"): (1, 1, 1, 1.0),
        ("r1", "c5"): (0, 0, 0, 1.0),
        ("r2", "c1"): (1, 0, 1, 1.0),
        ("r3", "c1"): (1, None, 1, 1.0),
    }
    assert table["ts_us"].to_pylist() == sorted(table["ts_us"].to_pylist())
    assert table["position"].to_pylist()[:5] == [0, 1, 2, 3, 4]
    assert table.filter(pc.equal(table["item_id"], "c5"))["uc_is_member"].to_pylist() == [0]


def test_people_labels_request_then_accept():
    events = log(
        impression(T0, "u", "a", "people", "r", 0),
        impression(T0, "u", "b", "people", "r", 1),
        impression(T0, "u", "c", "people", "r", 2),
        impression(T0, "u", "d", "people", "r", 3),
        (T0 + 10, "friend_request", "u", "a"),
        (T0 + 20, "friend_accept", "a", "u"),  # accepted by a: the accept's actor is the accepter
        (T0 + 10, "friend_request", "u", "b"),  # never accepted
        (T0 + 10, "friend_request", "c", "u"),  # the candidate asked, not the user: not a label of u
        (T0 + 30, "block", "u", "d"),
        (T0 + 30 * DAY, "message", "z", "k"),  # the log runs long enough to observe everything
    )
    table = build_training_set(events, Surface.PEOPLE)
    got = {r["item_id"]: (r["requested"], r["accepted"], r["label"]) for r in table.to_pylist()}
    assert got == {"a": (1, 1, 1), "b": (1, 0, 1), "c": (0, 0, 0), "d": (0, 0, -1)}
    assert "cand_user_friend_count" in table.column_names and "uu_mutual_friends" in table.column_names


def test_content_labels_and_candidates_with_source_columns():
    events = log(
        (T0, "join", "u", "c"),
        (T0 + DAY, "reaction", "u", "x1", {"target_kind": "content"}),
        (T0 + DAY, "view", "u", "x2", {"target_kind": "content"}),  # a view alone is not engagement
        (T0 + 2 * DAY, "report", "u", "x3", {"target_kind": "content"}),
    )
    rows = pa.table({
        "user_id": ["u", "u", "u"], "item_id": ["x1", "x2", "x3"], "ts_us": [T0 + 1] * 3,
        "src_trending_score": [0.9, None, 0.1], "src_trending_rank": [0, None, 1],
    })
    table = build_training_set(events, "content", rows)
    got = {r["item_id"]: (r["engaged"], r["label"], r["src_trending_score"], r["src_trending_rank"])
           for r in table.to_pylist()}
    assert got == {"x1": (1, 1, 0.9, 0), "x2": (0, 0, None, None), "x3": (0, -1, 0.1, 1)}
    assert table["request_id"].null_count == 3


def test_bad_inputs_are_named():
    events = log((T0, "join", "u", "c"))
    with pytest.raises(ValidationError, match="no communities impressions"):
        build_training_set(events, "communities")
    with pytest.raises(ValidationError, match="surface"):
        build_training_set(events, "groups")
    rows = pa.table({"user_id": ["u"], "item_id": ["c"], "ts_us": [T0], "src_als_popularity": [1.0]})
    with pytest.raises(ValidationError, match="unknown feature 'src_als_popularity'"):
        build_training_set(events, "communities", rows)
    rows = pa.table({"user_id": ["u"], "item_id": ["c"], "ts_us": [T0], "community_size": [3]})
    with pytest.raises(ValidationError, match="not passed at request time"):
        build_training_set(events, "communities", rows)
    with pytest.raises(ValidationError, match="user_id: must hold string ids"):
        build_training_set(events, "communities", pa.table({"user_id": [1.5], "item_id": ["c"], "ts_us": [T0]}))
    with pytest.raises(ValidationError, match="item_id"):
        build_training_set(events, "communities", pa.table({"user_id": ["u"], "ts_us": [T0]}))
    with pytest.raises(ValidationError, match="window_s"):
        build_training_set(events, "communities", pa.table({"user_id": ["u"], "item_id": ["c"], "ts_us": [T0]}),
                           window_s=0)


def test_integer_candidate_ids_are_read_as_string_ids():
    events = log((T0, "join", "7", "42"), (T0 + 1, "join", "8", "42"), (T0 + 2 * DAY, "join", "9", "42"))
    rows = pa.table({"user_id": [9], "item_id": [42], "ts_us": [T0 + DAY]})
    row = build_training_set(events, "communities", rows).to_pylist()[0]
    assert (row["user_id"], row["item_id"], row["community_size"], row["joined"]) == ("9", "42", 2, 1)
