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
    return _assemble(rows, cols, vals, n)


def topk_sparse_rows(block_fn: Callable[[int, int], sp.csr_matrix], n: int, k: int) -> sp.csr_matrix:
    """:func:`topk_rows` of a similarity that is sparse (a co-occurrence: most pairs never meet): ``block_fn(lo,
    hi)`` returns rows ``lo:hi`` as a CSR whose missing entries are 0, and only its stored values are ranked — no
    dense ``n``-wide row, no selection over ``n`` values per row. The same matrix as :func:`topk_rows` over the
    densified blocks, except where values tie at a row's k-th place: here the lower column index is kept."""
    k = max(0, min(k, n - 1))
    block = max(1, BLOCK_CELLS // max(n, 1))
    rows, cols, vals = [], [], []
    for lo in range(0, n if k else 0, block):
        hi = min(n, lo + block)
        S = sp.csr_matrix(block_fn(lo, hi))
        r = np.repeat(np.arange(hi - lo), np.diff(S.indptr))
        c, v = S.indices.astype(np.int64), np.asarray(S.data, dtype=np.float32)
        keep = (v > 0) & (c != r + lo)
        r, c, v = r[keep], c[keep], v[keep]
        order = np.lexsort((c, -v, r))  # per row: best first, ties by column
        r, c, v = r[order], c[order], v[order]
        counts = np.bincount(r, minlength=hi - lo)
        rank = np.arange(r.size) - np.repeat(np.cumsum(counts) - counts, counts)
        top = rank < k
        rows.append(r[top] + lo)
        cols.append(c[top])
        vals.append(v[top])
    return _assemble(rows, cols, vals, n)


def _assemble(rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray], n: int) -> sp.csr_matrix:
    """The kept ``(row, column, value)`` blocks as one ``n x n`` CSR with sorted indices."""
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    out = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32
    )
    out.sort_indices()
    return out
