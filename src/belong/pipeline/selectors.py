"""Shipped selectors: ``top_k`` (best k by score, optional cap per main source and reserved exploration slots)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from belong.pipeline.components import ComponentConfig, Selector, register
from belong.pipeline.types import Merged, Request


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
    best_first = True

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

    def select_arrays(self, request: Request, items: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        """Plain top-k (no cap, no reserved slots): the best ``k`` positions by score, ties by item."""
        if self.config.max_per_source or any(n > 0 for n in self.config.min_per_source.values()):
            return None
        return np.lexsort((items, -scores))[: request.k]
