"""Tiny datasets with known answers, shared by the model tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from belong.interactions import Interactions
from belong.models import registry
from belong.models.base import Recommender

#: parameters that make each model behave on 20 users x 10 items (fast, single-threaded, seeded).
TINY_PARAMS: dict[str, dict] = {
    "itemknn": {"k": 5, "shrink": 0.0},
    "rp3beta": {"k": 5},
    "ease": {"l2": 1.0},
    "ials": {"factors": 2, "iterations": 20, "regularization": 1.0, "num_threads": 1},
    "bpr": {"factors": 8, "iterations": 300, "learning_rate": 0.05, "num_threads": 1},
}


def two_clusters() -> Interactions:
    """Users u00-u09 use 3 of the 5 items a0-a4, users u10-u19 3 of b0-b4; no user crosses clusters.

    User u00 has a0, a1, a2: a personalised model must rank a3, a4 (cluster A) above every b item.
    """
    users, items = [], []
    for c, prefix in enumerate("ab"):
        for j in range(10):
            u = f"u{10 * c + j:02d}"
            for k in range(3):
                users.append(u)
                items.append(f"{prefix}{(j + k) % 5}")
    return Interactions.from_ids(users, items)


def two_cliques() -> sp.csr_matrix:
    """Nodes 0-5 and 6-11 are two 6-cliques, each missing one edge: (0, 1) and (6, 7)."""
    n = 12
    A = np.zeros((n, n), np.float32)
    for block in (range(0, 6), range(6, 12)):
        for i in block:
            for j in block:
                if i != j:
                    A[i, j] = 1
    A[0, 1] = A[1, 0] = A[6, 7] = A[7, 6] = 0
    return sp.csr_matrix(A)


def _fit_tiny(name: str) -> Recommender:
    """Model ``name`` fitted on the tiny dataset of its kind (two cliques for graph models, else two clusters)."""
    data = two_cliques() if registry.MODELS[name].square else two_clusters()
    return registry.create(name, TINY_PARAMS.get(name)).fit(data)


@pytest.fixture()
def clusters() -> Interactions:
    return two_clusters()


@pytest.fixture()
def cliques() -> sp.csr_matrix:
    return two_cliques()


@pytest.fixture()
def fit_tiny() -> Callable[[str], Recommender]:
    return _fit_tiny
