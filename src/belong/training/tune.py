"""``belong train --tune-budget SECONDS``: tune a surface's sources and its ranker on the user's own data.

Everything is measured on validation cuts carved from the store's own data (no test set exists here):

* **sources** whose model is a registry model — ``co_membership`` with ``model = "ease"`` (``ease_l2``) or
  ``"itemknn"`` (``knn_k``, ``knn_shrink``), ``ials_ann`` (``factors``, ``regularization``, ``alpha``,
  ``iterations``) — are tuned with :func:`belong.tuning.tune` (optuna TPE, seeded) on a random 20% of each
  member's memberships held out, NDCG@20 on full ranking; the first trial is the surface's own values, so the
  chosen ones are never worse on validation. ``co_membership`` with ``model = "auto"`` picks its model on its own
  validation cut and is left alone.
* **the ranker** (``lgbm_ranker``): its training lists are built once (the candidate stage fitted on the scorer's
  own validation cut, :func:`belong.ranking.dataset.build_lists`), then ``num_leaves``, ``learning_rate`` and
  ``min_data_in_leaf`` are searched, each trial scored by the ranker's NDCG@20 on its held-out lists
  (``Ranker.metrics["ranker"]``); the best is refitted on the same lists and kept.

**The budget**: ``budget_s`` seconds of trials in all, shared evenly between what is left to tune; optuna starts no
trial past a task's share, so a task overruns its share by at most the trial running when it ran out (recorded:
``longest_trial_seconds``), and later tasks get what is left. A source whose share is spent is not tuned; the
ranker always runs its first trial, the surface's own values — the fit it needs anyway (kept, not refitted).

**Reuse**: the chosen values are recorded in the manifest (``tuning``) with the data's fingerprint — the counts of
users, communities, content, memberships and friendships. The next ``belong train --tune-budget`` into the same
models directory reuses the newest artifact's values (no trials) unless the data drifted: the largest relative
change of a fingerprint count, ``|new - old| / max(old, 1)``, above :data:`DRIFT_THRESHOLD` (25%: a quarter more
members or memberships changes what the regularisation should be; small daily growth does not). ``retune``
forces a new search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import optuna
import orjson

from belong.errors import ValidationError
from belong.pipeline.components import CandidateSource
from belong.pipeline.pipeline import Pipeline
from belong.state import WorldState

DRIFT_THRESHOLD = 0.25
METRIC = "ndcg@20"
#: the ranker's searched values (LightGBM): leaves, learning rate, leaf size
RANKER_SPACE: dict[str, tuple[Any, ...]] = {"num_leaves": ("logint", 7, 127), "learning_rate": ("log", 0.01, 0.2),
                                            "min_data_in_leaf": ("logint", 10, 300)}
#: ``(done, total)`` per finished trial
TrialProgress = Callable[[str, int], None]


def fingerprint(state: WorldState) -> dict[str, int]:
    """What the drift check compares: entity and relation counts of the state."""
    return {"users": state.n_users, "communities": state.n_communities, "content": state.n_content,
            "memberships": int(state.membership_csr().nnz), "friendships": int(state.friend_csr().nnz // 2)}


def drift(new: dict[str, int], old: dict[str, int]) -> float:
    """The largest relative change of a fingerprint count (a count missing from ``old`` counts as a full change)."""
    return max((abs(new[k] - old[k]) / max(old[k], 1) if k in old else 1.0 for k in new), default=0.0)


def previous_tuning(models_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """``(version, tuning record)`` of the newest artifact in ``models_dir`` that was tuned, or None."""
    from belong.training.locate import artifact_versions

    for version in reversed(artifact_versions(models_dir)):
        path = Path(models_dir) / version / "manifest.json"
        try:
            record = orjson.loads(path.read_bytes()).get("tuning")
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("surfaces"), dict):
            return version, record
    return None


def _source_target(src: CandidateSource) -> tuple[str, dict[str, str]] | None:
    """``(registry model, {source config field: model parameter})`` of a tunable source, else None."""
    cfg: Any = src.config
    if src.type_name == "ials_ann":
        return "ials", {f: f for f in ("factors", "regularization", "alpha", "iterations")}
    if src.type_name == "co_membership" and cfg.model == "ease":
        return "ease", {"ease_l2": "l2"}
    if src.type_name == "co_membership" and cfg.model == "itemknn":
        return "itemknn", {"knn_k": "k", "knn_shrink": "shrink"}
    return None


def _set(component: Any, values: dict[str, Any]) -> None:
    component.config = msgspec.structs.replace(component.config, **values)


def apply(pipeline: Pipeline, record: dict[str, Any]) -> None:
    """Put a surface's recorded values (``tuning.surfaces[name]``) into its sources' and ranker's configs; a
    source renamed or changed since (another type or model) keeps its declared values."""
    by_name = {s.name: s for s in pipeline.sources}
    for name, rec in record.get("sources", {}).items():
        src = by_name.get(name)
        target = _source_target(src) if src is not None else None
        if src is not None and target is not None and target[0] == rec.get("model") and rec.get("params"):
            _set(src, rec["params"])  # the same kind of source as when tuned
    ranker = record.get("ranker")
    if ranker and ranker.get("params") and pipeline.scorer.type_name == "lgbm_ranker":
        _set(pipeline.scorer, ranker["params"])


class Budget:
    """Seconds of trials left, shared evenly between the tasks left."""

    def __init__(self, seconds: float, tasks: int) -> None:
        self.deadline = time.perf_counter() + seconds
        self.tasks = max(tasks, 1)

    def share(self) -> float:
        left = max(self.deadline - time.perf_counter(), 0.0)
        share = left / self.tasks
        self.tasks = max(self.tasks - 1, 1)
        return share


def count_tasks(pipeline: Pipeline) -> int:
    return sum(_source_target(s) is not None for s in pipeline.sources) + (
        pipeline.scorer.type_name == "lgbm_ranker")


def tune_sources(pipeline: Pipeline, state: WorldState, budget: Budget, seed: int = 0,
                 on_trial: TrialProgress | None = None) -> dict[str, Any]:
    """Tune each tunable source on the memberships (see the module doc); the chosen values go into its config."""
    from belong.tuning import SPACES, tune

    X = state.membership_csr()
    out: dict[str, Any] = {}
    for src in pipeline.sources:
        target = _source_target(src)
        if target is None:
            continue
        model, fields = target
        share = budget.share()
        if X.nnz == 0 or share <= 0:
            out[src.name] = {"skipped": "no memberships" if X.nnz == 0 else "budget spent"}
            continue
        cfg: Any = src.config
        start = {param: getattr(cfg, field) for field, param in fields.items()}
        fixed = {p: v for p, v in _model_defaults(model).items() if p in SPACES[model] and p not in start}
        if model == "ials":
            fixed["random_state"] = cfg.seed
        try:
            result = tune(model, X, metric=METRIC, n_trials=10_000, seed=seed, validation="random-holdout",
                          fixed=fixed, start=start, timeout=share, on_trial=_reporter(src.name, on_trial))
        except ValidationError as exc:  # too little data to hold anything out
            out[src.name] = {"skipped": exc.reason}
            continue
        first = result.trials[0].value
        params = {field: result.best_params[param] for field, param in fields.items()}
        _set(src, params)
        out[src.name] = {"model": model, "params": params, "metric": result.metric, "value": result.best_value,
                         "start_value": first, "trials": len(result.trials), "seconds": round(result.seconds, 3),
                         "longest_trial_seconds": round(max(t.seconds for t in result.trials), 3),
                         "validation_users": result.n_validation_users}
    return out


def _reporter(name: str, on_trial: TrialProgress | None) -> Callable[[Any], None] | None:
    if on_trial is None:
        return None
    report = on_trial

    def done(record: Any) -> None:
        report(name, record.number + 1)

    return done


def _model_defaults(model: str) -> dict[str, Any]:
    from belong.models import registry

    return registry.create(model, {}).get_config()


def tune_ranker(pipeline: Pipeline, state: WorldState, budget: Budget, seed: int = 0,
                on_trial: TrialProgress | None = None, progress: Callable[[int, int], None] | None = None
                ) -> dict[str, Any]:
    """Fit the pipeline with its ranker tuned (see the module doc); returns the record. The pipeline is fitted
    on ``state`` afterwards, as :meth:`Pipeline.fit` would have."""
    from belong.ranking.dataset import build_lists
    from belong.tuning import _suggest

    scorer: Any = pipeline.scorer
    c = scorer.config
    pipeline.fit(state, candidates_only=True)
    t_lists = time.perf_counter()
    lists = build_lists(state, pipeline.fresh, fraction=c.holdout, cold=c.cold, max_users=c.users, seed=c.seed,
                        by=c.holdout_by, min_span_days=c.min_span_days, progress=progress,
                        workers=scorer.list_workers())
    lists_s = time.perf_counter() - t_lists
    share = budget.share()
    start = {name: getattr(c, name) for name in RANKER_SPACE}
    trials: list[tuple[dict[str, Any], float, Any, float]] = []  # params, value, fitted ranker, seconds

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in RANKER_SPACE.items()}
        _set(scorer, params)
        ts = time.perf_counter()
        ranker = scorer.train_ranker(lists, cross_fit=False)  # the guard's folds once, for the kept ranker
        value = float(ranker.metrics["ranker"][METRIC])
        trials.append((params, value, ranker, time.perf_counter() - ts))
        if on_trial is not None:
            on_trial(scorer.name, len(trials))
        return value if np.isfinite(value) else -1.0

    t0 = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(start)  # the surface's own values: the fit it would have had anyway
    study.optimize(objective, n_trials=10_000, timeout=max(share, 1e-3))
    seconds = time.perf_counter() - t0
    best_params, best, ranker, _ = max(trials, key=lambda t: t[1])  # the first best: ties keep the start
    _set(scorer, best_params)
    scorer.cross_fit_guard(ranker, lists)
    scorer.ranker = ranker  # fitted on the same lists with these values: no refit
    pipeline.selector.prepare(state)
    pipeline.state = state
    return {"params": best_params, "metric": METRIC, "value": best, "start_value": trials[0][1],
            "trials": len(trials), "seconds": round(seconds, 3), "lists_seconds": round(lists_s, 3),
            "longest_trial_seconds": round(max(t[3] for t in trials), 3),
            "lists": int(lists.groups.size)}
