"""``mmr``: the selector that turns scored candidates into the shown list.

1. **Dedupe**: one entry per item (and per external id).
2. **MMR diversity** over item embeddings: repeatedly take the candidate maximising
   ``relevance * rel(i) - (1 - relevance) * max_sim(i, chosen)`` among the ``pool`` best; ``rel`` is the score
   scaled to [0, 1] within the pool, ``sim`` the cosine of embeddings learned in :meth:`prepare` (truncated SVD
   of the membership matrix for communities and content, of the friendship matrix for people).
3. **Per-source quotas**: at most ``quota[s]`` (else ``default_quota``; 0 = no cap) items whose main source
   (best rank) is ``s``.
4. **Exploration slot**: with probability ``epsilon`` the item at ``explore_slot`` is drawn uniformly from the
   candidates of ``explore_source`` (new communities) not yet chosen (epsilon-greedy). Every shown item gets
   ``features["propensity"]``, the probability that the policy put it at its position: ``1`` outside the slot,
   ``(1 - epsilon) [greedy] + epsilon / |pool| [in pool]`` in it (the distribution over the slot sums to 1,
   :func:`slot_distribution`), and ``features["explored"]`` (1 when drawn).
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.components import ComponentConfig, Selector, register
from belong.pipeline.types import Merged, Request
from belong.state import WorldState


class MMRConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    relevance: float = 0.9  # 1.0: no diversity (plain top-k)
    pool: int = 100  # best-scored candidates MMR considers
    dims: int = 32  # embedding dimensions
    quota: dict[str, int] = {}  # max items per main source
    default_quota: int = 0  # cap for sources not in ``quota`` (0: none)
    epsilon: float = 0.0  # exploration probability of the slot
    explore_slot: int = 3  # 1-based position of the exploration slot
    explore_source: str = "new_communities"
    seed: int = 0


def slot_distribution(greedy: int | None, pool: list[int], epsilon: float) -> dict[int, float]:
    """Probability of each item filling the exploration slot: sums to 1 when there is a greedy item; without one
    (a list shorter than the slot) the slot stays empty with probability ``1 - epsilon``."""
    out: dict[int, float] = {}
    eps = epsilon if pool else 0.0
    if greedy is not None:
        out[greedy] = 1.0 - eps
    for i in pool:
        out[i] = out.get(i, 0.0) + eps / len(pool)
    return out


def item_embeddings(state: WorldState, surface: Surface, dims: int, seed: int) -> np.ndarray:
    """Unit-norm item vectors from a truncated SVD of the surface's relation matrix (zeros when too small)."""
    if surface is Surface.PEOPLE:
        A = state.friend_csr().astype(np.float64)
    else:
        A = state.membership_csr().T.tocsr().astype(np.float64)  # communities x users
    n = A.shape[0]
    k = min(dims, min(A.shape) - 1)
    if k < 1 or A.nnz == 0:
        emb = np.zeros((n, 1))
    else:
        deg = np.asarray(A.sum(axis=1)).ravel()
        A = sp.diags(1.0 / np.sqrt(np.maximum(deg, 1.0))) @ A
        rng = np.random.default_rng(seed)
        u, s, _ = sp.linalg.svds(A, k=k, v0=rng.standard_normal(min(A.shape)))
        emb = u * s
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norm > 0, norm, 1.0)


@register("selector", "mmr")
class MMRSelector(Selector):
    """Dedupe, MMR diversity, per-source quotas and an epsilon-greedy exploration slot with propensities."""

    Config = MMRConfig
    config: MMRConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        if not 0.0 <= c.relevance <= 1.0:
            raise ValidationError(f"{self.name}.relevance", f"must be in [0, 1], got {c.relevance}")
        if not 0.0 <= c.epsilon < 1.0:
            raise ValidationError(f"{self.name}.epsilon", f"must be in [0, 1), got {c.epsilon}")
        if c.explore_slot < 1 or c.pool < 1 or c.dims < 1:
            raise ValidationError(self.name, "explore_slot, pool and dims must be >= 1")
        self.emb: dict[Surface, np.ndarray] = {}
        self.item_community: np.ndarray = np.zeros(0, np.int64)

    def prepare(self, state: WorldState) -> None:
        self.emb = {}
        if self.config.relevance < 1.0:
            for s in (Surface.COMMUNITIES, Surface.PEOPLE):
                self.emb[s] = item_embeddings(state, s, self.config.dims, self.config.seed)
        self.item_community = np.asarray(state.content.community, np.int64)

    def _vectors(self, surface: Surface, items: np.ndarray) -> np.ndarray | None:
        emb = self.emb.get(Surface.PEOPLE if surface is Surface.PEOPLE else Surface.COMMUNITIES)
        if emb is None:
            return None
        idx = self.item_community[items] if surface is Surface.CONTENT else items
        out = np.zeros((items.size, emb.shape[1]))
        ok = idx < emb.shape[0]
        out[ok] = emb[idx[ok]]
        return out

    def _cap(self, source: str) -> int:
        return self.config.quota.get(source, self.config.default_quota)

    def select(self, request: Request, cands: list[Merged], scores: np.ndarray) -> list[tuple[Merged, float]]:
        c = self.config
        seen: set[int] = set()
        order = []
        for i in sorted(range(len(cands)), key=lambda i: (-scores[i], cands[i].item)):
            if cands[i].item not in seen:
                seen.add(cands[i].item)
                order.append(i)
        pool = order[: max(c.pool, request.k)]
        if not pool:
            return []
        s = np.asarray(scores, np.float64)[pool]
        rel = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.ones(len(pool))
        vec = self._vectors(request.surface, np.array([cands[i].item for i in pool], np.int64))
        max_sim = np.full(len(pool), -1.0)
        used: Counter[str] = Counter()
        free = np.ones(len(pool), bool)
        chosen: list[int] = []  # positions in pool
        while len(chosen) < request.k and free.any():
            val = c.relevance * rel - (1 - c.relevance) * np.maximum(max_sim, 0.0) if vec is not None else rel.copy()
            val[~free] = -np.inf
            j = int(np.argmax(val))
            free[j] = False
            m = cands[pool[j]]
            main = min(m.hits, key=lambda n: m.hits[n][0]) if m.hits else ""
            cap = self._cap(main)
            if cap and used[main] >= cap:
                continue
            used[main] += 1
            chosen.append(j)
            if vec is not None:
                max_sim = np.maximum(max_sim, vec @ vec[j])
        out = [(cands[pool[j]], float(s[j])) for j in chosen]
        for m, _ in out:
            m.features["propensity"], m.features["explored"] = 1.0, 0.0
        self._explore(request, cands, out)
        return out

    def _explore(self, request: Request, cands: list[Merged], out: list[tuple[Merged, float]]) -> None:
        """Epsilon-greedy over the exploration source's candidates at the slot; records propensities."""
        c = self.config
        slot = c.explore_slot - 1
        if c.epsilon <= 0 or slot >= max(len(out), 1):
            return
        shown = {m.item for m, _ in out}
        pool = sorted((m for m in cands if c.explore_source in m.hits and m.item not in shown), key=lambda m: m.item)
        greedy = out[slot][0] if slot < len(out) else None
        dist = slot_distribution(greedy.item if greedy else None, [m.item for m in pool], c.epsilon)
        rng = np.random.default_rng([zlib.crc32(request.user_id.encode()), request.seed, c.seed])
        if pool and rng.random() < c.epsilon:
            pick = pool[int(rng.integers(len(pool)))]
            score = out[slot][1] if slot < len(out) else 0.0
            pick.features["explored"] = 1.0
            if slot < len(out):
                out[slot] = (pick, score)
            else:
                out.append((pick, score))
            chosen = pick
        elif greedy is not None:
            chosen = greedy
        else:
            return
        chosen.features["propensity"] = float(dist[chosen.item])
