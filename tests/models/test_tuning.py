"""Tuning: the validation split is carved from train only, metrics are right, search is seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.tuning import (
    SPACES,
    carve_validation,
    ranking_metrics,
    sample_negatives,
    sampled_metrics,
    tune,
)


def random_train(seed: int = 0, n_users: int = 60, n_items: int = 40) -> Interactions:
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < 0.25) | (np.arange(n_items)[None, :] < 2)
    u, i = np.nonzero(X)
    return Interactions(np.array([f"u{j}" for j in range(n_users)]), np.array([f"i{j}" for j in range(n_items)]), u, i)


@pytest.mark.parametrize("protocol", ["random-holdout", "loo", "loo-sampled"])
def test_validation_split_partitions_train(protocol: str) -> None:
    train = random_train()
    X = train.csr()
    split = carve_validation(train, protocol, seed=3)
    fit, held = split.fit.toarray() > 0, split.held.toarray() > 0
    assert not np.any(fit & held)
    np.testing.assert_array_equal(fit | held, X.toarray() > 0)
    n = X.getnnz(axis=1)
    n_held = held.sum(axis=1)
    assert np.all(fit.sum(axis=1)[n >= 1] >= 1)  # everyone keeps something to learn from
    if protocol == "random-holdout":
        np.testing.assert_array_equal(n_held, np.maximum(1, np.floor(0.2 * n)))
    else:
        assert np.all(n_held == 1)
    np.testing.assert_array_equal(split.users, np.flatnonzero(n_held))
    again = carve_validation(train, protocol, seed=3)
    assert (again.held != split.held).nnz == 0
    other = carve_validation(train, protocol, seed=4)
    assert (other.held != split.held).nnz > 0


def test_validation_split_skips_single_item_users() -> None:
    X = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], np.float32))
    split = carve_validation(X, "loo", seed=0)
    assert split.users.tolist() == [1]
    with pytest.raises(ValidationError):
        carve_validation(sp.csr_matrix(np.eye(3, dtype=np.float32)), "loo", seed=0)
    with pytest.raises(ValidationError):
        carve_validation(X, "last-week", seed=0)


def test_ranking_metrics_by_hand() -> None:
    held = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 1]], np.float32))
    top = np.array([[3, 0, 1], [2, 3, -1]])
    m = ranking_metrics(top, held, np.array([0, 1]))
    idcg0 = 1 + 1 / math.log2(3)
    assert m["recall"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["ndcg"] == pytest.approx(((1 / math.log2(3) + 1 / math.log2(4)) / idcg0 + 0) / 2)
    assert m["hr"] == pytest.approx(0.5)


def test_sampled_metrics_by_hand() -> None:
    pos = np.array([0.9, 0.5, 0.1])
    neg = np.array([[0.1, 0.2], [0.6, 0.5], [0.3, 0.4]])  # ranks 0, 2 (a tie counts against), 2
    m = sampled_metrics(pos, neg, k=2)
    assert m["hr"] == pytest.approx(1 / 3)
    assert m["ndcg"] == pytest.approx(1 / 3)


def test_sample_negatives_are_unseen_and_distinct() -> None:
    X = random_train().csr()
    users = np.arange(10)
    neg = sample_negatives(X, users, 5, seed=0)
    for row, u in enumerate(users):
        assert len(set(neg[row])) == 5
        assert not set(neg[row]) & set(X[u].indices)
    with pytest.raises(ValidationError):
        sample_negatives(X, users, 39, seed=0)


def test_tune_is_seeded_and_returns_the_best_trial() -> None:
    train = random_train()
    a = tune("ease", train, metric="ndcg@10", n_trials=4, seed=1)
    b = tune("ease", train, metric="ndcg@10", n_trials=4, seed=1)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.best_value == max(t.value for t in a.trials)
    assert a.trials[0].params == {"l2": 300.0}  # the defaults are always tried first
    lo, hi = SPACES["ease"]["l2"][1:]
    assert all(lo <= t.params["l2"] <= hi for t in a.trials)
    assert a.metric == "ndcg@10" and a.validation == "random-holdout" and a.n_validation_users > 0
    assert a.to_dict()["best_params"] == a.best_params


def test_tune_loo_sampled_and_fixed_params() -> None:
    res = tune("ials", random_train(), metric="hr@10", n_trials=2, seed=0, validation="loo-sampled",
               n_negatives=20, fixed={"num_threads": 1, "iterations": 3},
               space={"factors": ("cat", [4, 8])})
    assert res.best_params["num_threads"] == 1 and res.best_params["iterations"] == 3
    assert 0.0 <= res.best_value <= 1.0


def test_tune_model_without_parameters_runs_once() -> None:
    res = tune("toppop", random_train(), n_trials=10)
    assert len(res.trials) == 1 and res.model == "most-popular" and res.best_params == {}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metric": "auc"}, "metric"),
        ({"metric": "ndcg@0"}, "metric"),
        ({"n_trials": 0}, "n_trials"),
        ({"validation": "test"}, "validation"),
        ({"space": {"l3": ("log", 1, 10)}}, "space.l3"),
        ({"space": {"l2": ("log", 0, 10)}}, "space.l2"),
        ({"space": {"l2": ("uniform", 1, 10)}}, "space.l2"),
        ({"fixed": {"nope": 1}}, "ease.config"),
    ],
)
def test_tune_rejects_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        tune("ease", random_train(), **kwargs)
    assert info.value.field == field


def test_every_space_names_real_parameters() -> None:
    from belong.models import registry

    assert set(SPACES) == set(registry.MODELS)
    for name, space in SPACES.items():
        assert set(space) <= set(registry.create(name).get_config())


def test_graph_validation_holds_out_whole_edges(cliques: sp.csr_matrix) -> None:
    rng = np.random.default_rng(0)
    upper = sp.triu(sp.csr_matrix((rng.random((40, 40)) < 0.2).astype(np.float32)), k=1)
    G = sp.csr_matrix(upper + upper.T)
    split = carve_validation(G, "random-holdout", seed=0, symmetric=True)
    assert (split.held != split.held.T).nnz == 0 and (split.fit != split.fit.T).nnz == 0
    assert split.held.multiply(split.fit).nnz == 0
    assert ((split.held + split.fit) != G).nnz == 0
    assert 0.1 < split.held.nnz / G.nnz < 0.3
    with pytest.raises(ValidationError):
        carve_validation(G, "loo", seed=0, symmetric=True)
    res = tune("ppr", cliques, n_trials=2, seed=0)
    assert res.validation == "random-holdout" and 0.0 <= res.best_value <= 1.0


def test_fixed_params_leave_the_search_space() -> None:
    res = tune("rp3beta", random_train(), n_trials=3, seed=0, fixed={"k": 7, "beta": 0.25})
    assert all(set(t.params) == {"alpha"} for t in res.trials)
    assert res.best_params["k"] == 7 and res.best_params["beta"] == 0.25
