"""``lgbm_ranker``: the pipeline scorer that orders merged candidates with the learned :class:`Ranker`.

:meth:`LgbmRanker.fit` trains it in memory on a validation cut (``holdout_by``: random, time or auto) of the state
it is given, from the lists of a fresh copy of its own pipeline's candidate stage (handed over by
:meth:`Pipeline.fit <belong.pipeline.pipeline.Pipeline.fit>`; :func:`belong.ranking.dataset.build_lists`) — which
is how ``belong evaluate --model pipeline:communities_ranked`` trains the ranker inside ``fit(train)`` without seeing
the test set, and how ``belong train`` trains it on a store. A trained ranker is saved and loaded with the rest of
the pipeline by :mod:`belong.training.artifact`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import ComponentConfig, Progress, Scorer, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.scorers import rrf_sums
from belong.pipeline.types import Merged, MergedArrays, Request
from belong.ranking.dataset import HOLDOUT_BY, TrainingLists, build_lists, feature_matrix, feature_matrix_arrays
from belong.ranking.ranker import ORDER_OBJECTIVES, Ranker, check_guard
from belong.state import WorldState


class LgbmRankerConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    holdout: float = 0.15  # share of memberships held out to label the lists (per user, or the latest by time)
    holdout_by: str = "random"  # random | time | auto (time when joins span >= min_span_days); see ranking.dataset
    min_span_days: float = 7.0  # for holdout_by = "auto"
    cold: float = 0.2  # random cut: share of validation users whose memberships are all held out (cold-start lists)
    users: int = 1000  # validation users (lists) at most
    objectives: dict[str, float] = {}  # extra calibrated objectives added to the order: {join = 0.5, report = -2}
    calibration: str = "isotonic"  # isotonic | platt
    num_leaves: int = 31
    learning_rate: float = 0.05
    rounds: int = 300
    min_data_in_leaf: int = 50
    seed: int = 0
    workers: int = 0  # processes generating the training lists; 0: two when there are >= 1000 lists (forked)
    threads: int = 0  # LightGBM threads; 0: every core (deterministic: the same boosters with any number)
    order: str = "rank_xendcg"  # the order's objective: rank_xendcg | lambdarank (see ranking.ranker)
    # keep the surface's rank blend (weighted RRF, c = blend_c, the sources' own weights) unless the served score
    # beats it on the ranker's own validation lists: one-sided paired t-test of NDCG@20, p < guard_p
    # (docs/COMMUNITIES_QUALITY.md)
    guard: bool = True
    guard_p: float = 0.05
    # the guard's comparison on every list, each scored by a ranker fitted without it (folds by list; 0: on the
    # split's validation lists only, which also chose the boosting rounds and so favour the ranker)
    guard_folds: int = 5
    blend_c: float = 60.0


@register("scorer", "lgbm_ranker")
class LgbmRanker(Scorer):
    """score = ranking-objective margin (+ weighted calibrated objective probabilities); see
    :mod:`belong.ranking.ranker`."""

    Config = LgbmRankerConfig
    config: LgbmRankerConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        self.ranker: Ranker | None = None
        if not 0.0 < self.config.holdout < 1.0:
            raise ValidationError(f"{self.name}.holdout", f"must be between 0 and 1, got {self.config.holdout}")
        if not 0.0 <= self.config.cold < 1.0:
            raise ValidationError(f"{self.name}.cold", f"must be in [0, 1), got {self.config.cold}")
        if self.config.holdout_by not in HOLDOUT_BY:
            raise ValidationError(f"{self.name}.holdout_by",
                                  f"must be one of {', '.join(HOLDOUT_BY)}, got {self.config.holdout_by!r}")
        if self.config.workers < 0:
            raise ValidationError(f"{self.name}.workers", f"must be >= 0 (0: automatic), got {self.config.workers}")
        if self.config.order not in ORDER_OBJECTIVES:
            raise ValidationError(f"{self.name}.order",
                                  f"must be one of {', '.join(ORDER_OBJECTIVES)}, got {self.config.order!r}")
        if self.config.threads < 0:
            raise ValidationError(f"{self.name}.threads", f"must be >= 0 (0: every core), got {self.config.threads}")
        if self.config.users < 10:
            raise ValidationError(f"{self.name}.users", f"must be >= 10, got {self.config.users}")
        check_guard(self.name, self.config.guard_p, self.config.guard_folds)
        if self.config.blend_c < 0.0:
            raise ValidationError(f"{self.name}.blend_c", f"must be >= 0, got {self.config.blend_c}")

    def list_workers(self) -> int:
        """Processes for the training lists: the setting, or (0) two on a multi-core machine for >= 1000 lists —
        not when torch is loaded (a forked process may hang on its thread pools)."""
        import os
        import sys

        if self.config.workers:
            return self.config.workers
        if self.config.users < 1000 or "torch" in sys.modules:
            return 1
        return min(2, os.cpu_count() or 1)

    def new_ranker(self) -> Ranker:
        c = self.config
        return Ranker(num_leaves=c.num_leaves, learning_rate=c.learning_rate, rounds=c.rounds,
                      min_data_in_leaf=c.min_data_in_leaf, seed=c.seed, calibration=c.calibration,
                      objectives=c.objectives, threads=c.threads, order=c.order)

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        """Train on lists of ``upstream()`` (a fresh copy of the candidate stage) over a validation cut of ``state``."""
        lists = build_lists(state, upstream, fraction=self.config.holdout, cold=self.config.cold,
                            max_users=self.config.users, seed=self.config.seed, by=self.config.holdout_by,
                            min_span_days=self.config.min_span_days, progress=progress, workers=self.list_workers())
        self.ranker = self.train_ranker(lists)

    def train_ranker(self, lists: TrainingLists, cross_fit: bool = True) -> Ranker:
        """A new ranker fitted on ``lists``, measured against the surface's rank blend: on its validation lists, and
        (``cross_fit``, with the guard on) out of fold over every list (:meth:`cross_fit_guard`)."""
        ranker = self.new_ranker().fit(lists, blend=(dict(self.source_weights), self.config.blend_c))
        if cross_fit:
            self.cross_fit_guard(ranker, lists)
        return ranker

    def cross_fit_guard(self, ranker: Ranker, lists: TrainingLists) -> None:
        """The guard's out-of-fold test (``guard_folds``) into ``ranker``'s figures, where the guard is on; a tuner
        trains its trials without it and runs it once for the ranker it keeps."""
        if self.config.guard and self.config.guard_folds >= 2:
            ranker.cross_fitted_guard(lists, (dict(self.source_weights), self.config.blend_c), self.config.guard_folds)

    def uses_blend(self) -> bool:
        """Whether the rank blend orders the lists: ``guard`` on and the ranker's served score did not beat the blend
        (per-list NDCG@20, one-sided paired t-test, p < ``guard_p``; out of fold over every list with
        ``guard_folds``, else on the split's validation lists). A ranker saved without
        that comparison (an older artifact) keeps its own order."""
        g = self.ranker.metrics.get("guard") if self.ranker is not None else None
        if not (self.config.guard and g):
            return False
        return not (g["ndcg_diff"] > 0.0 and g["p_better"] < self.config.guard_p)

    def blend(self, cands: list[Merged]) -> np.ndarray:
        """The rank blend's scores (the ``weighted_rrf`` scorer's sums, the same float operations)."""
        w, c = self.source_weights, self.config.blend_c
        return np.array([sum(w.get(s, 1.0) / (c + rank + 1) for s, (rank, _) in m.hits.items()) for m in cands],
                        np.float64)

    def blend_arrays(self, m: MergedArrays) -> np.ndarray:
        """:meth:`blend` on merged arrays: each source's term added in source order, as ``weighted_rrf`` adds them."""
        weights = self.source_weights
        return rrf_sums(m, lambda name: weights.get(name, 1.0), self.config.blend_c)

    def features(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        assert self.ranker is not None
        return feature_matrix(self.ranker.source_names, request, state, cands)

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        if self.ranker is None:
            raise RuntimeError(f"{self.name}: the pipeline was not fitted")
        guarded = self.uses_blend()
        if guarded and not (request.explain and cands):
            return self.blend(cands)
        X = self.features(request, state, cands)
        if not (request.explain and cands):
            return self.ranker.score(X)
        scores, p_join = self.ranker.score_with_join(X)
        for m, p in zip(cands, p_join.tolist(), strict=True):
            m.features["p_join"] = round(float(p), 6)
        return self.blend(cands) if guarded else scores

    def score_batch(self, requests: list[Request], state: WorldState, lists: list[list[Merged]]
                    ) -> list[np.ndarray]:
        """One feature matrix and one prediction for the whole batch (trees score each row alone: the same
        scores as :meth:`score` per list), and for lists asking for explanations the calibrated ``p(join)`` of each
        candidate, as :meth:`score` writes it."""
        if self.ranker is None:
            raise RuntimeError(f"{self.name}: the pipeline was not fitted")
        if self.uses_blend():
            return [self.score(r, state, c) for r, c in zip(requests, lists, strict=True)]
        mats = [self.features(r, state, c) for r, c in zip(requests, lists, strict=True)]
        if not any(r.explain and c for r, c in zip(requests, lists, strict=True)):
            return self.ranker.score_lists(mats)
        bounds = np.cumsum([0, *(len(c) for c in lists)])
        scores, p_join = self.ranker.score_with_join(np.vstack(mats))  # as score() writes it, list by list
        for i, (r, cands) in enumerate(zip(requests, lists, strict=True)):
            if r.explain:
                for m, p in zip(cands, p_join[bounds[i]:bounds[i + 1]].tolist(), strict=True):
                    m.features["p_join"] = round(float(p), 6)
        return [scores[bounds[i]:bounds[i + 1]] for i in range(len(lists))]

    def score_arrays(self, requests: list[Request], state: WorldState, lists: list[MergedArrays]
                     ) -> list[np.ndarray] | None:
        """:meth:`score_batch` on merged arrays: the same feature rows (:func:`feature_matrix_arrays`), one
        prediction for the batch. None (candidate objects) when a request asks for explanations."""
        if self.ranker is None:
            raise RuntimeError(f"{self.name}: the pipeline was not fitted")
        if any(r.explain for r in requests):
            return None
        if self.uses_blend():
            return [self.blend_arrays(m) for m in lists]
        names = self.ranker.source_names
        mats = [feature_matrix_arrays(names, r, state, m) for r, m in zip(requests, lists, strict=True)]
        return self.ranker.score_lists(mats)

    def fitted(self) -> dict[str, Any]:
        """Validation figures and feature importance of the fitted ranker (for reports and manifests)."""
        if self.ranker is None:
            return {}
        return {**self.ranker.metrics, "order_used": "blend" if self.uses_blend() else "ranker"}
