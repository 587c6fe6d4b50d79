"""Offline evaluation harness: fit models on a :class:`Split`, rank in batches with a fused top-K, compute every
metric per user, then confidence intervals, segments and paired comparisons.

**What can be evaluated** — anything that satisfies :class:`Evaluable` (every :class:`belong.models.base.Recommender`
does); names become models in :mod:`belong.evaluation.modelspec` (``PREFIX:REST`` names, e.g.
``pipeline:communities``, go to a factory registered in ``modelspec.FACTORIES``).

**Output** (:meth:`EvaluationRun.to_dict`), one model::

    {"dataset": str, "protocol": {"name": str, ...parameters}, "split": {rows, users, items, dropped ...},
     "ks": [10, 20, 50], "primary_k": 20, "model": str, "params": {...}, "params_source": "tuned:<key>" |
     "defaults" | "given" | "tuned here (N trials)", "metrics": {"recall@20": float, ...},
     "ci95": {"recall@20": [lo, hi], ...}, "segments": {"warm": {"users": n, "recall@20": ...}, ...},
     "fit_seconds": float, "score_seconds": float, "users_evaluated": int, "tuned": {...} (with --tune)}

several models: ``{"dataset", "protocol", "split", "ks", "primary_k", "results": [one object per model with the
model keys above], "paired": {"a vs b": {"metric": "ndcg@20", "mean_diff", "t_pvalue", "wilcoxon_pvalue", ...}}}``.
Metric definitions: :mod:`belong.evaluation.metrics`; CIs and tests: :mod:`belong.evaluation.stats`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from belong.errors import ValidationError
from belong.evaluation import metrics as M
from belong.evaluation.modelspec import ModelChoice, build_model
from belong.evaluation.splitters import SAMPLED, Split
from belong.evaluation.stats import bootstrap_ci, paired_test
from belong.interactions import Interactions

#: callback ``(model name, users ranked, users total)`` for progress bars; called with 0 before the model is fit.
ProgressFn = Callable[[str, int, int], None]
DEFAULT_KS = (10, 20, 50)
SAMPLED_KS = (5, 10)


@runtime_checkable
class Evaluable(Protocol):
    """The interface the harness needs.

    * ``fit(train)`` learns from the training :class:`Interactions` (full id maps; rows of cold users are empty).
    * ``recommend_idx(user_idx, k)`` returns ``(items, scores)``, each (len(user_idx), k'), k' <= k, best first,
      with the user's training items (and, on a friendship graph, the user) left out; ``-1`` pads short lists.
    * ``score_items(user_idx, item_idx)`` scores given (n_users, n_candidates) item indices (sampled protocols).
    * ``get_config()`` returns the parameters to report.
    """

    def fit(self, data: Interactions) -> Any: ...

    def recommend_idx(self, user_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def score_items(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray: ...

    def get_config(self) -> dict[str, Any]: ...


def primary_k(ks: Sequence[int]) -> int:
    """The headline cut-off: the K closest to 20 (ties: the smaller)."""
    return min(ks, key=lambda k: (abs(k - 20), k))


@dataclass
class ModelResult:
    """One model on one split. ``per_user`` vectors align with ``users`` (kept for CIs and paired tests)."""

    model: str
    params: dict[str, Any]
    metrics: dict[str, float]
    ci95: dict[str, list[float]]
    segments: dict[str, dict[str, float]]
    fit_seconds: float
    score_seconds: float
    users: np.ndarray
    per_user: dict[str, np.ndarray] = field(repr=False)
    params_source: str = "given"
    tuned: dict[str, Any] | None = None
    fitted: dict[str, Any] | None = None  # what the model learned about itself (ranker: importance, calibration)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model, "params": self.params, "params_source": self.params_source,
            "metrics": self.metrics, "ci95": self.ci95,
            "segments": self.segments, "fit_seconds": round(self.fit_seconds, 4),
            "score_seconds": round(self.score_seconds, 4), "users_evaluated": int(len(self.users)),
        }
        if self.tuned is not None:
            out["tuned"] = self.tuned
        if self.fitted:
            out["fitted"] = self.fitted
        return out


@dataclass
class EvaluationRun:
    """Several models on the same split; :meth:`to_dict` gives the documented JSON shape."""

    dataset: str
    split: Split
    ks: list[int]
    results: list[ModelResult]
    paired: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "dataset": self.dataset, "protocol": {"name": self.split.protocol, **self.split.params},
            "split": self.split.stats, "ks": self.ks, "primary_k": primary_k(self.ks),
        }
        if len(self.results) == 1:
            return {**head, **self.results[0].to_dict()}
        return {**head, "results": [r.to_dict() for r in self.results], "paired": self.paired}


def top_k_full(model: Evaluable, users: np.ndarray, k: int, *, batch_size: int = 1024, name: str = "",
               progress: ProgressFn | None = None) -> np.ndarray:
    """Full-ranking top-``k`` item indices of ``users`` (rows padded with -1), scored batch by batch."""
    out = np.full((len(users), k), -1, np.int64)
    for lo in range(0, len(users), batch_size):
        idx, _ = model.recommend_idx(users[lo:lo + batch_size], k)
        out[lo:lo + len(idx), :idx.shape[1]] = idx
        if progress is not None:
            progress(name, min(lo + batch_size, len(users)), len(users))
    return out


def top_k_sampled(model: Evaluable, users: np.ndarray, candidates: np.ndarray, k: int, *,
                  batch_size: int = 1024, name: str = "", progress: ProgressFn | None = None) -> np.ndarray:
    """Top-``k`` of each user's candidate items. Ties go against the held-out item (column 0): it ranks after
    every negative with the same score."""
    out = np.empty((len(users), min(k, candidates.shape[1])), np.int64)
    tiebreak = np.zeros(candidates.shape[1])
    tiebreak[0] = 1.0
    for lo in range(0, len(users), batch_size):
        cand = candidates[lo:lo + batch_size]
        scores = np.asarray(model.score_items(users[lo:lo + batch_size], cand), np.float64)
        scores = np.nan_to_num(scores, nan=-np.inf)
        order = np.lexsort((np.broadcast_to(tiebreak, scores.shape), -scores), axis=-1)
        out[lo:lo + len(cand)] = np.take_along_axis(cand, order[:, :out.shape[1]], axis=1)
        if progress is not None:
            progress(name, min(lo + batch_size, len(users)), len(users))
    return out


def segment_masks(split: Split, users: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over ``users``: cold/warm (no/any training row), light/heavy (warm users with at most /
    more than the median number of training rows), and the known age groups (teen, adult)."""
    counts = np.bincount(split.train.users, minlength=split.train.n_users)[users]
    warm = counts > 0
    masks = {"warm": warm, "cold": ~warm}
    if warm.any():
        median = float(np.median(counts[warm]))
        masks["light"] = warm & (counts <= median)
        masks["heavy"] = warm & (counts > median)
    ages = split.train.meta.get("user_age_group")
    if isinstance(ages, np.ndarray) and len(ages) == split.train.n_users:
        for group in ("teen", "adult"):
            masks[group] = ages[users] == group
    return {name: m for name, m in masks.items() if m.any()}


def evaluate_model(model: Evaluable, split: Split, ks: Sequence[int], *, name: str, batch_size: int = 1024,
                   seed: int = 0,
                   progress: ProgressFn | None = None) -> ModelResult:
    """Fit ``model`` on ``split.train`` and evaluate it on ``split.test`` at every K in ``ks``."""
    ks = sorted(set(ks))
    users = split.test_users
    if progress is not None:
        progress(name, 0, len(users))
    t0 = time.perf_counter()
    model.fit(split.train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if split.candidates is not None:
        top = top_k_sampled(model, users, split.candidates, max(ks), batch_size=batch_size, name=name,
                            progress=progress)
    else:
        top = top_k_full(model, users, max(ks), batch_size=batch_size, name=name, progress=progress)
    score_s = time.perf_counter() - t0
    values = M.compute(top, users, split.test.csr(), split.train.csr(), ks,
                       beyond_accuracy=split.protocol not in SAMPLED)
    per_user = values.per_user
    ci95 = {m: list(bootstrap_ci(v, seed=seed)) for m, v in per_user.items()}
    segments = {
        seg: {"users": int(mask.sum()), **{m: M.nanmean(v[mask]) for m, v in per_user.items()}}
        for seg, mask in segment_masks(split, users).items()
    }
    fitted = getattr(model, "fitted", None)
    return ModelResult(name, model.get_config(), values.means(), ci95, segments, fit_s, score_s, users, per_user,
                       fitted=fitted() if callable(fitted) else None)


def paired_comparisons(results: Sequence[ModelResult], metric: str) -> dict[str, dict[str, Any]]:
    """Paired tests of ``metric`` for every pair of models (same users, same order)."""
    out = {}
    for a, b in itertools.combinations(results, 2):
        out[f"{a.model} vs {b.model}"] = {"metric": metric, **paired_test(a.per_user[metric], b.per_user[metric])}
    return out


def _tune(name: str, split: Split, fixed: dict[str, Any], trials: int, k: int, seed: int,
          on_trial: Callable[[str], None] | None) -> tuple[dict, dict]:
    """Tune ``name`` on a validation split of ``split.train`` (``fixed`` parameters are not searched)."""
    from belong.tuning import tune

    sampled = split.protocol in SAMPLED
    result = tune(name, split.train, metric="hr@10" if sampled else f"ndcg@{k}", n_trials=trials, seed=seed,
                  validation="loo-sampled" if sampled else "random-holdout", k=k, fixed=fixed,
                  n_negatives=split.params.get("n_negatives", 99),
                  on_trial=None if on_trial is None else (lambda record: on_trial(name)))
    record = {"trials": trials, "metric": result.metric, "validation": result.validation,
              "best_value": result.best_value, "params": result.best_params, "seconds": round(result.seconds, 2)}
    return result.best_params, record


def run(data: Interactions, split: Split, models: Sequence[ModelChoice], ks: Sequence[int], *,
        tune_trials: int = 0, seed: int = 0, progress: ProgressFn | None = None,
        on_trial: Callable[[str], None] | None = None) -> EvaluationRun:
    """Evaluate ``models`` (parameters already merged with defaults, see ``modelspec.model_params``) on ``split``.

    With ``tune_trials > 0`` each registry model is first tuned with :func:`belong.tuning.tune` on a validation
    split carved from ``split.train`` only (``ModelChoice.explicit`` params stay fixed, the others are searched
    from the model's defaults); the tuned values replace ``params`` and are recorded.
    """
    if not models:
        raise ValidationError("model", "name at least one model")
    ks = sorted(set(ks))
    if not ks or ks[0] <= 0:
        raise ValidationError("k", f"must be positive integers, got {ks}")
    results = []
    for choice in models:
        name, params, source, tuned = choice.name, choice.params, choice.params_source, None
        if tune_trials > 0 and ":" not in name:
            params, tuned = _tune(name, split, choice.explicit, tune_trials, primary_k(ks), seed, on_trial)
            source = f"tuned here ({tune_trials} trials)"
        model = build_model(name, params)
        result = evaluate_model(model, split, ks, name=name, seed=seed, progress=progress)
        result.params_source, result.tuned = source, tuned
        results.append(result)
    pk = primary_k(ks)
    paired = paired_comparisons(results, f"ndcg@{pk}") if len(results) > 1 else {}
    return EvaluationRun(str(data.meta.get("dataset", "unknown")), split, list(ks), results, paired)
