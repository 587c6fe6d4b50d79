"""Blending until a learned ranker exists: a social-proof hydrator, weighted reciprocal rank fusion, top-k."""

from __future__ import annotations

from collections import Counter

import numpy as np

from belong.domain import Surface
from belong.pipeline.components import ComponentConfig, Hydrator, Scorer, Selector, register
from belong.pipeline.state import WorldState
from belong.pipeline.types import Merged, Request


@register("hydrator", "social")
class SocialHydrator(Hydrator):
    """Features every surface can show: size (members / friends) and how many of the user's friends relate.

    Friend counts come from one pass over the friends' own lists (not over each candidate's members), so the
    cost follows the user's neighbourhood, not the size of popular communities."""

    def hydrate(self, request: Request, state: WorldState, cands: list[Merged]) -> None:
        p = state.profile(request)
        people = request.surface is Surface.PEOPLE
        near: Counter[int] = Counter()
        for f in p.friends.tolist():
            near.update((state.friends_of(f) if people else state.communities_of(f)).tolist())
        for m in cands:
            if people:
                m.features["friends"] = float(state.friends_of(m.item).size)
                m.features["mutual_friends"] = float(near[m.item])
            else:
                c = m.item if request.surface is Surface.COMMUNITIES else state.x_community[m.item]
                m.features["members"] = float(state.members_of(c).size)
                m.features["friends_in"] = float(near[c])


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

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        return np.array([sum(self.contributions(m).values()) for m in cands], np.float64)


class TopKConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    max_per_source: int = 0  # at most this many items whose main source is the same (0: no cap)
    min_per_source: dict[str, int] = {}  # reserved slots, e.g. exploration: { new_communities = 1 }


@register("selector", "top_k")
class TopK(Selector):
    """Best ``request.k`` by score (ties by item index), with an optional cap per main source and reserved
    slots for sources that would otherwise never surface (exploration). Reserved slots apply only when
    ``k`` exceeds their total."""

    Config = TopKConfig
    config: TopKConfig

    def select(self, request: Request, cands: list[Merged], scores: np.ndarray) -> list[tuple[Merged, float]]:
        order = sorted(range(len(cands)), key=lambda i: (-scores[i], cands[i].item))
        cap = self.config.max_per_source
        quota = {s: n for s, n in self.config.min_per_source.items() if n > 0}
        if sum(quota.values()) >= request.k:
            quota = {}
        reserved: list[int] = []
        for src, n in quota.items():
            have = [i for i in order if src in cands[i].hits and i not in reserved]
            reserved.extend(have[:n])
        used: Counter[str] = Counter()
        chosen: list[int] = []
        for i in order:
            if len(chosen) + len([r for r in reserved if r not in chosen]) >= request.k:
                break
            m = cands[i]
            main = min(m.hits, key=lambda s: m.hits[s][0])
            if i not in reserved and cap and used[main] >= cap:
                continue
            used[main] += 1
            chosen.append(i)
        chosen.extend(r for r in reserved if r not in chosen)
        chosen.sort(key=lambda i: (-scores[i], cands[i].item))
        return [(cands[i], float(scores[i])) for i in chosen[: request.k]]
