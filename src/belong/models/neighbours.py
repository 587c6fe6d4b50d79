"""Sparse top-k neighbour matrices built block by block (item-item models never hold a dense n x n matrix)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

#: dense cells per block (rows x n); 16M float32 cells = 64 MB.
BLOCK_CELLS = 16_000_000


def topk_rows(block_fn: Callable[[int, int], np.ndarray], n: int, k: int) -> sp.csr_matrix:
    """An n x n CSR keeping, in each row, the ``k`` largest positive values of ``block_fn(lo, hi)``.

    ``block_fn(lo, hi)`` returns the dense float32 rows ``lo:hi`` (shape (hi - lo, n)) of the full similarity
    matrix; the diagonal is dropped, and so are values <= 0 (no evidence of similarity).
    """
    k = max(0, min(k, n - 1))
    block = max(1, BLOCK_CELLS // max(n, 1))
    rows, cols, vals = [], [], []
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        dense = np.asarray(block_fn(lo, hi), dtype=np.float32)
        dense[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        if k == 0:
            continue
        if k < n:
            idx = np.argpartition(-dense, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(n), dense.shape)
        top = np.take_along_axis(dense, idx, axis=1)
        keep = top > 0
        rows.append(np.nonzero(keep)[0] + lo)
        cols.append(idx[keep])
        vals.append(top[keep])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    out = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32
    )
    out.sort_indices()
    return out
