"""Blending until a learned ranker exists: a social-proof hydrator, weighted reciprocal rank fusion, top-k."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

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
        if not cands:
            return
        p = state.profile(request)
        people = request.surface is Surface.PEOPLE
        if people:
            targets = [m.item for m in cands]
        elif request.surface is Surface.COMMUNITIES:
            targets = [m.item for m in cands]
        else:
            targets = [state.x_community[m.item] for m in cands]
        near = self._friend_counts(state, p.friends, targets, people)
        if people:
            for m, t, n in zip(cands, targets, near, strict=True):
                m.features["friends"] = float(state.friends_of(t).size)
                m.features["mutual_friends"] = float(n)
            return
        sizes = state.member_counts(np.asarray(targets, np.int64)).tolist()
        for m, size, n in zip(cands, sizes, near, strict=True):
            m.features["members"] = float(size)
            m.features["friends_in"] = float(n)

    def revision(self, request: Request, state: WorldState, cands: list[Merged]) -> Hashable | None:
        """Communities: the user's counter (their friend list) and each candidate's member counter (its members,
        so also which of the friends are in it). Other surfaces: None (always hydrated)."""
        if request.surface is not Surface.COMMUNITIES:
            return None
        p = state.profile(request)
        mrev = state.members_rev
        return (p.idx, state.user_rev.get(p.idx, 0), tuple([mrev.get(m.item, 0) for m in cands]))

    @staticmethod
    def _friend_counts(state: WorldState, friends: np.ndarray, targets: list[int], people: bool) -> list[int]:
        """For each target, how many of ``friends`` relate to it (are its members / its friends): the friends'
        lists concatenated once, then counted for the targets only."""
        if not friends.size:
            return [0] * len(targets)
        rows = [state.friends_of(f) if people else state.communities_of(f) for f in friends.tolist()]
        linked = np.concatenate(rows) if rows else np.empty(0, np.int64)
        if not linked.size:
            return [0] * len(targets)
        t = np.asarray(targets, np.int64)
        st = np.sort(t)  # repeated targets (content of one community) count at their first sorted position
        pos = np.searchsorted(st, linked)
        pos[pos >= st.size] = 0
        hit = st[pos] == linked
        counts = np.bincount(pos[hit], minlength=st.size)
        return counts[np.searchsorted(st, t)].tolist()


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

    mutates = False
    deterministic = True

    def select(self, request: Request, cands: list[Merged], scores: np.ndarray) -> list[tuple[Merged, float]]:
        sc = scores.tolist() if isinstance(scores, np.ndarray) else [float(x) for x in scores]  # no numpy scalars
        order = sorted(range(len(cands)), key=lambda i: (-sc[i], cands[i].item))
        k = request.k
        cap = self.config.max_per_source
        quota = {s: n for s, n in self.config.min_per_source.items() if n > 0}
        if not cap and not quota:  # the common case: plain top-k
            return [(cands[i], sc[i]) for i in order[:k]]
        if sum(quota.values()) >= k:
            quota = {}
        reserved: set[int] = set()
        for src, n in quota.items():
            reserved.update([i for i in order if src in cands[i].hits and i not in reserved][:n])
        used: Counter[str] = Counter()
        chosen: list[int] = []
        pending = len(reserved)  # reserved items not chosen yet
        for i in order:
            if len(chosen) + pending >= k:
                break
            is_reserved = i in reserved
            if cap:
                hits = cands[i].hits
                main = min(hits, key=lambda s: hits[s][0])
                if not is_reserved and used[main] >= cap:
                    continue
                used[main] += 1
            if is_reserved:
                pending -= 1
            chosen.append(i)
        picked = set(chosen)
        chosen.extend(r for r in reserved if r not in picked)
        chosen.sort(key=lambda i: (-sc[i], cands[i].item))
        return [(cands[i], sc[i]) for i in chosen[:k]]
