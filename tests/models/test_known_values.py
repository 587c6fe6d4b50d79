"""Hand-computed and brute-force reference values for each model's scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from belong.interactions import Interactions
from belong.models import registry
from belong.models.ials import IALS


def five_node_graph() -> sp.csr_matrix:
    """Edges 0-1, 0-2, 1-2, 1-3, 2-3, 3-4 (given one way only: models symmetrise). Degrees 2, 3, 3, 3, 1."""
    edges = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (3, 4)]
    r, c = zip(*edges, strict=True)
    return sp.csr_matrix((np.ones(len(edges), np.float32), (r, c)), shape=(5, 5))


@pytest.mark.parametrize(
    ("name", "expected_0_3", "expected_4_1"),
    [
        ("common-neighbours", 2.0, 1.0),
        ("adamic-adar", 2 / math.log(3), 1 / math.log(3)),
        ("resource-allocation", 2 / 3, 1 / 3),
    ],
)
def test_neighbour_heuristics_by_hand(name: str, expected_0_3: float, expected_4_1: float) -> None:
    model = registry.create(name).fit(five_node_graph())
    s = model.score_users(np.array([0, 4]), filter_seen=False)
    assert s[0, 3] == pytest.approx(expected_0_3, rel=1e-6)
    assert s[1, 1] == pytest.approx(expected_4_1, rel=1e-6)
    assert s[0, 4] == 0.0  # no common neighbour
    assert s[0, 0] == -np.inf  # never yourself
    items, _ = model.recommend_idx(np.array([0]), 1)
    assert items[0, 0] == 3  # 0's only non-neighbour with common neighbours


@pytest.mark.parametrize("name", ["common-neighbours", "adamic-adar", "resource-allocation", "ppr"])
def test_friends_listed_one_way_are_still_filtered(name: str) -> None:
    model = registry.create(name).fit(five_node_graph())  # edge 3-4 is stored as (3, 4) only
    items, _ = model.recommend_idx(np.array([4]), 4)
    assert 3 not in items[0] and 4 not in items[0]
    assert set(items[0][items[0] >= 0]) == {0, 1, 2}


def test_adamic_adar_recommend_maps_ids() -> None:
    g = Interactions.from_ids(["ann", "ann", "bob", "bob", "cat", "dan"], ["bob", "cat", "cat", "dan", "eve", "eve"],
                              user_ids=np.array(["ann", "bob", "cat", "dan", "eve"]),
                              item_ids=np.array(["ann", "bob", "cat", "dan", "eve"]))
    model = registry.create("adamic-adar").fit(g)
    recs = model.recommend(["ann"], k=5)
    # ann - bob, ann - cat; dan shares bob (deg 3), eve shares cat (deg 3)
    assert {i for i, _ in recs[0]} == {"dan", "eve"}
    assert recs[0][0][1] == pytest.approx(1 / math.log(3))


def test_ppr_matches_the_linear_system() -> None:
    A = five_node_graph()
    alpha = 0.25
    model = registry.create("ppr", {"alpha": alpha, "tol": 1e-9, "max_iter": 500}).fit(A)
    S = ((A + A.T) > 0).toarray().astype(np.float64)
    P = S / S.sum(axis=1, keepdims=True)
    exact = alpha * np.linalg.inv(np.eye(5) - (1 - alpha) * P)  # row u: the walk restarting at u
    got = model.score_users(np.arange(5), filter_seen=False)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(got[off], exact[off], atol=1e-5)
    np.testing.assert_allclose(exact.sum(axis=1), 1.0)


def test_most_popular_orders_by_user_count() -> None:
    data = Interactions.from_ids(["u1", "u2", "u3", "u1", "u2", "u1", "u4"], ["x", "x", "x", "y", "y", "z", "w"])
    model = registry.create("toppop").fit(data)
    assert model.recommend(["u4"], k=3) == [[("x", 3.0), ("y", 2.0), ("z", 1.0)]]
    assert [i for i, _ in model.recommend(["u1"], k=3)[0]] == ["w"]  # seen items filtered, never padded


def test_most_popular_ties_on_two_clusters(clusters: Interactions) -> None:
    """Every item of the two clusters has 6 users: all 7 unseen items are offered with score 6 (the contract's tie)."""
    model = registry.create("most-popular").fit(clusters)
    assert not model.personalised
    _, scores = model.recommend_idx(np.array([0]), 7)
    assert np.all(scores == 6.0)


def test_ease_matches_the_closed_form(clusters: Interactions) -> None:
    l2 = 2.5
    model = registry.create("ease", {"l2": l2}).fit(clusters)
    X = clusters.csr().toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + l2 * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)
    np.testing.assert_allclose(model.B, B, atol=1e-5)
    assert np.all(np.diag(model.B) == 0)


def test_ease_above_max_items_is_ease_on_the_head_and_knn_on_the_tail() -> None:
    """Above ``max_items`` the dense solve covers the most popular items only: their columns are exactly EASE
    fitted on those columns; the tail's columns are item-kNN scores times one scale."""
    from belong.models.ease import EASE
    from belong.models.itemknn import ItemKNN

    rng = np.random.default_rng(4)
    X = sp.csr_matrix((rng.random((80, 30)) < np.linspace(0.6, 0.05, 30)[None, :]).astype(np.float32))
    model = EASE(l2=5.0, max_items=12, tail_k=10).fit(X)
    popularity = np.asarray(X.sum(axis=0)).ravel()
    head = np.sort(np.argsort(-popularity, kind="stable")[:12])
    assert model.head is not None and np.array_equal(model.head, head)
    scores = model.score_users(np.arange(80), filter_seen=False)
    ref_head = EASE(l2=5.0).fit(sp.csr_matrix(X[:, head]))
    np.testing.assert_allclose(scores[:, head], ref_head.score_users(np.arange(80), filter_seen=False),
                               rtol=1e-5, atol=1e-5)
    tail = np.setdiff1d(np.arange(30), head)
    knn = ItemKNN(k=10, shrink=10.0).fit(X).score_users(np.arange(80), filter_seen=False)
    np.testing.assert_allclose(scores[:, tail], knn[:, tail] * model.tail_scale, rtol=1e-5, atol=1e-6)
    assert model.tail_scale > 0
    items, _ = model.recommend_idx(np.arange(80), 5)
    assert (items >= 0).all()


@pytest.mark.parametrize("weighting", ["none", "tfidf", "bm25"])
def test_itemknn_cosine_with_shrink_brute_force(weighting: str) -> None:
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((30, 8)) < 0.35).astype(np.float32))
    shrink = 2.0
    model = registry.create("itemknn", {"k": 7, "shrink": shrink, "weighting": weighting}).fit(X)
    from belong.models.itemknn import feature_weights

    F = feature_weights(X, weighting).toarray().astype(np.float64)
    norms = np.linalg.norm(F, axis=0)
    S = (F.T @ F) / (np.outer(norms, norms) + shrink + 1e-6)
    np.fill_diagonal(S, 0)
    np.testing.assert_allclose(model.W.toarray(), S.T, atol=1e-5)


def test_itemknn_keeps_k_neighbours_per_item() -> None:
    rng = np.random.default_rng(2)
    X = sp.csr_matrix((rng.random((50, 12)) < 0.5).astype(np.float32))
    model = registry.create("itemknn", {"k": 3}).fit(X)
    assert np.all(np.diff(model.W.tocsc().indptr) <= 3)  # column j of W holds j's neighbours


def test_rp3beta_brute_force() -> None:
    rng = np.random.default_rng(3)
    X = (rng.random((40, 9)) < 0.4).astype(np.float64)
    alpha, beta = 0.8, 0.3
    model = registry.create("rp3beta", {"alpha": alpha, "beta": beta, "k": 8}).fit(sp.csr_matrix(X))
    P_ui = (X / X.sum(axis=1, keepdims=True)) ** alpha
    P_iu = (X.T / X.T.sum(axis=1, keepdims=True)) ** alpha
    W = (P_iu @ P_ui) * X.sum(axis=0)[None, :] ** -beta
    np.fill_diagonal(W, 0)
    np.testing.assert_allclose(model.W.toarray(), W, rtol=1e-4, atol=1e-7)


def test_weighted_option_uses_the_weights() -> None:
    data = Interactions.from_ids(["a", "a", "b", "b", "c"], ["x", "y", "x", "y", "x"],
                                 weights=np.array([5, 1, 1, 5, 2], np.float32))
    binary = registry.create("ease", {"l2": 1.0}).fit(data)
    weighted = registry.create("ease", {"l2": 1.0, "weighted": True}).fit(data)
    assert binary.X.data.max() == 1.0 and weighted.X.data.max() == 5.0
    assert not np.allclose(binary.B, weighted.B)


def test_ials_fold_in_of_a_new_user(clusters: Interactions) -> None:
    model: IALS = registry.create("ials", {"factors": 2, "regularization": 1.0, "iterations": 20,
                                           "num_threads": 1}).fit(clusters)  # type: ignore[assignment]
    row = np.zeros((1, clusters.n_items), np.float32)
    row[0, [clusters.item_index["b0"], clusters.item_index["b1"]]] = 1
    vec = model.user_vectors(sp.csr_matrix(row))
    assert vec.shape == (1, 2)
    scores = vec @ model.item_factors.T
    best = [clusters.item_ids[i] for i in np.argsort(-scores[0])[:5]]
    assert set(best) == {"b0", "b1", "b2", "b3", "b4"}
    # folding in a training user lands close to the factors learnt for it
    u = clusters.user_index["u03"]
    again = model.user_vectors(model.X[[u]])
    np.testing.assert_allclose(again[0], model.user_factors[u], atol=0.05)
    with pytest.raises(ValueError):
        model.user_vectors(sp.csr_matrix((1, 3), dtype=np.float32))
