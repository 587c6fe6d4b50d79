"""Ranking metrics on top-K index arrays, vectorised, one value per user so that confidence intervals, segments and
paired tests can be computed afterwards.

Inputs: ``top`` — an (n_users, K) array of item indices, best first, ``-1`` where a model had fewer than K items to
offer; ``users`` — the user index of each row; ``test`` — the users x items CSR of held-out items (binary).

Accuracy (LightGCN / BARS definitions, see ``shared/data/PUBLISHED_RESULTS.md``):

* ``recall@K``    = hits in the top K / |test items of the user| (not divided by min(K, |test|))
* ``precision@K`` = hits in the top K / K
* ``ndcg@K``      = sum over hits of 1/log2(rank + 1) / IDCG, IDCG over min(|test|, K) ideal hits (binary gains)
* ``hr@K``        = 1 if any test item is in the top K
* ``mrr@K``       = 1 / rank of the first hit within the top K (0 when none)
* ``map@K``       = sum over hit ranks r of precision@r, divided by min(|test|, K)

Beyond accuracy (``train`` popularity = number of training users of an item):

* ``arp@K``       = mean training popularity of the user's recommended items (average recommendation popularity)
* ``novelty@K``   = mean of -log2(popularity / n training users) over recommended items (unseen items count as 1 user)
* ``ild@K``       = intra-list diversity: 1 - mean pairwise cosine similarity of the recommended items' training
                    columns (item co-occurrence vectors); NaN for lists with fewer than two items
* ``coverage@K``  = distinct items recommended to anyone / catalogue size (one number, not per user)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: metrics with one value per user (the rest are catalogue-level).
PER_USER = ("recall", "ndcg", "precision", "hr", "mrr", "map", "arp", "novelty", "ild")
#: how many distinct recommended items make the dense item-similarity matrix too big (then it is built per batch).
MAX_DENSE_ITEMS = 8000


@dataclass
class MetricValues:
    """``per_user[name]`` is a float64 vector aligned with the evaluated users; ``catalogue[name]`` one number."""

    per_user: dict[str, np.ndarray]
    catalogue: dict[str, float]

    def means(self) -> dict[str, float]:
        """Point estimates: the mean over users (NaNs ignored) plus the catalogue-level numbers."""
        out = {name: nanmean(v) for name, v in self.per_user.items()}
        out.update(self.catalogue)
        return out


def nanmean(v: np.ndarray) -> float:
    """Mean of the non-NaN entries (NaN when there are none)."""
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def hit_matrix(top: np.ndarray, users: np.ndarray, test: sp.csr_matrix) -> np.ndarray:
    """Boolean (n, K): whether ``top[i, j]`` is a test item of ``users[i]``."""
    test = sp.csr_matrix(test)
    test.sum_duplicates()
    n_items = test.shape[1]
    rows = np.repeat(np.arange(test.shape[0], dtype=np.int64), np.diff(test.indptr))
    keys = np.sort(rows * n_items + test.indices)
    query = np.asarray(users, np.int64)[:, None] * n_items + np.maximum(top, 0)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return (top >= 0) & (keys[pos] == query) if len(keys) else np.zeros(top.shape, bool)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def recall_at(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(1) / np.maximum(n_rel, 1)


def precision_at(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(1) / k


def hr_at(hits: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].any(1), np.float64)


def ndcg_at(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    kk = min(k, hits.shape[1])
    dcg = hits[:, :kk] @ disc[:kk]
    idcg = np.cumsum(disc)[np.clip(np.minimum(n_rel, k), 1, k) - 1]
    return np.where(n_rel > 0, dcg / idcg, 0.0)


def mrr_at(hits: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = h.argmax(1)
    return np.where(h.any(1), 1.0 / (first + 1), 0.0)


def map_at(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, 1) / np.arange(1, h.shape[1] + 1)
    return (prec * h).sum(1) / np.maximum(np.minimum(n_rel, k), 1)


def coverage_at(top: np.ndarray, n_items: int, k: int) -> float:
    t = top[:, :k]
    return float(np.unique(t[t >= 0]).size / max(n_items, 1))


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    cnt = valid.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (values * valid).sum(1) / cnt, np.nan)


def arp_at(top: np.ndarray, item_pop: np.ndarray, k: int) -> np.ndarray:
    t = top[:, :k]
    return _masked_mean(item_pop[np.maximum(t, 0)].astype(np.float64), t >= 0)


def novelty_at(top: np.ndarray, item_pop: np.ndarray, n_train_users: int, k: int) -> np.ndarray:
    t = top[:, :k]
    info = -np.log2(np.maximum(item_pop, 1) / max(n_train_users, 1))
    return _masked_mean(info[np.maximum(t, 0)], t >= 0)


def _similarity(train: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """Dense cosine similarity between the training columns of ``items``."""
    cols = sp.csc_matrix(train, dtype=np.float32)[:, items]
    norms = np.sqrt(np.asarray(cols.multiply(cols).sum(0)).ravel())
    cols = cols @ sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0).astype(np.float32))
    return np.asarray((cols.T @ cols).toarray(), dtype=np.float32)


def ild_at(top: np.ndarray, train: sp.csr_matrix, ks: Sequence[int], *, batch_size: int = 512,
           max_dense_items: int = MAX_DENSE_ITEMS) -> dict[int, np.ndarray]:
    """Intra-list diversity for every K in ``ks``: 1 - mean off-diagonal cosine of the list's items."""
    kmax = min(max(ks), top.shape[1])
    t = top[:, :kmax]
    out = {k: np.full(len(t), np.nan) for k in ks}
    recommended = np.unique(t[t >= 0])
    global_sim = _similarity(train, recommended) if recommended.size <= max_dense_items else None
    if global_sim is None:  # one small similarity matrix per batch keeps memory bounded
        batch_size = max(1, max_dense_items // max(kmax, 1))
    for lo in range(0, len(t), batch_size):
        tb = t[lo:lo + batch_size]
        valid = tb >= 0
        vocab = recommended if global_sim is not None else np.unique(tb[valid])
        sim = global_sim if global_sim is not None else _similarity(train, vocab)
        if vocab.size == 0:
            continue
        local = np.searchsorted(vocab, np.maximum(tb, 0))
        s = sim[local[:, :, None], local[:, None, :]] * (valid[:, :, None] & valid[:, None, :])
        for k in ks:
            kk = min(k, kmax)
            sub = s[:, :kk, :kk]
            off = sub.sum((1, 2)) - np.trace(sub, axis1=1, axis2=2)
            m = valid[:, :kk].sum(1)
            pairs = m * (m - 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k][lo:lo + batch_size] = np.where(pairs > 0, 1.0 - off / pairs, np.nan)
    return out


def compute(top: np.ndarray, users: np.ndarray, test: sp.csr_matrix, train: sp.csr_matrix,
            ks: Sequence[int], *, beyond_accuracy: bool = True) -> MetricValues:
    """Every metric of this module at every K in ``ks`` (names like ``recall@20``). ``beyond_accuracy=False``
    leaves out arp, novelty, ild and coverage (meaningless on lists drawn from sampled candidates)."""
    users = np.asarray(users, np.int64)
    hits = hit_matrix(top, users, test)
    n_rel = np.asarray(sp.csr_matrix(test)[users].astype(bool).sum(1)).ravel()
    item_pop = np.asarray(train.astype(bool).sum(0)).ravel()
    n_train_users = int(np.count_nonzero(np.diff(sp.csr_matrix(train).indptr)))
    per_user: dict[str, np.ndarray] = {}
    catalogue: dict[str, float] = {}
    ild = ild_at(top, train, ks) if beyond_accuracy else {}
    for k in ks:
        per_user[f"recall@{k}"] = recall_at(hits, n_rel, k)
        per_user[f"ndcg@{k}"] = ndcg_at(hits, n_rel, k)
        per_user[f"precision@{k}"] = precision_at(hits, k)
        per_user[f"hr@{k}"] = hr_at(hits, k)
        per_user[f"mrr@{k}"] = mrr_at(hits, k)
        per_user[f"map@{k}"] = map_at(hits, n_rel, k)
        if beyond_accuracy:
            per_user[f"arp@{k}"] = arp_at(top, item_pop, k)
            per_user[f"novelty@{k}"] = novelty_at(top, item_pop, n_train_users, k)
            per_user[f"ild@{k}"] = ild[k]
            catalogue[f"coverage@{k}"] = coverage_at(top, train.shape[1], k)
    return MetricValues(per_user, catalogue)
