"""MostPopular (TopPop): every user gets the items with the most training users, a non-personalised floor."""

from __future__ import annotations

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.models.base import Recommender


class MostPopularConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """No hyper-parameters: popularity is the number of distinct training users of an item."""


class MostPopular(Recommender):
    name = "most-popular"
    config_class = MostPopularConfig
    personalised = False

    def _fit(self, X: sp.csr_matrix) -> None:
        self.popularity = np.asarray((X > 0).sum(axis=0), dtype=np.float32).ravel()

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(user_idx), len(self.popularity))).copy()
