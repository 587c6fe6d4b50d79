"""Training-free graph filters over the normalised user x item graph: GF-CF (Shen et al., CIKM 2021) and BSPM
(Choi et al., SIGIR 2023). Closed form: no gradient steps, one truncated SVD.

With ``R~ = D_u^-1/2 X D_i^-1/2`` (degree-normalised interactions) and ``V`` its top ``factors`` right singular
vectors:

* the **linear filter** ``x P~`` with ``P~ = R~^T R~`` (item-item, normalised co-occurrence) is applied as
  ``(x R~^T) R~``: two sparse products, never an n_items x n_items matrix;
* the **ideal low-pass filter** is ``x D_i^-1/2 V^T V D_i^1/2``;
* **GF-CF** scores ``x P~ + alpha * ideal(x)``;
* **BSPM** blurs (``b = x P~``; ``y0 = b + ideal_weight * ideal(x)``), then sharpens with ``sharpen_steps`` Euler
  steps of ``dy/dt = -y P~`` over ``sharpen_time`` and, with ``point_combination``, averages ``b`` and every
  sharpened point (the authors' "early merge"); every step is again two sparse products.

Memory and time bounds (n_items = n, nnz = number of interactions, k = ``factors``): fitting keeps ``R~`` (about
12 bytes per interaction) and ``V`` (4 k n bytes) and costs one ARPACK ``svds`` of ``R~`` (O(iterations x nnz x k)
time); ``dense_max_items`` caps the optional dense ``P~`` (4 n^2 bytes, kept only when n <= the cap, a speed-up
for small catalogues). Scoring a batch of b users costs O(b (steps + 1) nnz / n_users x n + b k n) time and
O(b (n_users + n)) memory: nothing is quadratic in n unless the dense cap allows it. Measured with ``belong bench
models`` (30,000 users x 50,000 communities, 2 busy cores): BSPM fit 61 s, GF-CF 91 s, each 166 MiB peak
(tests/models/test_large_catalogue.py checks every model within 16 GiB).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from belong.models.base import Recommender

#: below this many cells a dense SVD is cheaper and exact (and ARPACK needs k < min(shape))
_DENSE_SVD_CELLS = 4_000_000


def _top_right_singular(R: sp.csr_matrix, k: int) -> np.ndarray:
    """The top ``k`` right singular vectors of ``R`` as rows (k x n_items), largest singular value first;
    deterministic (fixed ARPACK start vector)."""
    m, n = R.shape
    k = max(0, min(k, min(m, n) - 1))
    if k == 0:
        return np.zeros((0, n), np.float32)
    if m * n <= _DENSE_SVD_CELLS:
        _, _, vt = np.linalg.svd(R.toarray().astype(np.float64), full_matrices=False)
        return np.ascontiguousarray(vt[:k], dtype=np.float32)
    v0 = np.full(min(m, n), 1.0 / np.sqrt(min(m, n)))
    _, s, vt = svds(R.astype(np.float64), k=k, v0=v0)
    order = np.argsort(-s)
    return np.ascontiguousarray(vt[order], dtype=np.float32)


class _GraphFilter(Recommender):
    """Shared fit (normalised graph, truncated SVD) and the two filters; subclasses combine them."""

    def _fit(self, X: sp.csr_matrix) -> None:
        cfg = self.config
        du = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        di = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
        inv_u = np.divide(1.0, np.sqrt(du), out=np.zeros_like(du), where=du > 0)
        inv_i = np.divide(1.0, np.sqrt(di), out=np.zeros_like(di), where=di > 0)
        self.R = sp.csr_matrix(sp.diags(inv_u) @ X @ sp.diags(inv_i), dtype=np.float32)
        self.RT = sp.csr_matrix(self.R.T)
        self.inv_sqrt_deg = inv_i.astype(np.float32)
        self.sqrt_deg = np.sqrt(di).astype(np.float32)
        self.V = _top_right_singular(self.R, cfg.factors)  # type: ignore[attr-defined]
        n = X.shape[1]
        self.P: np.ndarray | None = None
        if n <= cfg.dense_max_items:  # type: ignore[attr-defined]
            self.P = (self.RT @ self.R).toarray().astype(np.float32)

    def linear(self, x: np.ndarray) -> np.ndarray:
        """``x P~`` for dense rows ``x`` (b x n_items)."""
        if self.P is not None:
            return np.asarray(x @ self.P, dtype=np.float32)
        # (x R~^T R~)^T = R~^T (R~ x^T): two sparse x dense products
        return np.ascontiguousarray((self.RT @ (self.R @ x.T)).T, dtype=np.float32)

    def ideal(self, x: np.ndarray) -> np.ndarray:
        """The ideal low-pass filter ``x D_i^-1/2 V^T V D_i^1/2`` for dense rows ``x``."""
        if self.V.shape[0] == 0:
            return np.zeros_like(x, dtype=np.float32)
        return np.asarray(((x * self.inv_sqrt_deg) @ self.V.T) @ (self.V * self.sqrt_deg), dtype=np.float32)

    def filter_rows(self, X_users: sp.csr_matrix | np.ndarray) -> np.ndarray:
        """Scores for interaction rows (any users, also ones unseen at fit time): b x n_items, dense."""
        x = sp.csr_matrix(X_users).toarray() if sp.issparse(X_users) else np.asarray(X_users)
        return self._filter(np.asarray(x, dtype=np.float32))

    def _filter(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def item_matrix(self) -> np.ndarray:
        """The whole filter as a dense n_items x n_items matrix ``F`` (scores = ``x F``; the filters are linear).
        Costs 4 n^2 bytes: for small catalogues only."""
        self._check_fitted()
        n = self.X.shape[1]
        out = np.empty((n, n), np.float32)
        step = max(1, 4_000_000 // max(n, 1))
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            eye = np.zeros((hi - lo, n), np.float32)
            eye[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
            out[lo:hi] = self._filter(eye)
        return out

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return self.filter_rows(X_users)


class GFCFConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: rank of the ideal low-pass filter (top singular vectors of the normalised matrix)
    factors: Annotated[int, msgspec.Meta(ge=0)] = 96
    #: weight of the ideal low-pass filter against the linear one
    alpha: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    #: keep the dense item-item ``P~`` when there are at most this many items (4 n^2 bytes)
    dense_max_items: Annotated[int, msgspec.Meta(ge=0)] = 5000


class GFCF(_GraphFilter):
    """GF-CF: linear filter plus ``alpha`` times the ideal low-pass filter."""

    name = "gf-cf"
    config_class = GFCFConfig

    def _filter(self, x: np.ndarray) -> np.ndarray:
        alpha = self.config.alpha  # type: ignore[attr-defined]
        out = self.linear(x)
        if alpha:
            out += alpha * self.ideal(x)
        return out


class BSPMConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: rank of the ideal low-pass filter
    factors: Annotated[int, msgspec.Meta(ge=0)] = 96
    #: weight of the ideal low-pass filter added to the blurred signal
    ideal_weight: Annotated[float, msgspec.Meta(ge=0)] = 0.1
    #: total sharpening time and its Euler steps (0 steps: blurring only)
    sharpen_time: Annotated[float, msgspec.Meta(ge=0)] = 2.5
    sharpen_steps: Annotated[int, msgspec.Meta(ge=0, le=50)] = 2
    #: average the blurred signal and every sharpened point (else the last point only)
    point_combination: bool = True
    dense_max_items: Annotated[int, msgspec.Meta(ge=0)] = 5000


class BSPM(_GraphFilter):
    """BSPM: blur (linear + ideal filter), then sharpen by reversing the heat equation (Euler steps)."""

    name = "bspm"
    config_class = BSPMConfig

    def _filter(self, x: np.ndarray) -> np.ndarray:
        cfg: BSPMConfig = self.config  # type: ignore[assignment]
        blurred = self.linear(x)
        y = blurred + cfg.ideal_weight * self.ideal(x) if cfg.ideal_weight else blurred.copy()
        if cfg.sharpen_steps == 0:
            return y
        h = cfg.sharpen_time / cfg.sharpen_steps
        total = blurred.copy() if cfg.point_combination else None
        for _ in range(cfg.sharpen_steps):
            y = y - h * self.linear(y)
            if total is not None:
                total += y
        return y if total is None else total / (cfg.sharpen_steps + 1)
