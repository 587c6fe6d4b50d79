"""Evaluation protocols: seeded train/test splitters that never leak a test interaction into training.

Every splitter takes an :class:`Interactions` and returns a :class:`Split` whose ``train`` and ``test`` share one
pair of id maps (so user/item indices mean the same thing on both sides). A test (user, item) pair never occurs in
``train``: splitters move or drop such rows and count what they dropped in ``Split.stats``.

============== =================================================================================================
protocol       what it does
============== =================================================================================================
given          the split that comes with the data: rows with ``ts >= meta["given_split_ts_us"]`` are the test part
               (the LightGCN ``train.txt`` / ``test.txt`` format; the loader stamps test rows with later times).
random-holdout per user, a seeded random ``fraction`` (default 0.2) of the user's distinct items is held out; a
               user always keeps at least one training item; users with one item stay in training only.
temporal       one global time cut ``T``: train is ``ts < T``, test is ``ts >= T``. ``T`` is ``cut`` (ISO-8601 or
               epoch seconds) or the ``1 - test_fraction`` quantile of the timestamps (default 0.2 held out).
               Test rows of items unseen before ``T`` are dropped (``dropped_unseen_items``), test rows of pairs
               already seen before ``T`` are dropped (``dropped_repeat_pairs``); test users with no training row
               are kept as the **cold** segment and are scored with an empty history. The default for our own data.
loo-sampled    Dacrema et al. (TOIS 2021, DMF/ML-100K re-run): drop items with < ``min_item_ratings`` (5) rows, then
               users with < ``min_user_ratings`` (20); per user the interaction with the largest timestamp is the
               test item — ties go to the item that appears first in the data, as in their code (items indexed
               in order of appearance, then ``argmax``); it is ranked among itself + ``n_negatives`` (99) items
               sampled once,
               without replacement, from the items the user never interacted with (train or test).
               Id maps are compacted to the filtered data. For comparison with published tables only.
hide-edges     friendship graphs (square user x user data): edges de-duplicated as (min, max) pairs of the node ids
               (numeric order when every id is an integer), sorted, and those where
               ``numpy.random.default_rng(seed).random(n_edges) < fraction`` (default 0.2, seed 0) are hidden in
               both directions. Every user with a hidden edge ranks all of their non-neighbours.
============== =================================================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from belong.domain import parse_ts, us_to_iso
from belong.errors import ValidationError
from belong.interactions import Interactions


@dataclass(eq=False)
class Split:
    """A train/test split. ``candidates`` (sampled protocols only) holds, for each user of :attr:`test_users` in
    order, the item indices to rank — column 0 is the held-out item."""

    train: Interactions
    test: Interactions
    candidates: np.ndarray | None
    protocol: str
    params: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def test_users(self) -> np.ndarray:
        """Sorted distinct user indices with at least one test row."""
        return np.unique(self.test.users)

    @property
    def cold_users(self) -> np.ndarray:
        """Test users without any training row (scored with an empty history)."""
        return np.setdiff1d(self.test_users, self.train.users)


def _pair_keys(data: Interactions) -> np.ndarray:
    return data.users.astype(np.int64) * max(data.n_items, 1) + data.items.astype(np.int64)


def _finish(train: Interactions, test: Interactions, candidates: np.ndarray | None, protocol: str,
            params: dict[str, Any], extra: dict[str, Any]) -> Split:
    split = Split(train, test, candidates, protocol, params)
    if len(test) == 0:
        raise ValidationError("protocol", f"{protocol} left no test interactions; the data is too small for it")
    if len(train) == 0:
        raise ValidationError("protocol", f"{protocol} left no training interactions")
    split.stats = {
        "train_rows": len(train),
        "test_rows": len(test),
        "users": train.n_users,
        "items": train.n_items,
        "train_users": int(np.unique(train.users).size),
        "test_users": int(split.test_users.size),
        "cold_test_users": int(split.cold_users.size),
        **extra,
    }
    return split


def _drop_pairs_in_train(train: Interactions, test: Interactions) -> tuple[Interactions, int]:
    seen = np.isin(_pair_keys(test), _pair_keys(train))
    return test.subset(~seen), int(seen.sum())


def _need_ts(data: Interactions, protocol: str) -> np.ndarray:
    if data.ts_us is None:
        raise ValidationError("protocol", f"{protocol} needs timestamps and this data has none")
    return data.ts_us


def given(data: Interactions, split_ts_us: int | None = None) -> Split:
    """The split shipped with the data (see the module table)."""
    ts = _need_ts(data, "given")
    cut = split_ts_us if split_ts_us is not None else data.meta.get("given_split_ts_us")
    if cut is None:
        raise ValidationError("protocol", "given needs a dataset that comes with its own split (e.g. lightgcn:DIR)")
    train = data.subset(ts < cut)
    train.meta["as_of_us"] = int(cut)  # everything before the cut may be known to a model (see evaluation.data)
    test, repeated = _drop_pairs_in_train(train, data.subset(ts >= cut))
    unseen = int(np.isin(test.items, train.items, invert=True).sum())
    return _finish(train, test, None, "given", {"split_ts_us": int(cut)},
                   {"dropped_repeat_pairs": repeated, "test_rows_unseen_items": unseen})


def random_holdout(data: Interactions, fraction: float = 0.2, seed: int = 0) -> Split:
    """Per-user seeded random hold-out of ``fraction`` of each user's distinct items (see the module table)."""
    if not 0.0 < fraction < 1.0:
        raise ValidationError("fraction", f"must be in (0, 1), got {fraction}")
    keys = _pair_keys(data)
    uniq, inverse = np.unique(keys, return_inverse=True)
    pair_user = uniq // max(data.n_items, 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(uniq)), pair_user))
    counts = np.bincount(pair_user, minlength=data.n_users)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pos = np.empty(len(uniq), np.int64)
    pos[order] = np.arange(len(uniq)) - starts[pair_user[order]]
    n_test = np.minimum(np.floor(fraction * counts + 0.5), np.maximum(counts - 1, 0)).astype(np.int64)
    pair_is_test = pos < n_test[pair_user]
    row_is_test = pair_is_test[inverse]
    return _finish(data.subset(~row_is_test), data.subset(row_is_test), None, "random-holdout",
                   {"fraction": fraction, "seed": seed}, {})


def temporal(data: Interactions, cut: str | int | float | None = None, test_fraction: float = 0.2) -> Split:
    """One global time cut ``T``: train ``ts < T``, test ``ts >= T`` (see the module table)."""
    ts = _need_ts(data, "temporal")
    if len(ts) == 0:
        raise ValidationError("dataset", "has no interactions")
    if cut is not None:
        cut_us = parse_ts(cut, "cut")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValidationError("test_fraction", f"must be in (0, 1), got {test_fraction}")
        cut_us = int(np.sort(ts)[min(int(np.floor(len(ts) * (1.0 - test_fraction))), len(ts) - 1)])
    train = data.subset(ts < cut_us)
    train.meta["as_of_us"] = int(cut_us)  # everything before the cut may be known to a model (see evaluation.data)
    test = data.subset(ts >= cut_us)
    unseen_item = np.isin(test.items, train.items, invert=True)
    test = test.subset(~unseen_item)
    test, repeated = _drop_pairs_in_train(train, test)
    params = {"cut_us": cut_us, "cut": us_to_iso(cut_us), "test_fraction": None if cut is not None else test_fraction}
    return _finish(train, test, None, "temporal", params,
                   {"dropped_unseen_items": int(unseen_item.sum()), "dropped_repeat_pairs": repeated})


def _compact(data: Interactions, keep: np.ndarray) -> Interactions:
    """Rows ``keep`` with id maps reduced to the users/items that remain (meta arrays sliced alike)."""
    sub = data.subset(keep)
    users, u_inv = np.unique(sub.users, return_inverse=True)
    items, i_inv = np.unique(sub.items, return_inverse=True)
    meta = dict(sub.meta)
    if isinstance(meta.get("user_age_group"), np.ndarray):
        meta["user_age_group"] = meta["user_age_group"][users]
    return Interactions(data.user_ids[users], data.item_ids[items], u_inv, i_inv, sub.weights, sub.ts_us, meta)


def loo_sampled(data: Interactions, n_negatives: int = 99, min_item_ratings: int = 5, min_user_ratings: int = 20,
                seed: int = 0) -> Split:
    """Leave-last-one-out with sampled negatives, as Dacrema et al. (see the module table)."""
    _need_ts(data, "loo-sampled")
    if n_negatives < 1:
        raise ValidationError("n_negatives", f"must be >= 1, got {n_negatives}")
    keep = np.bincount(data.items, minlength=data.n_items)[data.items] >= min_item_ratings
    keep &= np.bincount(data.users[keep], minlength=data.n_users)[data.users] >= min_user_ratings
    n_filtered_rows = int((~keep).sum())
    data = _compact(data, keep)
    if len(data) == 0:
        raise ValidationError("dataset", "has no interactions left after the loo-sampled filtering")
    _, first_row = np.unique(data.items, return_index=True)
    appearance = np.empty(data.n_items, np.int64)
    appearance[np.argsort(first_row)] = np.arange(data.n_items)
    # per user by time, ties by *descending* first appearance of the item: the last of each run is the test row
    assert data.ts_us is not None
    order = np.lexsort((-appearance[data.items], data.ts_us, data.users))
    last = np.r_[data.users[order][1:] != data.users[order][:-1], True]
    test_rows = order[last]
    test_pair = np.zeros(len(data), bool)
    test_pair[test_rows] = True
    keys = _pair_keys(data)
    in_test_pair = np.isin(keys, keys[test_rows])
    train = data.subset(~in_test_pair)
    test = data.subset(test_pair)
    rng = np.random.default_rng(seed)
    X = data.csr()
    all_items = np.arange(data.n_items)
    cand_rows, keep_test = [], np.ones(len(test), bool)
    test_order = np.argsort(test.users, kind="stable")  # candidates rows follow sorted test users
    for j in test_order:
        u = test.users[j]
        pool = np.setdiff1d(all_items, X.indices[X.indptr[u]:X.indptr[u + 1]], assume_unique=True)
        if len(pool) < n_negatives:
            keep_test[j] = False
            continue
        cand_rows.append(np.r_[test.items[j], rng.choice(pool, n_negatives, replace=False)])
    test = test.subset(keep_test)
    candidates = np.asarray(cand_rows, dtype=np.int64).reshape(-1, n_negatives + 1)
    params = {"n_negatives": n_negatives, "min_item_ratings": min_item_ratings,
              "min_user_ratings": min_user_ratings, "seed": seed}
    return _finish(train, test, candidates, "loo-sampled", params,
                   {"filtered_rows": n_filtered_rows, "dropped_repeat_pairs": int(in_test_pair.sum() - len(test_rows)),
                    "dropped_users_too_few_negatives": int((~keep_test).sum())})


def _node_keys(ids: np.ndarray) -> np.ndarray:
    """Sort keys of node ids: their integer value when every id is an integer, else their index."""
    try:
        return np.asarray([int(x) for x in ids.tolist()], dtype=np.int64)
    except ValueError:
        return np.arange(len(ids), dtype=np.int64)


def hide_edges(data: Interactions, fraction: float = 0.2, seed: int = 0) -> Split:
    """Hide a seeded random ``fraction`` of the undirected edges of a friendship graph (see the module table)."""
    if not data.meta.get("square") or data.n_users != data.n_items:
        raise ValidationError("protocol", "hide-edges needs a friendship graph (e.g. edges:FILE.csv)")
    if not 0.0 < fraction < 1.0:
        raise ValidationError("fraction", f"must be in (0, 1), got {fraction}")
    key = _node_keys(data.user_ids)
    a, b = data.users.astype(np.int64), data.items.astype(np.int64)
    loop = a == b
    swap = key[a] > key[b]
    lo, hi = np.where(swap, b, a)[~loop], np.where(swap, a, b)[~loop]
    n = data.n_users
    pairs = np.unique(np.c_[key[lo], key[hi], lo, hi], axis=0)  # sorted by (min key, max key)
    u, v = pairs[:, 2], pairs[:, 3]
    hidden = np.random.default_rng(seed).random(len(pairs)) < fraction
    ts = data.ts_us
    if ts is not None:  # earliest timestamp of each undirected pair
        codes = u * n + v
        order = np.argsort(codes)
        pair_of_row = order[np.searchsorted(codes[order], lo * n + hi)]
        ts_pairs = np.full(len(pairs), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(ts_pairs, pair_of_row, ts[~loop])

    def side(mask: np.ndarray) -> Interactions:
        t = None if ts is None else np.r_[ts_pairs[mask], ts_pairs[mask]]
        return Interactions(data.user_ids, data.item_ids, np.r_[u[mask], v[mask]], np.r_[v[mask], u[mask]], None, t,
                            dict(data.meta))

    return _finish(side(~hidden), side(hidden), None, "hide-edges", {"fraction": fraction, "seed": seed},
                   {"edges": len(pairs), "hidden_edges": int(hidden.sum()), "self_loops_dropped": int(loop.sum())})


#: protocol name -> splitter. Every splitter takes the Interactions first and keyword parameters after it.
SPLITTERS: dict[str, Callable[..., Split]] = {
    "given": given,
    "random-holdout": random_holdout,
    "temporal": temporal,
    "loo-sampled": loo_sampled,
    "hide-edges": hide_edges,
}
#: protocols that rank a few sampled candidates instead of the whole catalogue.
SAMPLED = frozenset({"loo-sampled"})


def default_protocol(data: Interactions) -> str:
    """``hide-edges`` for graphs, ``given`` when the data has its own split, else ``temporal``."""
    if data.meta.get("square"):
        return "hide-edges"
    if "given_split_ts_us" in data.meta:
        return "given"
    return "temporal" if data.ts_us is not None else "random-holdout"


def make_split(protocol: str, data: Interactions, **params: Any) -> Split:
    """Run the named protocol; unknown names or parameters are a :class:`ValidationError`."""
    try:
        fn = SPLITTERS[protocol]
    except KeyError:
        raise ValidationError("protocol", f"must be one of {', '.join(SPLITTERS)}; got {protocol!r}") from None
    allowed = list(inspect.signature(fn).parameters)[1:]
    for name in params:
        if name not in allowed:
            raise ValidationError(f"protocol.{name}", f"is not a parameter of {protocol} (has: {', '.join(allowed)})")
    return fn(data, **params)

