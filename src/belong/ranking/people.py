"""``people_ranker``: people you may know ordered by the learned chance that a friendship forms.

:meth:`PeopleRanker.fit` trains a :class:`~belong.ranking.ranker.Ranker` (the order objective plus the calibrated
binary ``p(edge)``, reported as ``p_join``) on lists of a fresh copy of its own pipeline's candidate stage over a
validation cut of the *training* friendship graph (:mod:`belong.ranking.people_lists`: a share of the training
edges hidden at random, or the latest friendships by time, cut with :func:`belong.state.as_of`):
``belong evaluate --model pipeline:people_ranked`` trains it inside ``fit(train)`` without seeing
the test edges, ``belong train`` on a store. Safety rules are filters: they run before scoring, unchanged.
With ``guard`` (default) the scorer keeps the people blend's order where the learned order did not beat it on the
ranker's own training lists, each scored by a ranker fitted without it (one-sided paired t-test,
``guard_p``, ``guard_folds``; ``fitted()["order_used"]`` says which).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import ComponentConfig, Progress, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.dataset import TrainingLists
from belong.ranking.learned import BlendGuardedRanker
from belong.ranking.people_lists import BLEND_C, HOLDOUT_BY, build_lists, feature_matrix
from belong.state import WorldState

MIN_LISTS = 10  # a time cut with fewer lists that hold a positive falls back to the random cut (holdout_by auto)


class PeopleRankerConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    holdout: float = 0.2  # share of the training friendships hidden to label the lists
    holdout_by: str = "auto"  # random | time | auto (time when friendship times span >= min_span_days)
    min_span_days: float = 7.0
    users: int = 2000  # validation users (lists) at most
    objectives: dict[str, float] = {}  # {join = w}: add w * calibrated p(edge) to the order's margin
    calibration: str = "isotonic"  # isotonic | platt
    num_leaves: int = 31
    learning_rate: float = 0.05
    rounds: int = 300
    min_data_in_leaf: int = 50
    seed: int = 0
    threads: int = 0  # LightGBM threads; 0: every core
    order: str = "rank_xendcg"  # rank_xendcg | lambdarank
    # keep the rank blend (weighted RRF, c = 10) where the learned order does not beat it on the ranker's own
    # lists (NDCG@20, the test below): never worse than the blend on data it was not made for
    guard: bool = True
    # the guard's test: the served score against the blend out of fold over every list (folds by list; 0: the
    # learned order's NDCG@20 against the blend's on the split's validation lists), one-sided paired t p < guard_p
    guard_p: float = 0.05
    guard_folds: int = 5


@register("scorer", "people_ranker")
class PeopleRanker(BlendGuardedRanker):
    """score = ranking-objective margin (+ weighted calibrated p(edge)); see :mod:`belong.ranking.people_lists`."""

    Config = PeopleRankerConfig
    config: PeopleRankerConfig
    ranker_kind = "people"
    blend_c = BLEND_C
    objectives_known = "people know: join"

    def check_config(self) -> None:
        c = self.config
        if c.holdout_by not in HOLDOUT_BY:
            raise ValidationError(f"{self.name}.holdout_by",
                                  f"must be one of {', '.join(HOLDOUT_BY)}, got {c.holdout_by!r}")

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        c = self.config

        def lists_by(by: str) -> TrainingLists:
            return build_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed, by=by,
                               min_span_days=c.min_span_days, progress=progress, weights=self.source_weights)

        lists = lists_by(c.holdout_by)
        found = int((np.add.reduceat(lists.y, np.r_[0, np.cumsum(lists.groups)[:-1]]) > 0).sum()) \
            if lists.groups.size else 0
        if c.holdout_by == "auto" and lists.stats.get("holdout_by") == "time" and found < MIN_LISTS:
            # friendships formed after the cut that the candidate stage cannot reach (e.g. made-up times: only
            # between accounts created after it): learn from a random cut of the same graph instead
            lists = lists_by("random")
            lists.stats["holdout_fallback"] = (f"time cut: {found} lists with a positive (< {MIN_LISTS}); "
                                               "random cut used")
        self.ranker = self.train_ranker(lists)

    def features(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        assert self.ranker is not None
        return feature_matrix(self.ranker.source_names, request, state, cands, self.source_weights)
