"""GF-CF and BSPM against an independent dense implementation of the papers' formulas (numpy SVD, explicit
matrices), on both the dense-P and the sparse-operator paths."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from belong.models import registry
from belong.models.graph_filter import BSPM, GFCF


def _data(seed: int = 3, users: int = 60, items: int = 40) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < 0.15).astype(np.float32)
    dense[np.arange(users), rng.integers(0, items, users)] = 1.0  # every user has at least one item
    return sp.csr_matrix(dense)


def _reference_parts(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The papers' matrices: P~ = R~^T R~ and the ideal low-pass D^-1/2 V_k^T V_k D^1/2, all dense."""
    du, di = X.sum(axis=1), X.sum(axis=0)
    R = X / np.sqrt(du)[:, None] / np.sqrt(np.where(di > 0, di, 1))[None, :]
    _, _, vt = np.linalg.svd(R.astype(np.float64))
    V = vt[:k]
    d = np.where(di > 0, di, 1.0)
    ideal = np.diag(d ** -0.5) @ V.T @ V @ np.diag(d ** 0.5)
    return R.T @ R, ideal


@pytest.mark.parametrize("dense_max_items", [5000, 0])
def test_gfcf_matches_the_formula(dense_max_items: int) -> None:
    X = _data()
    P, ideal = _reference_parts(X.toarray(), 8)
    model = GFCF(factors=8, alpha=0.7, dense_max_items=dense_max_items).fit(X)
    got = model.score_users(np.arange(X.shape[0]), filter_seen=False)
    np.testing.assert_allclose(got, X.toarray() @ (P + 0.7 * ideal), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dense_max_items", [5000, 0])
@pytest.mark.parametrize("point_combination", [True, False])
def test_bspm_matches_euler_steps_written_out(dense_max_items: int, point_combination: bool) -> None:
    X = _data(seed=5)
    x = X.toarray().astype(np.float64)
    P, ideal = _reference_parts(x, 6)
    blurred = x @ P
    y = blurred + 0.2 * (x @ ideal)
    points = [blurred]
    for _ in range(3):  # dy/dt = -y P~ over T = 1.5, three Euler steps of 0.5
        y = y - 0.5 * (y @ P)
        points.append(y)
    expected = np.mean(points, axis=0) if point_combination else y
    model = BSPM(factors=6, ideal_weight=0.2, sharpen_time=1.5, sharpen_steps=3, point_combination=point_combination,
                 dense_max_items=dense_max_items).fit(X)
    got = model.score_users(np.arange(X.shape[0]), filter_seen=False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["bspm", "gf-cf"])
def test_item_matrix_is_the_filter_and_scores_fresh_rows(name: str) -> None:
    X = _data(seed=7)
    model = registry.create(name, {"factors": 5}).fit(X)
    F = model.item_matrix()  # type: ignore[attr-defined]
    np.testing.assert_allclose(model.score_users(np.arange(10), filter_seen=False), X[:10].toarray() @ F,
                               rtol=1e-4, atol=1e-5)
    fresh = np.zeros((1, X.shape[1]), np.float32)
    fresh[0, [1, 4]] = 1.0  # a user who did not exist at fit time
    np.testing.assert_allclose(model.filter_rows(sp.csr_matrix(fresh)), fresh @ F, rtol=1e-4, atol=1e-5)  # type: ignore[attr-defined]


def test_bspm_without_ideal_or_sharpening_is_the_linear_filter() -> None:
    X = _data(seed=9)
    P, _ = _reference_parts(X.toarray(), 1)
    model = BSPM(factors=0, ideal_weight=0.0, sharpen_steps=0).fit(X)
    np.testing.assert_allclose(model.score_users(np.arange(X.shape[0]), filter_seen=False), X.toarray() @ P,
                               rtol=1e-4, atol=1e-5)


def test_arpack_path_matches_a_dense_svd() -> None:
    """Above the dense-SVD size the ARPACK path must give the same ideal filter (singular vectors up to sign)."""
    from belong.models import graph_filter

    X = _data(seed=11, users=400, items=120)
    old = graph_filter._DENSE_SVD_CELLS
    try:
        graph_filter._DENSE_SVD_CELLS = 0
        sparse_fit = GFCF(factors=10, alpha=1.0).fit(X)
    finally:
        graph_filter._DENSE_SVD_CELLS = old
    dense_fit = GFCF(factors=10, alpha=1.0).fit(X)
    users = np.arange(50)
    np.testing.assert_allclose(sparse_fit.score_users(users, filter_seen=False),
                               dense_fit.score_users(users, filter_seen=False), rtol=1e-3, atol=1e-4)
