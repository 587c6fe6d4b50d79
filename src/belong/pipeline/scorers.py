"""Shipped scorers: ``weighted_rrf``, the blend of the sources' ranks until a learned ranker is trained."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from belong.pipeline.components import ComponentConfig, Scorer, register
from belong.pipeline.types import Merged, MergedArrays, Request
from belong.state import WorldState


def rrf_sums(m: MergedArrays, weight: Callable[[str], float], c: float) -> np.ndarray:
    """Weighted reciprocal-rank sums on a rank matrix: each source's ``weight(source) / (c + rank + 1)`` added in
    source order (the order of a candidate's hits), a missing source adding 0.0 (the object path's float
    operations, so the same scores)."""
    total = np.zeros(len(m))
    for j, name in enumerate(m.sources):
        rank = m.ranks[:, j]
        has = rank >= 0
        if has.any():
            term = np.zeros(len(m))
            term[has] = weight(name) / (c + rank[has] + 1)
            total += term
    return total


class WeightedRRFConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    c: float = 60.0  # rank offset: larger flattens the rank curve
    weights: dict[str, float] = {}  # per-source weight overrides (default: each source's own ``weight``)


@register("scorer", "weighted_rrf")
class WeightedRRF(Scorer):
    """score(item) = sum over the sources that found it of weight_s / (c + rank_s + 1)."""

    Config = WeightedRRFConfig
    config: WeightedRRFConfig

    def weight(self, source: str) -> float:
        return self.config.weights.get(source, self.source_weights.get(source, 1.0))

    def contributions(self, m: Merged) -> dict[str, float]:
        return {s: self.weight(s) / (self.config.c + rank + 1) for s, (rank, _) in m.hits.items()}

    def rank_contributions(self, ranks: dict[str, tuple[int, str]]) -> dict[str, float]:
        """:meth:`contributions` from each source's rank (``{source: (rank, ...)}``, as
        :meth:`Ranked.reasons <belong.pipeline.types.Ranked.reasons>` gives): the same numbers without reading the
        candidate's hits (a stored list's hits are made into candidates one by one when read)."""
        c = self.config.c
        return {s: self.weight(s) / (c + r[0] + 1) for s, r in ranks.items()}

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        return np.array([sum(self.contributions(m).values()) for m in cands], np.float64)

    reads_features = False

    def score_arrays(self, requests: list[Request], state: WorldState, lists: list[MergedArrays]
                     ) -> list[np.ndarray]:
        """The same sums on rank matrices: each source's term added in source order (the order of a candidate's
        hits), a missing source adding 0.0 — the same float operations, the same scores."""
        out = [rrf_sums(m, self.weight, self.config.c) for m in lists]
        return out
