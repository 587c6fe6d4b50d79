"""Personalised PageRank for friend suggestions: a random walk on the (symmetrised) friendship graph that
restarts at the user with probability ``alpha``; the stationary visit probabilities are the scores.

Power iteration on a dense (batch x n) matrix of walks against the sparse transition matrix ``P = D^-1 A``:
``R <- alpha E + (1 - alpha) R P`` until the largest per-user L1 change is below ``tol``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.models.base import Recommender
from belong.models.graph import symmetric_adjacency


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
        degree = np.diff(A.indptr).astype(np.float32)
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        # walks are rows, so R @ P = (P^T @ R^T)^T; keep P^T in CSR for the sparse x dense product.
        self.PT = sp.csr_matrix((sp.diags(inv) @ A).T, dtype=np.float32)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        cfg: PPRConfig = self.config  # type: ignore[assignment]
        n = self.PT.shape[0]
        restart = np.zeros((n, len(user_idx)), np.float32)  # walks as columns
        restart[user_idx, np.arange(len(user_idx))] = cfg.alpha
        R = restart / np.float32(cfg.alpha)
        for _ in range(cfg.max_iter):
            R_next = restart + np.float32(1.0 - cfg.alpha) * (self.PT @ R)
            delta = float(np.abs(R_next - R).sum(axis=0).max()) if R.size else 0.0
            R = R_next
            if delta < cfg.tol:
                break
        return np.ascontiguousarray(R.T)
