"""In-memory interaction data for models and evaluation: external ids <-> dense integer indices.

An :class:`Interactions` holds one (user, item) row per interaction with optional timestamps and weights, plus the
id maps. Models train on its CSR matrix; splitters cut it into train/test :class:`Interactions` that share the
same id maps (so indices stay comparable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from belong.errors import UnknownIdError


@dataclass(eq=False)
class Interactions:
    user_ids: np.ndarray  # index -> external id (str)
    item_ids: np.ndarray
    users: np.ndarray  # int32 user index per interaction
    items: np.ndarray  # int32 item index per interaction
    weights: np.ndarray | None = None  # float32; None means all 1
    ts_us: np.ndarray | None = None  # int64; None when the data has no time
    meta: dict = field(default_factory=dict)  # e.g. user age groups, item popularity, dataset name

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int32)
        self.items = np.asarray(self.items, dtype=np.int32)
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float32)
        if self.ts_us is not None:
            self.ts_us = np.asarray(self.ts_us, dtype=np.int64)
        n = len(self.users)
        if len(self.items) != n or (self.weights is not None and len(self.weights) != n) or (
            self.ts_us is not None and len(self.ts_us) != n
        ):
            raise ValueError("interactions: users/items/weights/ts_us must have the same length")

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_ids(
        cls,
        users: Sequence[str] | np.ndarray,
        items: Sequence[str] | np.ndarray,
        weights: np.ndarray | None = None,
        ts_us: np.ndarray | None = None,
        *,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        meta: dict | None = None,
    ) -> Interactions:
        """Build from external ids; the id maps are the sorted distinct ids unless given."""
        users = np.asarray(users).astype(str)
        items = np.asarray(items).astype(str)
        uid = np.unique(users) if user_ids is None else np.asarray(user_ids).astype(str)
        iid = np.unique(items) if item_ids is None else np.asarray(item_ids).astype(str)
        return cls(uid, iid, _index_of(uid, users, "user"), _index_of(iid, items, "item"), weights, ts_us, meta or {})

    def subset(self, mask: np.ndarray) -> Interactions:
        """Rows where ``mask`` is true, same id maps."""
        return Interactions(
            self.user_ids, self.item_ids, self.users[mask], self.items[mask],
            None if self.weights is None else self.weights[mask],
            None if self.ts_us is None else self.ts_us[mask], dict(self.meta),
        )

    # -- views -------------------------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.item_ids.tolist())}

    def csr(self, *, binary: bool = True) -> sp.csr_matrix:
        """users x items matrix; duplicates are summed (then clipped to 1 when ``binary``)."""
        data = np.ones(len(self), np.float32) if (binary or self.weights is None) else self.weights
        m = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def user_idx(self, ids: Sequence[str]) -> np.ndarray:
        index = self.user_index
        out = np.empty(len(ids), np.int64)
        for j, u in enumerate(ids):
            try:
                out[j] = index[str(u)]
            except KeyError:
                raise UnknownIdError("user", u) from None
        return out


def _index_of(vocab: np.ndarray, values: np.ndarray, kind: str) -> np.ndarray:
    order = np.argsort(vocab, kind="stable")
    sorted_vocab = vocab[order]
    pos = np.searchsorted(sorted_vocab, values)
    pos = np.clip(pos, 0, len(sorted_vocab) - 1)
    ok = sorted_vocab[pos] == values if len(sorted_vocab) else np.zeros(len(values), bool)
    if not np.all(ok):
        bad = values[~ok][0]
        raise UnknownIdError(kind, bad)
    return order[pos].astype(np.int32)
