"""Hyper-parameter tuning with optuna on a validation split carved from the TRAINING part only.

``tune(model, train, ...)`` holds out part of ``train`` (never the test part, which the caller keeps away),
fits the model on the rest, scores the held-out part with full-ranking Recall/NDCG/HR@K (or HR/NDCG against
sampled negatives for ``loo-sampled``), and lets a seeded TPE sampler pick the next values. The model's default
values are always the first trial, so the best found is never worse on validation than the defaults.

Validation protocols (per user with at least two distinct training items; each user keeps at least one):

* ``random-holdout``: a random 20% of the user's items (at least one).
* ``loo``: one random item; full ranking (Recall@K = HR@K).
* ``loo-sampled``: one random item ranked among ``n_negatives`` items the user never interacted with (the NCF /
  Ferrari Dacrema protocol, whose validation is one further random held-out item).

Graph models (square) hold out a random 20% of the undirected edges instead (``random-holdout`` only).

Search spaces (:data:`SPACES`, overridable with ``space=``) map a parameter to ``("log", lo, hi)``,
``("float", lo, hi)``, ``("int", lo, hi)``, ``("logint", lo, hi)`` or ``("cat", [choices...])``. For data whose
weights carry signal (ratings, message counts) add ``"weighted": ("cat", [False, True])`` for ease, itemknn,
rp3beta and ials; the recorded ML-100K values use ``weighted=True`` as Ferrari Dacrema et al.'s explicit URM does.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
import scipy.sparse as sp

from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.models import registry

Spec = tuple[Any, ...]

#: Default search spaces per model (documented ranges; the published tuned values of Ferrari Dacrema et al. fall
#: inside them). Models without hyper-parameters have an empty space (one trial with the defaults).
SPACES: dict[str, dict[str, Spec]] = {
    "most-popular": {},
    "itemknn": {"k": ("logint", 5, 1000), "shrink": ("float", 0.0, 1000.0),
                "weighting": ("cat", ["none", "tfidf", "bm25"])},
    "ease": {"l2": ("log", 10.0, 5000.0)},
    "rp3beta": {"alpha": ("float", 0.0, 2.0), "beta": ("float", 0.0, 1.0), "k": ("logint", 5, 1000)},
    "ials": {"factors": ("cat", [32, 64, 128, 256]), "regularization": ("log", 1e-3, 10.0),
             "alpha": ("log", 1.0, 50.0), "iterations": ("int", 5, 30)},
    "bpr": {"factors": ("cat", [32, 64, 128, 256]), "learning_rate": ("log", 1e-3, 0.1),
            "regularization": ("log", 1e-5, 0.1), "iterations": ("int", 20, 300)},
    "common-neighbours": {},
    "adamic-adar": {},
    "resource-allocation": {},
    "ppr": {"alpha": ("float", 0.05, 0.95)},
}
PROTOCOLS = ("random-holdout", "loo", "loo-sampled")
_METRIC_RE = re.compile(r"^(recall|ndcg|hr)(?:@(\d+))?$")


@dataclass(frozen=True)
class TrialRecord:
    number: int
    params: dict[str, Any]
    value: float
    seconds: float


@dataclass(frozen=True)
class TuneResult:
    model: str
    best_params: dict[str, Any]
    best_value: float
    metric: str
    validation: str
    seed: int
    n_validation_users: int
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- validation split


@dataclass(frozen=True)
class ValidationSplit:
    """``fit`` (users x items, weights kept) and the held-out binary ``held`` matrix, same shape."""

    fit: sp.csr_matrix
    held: sp.csr_matrix
    users: np.ndarray  # users with held-out items


def carve_validation(
    train: Interactions | sp.csr_matrix, protocol: str, seed: int, *, symmetric: bool = False
) -> ValidationSplit:
    """Split the distinct (user, item) pairs of ``train`` into a fit part and a held-out part (see module doc).

    ``symmetric`` (friendship graphs): hold out whole undirected edges, both directions, else the models (which
    symmetrise) would see every held-out edge through its reverse.
    """
    if protocol not in PROTOCOLS:
        raise ValidationError("validation", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    X = train.csr(binary=False) if isinstance(train, Interactions) else sp.csr_matrix(train, dtype=np.float32)
    X.sum_duplicates()
    X.eliminate_zeros()
    if symmetric:
        if protocol != "random-holdout":
            raise ValidationError("validation", f"graph models are tuned with random-holdout, not {protocol!r}")
        return _carve_edges(X, seed)
    coo = X.tocoo()
    n_per_user = np.diff(X.indptr)
    rng = np.random.default_rng(seed)
    # rank of each interaction within its user in a random order
    order = np.lexsort((rng.random(coo.nnz), coo.row))
    rank = np.empty(coo.nnz, np.int64)
    rank[order] = np.arange(coo.nnz) - X.indptr[coo.row[order]]
    if protocol == "random-holdout":
        n_held = np.maximum(1, np.floor(0.2 * n_per_user)).astype(np.int64)
    else:
        n_held = np.ones_like(n_per_user)
    n_held[n_per_user < 2] = 0
    held_mask = rank < n_held[coo.row]
    if not held_mask.any():
        raise ValidationError("train", "no user has two or more interactions to hold one out for validation")
    shape = X.shape

    def part(mask: np.ndarray, data: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((data[mask], (coo.row[mask], coo.col[mask])), shape=shape, dtype=np.float32)

    held = part(held_mask, np.ones(coo.nnz, np.float32))
    return ValidationSplit(part(~held_mask, coo.data), held, np.flatnonzero(np.diff(held.indptr) > 0))


def _carve_edges(X: sp.csr_matrix, seed: int) -> ValidationSplit:
    """Hold out a random 20% of the undirected edges of a square adjacency (both directions)."""
    n = X.shape[0]
    upper = sp.triu(((X + X.T) > 0).astype(np.float32), k=1).tocoo()
    held_mask = np.random.default_rng(seed).random(upper.nnz) < 0.2
    if not held_mask.any() or held_mask.all():
        raise ValidationError("train", "too few edges to hold some out for validation")

    def sym(mask: np.ndarray) -> sp.csr_matrix:
        r, c = upper.row[mask], upper.col[mask]
        data = np.ones(2 * len(r), np.float32)
        return sp.csr_matrix((data, (np.r_[r, c], np.r_[c, r])), shape=(n, n))

    held = sym(held_mask)
    return ValidationSplit(sym(~held_mask), held, np.flatnonzero(np.diff(held.indptr) > 0))


# --------------------------------------------------------------------------------------------- metrics


def parse_metric(metric: str, k: int) -> tuple[str, int]:
    m = _METRIC_RE.match(str(metric).strip().lower())
    if not m:
        raise ValidationError("metric", f"must be recall@K, ndcg@K or hr@K, got {metric!r}")
    cutoff = int(m.group(2)) if m.group(2) else k
    if cutoff <= 0:
        raise ValidationError("metric", f"cut-off must be positive, got {cutoff}")
    return m.group(1), cutoff


def ranking_metrics(top: np.ndarray, held: sp.csr_matrix, users: np.ndarray) -> dict[str, float]:
    """Full-ranking Recall/NDCG/HR at ``top.shape[1]`` (LightGCN definitions: Recall = hits / |held items|;
    NDCG with binary gains and IDCG over min(|held|, K)), averaged over ``users`` (row i of ``top`` is users[i])."""
    k = top.shape[1]
    n_items = held.shape[1]
    held_keys = held[users].tocoo()
    keys = held_keys.row.astype(np.int64) * n_items + held_keys.col
    rows = np.repeat(np.arange(len(users), dtype=np.int64), k).reshape(len(users), k)
    hits = np.isin(rows * n_items + top, keys) & (top >= 0)
    n_held = np.diff(held[users].indptr).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(discounts)[np.minimum(n_held, k).astype(np.int64) - 1]
    return {
        "recall": float(np.mean(hits.sum(axis=1) / n_held)),
        "ndcg": float(np.mean((hits * discounts).sum(axis=1) / idcg)),
        "hr": float(np.mean(hits.any(axis=1))),
    }


def sample_negatives(seen: sp.csr_matrix, users: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` distinct items per user (row of ``users``) that the user never interacted with in ``seen``."""
    rng = np.random.default_rng(seed)
    n_items = seen.shape[1]
    out = np.empty((len(users), n), np.int64)
    for row, u in enumerate(users):
        own = seen.indices[seen.indptr[u]:seen.indptr[u + 1]]
        if n_items - len(own) < n:
            raise ValidationError("n_negatives", f"user index {u} has only {n_items - len(own)} unseen items")
        pool = np.setdiff1d(np.arange(n_items), own, assume_unique=True)
        out[row] = rng.choice(pool, size=n, replace=False)
    return out


def sampled_metrics(pos_scores: np.ndarray, neg_scores: np.ndarray, k: int) -> dict[str, float]:
    """HR@K / NDCG@K of one positive per row ranked among its negatives (ties count against the positive)."""
    rank = (neg_scores >= pos_scores[:, None]).sum(axis=1)
    hit = rank < k
    return {"hr": float(hit.mean()), "recall": float(hit.mean()),
            "ndcg": float(np.mean(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)))}


# --------------------------------------------------------------------------------------------- search


def _check_space(model: str, space: dict[str, Spec]) -> None:
    fields = set(registry.MODELS[model]().get_config())
    for name, spec in space.items():
        if name not in fields:
            raise ValidationError(f"space.{name}", f"is not a parameter of {model} ({', '.join(sorted(fields))})")
        kind = spec[0] if isinstance(spec, tuple | list) and spec else None
        if kind == "cat":
            ok = len(spec) == 2 and isinstance(spec[1], list | tuple) and len(spec[1]) > 0
        elif kind in ("log", "float", "int", "logint"):
            ok = len(spec) == 3 and spec[1] < spec[2] and (kind not in ("log", "logint") or spec[1] > 0)
        else:
            ok = False
        if not ok:
            raise ValidationError(f"space.{name}",
                                  f"must be (log|float|int|logint, lo, hi) or (cat, [..]), got {spec!r}")


def _suggest(trial: optuna.Trial, name: str, spec: Spec) -> Any:
    kind = spec[0]
    if kind == "cat":
        return trial.suggest_categorical(name, list(spec[1]))
    if kind in ("int", "logint"):
        return trial.suggest_int(name, int(spec[1]), int(spec[2]), log=kind == "logint")
    return trial.suggest_float(name, float(spec[1]), float(spec[2]), log=kind == "log")


def _in_space(value: Any, spec: Spec) -> bool:
    if spec[0] == "cat":
        return value in spec[1]
    return spec[1] <= value <= spec[2]


def tune(
    model_name: str,
    train: Interactions | sp.csr_matrix,
    *,
    metric: str = "ndcg@20",
    n_trials: int = 20,
    seed: int = 0,
    space: dict[str, Spec] | None = None,
    validation: str = "random-holdout",
    k: int = 20,
    fixed: dict[str, Any] | None = None,
    n_negatives: int = 99,
    on_trial: Callable[[TrialRecord], None] | None = None,
    timeout: float | None = None,
    start: dict[str, Any] | None = None,
) -> TuneResult:
    """Tune ``model_name`` on a validation split carved from ``train``; see the module doc.

    ``fixed`` parameters are passed to every trial and taken out of the search space (e.g. ``num_threads``, or
    values the user set explicitly: pass only those, not the whole default config, or nothing is left to search);
    ``on_trial`` is called after each trial (e.g. to advance a progress bar). ``timeout`` (seconds): no trial
    starts after it (optuna's own check, between trials: the last one may run past it; at least one trial runs);
    ``start``: the first trial's values (the values in use, e.g. a surface's), instead of the model's defaults.
    """
    model = registry.resolve(model_name)
    kind, cutoff = parse_metric(metric, k)
    if n_trials < 1:
        raise ValidationError("n_trials", f"must be >= 1, got {n_trials}")
    space = dict(SPACES[model] if space is None else space)
    _check_space(model, space)
    fixed = dict(fixed or {})
    space = {name: spec for name, spec in space.items() if name not in fixed}
    registry.create(model, fixed)  # bad fixed params fail here, before any fitting
    split = carve_validation(train, validation, seed, symmetric=registry.MODELS[model].square)
    if validation == "loo-sampled":
        all_seen = split.fit + split.held
        negatives = sample_negatives(all_seen, split.users, n_negatives, seed)
        candidates = np.concatenate([split.held[split.users].indices[:, None], negatives], axis=1)

    def evaluate(params: dict[str, Any]) -> float:
        rec = registry.create(model, {**params, **fixed}).fit(split.fit)
        if validation == "loo-sampled":
            scores = np.concatenate(
                [rec.score_items(split.users[lo:lo + 1024], candidates[lo:lo + 1024])
                 for lo in range(0, len(split.users), 1024)]
            )
            return sampled_metrics(scores[:, 0], scores[:, 1:], cutoff)[kind]
        top, _ = rec.recommend_idx(split.users, cutoff)
        return ranking_metrics(top, split.held, split.users)[kind]

    records: list[TrialRecord] = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        t0 = time.perf_counter()
        value = evaluate(params)
        record = TrialRecord(trial.number, params, value, time.perf_counter() - t0)
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        return value if math.isfinite(value) else -1.0

    t_start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    defaults = {**registry.create(model, fixed).get_config(), **(start or {})}
    if all(_in_space(defaults[name], spec) for name, spec in space.items()):
        study.enqueue_trial({name: defaults[name] for name in space})
    study.optimize(objective, n_trials=n_trials if space else 1, timeout=timeout)
    best = max(records, key=lambda r: (r.value, -r.number))
    return TuneResult(
        model=model, best_params={**best.params, **fixed}, best_value=best.value, metric=f"{kind}@{cutoff}",
        validation=validation, seed=seed, n_validation_users=len(split.users), trials=records,
        seconds=time.perf_counter() - t_start,
    )
