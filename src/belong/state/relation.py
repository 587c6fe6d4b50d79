"""``Relation``: a sparse 0/1 relation (memberships, friendships, engagement) that takes incremental edits.

A CSR base built in bulk, plus small per-row (and per-column) sets of additions and removals that
:meth:`Relation.set` records, so that one new event is visible to the next read without rebuilding the matrix.
Reads merge base and edits; :meth:`Relation.matrix` materialises both when a model needs a whole matrix.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.sparse as sp

_EMPTY = np.empty(0, np.int64)
_EMPTY.flags.writeable = False


def _index(m: sp.csr_matrix) -> tuple[list[int], np.ndarray]:
    """A CSR's row pointers (as a list: fast scalar reads) and int64 column indices (read-only: rows are views)."""
    idx = m.indices.astype(np.int64)
    idx.flags.writeable = False
    return m.indptr.tolist(), idx


def _row(ix: tuple[list[int], np.ndarray], i: int) -> np.ndarray:
    """Row ``i`` of a base index (a read-only view; empty beyond the base's rows)."""
    indptr, idx = ix
    if i + 1 >= len(indptr):
        return _EMPTY
    return idx[indptr[i]:indptr[i + 1]]


def _holds(sorted_idx: np.ndarray, x: int) -> bool:
    pos = int(np.searchsorted(sorted_idx, x))
    return pos < sorted_idx.size and int(sorted_idx[pos]) == x


def _merge(base: np.ndarray, add: set[int] | None, rem: set[int] | None) -> np.ndarray:
    if not add and not rem:
        return base
    out = set(base.tolist()) - (rem or set()) | (add or set())
    return np.array(sorted(out), np.int64)


class Relation:
    """Rows x columns 0/1 with cheap edits; ``symmetric`` for an undirected relation between one kind (friends)."""

    def __init__(self, base: sp.csr_matrix, symmetric: bool = False) -> None:
        self.base = base.tocsr().astype(np.float32)
        self.base.sort_indices()
        self.base_t = self.base if symmetric else self.base.T.tocsr()
        self.symmetric = symmetric
        self._r = _index(self.base)
        self._c = self._r if symmetric else _index(self.base_t)
        self._col_counts = np.diff(np.asarray(self._c[0], np.int64))
        self.add_r: dict[int, set[int]] = defaultdict(set)
        self.del_r: dict[int, set[int]] = defaultdict(set)
        self.add_c: dict[int, set[int]] = defaultdict(set)
        self.del_c: dict[int, set[int]] = defaultdict(set)
        #: bumped by every effective edit
        self.version = 0
        self._delta: dict[int, int] = {}  # col_sizes: each edited column's count change, at ``_delta_at``
        self._delta_at = -1

    @classmethod
    def from_sorted(cls, base: sp.csr_matrix, base_t: sp.csr_matrix, rows: tuple[np.ndarray, np.ndarray],
                    cols: tuple[np.ndarray, np.ndarray], symmetric: bool = False) -> Relation:
        """A relation over a float32 CSR with sorted indices and its transpose, and the (indptr, int64 indices) of
        each, used as they are (no copy: they may be read-only memory maps of a snapshot,
        :mod:`belong.state.snapshot`)."""
        self = cls.__new__(cls)
        self.base, self.base_t, self.symmetric = base, base if symmetric else base_t, symmetric
        self._r = (np.asarray(rows[0]).tolist(), rows[1])
        self._c = self._r if symmetric else (np.asarray(cols[0]).tolist(), cols[1])
        self._col_counts = np.diff(np.asarray(self._c[0], np.int64))
        self.add_r, self.del_r = defaultdict(set), defaultdict(set)
        self.add_c, self.del_c = defaultdict(set), defaultdict(set)
        self.version = 0
        self._delta, self._delta_at = {}, -1
        return self

    @classmethod
    def empty(cls, shape: tuple[int, int] = (0, 0), symmetric: bool = False) -> Relation:
        return cls(sp.csr_matrix(shape, dtype=np.float32), symmetric=symmetric)

    def row(self, i: int) -> np.ndarray:
        """Sorted column indices of row ``i`` (a read-only view while the row has no edits)."""
        return _merge(_row(self._r, i), self.add_r.get(i), self.del_r.get(i))

    def rows_meet(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """For each of ``rows``: whether :meth:`row` holds a column where the boolean ``cols`` is True — the base's
        rows all at once, rows with edits (or beyond the base) one by one."""
        rows = np.asarray(rows, np.int64)
        out = np.zeros(rows.size, bool)
        indptr = self.base.indptr
        edited = np.fromiter((i in self.add_r or i in self.del_r or i + 1 >= indptr.size for i in rows.tolist()),
                             bool, rows.size)
        base = np.flatnonzero(~edited)
        if base.size:
            r = rows[base]
            lo, hi = indptr[r].astype(np.int64), indptr[r + 1].astype(np.int64)
            lens = hi - lo
            n = int(lens.sum())
            if n:
                owner = np.repeat(np.arange(r.size), lens)
                pos = np.arange(n, dtype=np.int64) + np.repeat(lo - (np.cumsum(lens) - lens), lens)
                c = self._r[1][pos]
                hit = c < cols.size
                hit[hit] = cols[c[hit]]
                out[base] = np.bincount(owner[hit], minlength=r.size) > 0
        for j in np.flatnonzero(edited).tolist():
            c = self.row(int(rows[j]))
            out[j] = bool(cols[c[c < cols.size]].any())
        return out

    def col(self, j: int) -> np.ndarray:
        """Sorted row indices of column ``j``."""
        if self.symmetric:
            return self.row(j)
        return _merge(_row(self._c, j), self.add_c.get(j), self.del_c.get(j))

    def col_sizes(self, js: np.ndarray) -> np.ndarray:
        """``col(j).size`` for every ``j`` at once: the base's counts, exact for columns the edits touched."""
        counts = self._col_counts
        js = np.asarray(js, np.int64)
        out = np.zeros(js.size, np.int64)
        inside = js < counts.size
        out[inside] = counts[js[inside]]
        add, rem = (self.add_r, self.del_r) if self.symmetric else (self.add_c, self.del_c)
        if add or rem:
            if self._delta_at != self.version:
                self._delta, self._delta_at = {}, self.version
            delta = self._delta
            for k, j in enumerate(js.tolist()):
                d = delta.get(j)
                if d is None:
                    a, r = add.get(j), rem.get(j)
                    d = 0
                    if a or r:  # edits never hold an index twice: count those that change the base column
                        base = _row(self._c, j)
                        d = sum(not _holds(base, x) for x in a or ()) - sum(_holds(base, x) for x in r or ())
                    delta[j] = d
                out[k] += d
        return out

    def has(self, i: int, j: int) -> bool:
        if j in self.add_r.get(i, ()):
            return True
        if j in self.del_r.get(i, ()):
            return False
        r = _row(self._r, i)
        pos = np.searchsorted(r, j)
        return bool(pos < r.size and r[pos] == j)

    def _set(self, i: int, j: int, on: bool) -> None:
        (self.add_r if on else self.del_r)[i].add(j)
        (self.del_r if on else self.add_r)[i].discard(j)
        if not self.symmetric:
            (self.add_c if on else self.del_c)[j].add(i)
            (self.del_c if on else self.add_c)[j].discard(i)

    def set(self, i: int, j: int, on: bool) -> bool:
        """Turn (i, j) on/off; returns whether anything changed."""
        if self.has(i, j) == on:
            return False
        self._set(i, j, on)
        if self.symmetric:
            self._set(j, i, on)
        self.version += 1
        return True

    def matrix(self, shape: tuple[int, int]) -> sp.csr_matrix:
        """A fresh CSR of base + edits, grown to ``shape`` (the caller may modify it). The edits are merged as
        sorted 64-bit cell keys (row * columns + column): an addition sets its cell to 1, a removal (applied after)
        drops it, stored zeros go, as a LIL round trip would do, but without one Python list per row (at 1,000,000
        people that round trip took ~5 s per call, and a server started from a snapshot with a log tail after it
        made each of these matrices that way)."""
        base = self.base
        if base.shape != shape:
            indptr = np.pad(base.indptr, (0, shape[0] - base.shape[0]), mode="edge")
            base = sp.csr_matrix((base.data, base.indices, indptr), shape=shape)
        if not any(self.add_r.values()) and not any(self.del_r.values()):
            return base.copy()
        n_rows, n_cols = shape
        keys = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(base.indptr)) * n_cols + base.indices
        data = base.data
        add = np.unique(np.fromiter((i * n_cols + j for i, js in self.add_r.items() for j in js), np.int64))
        rem = np.fromiter((i * n_cols + j for i, js in self.del_r.items() for j in js), np.int64)
        if add.size:
            kept = ~np.isin(keys, add)
            keys = np.concatenate([keys[kept], add])
            data = np.concatenate([data[kept], np.ones(add.size, data.dtype)])
        kept = data != 0
        if rem.size:
            kept &= ~np.isin(keys, rem)
        keys, data = keys[kept], data[kept]
        order = np.argsort(keys, kind="stable")
        keys, data = keys[order], data[order]
        indptr = np.zeros(n_rows + 1, np.int64)
        np.cumsum(np.bincount(keys // n_cols, minlength=n_rows), out=indptr[1:])
        idx_dtype = np.int32 if max(n_rows, n_cols, keys.size) < 2**31 else np.int64
        return sp.csr_matrix((data, (keys % n_cols).astype(idx_dtype), indptr.astype(idx_dtype)), shape=shape)
