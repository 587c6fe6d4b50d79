"""Neighbourhood link-prediction heuristics on a friendship graph (Liben-Nowell & Kleinberg 2007; Zhou et al.
2009): the score of a candidate ``v`` for user ``u`` sums, over their common neighbours ``w``, a weight of ``w``:

* common neighbours: 1
* Adamic-Adar: ``1 / log(deg(w))``
* resource allocation: ``1 / deg(w)``

Scores are the sparse product ``A[users] @ diag(weight) @ A`` computed per batch of users; the graph is
symmetrised and binarised first (friendship is undirected), and that symmetric graph is what seen-filtering uses.
"""

from __future__ import annotations

import abc

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.models.base import Recommender


class GraphConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """No hyper-parameters."""


def symmetric_adjacency(X: sp.csr_matrix) -> sp.csr_matrix:
    """Binary undirected adjacency ``A = (X + X^T) > 0`` with an empty diagonal."""
    A = sp.csr_matrix((X + X.T) > 0, dtype=np.float32)
    A.setdiag(0)
    A.eliminate_zeros()
    A.sort_indices()
    return A


class _NeighbourHeuristic(Recommender):
    config_class = GraphConfig
    square = True

    @abc.abstractmethod
    def _node_weights(self, degree: np.ndarray) -> np.ndarray:
        """Weight of each node as a common neighbour, from its degree."""

    def _fit(self, X: sp.csr_matrix) -> None:
        self.A = symmetric_adjacency(X)
        self.X = self.A  # seen-filtering then drops friends listed in either direction
        self.degree = np.diff(self.A.indptr).astype(np.float32)
        self.AW = sp.csr_matrix(sp.diags(self._node_weights(self.degree).astype(np.float32)) @ self.A)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return (self.A[user_idx] @ self.AW).toarray()


class CommonNeighbours(_NeighbourHeuristic):
    name = "common-neighbours"

    def _node_weights(self, degree: np.ndarray) -> np.ndarray:
        return np.ones_like(degree)


class AdamicAdar(_NeighbourHeuristic):
    name = "adamic-adar"

    def _node_weights(self, degree: np.ndarray) -> np.ndarray:
        # a node of degree 1 is nobody's *common* neighbour (its only link would be to both ends): weight 0
        log_degree = np.log(np.maximum(degree, 1.0))
        return np.divide(1.0, log_degree, out=np.zeros_like(degree), where=degree > 1)


class ResourceAllocation(_NeighbourHeuristic):
    name = "resource-allocation"

    def _node_weights(self, degree: np.ndarray) -> np.ndarray:
        out = np.zeros_like(degree)
        np.divide(1.0, degree, out=out, where=degree > 0)
        return out
