"""``content_ranker``: content to see, ordered by the learned chance that the person engages with it next.

:meth:`ContentRanker.fit` trains a :class:`~belong.ranking.ranker.Ranker` (the order objective on graded labels —
2 reaction, 1 view — plus the calibrated binary ``p(engage)``, reported as ``p_join``) on lists of a fresh copy of
its own pipeline's candidate stage over a time cut of the *training* state's content engagements
(:mod:`belong.ranking.content_lists`): ``belong evaluate --model pipeline:content_ranked`` trains it inside
``fit(train)`` without seeing the test engagements, ``belong train`` on a store. Safety rules are filters: they run
before scoring, unchanged. With ``guard`` (default) the scorer keeps the content blend's order where the learned
order did not beat it on the ranker's own training lists, each scored by a ranker fitted without it (one-sided
paired t-test, ``guard_p``, ``guard_folds``; ``fitted()["order_used"]`` says which).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import ComponentConfig, Progress, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.content_lists import BLEND_C, build_lists, feature_matrix
from belong.ranking.learned import BlendGuardedRanker
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
    # lists (NDCG@20, the test below): never worse than the blend on data it was not made for
    guard: bool = True
    # the guard's test: the served score against the blend out of fold over every list (folds by list; 0: the
    # learned order's NDCG@20 against the blend's on the split's validation lists), one-sided paired t p < guard_p
    guard_p: float = 0.05
    guard_folds: int = 5


@register("scorer", "content_ranker")
class ContentRanker(BlendGuardedRanker):
    """score = ranking-objective margin (+ weighted calibrated p(engage)); see :mod:`belong.ranking.content_lists`.
    Without a ranker (too little data at fit, or an artifact saved without one) the blend orders the lists."""

    Config = ContentRankerConfig
    config: ContentRankerConfig
    ranker_kind = "content"
    blend_c = BLEND_C
    objectives_known = "content knows: join (p(engage))"
    blend_without_ranker = True

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        #: why the blend is used without a ranker (too little engagement at fit); None when a ranker was trained
        self.fallback: str | None = None

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        """Train on the time cut's lists; with too little engagement to learn from (no content events, fewer than
        10 lists with a next engagement: a new store) keep the blend and say why (``fitted()["fallback"]``), so a
        server starts on any store."""
        c = self.config
        self.fallback = None
        try:
            lists = build_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed,
                                progress=progress, weights=self.source_weights)
            self.ranker = self.train_ranker(lists)
        except ValidationError as exc:
            if exc.field != "training":
                raise
            self.ranker, self.fallback = None, exc.reason

    def features(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        assert self.ranker is not None
        return feature_matrix(self.ranker.source_names, request, state, cands, self.source_weights)

    def score_batch(self, requests: list[Request], state: WorldState, lists: list[list[Merged]]
                    ) -> list[np.ndarray]:
        """One feature matrix and one prediction for the whole batch (trees score each row alone: the same scores
        as :meth:`score` per list); lists asking for explanations, or a guarded scorer, go one by one."""
        if self.ranker is None or any(r.explain for r in requests) or self.uses_blend():
            return super().score_batch(requests, state, lists)
        return self.ranker.score_lists([self.features(r, state, c) for r, c in zip(requests, lists, strict=True)])

    def fitted(self) -> dict[str, Any]:
        if self.ranker is None:
            return {"order_used": "blend", **({"fallback": self.fallback} if self.fallback else {})}
        return super().fitted()
