"""``belong bench evaluate``: the harness's batched, fused top-K evaluation against a plain numpy reference of the
same fitted model, in the same run.

Per model, after one ``fit`` on the training part (timed once, counted in both totals):

* **harness** — :func:`belong.evaluation.harness.top_k_full` (users in batches, ``argpartition`` top-K, no full
  sort) and vectorised Recall@K (:mod:`belong.evaluation.metrics`);
* **reference** — dense scores for all test users at once, training items set to -inf, a full ``np.argsort`` of
  every row, and Recall@K in a Python loop over users.

Output: ``{"dataset", "protocol", "k", "users", "items", "models": {name: {"seconds", "reference_seconds",
"speedup", "fit_seconds", "rank_seconds", "reference_rank_seconds", "rank_speedup", "recall",
"reference_recall", "identical_recall", "users_with_different_recall", "params"}}}``; ``speedup`` =
reference_seconds / seconds. Recall can differ only where scores tie at rank K (the fused top-K and the stable
full sort may keep different tied items), e.g. for MostPopular.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from belong.evaluation import metrics as M
from belong.evaluation.data import load_interactions
from belong.evaluation.harness import top_k_full
from belong.evaluation.modelspec import build_model, model_params, tuned_keys
from belong.evaluation.splitters import Split, default_protocol, make_split


def reference_recall(model: Any, split: Split, users: np.ndarray, k: int) -> np.ndarray:
    """Recall@k per user the plain way: dense scores, full sort of each row, Python-loop metric."""
    scores = np.array(model.score_users(users, filter_seen=False), dtype=np.float32)
    train = split.train.csr()[users]
    rows, cols = train.nonzero()
    scores[rows, cols] = -np.inf
    if split.train.meta.get("square"):
        scores[np.arange(len(users)), users] = -np.inf
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    test = split.test.csr()
    out = np.empty(len(users))
    for r, u in enumerate(users.tolist()):
        relevant = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
        out[r] = sum(1 for i in ranked[r].tolist() if i in relevant) / len(relevant)
    return out


def bench_model(name: str, params: dict[str, Any], split: Split, k: int) -> dict[str, Any]:
    """Time one model both ways (see the module doc)."""
    model = build_model(name, params)
    t0 = time.perf_counter()
    model.fit(split.train)
    fit_s = time.perf_counter() - t0
    users = split.test_users
    t0 = time.perf_counter()
    top = top_k_full(model, users, k)
    recall = M.recall_at(M.hit_matrix(top, users, split.test.csr()),
                         np.diff(split.test.csr()[users].indptr), k)
    rank_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_recall(model, split, users, k)
    ref_s = time.perf_counter() - t0
    return {
        "seconds": round(fit_s + rank_s, 6), "reference_seconds": round(fit_s + ref_s, 6),
        "speedup": round((fit_s + ref_s) / (fit_s + rank_s), 3), "fit_seconds": round(fit_s, 6),
        "rank_seconds": round(rank_s, 6), "reference_rank_seconds": round(ref_s, 6),
        "rank_speedup": round(ref_s / rank_s, 3), "recall": float(recall.mean()), "reference_recall": float(ref.mean()),
        "identical_recall": bool(np.array_equal(recall, ref)),
        "users_with_different_recall": int(np.count_nonzero(recall != ref)), "params": model.get_config(),
    }


def bench_evaluate(spec: str, models: Sequence[str], k: int = 20,
                   on_model: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark ``models`` on ``spec`` under its default protocol (``given`` for a LightGCN split)."""
    data = load_interactions(spec)
    split = make_split(default_protocol(data), data)
    out: dict[str, Any] = {"dataset": data.meta.get("dataset", spec), "protocol": split.protocol, "k": k,
                           "users": int(split.test_users.size), "items": data.n_items, "models": {}}
    for choice in model_params(list(models), {}, tuned_keys(str(data.meta.get("dataset", spec)), split.protocol)):
        out["models"][choice.name] = bench_model(choice.name, choice.params, split, k)
        if on_model is not None:
            on_model(choice.name)
    return out
