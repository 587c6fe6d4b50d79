"""The sparse top-k neighbour builder against the dense one it replaces for co-occurrence similarities."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from belong.models.neighbours import topk_rows, topk_sparse_rows


@pytest.mark.parametrize(("n", "k", "density"), [(50, 5, 0.1), (300, 20, 0.02), (120, 200, 0.3), (40, 0, 0.5)])
def test_sparse_top_k_equals_dense_without_ties(n: int, k: int, density: float) -> None:
    rng = np.random.default_rng(n + k)
    S = sp.random(n, n, density=density, format="csr", random_state=rng, dtype=np.float32)
    S.data = rng.standard_normal(S.nnz).astype(np.float32)  # continuous values: no ties; some <= 0, dropped
    dense = topk_rows(lambda lo, hi: S[lo:hi].toarray(), n, k)
    sparse = topk_sparse_rows(lambda lo, hi: S[lo:hi], n, k)
    assert sparse.shape == dense.shape == (n, n)
    assert (sparse != dense).nnz == 0 and sparse.nnz == dense.nnz
    assert sparse.diagonal().max(initial=0.0) == 0.0 and (sparse.data > 0).all()
    assert np.diff(sparse.indptr).max(initial=0) <= max(0, min(k, n - 1))


def test_sparse_top_k_ties_keep_the_lower_index() -> None:
    S = sp.csr_matrix(np.array([[0, 2, 1, 2, 2], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [3, 3, 3, 0, 3], [1, 1, 1, 1, 1]],
                               np.float32))
    out = topk_sparse_rows(lambda lo, hi: S[lo:hi], 5, 2).toarray()
    assert out[0].tolist() == [0, 2, 0, 2, 0]
    assert out[1].tolist() == [1, 0, 1, 0, 0]
    assert out[2].tolist() == [0, 0, 0, 0, 0]
    assert out[3].tolist() == [3, 3, 0, 0, 0]
    assert out[4].tolist() == [1, 1, 0, 0, 0]
