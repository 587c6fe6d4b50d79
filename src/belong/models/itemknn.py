"""ItemKNN: item-item cosine similarity with shrinkage, top-k neighbours per item (Ferrari Dacrema et al. 2019).

``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink)`` over the users-as-features item vectors, optionally re-weighted
with TF-IDF or BM25 first (the users are the "terms"; Dacrema's ``feature_weighting``). Each item keeps its ``k``
most similar items; a user's score for item ``j`` is the sum of the similarities of ``j`` to the user's items.
The weighting only shapes the similarity; scoring uses the training matrix (binary, or the interaction weights
when ``weighted``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.models.base import Recommender
from belong.models.neighbours import topk_sparse_rows


class ItemKNNConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    k: Annotated[int, msgspec.Meta(ge=1)] = 100
    shrink: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    weighting: Literal["none", "tfidf", "bm25"] = "none"
    bm25_k1: Annotated[float, msgspec.Meta(gt=0)] = 1.2
    bm25_b: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.75
    #: train on interaction weights (e.g. 1-5 ratings) instead of a binary matrix
    weighted: bool = False


def feature_weights(X: sp.csr_matrix, weighting: str, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Users x items matrix re-weighted per Dacrema's ``TF_IDF`` / ``okapi_BM_25`` applied to items x users."""
    if weighting == "none":
        return X
    coo = X.tocoo()
    n_items = X.shape[1]
    idf = np.log(n_items / (1.0 + np.diff(X.indptr))).astype(np.float32)  # users are the terms
    if weighting == "tfidf":
        data = np.sqrt(coo.data) * idf[coo.row]
    else:  # bm25: item "documents" normalised by their length
        item_len = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()
        norm = (1.0 - b) + b * item_len / max(float(item_len.mean()), 1e-12)
        data = coo.data * (k1 + 1.0) / (k1 * norm[coo.col] + coo.data) * idf[coo.row]
    return sp.csr_matrix((data.astype(np.float32), (coo.row, coo.col)), shape=X.shape)


class ItemKNN(Recommender):
    name = "itemknn"
    config_class = ItemKNNConfig

    @property
    def uses_weights(self) -> bool:  # type: ignore[override]
        """Train on interaction weights (e.g. ratings, message counts) when the config says ``weighted``."""
        return bool(self.config.weighted)  # type: ignore[attr-defined]

    def _fit(self, X: sp.csr_matrix) -> None:
        cfg: ItemKNNConfig = self.config  # type: ignore[assignment]
        F = feature_weights(X, cfg.weighting, cfg.bm25_k1, cfg.bm25_b)
        Ft = F.T.tocsr()  # items x users
        norms = np.sqrt(np.asarray(Ft.multiply(Ft).sum(axis=1), dtype=np.float32).ravel())
        denom_shrink = np.float32(cfg.shrink + 1e-6)

        def block(lo: int, hi: int) -> sp.csr_matrix:
            dots = sp.csr_matrix(Ft[lo:hi] @ F)  # co-occurrences: sparse (two items no user shares score 0)
            rows = np.repeat(np.arange(hi - lo), np.diff(dots.indptr))
            dots.data = dots.data / (norms[lo:hi][rows] * norms[dots.indices] + denom_shrink)
            return dots

        # row j of the block matrix holds j's neighbours i; the scoring matrix W[i, j] is its transpose.
        self.W = topk_sparse_rows(block, X.shape[1], cfg.k).T.tocsr()

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return (X_users @ self.W).toarray()
