"""EASE^R (Steck, WWW 2019): a closed-form item-item linear model with a zero diagonal.

``P = (X^T X + l2 I)^-1`` (float64), ``B = -P / diag(P)`` column-wise, ``diag(B) = 0``; scores are ``X_u B``.

Any catalogue size: the dense inverse is solved over at most ``max_items`` items. Above that, EASE is fitted on the
``max_items`` most popular items (the head, where most interactions are) and the tail is scored by item-kNN (cosine,
``tail_k`` neighbours per item, all items as history), scaled to EASE's score spread; head columns keep EASE's scores.
Bounds (h = min(n_items, max_items), n = n_items, nnz interactions): peak memory about 32 h^2 bytes while solving
(float64 Gram, its inverse and their copies) and 4 h^2 kept, plus O(n tail_k) for the tail's sparse neighbours; time
O(h^3) for the Cholesky inverse plus the co-occurrences. Measured (``belong bench models``, 30,000 users x 50,000
communities, 2 busy cores): default cap 10,000 -> 3.0 GiB peak, 444 s (tests/models/test_large_catalogue.py: 5,000).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp

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


def _ease_matrix(X: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's B (float32, zero diagonal) for the columns of ``X``."""
    n = X.shape[1]
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices(n)] += l2
    P = _spd_inverse(G)
    B = P / (-np.diag(P))[None, :]
    B[np.diag_indices(n)] = 0.0
    return B.astype(np.float32)


class EASEConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    l2: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: items in the dense solve; more items: EASE over the most popular ones, item-kNN for the tail
    max_items: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    #: neighbours per item of the tail's item-kNN (only used above ``max_items``)
    tail_k: Annotated[int, msgspec.Meta(ge=1)] = 100
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
        self.head: np.ndarray | None = None
        self.tail_W: sp.csr_matrix | None = None
        if n > cfg.max_items:
            popularity = np.asarray((X > 0).sum(axis=0)).ravel()
            self.head = np.sort(np.argsort(-popularity, kind="stable")[: cfg.max_items])
            self.B = _ease_matrix(sp.csr_matrix(X[:, self.head]), cfg.l2)
            self._fit_tail(X)
            return
        self.B = _ease_matrix(X, cfg.l2)

    def _fit_tail(self, X: sp.csr_matrix) -> None:
        from belong.models.itemknn import ItemKNN

        assert self.head is not None
        cfg: EASEConfig = self.config  # type: ignore[assignment]
        knn = ItemKNN(k=cfg.tail_k, shrink=10.0)
        knn._fit(X)
        self.tail_W = knn.W
        # one scale for the tail: kNN's score spread on head columns matched to EASE's, on a sample of users
        rng = np.random.default_rng(0)
        active = np.flatnonzero(np.diff(X.indptr) > 0)
        users = rng.choice(active, min(1000, active.size), replace=False)
        Xs = X[users]
        ease_spread = float(np.mean(np.std(np.asarray(Xs[:, self.head] @ self.B), axis=1)))
        knn_spread = float(np.mean(np.std((Xs @ self.tail_W[:, self.head]).toarray(), axis=1)))
        self.tail_scale = ease_spread / knn_spread if knn_spread > 0 else 1.0

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        if self.head is None:
            return np.asarray(X_users @ self.B)
        assert self.tail_W is not None
        out = (X_users @ self.tail_W).toarray() * np.float32(self.tail_scale)
        out[:, self.head] = np.asarray(X_users[:, self.head] @ self.B)
        return out
