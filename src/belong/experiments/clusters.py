"""Friend-graph clusters for cluster-randomised experiments: Leiden communities (igraph + leidenalg, modularity,
fixed seed) of the friendship graph, or ego clusters (each hub with its friends not yet taken) where that library
is missing. Reported with the share of friendships cut between clusters: the interference the clustering leaves."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def leiden(adjacency: sp.csr_matrix, *, seed: int = 0, resolution: float = 1.0) -> np.ndarray:
    """A cluster label per node (Leiden, RBConfiguration = modularity with ``resolution``)."""
    import igraph as ig
    import leidenalg

    upper = sp.triu(adjacency, k=1).tocoo()
    graph = ig.Graph(n=adjacency.shape[0], edges=list(zip(upper.row.tolist(), upper.col.tolist(), strict=True)))
    part = leidenalg.find_partition(graph, leidenalg.RBConfigurationVertexPartition,
                                    resolution_parameter=resolution, seed=seed)
    return np.asarray(part.membership, dtype=np.int64)


def ego(adjacency: sp.csr_matrix) -> np.ndarray:
    """Ego clusters: nodes by degree, highest first; each one not yet taken starts a cluster with its free
    friends."""
    n = adjacency.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    order = np.argsort(-np.diff(adjacency.indptr), kind="stable")
    nxt = 0
    for v in order.tolist():
        if labels[v] >= 0:
            continue
        labels[v] = nxt
        nb = adjacency.indices[adjacency.indptr[v]:adjacency.indptr[v + 1]]
        free = nb[labels[nb] < 0]
        labels[free] = nxt
        nxt += 1
    return labels


def cut_share(adjacency: sp.csr_matrix, labels: np.ndarray) -> float:
    """The share of friendships whose two ends are in different clusters."""
    upper = sp.triu(adjacency, k=1).tocoo()
    if upper.nnz == 0:
        return 0.0
    return float(np.mean(labels[upper.row] != labels[upper.col]))


def cluster_users(store_spec: str, *, method: str = "leiden", seed: int = 0,
                  resolution: float = 1.0) -> tuple[dict[str, str], dict[str, Any]]:
    """(user id -> cluster id, report) over the store's current friendship graph."""
    from belong.state import from_store

    state = from_store(store_spec)
    adj = state.friend_csr().tocsr()
    adj = ((adj + adj.T) > 0).astype(np.int8).tocsr()
    if method == "leiden":
        try:
            labels = leiden(adj, seed=seed, resolution=resolution)
        except ImportError:
            method, labels = "ego", ego(adj)
    elif method == "ego":
        labels = ego(adj)
    else:
        from belong.errors import ValidationError

        raise ValidationError("method", f"must be leiden or ego, got {method!r}")
    ids = state.users.ids
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    report = {"method": method, "seed": seed, "resolution": resolution, "users": len(ids),
              "friendships": int(sp.triu(adj, k=1).nnz), "clusters": int(len(sizes)),
              "largest_cluster": int(sizes.max()) if len(sizes) else 0,
              "cut_share": round(cut_share(adj, labels), 6)}
    return {ids[i]: f"c{int(labels[i])}" for i in range(len(ids))}, report
