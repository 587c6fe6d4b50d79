"""Splitters: no test pair in train, the temporal cut, leave-last-one-out and its negatives, hide-edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belong.errors import ValidationError
from belong.evaluation import splitters
from belong.evaluation.splitters import Split, make_split
from belong.interactions import Interactions


def random_data(seed: int, n: int = 400, n_users: int = 30, n_items: int = 40) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions.from_ids(
        rng.integers(0, n_users, n).astype(str), rng.integers(0, n_items, n).astype(str),
        ts_us=rng.integers(0, 50, n) * 1_000_000,  # many ties on purpose
    )


def pair_set(data: Interactions) -> set[tuple[int, int]]:
    return set(zip(data.users.tolist(), data.items.tolist(), strict=True))


def assert_no_leak(split: Split) -> None:
    assert not pair_set(split.test) & pair_set(split.train)
    assert split.train.user_ids is split.test.user_ids and split.train.item_ids is split.test.item_ids


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.05, 0.95))
def test_random_holdout_never_leaks_and_keeps_a_training_item(seed: int, fraction: float) -> None:
    data = random_data(seed)
    split = make_split("random-holdout", data, fraction=fraction, seed=seed)
    assert_no_leak(split)
    assert len(split.train) + len(split.test) == len(data)  # every row lands on one side
    train_users = set(split.train.users.tolist())
    assert set(split.test.users.tolist()) <= train_users  # a user always keeps a training item


def test_random_holdout_fraction_per_user_and_seeded() -> None:
    data = Interactions.from_ids(np.repeat(["u"], 10), [f"i{j}" for j in range(10)])
    split = make_split("random-holdout", data, fraction=0.2, seed=3)
    assert len(split.test) == 2 and len(split.train) == 8
    again = make_split("random-holdout", data, fraction=0.2, seed=3)
    assert pair_set(again.test) == pair_set(split.test)
    others = {frozenset(pair_set(make_split("random-holdout", data, fraction=0.2, seed=s).test)) for s in range(6)}
    assert len(others) > 1  # the seed matters


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), test_fraction=st.floats(0.05, 0.9))
def test_temporal_cut_separates_train_and_test_in_time(seed: int, test_fraction: float) -> None:
    data = random_data(seed)
    try:
        split = make_split("temporal", data, test_fraction=test_fraction)
    except ValidationError:  # a cut at the earliest time leaves nothing to train on: refused, never leaked
        return
    cut = split.params["cut_us"]
    assert split.train.ts_us.max() < cut <= split.test.ts_us.min()
    assert_no_leak(split)
    # unseen items are dropped from test and counted; cold users are exactly the test users without train rows
    assert set(split.test.items.tolist()) <= set(split.train.items.tolist())
    assert set(split.cold_users.tolist()) == set(split.test.users.tolist()) - set(split.train.users.tolist())
    kept = len(split.train) + len(split.test)
    assert kept + split.stats["dropped_unseen_items"] + split.stats["dropped_repeat_pairs"] == len(data)


def test_temporal_explicit_cut_cold_users_and_unseen_items() -> None:
    data = Interactions.from_ids(
        ["a", "a", "b", "a", "c", "b", "b"], ["x", "y", "x", "z", "x", "y", "x"],
        ts_us=np.array([1, 2, 3, 10, 11, 12, 13]) * 1_000_000,
    )
    split = make_split("temporal", data, cut=10)
    assert split.params["cut"].startswith("1970-01-01T00:00:10")
    assert len(split.train) == 3
    # a->z dropped (z unseen before T); b->x dropped (seen before T); c->x kept (c is a cold user); b->y kept
    assert split.stats["dropped_unseen_items"] == 1 and split.stats["dropped_repeat_pairs"] == 1
    assert sorted(zip(split.test.user_ids[split.test.users], split.test.item_ids[split.test.items], strict=True)) == [
        ("b", "y"), ("c", "x")]
    assert split.test.user_ids[split.cold_users].tolist() == ["c"]


def test_given_split_follows_the_stamped_time() -> None:
    data = Interactions.from_ids(["a", "a", "b", "b"], ["x", "y", "x", "y"], ts_us=np.array([1, 5, 2, 6]),
                                 meta={"given_split_ts_us": 5})
    split = make_split("given", data)
    assert pair_set(split.test) == {(0, 1), (1, 1)}
    assert_no_leak(split)
    with pytest.raises(ValidationError, match="own split"):
        make_split("given", Interactions.from_ids(["a"], ["x"], ts_us=np.array([1])))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_loo_sampled_test_item_is_latest_and_negatives_unseen(seed: int) -> None:
    data = random_data(seed, n=1500, n_users=20, n_items=150)
    split = make_split("loo-sampled", data, n_negatives=20, min_item_ratings=1, min_user_ratings=3, seed=seed)
    assert_no_leak(split)
    users = split.test_users
    assert len(users) == len(split.test)  # exactly one test item per user
    assert split.candidates.shape == (len(users), 21)
    full = split.train.csr() + split.test.csr()
    for row, u in enumerate(users):
        j = np.flatnonzero(split.test.users == u)[0]
        own = split.train.users == u
        assert split.test.ts_us[j] >= split.train.ts_us[own].max(initial=0)
        cand = split.candidates[row]
        assert cand[0] == split.test.items[j]
        assert len(set(cand.tolist())) == 21  # distinct
        assert not full[u, cand[1:]].toarray().any()  # never interacted, train or test
    again = make_split("loo-sampled", data, n_negatives=20, min_item_ratings=1, min_user_ratings=3, seed=seed)
    np.testing.assert_array_equal(again.candidates, split.candidates)


def test_loo_sampled_filters_items_then_users_and_breaks_ties_by_first_appearance() -> None:
    users = ["a"] * 5 + ["b"] * 5 + ["c"] * 2 + ["d"] * 3 + ["e"] * 3
    items = ["p", "q", "r", "s", "t", "p", "q", "r", "s", "t", "p", "z", "u", "v", "w", "u", "v", "w"]
    ts = np.array([1, 2, 3, 4, 4, 1, 2, 3, 4, 5, 1, 2, 1, 2, 3, 1, 2, 3])
    data = Interactions.from_ids(users, items, ts_us=ts)
    split = make_split("loo-sampled", data, n_negatives=1, min_item_ratings=2, min_user_ratings=3)
    # z (1 rating) goes, then c (1 rating left) goes; ids are compacted
    assert split.train.user_ids.tolist() == ["a", "b", "d", "e"] and "z" not in split.train.item_ids.tolist()
    test = dict(zip(split.test.user_ids[split.test.users], split.test.item_ids[split.test.items], strict=True))
    # a: s and t tie at ts 4; s appears first in the data -> test item; b: t is simply the latest
    assert test == {"a": "s", "b": "t", "d": "w", "e": "w"}


def graph(edges: list[tuple[int, int]]) -> Interactions:
    a = [str(x) for e in edges for x in e]
    b = [str(x) for e in edges for x in e[::-1]]
    return Interactions.from_ids(a, b, meta={"square": True}, user_ids=np.unique(a + b), item_ids=np.unique(a + b))


def test_hide_edges_matches_the_documented_recipe() -> None:
    rng = np.random.default_rng(7)
    raw = [(int(x), int(y)) for x, y in rng.integers(0, 60, (300, 2)) if x != y]
    data = graph(raw)
    split = make_split("hide-edges", data, fraction=0.3, seed=5)
    # the recipe, spelt out independently: dedupe (min, max), sort, hide where rng.random(n) < fraction
    pairs = sorted({(min(x, y), max(x, y)) for x, y in raw})
    hidden = np.random.default_rng(5).random(len(pairs)) < 0.3
    expect = {p for p, h in zip(pairs, hidden, strict=True) if h}
    ids = split.test.user_ids
    got = {(int(ids[u]), int(ids[v])) for u, v in zip(split.test.users, split.test.items, strict=True)}
    assert {p for p in got if p[0] < p[1]} == expect
    assert got == expect | {(y, x) for x, y in expect}  # both directions
    assert_no_leak(split)
    assert split.stats["edges"] == len(pairs) and split.stats["hidden_edges"] == len(expect)


def test_hide_edges_numeric_ids_order_numerically() -> None:
    # string order would put "10" before "9"; the recipe sorts pairs by numeric id
    data = graph([(9, 10), (1, 2)])
    split = make_split("hide-edges", data, fraction=0.5, seed=0)
    hidden = np.random.default_rng(0).random(2) < 0.5
    expect = {p for p, h in zip([(1, 2), (9, 10)], hidden, strict=True) if h}
    ids = split.train.user_ids
    got = {(int(ids[u]), int(ids[v])) for u, v in zip(split.test.users, split.test.items, strict=True) if
           int(ids[u]) < int(ids[v])}
    assert got == expect


def test_bad_protocol_input_is_a_validation_error() -> None:
    data = random_data(0)
    with pytest.raises(ValidationError, match="must be one of"):
        make_split("nope", data)
    with pytest.raises(ValidationError, match="not a parameter"):
        make_split("temporal", data, fractio=0.2)
    with pytest.raises(ValidationError, match="fraction"):
        make_split("random-holdout", data, fraction=1.5)
    with pytest.raises(ValidationError, match="friendship graph"):
        make_split("hide-edges", data)
    with pytest.raises(ValidationError, match="timestamps"):
        make_split("temporal", Interactions.from_ids(["a"], ["x"]))


def test_default_protocol() -> None:
    assert splitters.default_protocol(graph([(1, 2)])) == "hide-edges"
    assert splitters.default_protocol(random_data(0)) == "temporal"
    assert splitters.default_protocol(Interactions.from_ids(["a"], ["x"])) == "random-holdout"
