"""Model interface: public ``fit``/``recommend`` validate input, map ids and filter seen items; subclasses fill
hooks on integer indices (the pattern of implicit's ``RecommenderBase`` and RecTools' ``ModelBase``).

Subclass contract:

* ``config_class``: a ``msgspec.Struct`` of hyper-parameters (round-trips to TOML/JSON via :meth:`get_config`).
* ``_fit(X)``: learn from the users x items CSR matrix ``X`` (binary unless the model asks for weights).
* ``_score(user_idx, X_users)``: dense float32 scores (len(user_idx), n_items) for those users, whose training rows
  are ``X_users``. Higher is better. Never called with unknown indices.

Everything else — batching, seen-filtering, fused top-K (``argpartition``, no full sort), id mapping, scoring of
given candidate items for sampled protocols — lives here once.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.errors import UnknownIdError, ValidationError
from belong.interactions import Interactions


class NoConfig(msgspec.Struct, frozen=True, kw_only=True):
    pass


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a dense (n, m) matrix: (indices, scores), best first, without a full sort."""
    n, m = scores.shape
    k = min(k, m)
    if k <= 0:
        return np.empty((n, 0), np.int64), np.empty((n, 0), scores.dtype)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


class Recommender(abc.ABC):
    """Base of every model. ``name`` is the stable id used on the CLI, in reports and in logs."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[msgspec.Struct]] = NoConfig
    #: True when the model wants interaction weights rather than a binary matrix.
    uses_weights: ClassVar[bool] = False
    #: True when items are users (link prediction on a friendship graph): a user is never recommended to itself.
    square: ClassVar[bool] = False
    #: False when every user gets the same ranking (popularity); on tiny data its known answer is then a tie.
    personalised: ClassVar[bool] = True

    def __init__(self, config: msgspec.Struct | None = None, **params: Any) -> None:
        if config is None:
            try:
                config = msgspec.convert(params, self.config_class)
            except msgspec.ValidationError as exc:
                raise ValidationError(f"{self.name}.config", str(exc)) from None
        elif params:
            raise TypeError("pass either a config object or keyword parameters, not both")
        self.config = config
        self.fitted = False
        self.fit_seconds = 0.0

    # -- config ------------------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return msgspec.to_builtins(self.config)

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> Self:
        return cls(msgspec.convert(data, cls.config_class))

    # -- fit ---------------------------------------------------------------------------------------------------
    def fit(self, data: Interactions | sp.spmatrix) -> Self:
        if isinstance(data, Interactions):
            X = data.csr(binary=not self.uses_weights)
            self.user_ids, self.item_ids = data.user_ids, data.item_ids
            self._user_index = data.user_index
            self._item_index = data.item_index
        elif sp.issparse(data):
            X = sp.csr_matrix(data, dtype=np.float32, copy=True)
            X.sum_duplicates()
            X.eliminate_zeros()
            if not self.uses_weights:  # same contract as Interactions.csr(binary=True)
                X.data[:] = 1.0
            self.user_ids = np.arange(X.shape[0]).astype(str)
            self.item_ids = np.arange(X.shape[1]).astype(str)
            self._user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
            self._item_index = {u: i for i, u in enumerate(self.item_ids.tolist())}
        else:
            raise ValidationError("data", f"must be Interactions or a sparse matrix, got {type(data).__name__}")
        if X.shape[0] == 0 or X.shape[1] == 0 or X.nnz == 0:
            raise ValidationError("data", "has no interactions to fit on")
        if self.square and X.shape[0] != X.shape[1]:
            raise ValidationError("data", f"{self.name} needs a square user x user matrix, got {X.shape}")
        X.sort_indices()
        self.X = X
        t0 = time.perf_counter()
        self._fit(X)
        self.fit_seconds = time.perf_counter() - t0
        self.fitted = True
        return self

    @abc.abstractmethod
    def _fit(self, X: sp.csr_matrix) -> None: ...

    @abc.abstractmethod
    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray: ...

    # -- scoring -----------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")

    def score_users(self, user_idx: np.ndarray, *, filter_seen: bool = True) -> np.ndarray:
        """Dense scores for integer user indices; seen items (and self, for square models) get -inf."""
        self._check_fitted()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        X_users = self.X[user_idx]
        scores = np.asarray(self._score(user_idx, X_users), dtype=np.float32)
        if scores.shape != (len(user_idx), self.X.shape[1]):
            raise RuntimeError(f"{self.name}._score returned shape {scores.shape}")
        if filter_seen:
            rows = np.repeat(np.arange(len(user_idx)), np.diff(X_users.indptr))
            scores[rows, X_users.indices] = -np.inf
        if self.square:
            scores[np.arange(len(user_idx)), user_idx] = -np.inf
        return scores

    def recommend_idx(
        self, user_idx: np.ndarray, k: int, *, filter_seen: bool = True, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for integer user indices, scored in batches with a fused top-k.

        Positions whose score is -inf (filtered) are returned as index -1.
        """
        self._check_fitted()
        if k <= 0:
            raise ValidationError("k", f"must be a positive integer, got {k}")
        user_idx = np.asarray(user_idx, dtype=np.int64)
        kk = min(k, self.X.shape[1])
        out_i = np.full((len(user_idx), kk), -1, np.int64)
        out_s = np.full((len(user_idx), kk), -np.inf, np.float32)
        for lo in range(0, len(user_idx), batch_size):
            sl = slice(lo, lo + batch_size)
            idx, sc = topk(self.score_users(user_idx[sl], filter_seen=filter_seen), kk)
            idx[~np.isfinite(sc)] = -1
            out_i[sl], out_s[sl] = idx, sc
        return out_i, out_s

    def score_items(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores of given (n_users, n_candidates) item indices, unfiltered (for sampled protocols)."""
        scores = self.score_users(np.asarray(user_idx), filter_seen=False)
        return np.take_along_axis(scores, np.asarray(item_idx, dtype=np.int64), axis=1)

    def recommend(
        self, user_ids: Sequence[str], k: int = 10, *, filter_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        """External ids in, ``[(item_id, score), ...]`` per user out, best first."""
        self._check_fitted()
        idx = np.empty(len(user_ids), np.int64)
        for j, u in enumerate(user_ids):
            try:
                idx[j] = self._user_index[str(u)]
            except KeyError:
                raise UnknownIdError("user", u) from None
        items, scores = self.recommend_idx(idx, k, filter_seen=filter_seen)
        out = []
        for row_i, row_s in zip(items, scores, strict=True):
            keep = row_i >= 0
            out.append([(str(self.item_ids[i]), float(s)) for i, s in zip(row_i[keep], row_s[keep], strict=True)])
        return out
