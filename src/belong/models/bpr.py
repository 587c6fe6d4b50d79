"""BPR-MF (Rendle et al. 2009) via ``implicit``'s CPU Bayesian Personalised Ranking (SGD on sampled triples).

With more than one thread the updates race (Hogwild), so ``num_threads=1`` (the default) is what makes a seed
reproduce a model exactly.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from belong.models.base import Recommender


class BPRConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    factors: Annotated[int, msgspec.Meta(ge=1)] = 64
    learning_rate: Annotated[float, msgspec.Meta(gt=0)] = 0.05
    regularization: Annotated[float, msgspec.Meta(ge=0)] = 0.01
    iterations: Annotated[int, msgspec.Meta(ge=1)] = 100
    random_state: int = 0
    num_threads: Annotated[int, msgspec.Meta(ge=0)] = 1


class BPR(Recommender):
    name = "bpr"
    config_class = BPRConfig

    def _fit(self, X: sp.csr_matrix) -> None:
        cfg: BPRConfig = self.config  # type: ignore[assignment]
        model = BayesianPersonalizedRanking(
            factors=cfg.factors, learning_rate=cfg.learning_rate, regularization=cfg.regularization,
            iterations=cfg.iterations, random_state=cfg.random_state, num_threads=cfg.num_threads,
        )
        model.fit(X, show_progress=False)
        # implicit appends a bias column to the item factors and a matching column of ones to the user factors.
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return self.user_factors[user_idx] @ self.item_factors.T
