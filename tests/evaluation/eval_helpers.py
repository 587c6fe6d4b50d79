"""Small, fully known datasets and a transparent model for the evaluation tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from belong.interactions import Interactions
from belong.models.base import Recommender

#: per cluster, each of 4 users trains on two of the cluster's three items and is tested on the third.
TRAIN_PAIRS = [(0, 1), (0, 2), (1, 2), (0, 1)]
TEST_ITEM = [2, 1, 0, 2]


def clusters(split_ts: int = 100) -> Interactions:
    """8 users in two clusters (A: items a0-a2, B: b0-b2); test rows at ``split_ts`` (meta given_split_ts_us)."""
    users, items, ts = [], [], []
    for c in "ab":
        for j, (pair, test) in enumerate(zip(TRAIN_PAIRS, TEST_ITEM, strict=True)):
            u = f"{c}user{j}"
            for pos, i in enumerate(pair):
                users.append(u), items.append(f"{c}{i}"), ts.append(pos)
            users.append(u), items.append(f"{c}{test}"), ts.append(split_ts)
    return Interactions.from_ids(users, items, ts_us=np.asarray(ts), meta={"given_split_ts_us": split_ts,
                                                                            "dataset": "clusters"})


class CoOccurrence(Recommender):
    """Score = how many training users had both the candidate and one of the user's items (diagonal zeroed)."""

    name = "cooccurrence"

    def _fit(self, X: sp.csr_matrix) -> None:
        S = (X.T @ X).toarray()
        np.fill_diagonal(S, 0.0)
        self.S = S

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return np.asarray(X_users @ self.S)


class Popularity(Recommender):
    """Score = number of training users of the item; ties go to the lower item index."""

    name = "popularity"

    def _fit(self, X: sp.csr_matrix) -> None:
        self.pop = np.asarray(X.sum(0)).ravel() - 1e-3 * np.arange(X.shape[1]) / X.shape[1]

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.pop, (len(user_idx), 1))
