"""EASE^R (Steck, WWW 2019): a closed-form item-item linear model with a zero diagonal.

``P = (X^T X + l2 I)^-1`` (float64), ``B = -P / diag(P)`` column-wise, ``diag(B) = 0``; scores are ``X_u B``. The
dense n_items x n_items inverse bounds the catalogue size (``max_items``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp

from belong.errors import ValidationError
from belong.models.base import Recommender


def _spd_inverse(G: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix via LAPACK potrf/potri (Cholesky): about twice as fast as
    a general inverse. ``G`` is overwritten."""
    c, info = scipy.linalg.lapack.dpotrf(G, lower=False, overwrite_a=True)
    if info == 0:
        c, info = scipy.linalg.lapack.dpotri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"Gram matrix is not positive definite (LAPACK info {info}); raise l2")
    upper = np.triu(c)
    return upper + np.triu(upper, 1).T


class EASEConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    l2: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    max_items: Annotated[int, msgspec.Meta(ge=1)] = 40_000
    #: train on interaction weights (e.g. 1-5 ratings) instead of a binary matrix
    weighted: bool = False


class EASE(Recommender):
    name = "ease"
    config_class = EASEConfig

    @property
    def uses_weights(self) -> bool:  # type: ignore[override]
        """Train on interaction weights (e.g. ratings, message counts) when the config says ``weighted``."""
        return bool(self.config.weighted)  # type: ignore[attr-defined]

    def _fit(self, X: sp.csr_matrix) -> None:
        cfg: EASEConfig = self.config  # type: ignore[assignment]
        n = X.shape[1]
        if n > cfg.max_items:
            raise ValidationError(
                "ease.max_items", f"{n} items need a dense {n}x{n} inverse; raise max_items or use itemknn/ials"
            )
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices(n)] += cfg.l2
        P = _spd_inverse(G)
        B = P / (-np.diag(P))[None, :]
        B[np.diag_indices(n)] = 0.0
        self.B = B.astype(np.float32)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return np.asarray(X_users @ self.B)
