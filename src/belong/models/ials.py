"""iALS: weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky 2008) via ``implicit``'s CPU
alternating least squares. Observed cells get confidence ``alpha`` (times the weight when ``weighted``), the rest
confidence 1.

``user_vectors(X_users)`` folds in users not seen in training (one least-squares solve against the fixed item
factors), which the online pipeline uses for fresh users.
"""

from __future__ import annotations

import os
from typing import Annotated

import msgspec
import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from belong.models.base import Recommender


class IALSConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    factors: Annotated[int, msgspec.Meta(ge=1)] = 64
    regularization: Annotated[float, msgspec.Meta(ge=0)] = 0.05
    alpha: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    iterations: Annotated[int, msgspec.Meta(ge=1)] = 15
    random_state: int = 0
    #: 0 = all cores of this process (its CPU affinity) for the fit, whatever ``OMP_NUM_THREADS`` says (``implicit``
    #: passes 0 on to OpenMP, which then used ONE thread under ``OMP_NUM_THREADS=1``); folding a user in at request
    #: time keeps OpenMP's default. ALS solves each user (item) independently, so results do not depend on it.
    num_threads: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: train on interaction weights (e.g. 1-5 ratings) instead of a binary matrix
    weighted: bool = False


class IALS(Recommender):
    name = "ials"
    config_class = IALSConfig

    @property
    def uses_weights(self) -> bool:  # type: ignore[override]
        """Train on interaction weights (e.g. ratings, message counts) when the config says ``weighted``."""
        return bool(self.config.weighted)  # type: ignore[attr-defined]

    def _als(self, threads: int | None = None) -> AlternatingLeastSquares:
        cfg: IALSConfig = self.config  # type: ignore[assignment]
        return AlternatingLeastSquares(
            factors=cfg.factors, regularization=cfg.regularization, alpha=cfg.alpha, iterations=cfg.iterations,
            random_state=cfg.random_state, num_threads=cfg.num_threads if threads is None else threads,
        )

    def _fit(self, X: sp.csr_matrix) -> None:
        cfg: IALSConfig = self.config  # type: ignore[assignment]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.model = self._als(cfg.num_threads or cores)
        self.model.fit(X, show_progress=False)
        self.user_factors = np.asarray(self.model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(self.model.item_factors, dtype=np.float32)

    def set_factors(self, user_factors: np.ndarray, item_factors: np.ndarray) -> IALS:
        """Use factors saved after a fit (a model artifact): :meth:`user_vectors` then folds users in exactly
        as after that fit. (:meth:`recommend` still needs :meth:`fit`: it filters the training items.)"""
        self.model = self._als()
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.model.user_factors, self.model.item_factors = self.user_factors, self.item_factors
        return self

    def user_vectors(self, X_users: sp.csr_matrix) -> np.ndarray:
        """Factors for users given only their interaction rows (users x n_items), e.g. users unseen in training."""
        if getattr(self, "model", None) is None:
            raise RuntimeError(f"{self.name}: call fit() or set_factors() before user_vectors()")
        X_users = sp.csr_matrix(X_users, dtype=np.float32)
        if X_users.shape[1] != self.item_factors.shape[0]:
            raise ValueError(f"X_users has {X_users.shape[1]} columns, the model {self.item_factors.shape[0]} items")
        out = self.model.recalculate_user(np.arange(X_users.shape[0]), X_users)
        return np.asarray(out, dtype=np.float32).reshape(X_users.shape[0], -1)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return self.user_factors[user_idx] @ self.item_factors.T
