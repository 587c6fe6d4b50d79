"""``content_ranker``: content to see, ordered by the learned chance that the person engages with it next.

:meth:`ContentRanker.fit` trains a :class:`~belong.ranking.ranker.Ranker` (the order objective on graded labels —
2 reaction, 1 view — plus the calibrated binary ``p(engage)``, reported as ``p_join``) on lists of a fresh copy of
its own pipeline's candidate stage over a time cut of the *training* state's content engagements
(:mod:`belong.ranking.content_lists`): ``belong evaluate --model pipeline:content_ranked`` trains it inside
``fit(train)`` without seeing the test engagements, ``belong train`` on a store. Safety rules are filters: they run
before scoring, unchanged. With ``guard`` (default) the scorer keeps the content blend's order where the learned
order did not beat it on the ranker's own validation lists (``fitted()["order_used"]`` says which).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import ComponentConfig, Progress, Scorer, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.content_lists import BLEND_C, build_lists, feature_matrix
from belong.ranking.ranker import ORDER_OBJECTIVES, Ranker
from belong.state import WorldState


class ContentRankerConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    holdout: float = 0.2  # share of the training engagements (the latest, by time) that label the lists
    users: int = 2000  # validation people (lists) at most
    objectives: dict[str, float] = {}  # {join = w}: add w * calibrated p(engage) to the order's margin
    calibration: str = "isotonic"  # isotonic | platt
    num_leaves: int = 31
    learning_rate: float = 0.05
    rounds: int = 300
    min_data_in_leaf: int = 50
    seed: int = 0
    threads: int = 0  # LightGBM threads; 0: every core
    order: str = "rank_xendcg"  # rank_xendcg | lambdarank
    # keep the rank blend (weighted RRF, c = 60) where the learned order does not beat it on the ranker's own
    # validation lists (NDCG@20): never worse than the blend on data it was not made for
    guard: bool = True


@register("scorer", "content_ranker")
class ContentRanker(Scorer):
    """score = ranking-objective margin (+ weighted calibrated p(engage)); see :mod:`belong.ranking.content_lists`."""

    Config = ContentRankerConfig
    config: ContentRankerConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        self.ranker: Ranker | None = None
        #: why the blend is used without a ranker (too little engagement at fit); None when a ranker was trained
        self.fallback: str | None = None
        c = self.config
        if not 0.0 < c.holdout < 1.0:
            raise ValidationError(f"{self.name}.holdout", f"must be between 0 and 1, got {c.holdout}")
        if c.order not in ORDER_OBJECTIVES:
            raise ValidationError(f"{self.name}.order",
                                  f"must be one of {', '.join(ORDER_OBJECTIVES)}, got {c.order!r}")
        if c.users < 10:
            raise ValidationError(f"{self.name}.users", f"must be >= 10, got {c.users}")
        if c.threads < 0:
            raise ValidationError(f"{self.name}.threads", f"must be >= 0 (0: every core), got {c.threads}")
        bad = sorted(set(c.objectives) - {"join"})
        if bad:
            raise ValidationError(f"{self.name}.objectives",
                                  f"unknown objective {bad[0]!r}; content knows: join (p(engage))")

    def new_ranker(self) -> Ranker:
        c = self.config
        r = Ranker(num_leaves=c.num_leaves, learning_rate=c.learning_rate, rounds=c.rounds,
                   min_data_in_leaf=c.min_data_in_leaf, seed=c.seed, calibration=c.calibration,
                   objectives=c.objectives, threads=c.threads, order=c.order)
        r.kind = "content"
        return r

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        """Train on the time cut's lists; with too little engagement to learn from (no content events, fewer than
        10 lists with a next engagement: a new store) keep the blend and say why (``fitted()["fallback"]``), so a
        server starts on any store."""
        c = self.config
        self.fallback = None
        try:
            lists = build_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed,
                                progress=progress, weights=self.source_weights)
            self.ranker = self.new_ranker().fit(lists)
        except ValidationError as exc:
            if exc.field != "training":
                raise
            self.ranker, self.fallback = None, exc.reason

    def uses_blend(self) -> bool:
        """Whether the blend orders the lists: no ranker (too little data at fit, or an artifact saved without one),
        or the guard kept it (the learned order did not beat it on the validation lists)."""
        if self.ranker is None:
            return True
        m = self.ranker.metrics
        return bool(self.config.guard and "blend" in m and m["ranker"]["ndcg@20"] <= m["blend"]["ndcg@20"])

    def blend(self, cands: list[Merged]) -> np.ndarray:
        """The shipped content blend's score (weighted RRF, c = :data:`BLEND_C`), in float64."""
        w = self.source_weights
        return np.array([sum(w.get(s, 1.0) / (BLEND_C + rank + 1) for s, (rank, _) in m.hits.items())
                         for m in cands], np.float64)

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        guarded = self.uses_blend()
        if self.ranker is None or (guarded and not (request.explain and cands)):
            return self.blend(cands)
        X = feature_matrix(self.ranker.source_names, request, state, cands, self.source_weights)
        if not (request.explain and cands):
            return self.ranker.score(X)
        scores, p_engage = self.ranker.score_with_join(X)
        if guarded:
            scores = self.blend(cands)
        for m, p in zip(cands, p_engage.tolist(), strict=True):
            m.features["p_join"] = round(float(p), 6)  # here: p(engage), the API's one probability field
        return scores

    def score_batch(self, requests: list[Request], state: WorldState, lists: list[list[Merged]]
                    ) -> list[np.ndarray]:
        """One feature matrix and one prediction for the whole batch (trees score each row alone: the same scores
        as :meth:`score` per list); lists asking for explanations, or a guarded scorer, go one by one."""
        if self.ranker is None or any(r.explain for r in requests) or self.uses_blend():
            return super().score_batch(requests, state, lists)
        names, w = self.ranker.source_names, self.source_weights
        mats = [feature_matrix(names, r, state, c, w) for r, c in zip(requests, lists, strict=True)]
        bounds = np.cumsum([0, *(len(c) for c in lists)])
        if bounds[-1] == 0:
            return [np.zeros(0) for _ in lists]
        scores = self.ranker.score(np.vstack(mats))
        return [scores[bounds[i]:bounds[i + 1]] for i in range(len(lists))]

    def fitted(self) -> dict[str, Any]:
        if self.ranker is None:
            return {"order_used": "blend", **({"fallback": self.fallback} if self.fallback else {})}
        return {**self.ranker.metrics, "order_used": "blend" if self.uses_blend() else "ranker"}
