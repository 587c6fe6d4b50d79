"""What the people and content rankers share: the :class:`BlendGuardedRanker` scorer base (config checks, the
:class:`~belong.ranking.ranker.Ranker` it trains, the rank blend it falls back to, scoring with ``p_join``) and the
pieces of their list builders (source columns and gaps of a feature row, the sampled users' candidate lists).

The configs stay one class per scorer (:class:`~belong.ranking.people.PeopleRankerConfig`,
:class:`~belong.ranking.content.ContentRankerConfig`): a shared msgspec base would put its fields first and change
the order of the people ranker's fields in artifacts' manifests.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import ComponentConfig, Scorer
from belong.pipeline.types import Merged, Request
from belong.ranking.dataset import TrainingLists
from belong.ranking.ranker import ORDER_OBJECTIVES, Ranker, check_guard
from belong.state import WorldState


class BlendGuardedRanker(Scorer):
    """A learned order over a surface's candidates that keeps the surface's rank blend (weighted RRF, c =
    :attr:`blend_c`) where the served score did not beat it out of fold over the ranker's lists (``guard``).

    A subclass names its ranker's ``kind``, its blend's ``blend_c``, the message for an unknown objective, whether
    it scores with the blend when it holds no ranker (else: an error), and its feature rows (:meth:`features`); its
    config holds ``holdout``, ``users``, ``objectives``, ``calibration``, the LightGBM settings, ``order``,
    ``guard``, ``guard_p`` and ``guard_folds``."""

    ranker_kind: ClassVar[str] = ""
    blend_c: ClassVar[float] = 60.0
    objectives_known: ClassVar[str] = "join"  # after "unknown objective 'x'; " in the error
    blend_without_ranker: ClassVar[bool] = False

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        self.ranker: Ranker | None = None
        c: Any = self.config
        if not 0.0 < c.holdout < 1.0:
            raise ValidationError(f"{self.name}.holdout", f"must be between 0 and 1, got {c.holdout}")
        self.check_config()
        if c.order not in ORDER_OBJECTIVES:
            raise ValidationError(f"{self.name}.order",
                                  f"must be one of {', '.join(ORDER_OBJECTIVES)}, got {c.order!r}")
        if c.users < 10:
            raise ValidationError(f"{self.name}.users", f"must be >= 10, got {c.users}")
        if c.threads < 0:
            raise ValidationError(f"{self.name}.threads", f"must be >= 0 (0: every core), got {c.threads}")
        check_guard(self.name, c.guard_p, c.guard_folds)
        bad = sorted(set(c.objectives) - {"join"})
        if bad:
            raise ValidationError(f"{self.name}.objectives", f"unknown objective {bad[0]!r}; {self.objectives_known}")

    def check_config(self) -> None:
        """The subclass's own config checks (run after ``holdout``'s). Default: none."""

    def new_ranker(self) -> Ranker:
        c: Any = self.config
        r = Ranker(num_leaves=c.num_leaves, learning_rate=c.learning_rate, rounds=c.rounds,
                   min_data_in_leaf=c.min_data_in_leaf, seed=c.seed, calibration=c.calibration,
                   objectives=c.objectives, threads=c.threads, order=c.order)
        r.kind = self.ranker_kind
        return r

    def train_ranker(self, lists: TrainingLists) -> Ranker:
        """A new ranker fitted on ``lists`` (their ``blend`` column is the blend), with the guard's out-of-fold
        test where the guard is on and ``guard_folds >= 2``."""
        c: Any = self.config
        ranker = self.new_ranker().fit(lists)
        if c.guard and c.guard_folds >= 2:
            ranker.cross_fitted_guard(lists, None, c.guard_folds)
        return ranker

    def uses_blend(self) -> bool:
        """Whether the blend orders the lists: no ranker (where :attr:`blend_without_ranker`), or the guard kept it:
        the served score did not beat the blend out of fold over every list (per-list NDCG@20, one-sided paired
        t-test, p < ``guard_p``; ``guard_folds``). With ``guard_folds = 0``, and in rankers saved before the
        out-of-fold test, the rule is the learned order's NDCG@20 above the blend's on the split's validation
        lists."""
        if self.ranker is None:
            return self.blend_without_ranker
        m = self.ranker.metrics
        c: Any = self.config
        if not (c.guard and "blend" in m):
            return False
        g = m.get("guard")
        if g and "folds" in g:
            return not (g["ndcg_diff"] > 0.0 and g["p_better"] < c.guard_p)
        return bool(m["ranker"]["ndcg@20"] <= m["blend"]["ndcg@20"])

    def blend(self, cands: list[Merged]) -> np.ndarray:
        """The shipped blend's score (weighted RRF, c = :attr:`blend_c`), in float64."""
        w = self.source_weights
        return np.array([sum(w.get(s, 1.0) / (self.blend_c + rank + 1) for s, (rank, _) in m.hits.items())
                         for m in cands], np.float64)

    def features(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        """The ranker's feature rows of ``cands``."""
        raise NotImplementedError

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        if self.ranker is None and not self.blend_without_ranker:
            raise RuntimeError(f"{self.name}: the pipeline was not fitted")
        guarded = self.uses_blend()
        if self.ranker is None or (guarded and not (request.explain and cands)):
            return self.blend(cands)
        X = self.features(request, state, cands)
        if not (request.explain and cands):
            return self.ranker.score(X)
        scores, p = self.ranker.score_with_join(X)
        if guarded:
            scores = self.blend(cands)
        for m, pp in zip(cands, p.tolist(), strict=True):
            m.features["p_join"] = round(float(pp), 6)  # the API's one probability field (content: p(engage))
        return scores

    def fitted(self) -> dict[str, Any]:
        if self.ranker is None:
            return {}
        return {**self.ranker.metrics, "order_used": "blend" if self.uses_blend() else "ranker"}
