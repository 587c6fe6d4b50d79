"""``tuned_rrf``: the weighted reciprocal-rank blend with its source weights tuned on a validation cut at fit time.

A fixed blend cannot suit every world: on ML-1M (no real times) the co_membership source alone beats the blend
of the shipped weights, while on hetrec-lastfm's temporal protocol lowering trending and iALS costs a third of the
recall (docs/COMMUNITIES_QUALITY.md). :meth:`TunedRRF.fit` labels lists of a fresh copy of the pipeline's
candidate stage over a validation cut carved from the *training* state (:func:`belong.ranking.dataset.build_lists`:
a time cut where joins have real times, a random one otherwise — the ranker's cut), then moves one source weight
at a time over ``multipliers`` x its shipped weight (coordinate ascent, ``passes`` rounds), keeping a move only
when it raises the lists' mean NDCG@20 by more than ``min_gain`` with a paired t-test over the lists at p <
``max_p`` (on hetrec-lastfm's 489 time-cut lists, unchecked moves worth +0.0028 there did not hold on the test).
What it finds is written into the scorer's config as ``tuned``, a multiplier of each source's own weight (so
``Pipeline.to_dict`` and a model artifact carry it, loading does not tune again, and an experiment arm that sets a
source's weight still moves it); ``tuning`` records the validation figures before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import Progress, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.scorers import WeightedRRF, WeightedRRFConfig
from belong.ranking.dataset import HOLDOUT_BY, TrainingLists, build_lists
from belong.ranking.list_parts import check_cut_settings
from belong.ranking.ranker import CUTOFF
from belong.state import WorldState


class TunedRRFConfig(WeightedRRFConfig, kw_only=True, forbid_unknown_fields=True):
    users: int = 800  # validation lists at most
    holdout: float = 0.15  # share of memberships held out to label the lists
    holdout_by: str = "auto"  # random | time | auto (see belong.ranking.dataset)
    #: of each source's shipped weight
    multipliers: list[float] = msgspec.field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    passes: int = 2
    min_gain: float = 0.0005  # NDCG@20 on the validation lists a move must add
    max_p: float = 0.01  # ... with a paired t-test over the lists below this (1: no test)
    seed: int = 0
    #: what :meth:`TunedRRF.fit` found: a multiplier of each source's own weight (so an experiment arm that sets
    #: ``sources.NAME.weight`` still moves that source's weight: the arm's weight times the tuned multiplier)
    tuned: dict[str, float] = {}


def _rrf_metrics(ranks: np.ndarray, w: np.ndarray, c: float, y: np.ndarray, off: np.ndarray,
                 n_pos: np.ndarray, k: int = CUTOFF) -> tuple[float, float]:
    """Mean recall@k and NDCG@k of the blend ``sum_s w_s / (c + rank_s + 1)`` over the lists (held-out positives
    as the denominator: missed ones count)."""
    rec, ndcg = _rrf_per_list(ranks, w, c, y, off, n_pos, k)
    return float(rec.mean()) if rec.size else 0.0, float(ndcg.mean()) if ndcg.size else 0.0


def _rrf_per_list(ranks: np.ndarray, w: np.ndarray, c: float, y: np.ndarray, off: np.ndarray,
                  n_pos: np.ndarray, k: int = CUTOFF) -> tuple[np.ndarray, np.ndarray]:
    """Recall@k and NDCG@k of the blend per list."""
    contrib = np.where(np.isnan(ranks), 0.0, w[None, :] / (c + np.nan_to_num(ranks) + 1.0))
    score = contrib.sum(axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    n = off.size - 1
    rec, ndcg = np.zeros(n), np.zeros(n)
    for i in range(n):
        s, lab = score[off[i]:off[i + 1]], y[off[i]:off[i + 1]]
        top = np.lexsort((np.arange(s.size), -s))[:k]
        hits = lab[top]
        denom = max(int(n_pos[i]), 1)
        rec[i] = hits.sum() / denom
        ndcg[i] = float((hits * disc[:hits.size]).sum() / disc[:min(denom, k)].sum())
    return rec, ndcg


def tune_weights(lists: TrainingLists, base: dict[str, float], c: float, multipliers: list[float], passes: int,
                 min_gain: float, max_p: float = 1.0) -> tuple[dict[str, float], dict[str, Any]]:
    """Coordinate ascent over ``multipliers`` x ``base`` weight per source on the lists' NDCG@20, a move kept when
    it adds more than ``min_gain`` and its paired t-test over the lists gives p < ``max_p``; returns the weights and
    the figures (``before`` / ``after``: recall@20, ndcg@20)."""
    from scipy.stats import ttest_rel

    names = list(lists.source_names)
    cols = [lists.feature_names.index(f"{s}_rank") for s in names]
    ranks = lists.X[:, cols].astype(np.float64)
    y = lists.y.astype(np.float64)
    off = np.r_[0, np.cumsum(lists.groups)].astype(np.int64)
    w0 = np.array([base.get(s, 1.0) for s in names], np.float64)
    w = w0.copy()
    found = ~np.isnan(ranks).all(axis=0)  # sources that found nothing in any list keep their weight
    before = _rrf_metrics(ranks, w, c, y, off, lists.positives_held)
    best = before[1]
    per = _rrf_per_list(ranks, w, c, y, off, lists.positives_held)[1]
    for _ in range(passes):
        moved = False
        for j in np.flatnonzero(found & (w0 > 0)).tolist():
            for m in multipliers:
                if m * w0[j] == w[j]:
                    continue
                trial = w.copy()
                trial[j] = m * w0[j]
                if not trial.any():
                    continue
                trial_per = _rrf_per_list(ranks, trial, c, y, off, lists.positives_held)[1]
                ndcg = float(trial_per.mean())
                if ndcg > best + min_gain and (max_p >= 1.0 or float(ttest_rel(trial_per, per).pvalue) < max_p):
                    best, w, per, moved = ndcg, trial, trial_per, True
        if not moved:
            break
    after = _rrf_metrics(ranks, w, c, y, off, lists.positives_held)
    figures = {"lists": int(lists.groups.size), "holdout_by": lists.stats.get("holdout_by"),
               "before": {f"recall@{CUTOFF}": round(before[0], 5), f"ndcg@{CUTOFF}": round(before[1], 5)},
               "after": {f"recall@{CUTOFF}": round(after[0], 5), f"ndcg@{CUTOFF}": round(after[1], 5)}}
    return {s: float(v) for s, v in zip(names, w.tolist(), strict=True)}, figures


@register("scorer", "tuned_rrf")
class TunedRRF(WeightedRRF):
    """:class:`~belong.pipeline.scorers.WeightedRRF` whose weights :meth:`fit` tunes on a validation cut."""

    Config = TunedRRFConfig
    config: TunedRRFConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        c = self.config
        check_cut_settings(self.name, c.holdout_by, HOLDOUT_BY, c.holdout, c.users)
        if not c.multipliers or any(m < 0 for m in c.multipliers):
            raise ValidationError(f"{self.name}.multipliers", f"must be non-empty and >= 0, got {c.multipliers}")
        if c.passes < 1:
            raise ValidationError(f"{self.name}.passes", f"must be >= 1, got {c.passes}")
        self.tuning: dict[str, Any] = {}

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        """Tune the source weights on lists of ``upstream()`` over a validation cut of ``state``; a state too
        small for a cut keeps the shipped weights (``tuning["skipped"]`` says why)."""
        c = self.config
        base = {s: WeightedRRF.weight(self, s) for s in self.source_weights}  # untuned: a refit starts afresh
        try:
            lists = build_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed,
                                by=c.holdout_by, progress=progress)
        except ValidationError as e:
            self.tuning = {"skipped": str(e)}
            return
        if lists.groups.size < 10 or lists.y.sum() == 0:
            self.tuning = {"skipped": f"{lists.groups.size} validation lists, {int(lists.y.sum())} positives"}
            return
        weights, self.tuning = tune_weights(lists, base, c.c, list(c.multipliers), c.passes, c.min_gain,
                                            c.max_p)
        self.tuning["weights"] = weights
        tuned = {s: (w / base[s] if base[s] else 1.0) for s, w in weights.items()}
        self.config = msgspec.structs.replace(c, tuned=tuned)

    def weight(self, source: str) -> float:
        return super().weight(source) * self.config.tuned.get(source, 1.0)

    def fitted(self) -> dict[str, Any]:
        return dict(self.tuning)
