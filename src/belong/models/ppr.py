"""Personalised PageRank for friend suggestions: a random walk on the (symmetrised) friendship graph that
restarts at the user with probability ``alpha``; the stationary visit probabilities are the scores.

Power iteration against the sparse transition matrix ``P = D^-1 A``: ``R <- alpha E + (1 - alpha) R P`` until the
largest per-user L1 change is below ``tol``, on dense walk matrices chunked so that memory stays bounded.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.models.base import Recommender
from belong.models.graph import symmetric_adjacency

#: dense cells of walks iterated at once (n nodes x walks); 8M float32 cells = 32 MB per copy.
WALK_CELLS = 8_000_000


class PPRConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.3
    max_iter: Annotated[int, msgspec.Meta(ge=1)] = 50
    tol: Annotated[float, msgspec.Meta(gt=0)] = 1e-5


class PersonalizedPageRank(Recommender):
    name = "ppr"
    config_class = PPRConfig
    square = True

    def _fit(self, X: sp.csr_matrix) -> None:
        A = symmetric_adjacency(X)
        self.X = A  # seen-filtering then drops friends listed in either direction
        degree = np.diff(A.indptr).astype(np.float32)
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        # walks are rows, so R @ P = (P^T @ R^T)^T; keep P^T in CSR for the sparse x dense product.
        self.PT = sp.csr_matrix((sp.diags(inv) @ A).T, dtype=np.float32)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        n = self.PT.shape[0]
        chunk = max(1, WALK_CELLS // max(n, 1))
        out = np.empty((len(user_idx), n), np.float32)
        for lo in range(0, len(user_idx), chunk):
            out[lo:lo + chunk] = self._walk(user_idx[lo:lo + chunk]).T
        return out

    def _walk(self, starts: np.ndarray) -> np.ndarray:
        """Visit probabilities (n x len(starts)), one column per walk."""
        cfg: PPRConfig = self.config  # type: ignore[assignment]
        cols = np.arange(len(starts))
        R = np.zeros((self.PT.shape[0], len(starts)), np.float32)
        R[starts, cols] = 1.0
        for _ in range(cfg.max_iter):
            R_next = self.PT @ R
            R_next *= np.float32(1.0 - cfg.alpha)
            R_next[starts, cols] += np.float32(cfg.alpha)
            delta = float(np.abs(R_next - R).sum(axis=0).max())
            R = R_next
            if delta < cfg.tol:
                break
        return R
