"""``pixie``: Pixie-style random walks with restarts on the graph of users, communities and friendships.

Nodes are users and communities; edges are memberships (user - community) and friendships (user - user). Many
walkers start at the request's user and step together (vectorised); at each step a walker restarts at the user
with probability ``restart``. Visits to target nodes (communities, or users for the people surface) are counted,
and the walk stops early once ``n_v`` targets have been visited ``n_p`` times each (Pixie's early stopping) or
after ``max_steps`` steps in all. The user's own edges are read from the live state, so a fresh join or
friendship steers the very next walk; the rest of the graph is the one prepared.
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.pipeline.components import CandidateSource, SourceConfig, register
from belong.pipeline.types import Candidate, Reason, Request
from belong.state import WorldState


class PixieConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    walkers: int = 1000
    restart: float = 0.3
    max_steps: int = 60_000
    n_p: int = 20  # early stop: this many visits ...
    n_v: int = 200  # ... on this many targets
    friend_weight: float = 1.0  # a friend edge counts as this many membership edges when stepping from a user


@register("source", "pixie")
class Pixie(CandidateSource):
    """Communities (or people) the user's neighbourhood leads to most often on random walks."""

    Config = PixieConfig
    config: PixieConfig

    def prepare(self, state: WorldState) -> None:
        nu, nc = state.n_users, state.n_communities
        M = state.membership_csr().astype(np.float32)
        F = state.friend_csr().astype(np.float32) * np.float32(self.config.friend_weight)
        G = sp.bmat([[F, M], [M.T, None]], format="csr", dtype=np.float32)
        G.sum_duplicates()
        G.sort_indices()
        self.indptr = G.indptr.astype(np.int64)
        self.indices = G.indices.astype(np.int64)
        # cumulative weights per row for weighted neighbour sampling
        for_rows = np.repeat(np.arange(G.shape[0]), np.diff(G.indptr))
        cums = np.cumsum(G.data.astype(np.float64))
        row_start = np.r_[0.0, cums][G.indptr[:-1]]
        self.cum = cums - row_start[for_rows]
        self.row_total = np.r_[0.0, cums][G.indptr[1:]] - row_start
        self.n_users, self.n_nodes = nu, nu + nc
        self.uniform = bool(np.all(G.data == 1.0))

    def _step(self, cur: np.ndarray, rng: np.random.Generator, start_nbrs: np.ndarray,
              start_cum: np.ndarray | None, start: int) -> np.ndarray:
        nxt = np.empty_like(cur)
        at_start = cur == start
        if at_start.any():
            r = rng.random(int(at_start.sum())) * (start_nbrs.size if start_cum is None else start_cum[-1])
            if start_cum is None:  # every start edge weighs 1: the floor(r)-th, as the search would give
                nxt[at_start] = start_nbrs[np.minimum(r.astype(np.int64), start_nbrs.size - 1)]
            else:
                nxt[at_start] = start_nbrs[np.searchsorted(start_cum, r, side="right")]
        rest = ~at_start
        if rest.any():
            c = cur[rest]
            total = self.row_total[c]
            lo = self.indptr[c]
            r = rng.random(c.size) * total
            if self.uniform:  # all edges weigh 1: the r-th neighbour
                pick = self.indices[np.minimum(lo + r.astype(np.int64), self.indices.size - 1)]
                nxt[rest] = np.where(total <= 0, start, pick)
                return nxt
            # binary search inside each row's cumulative weights
            hi = self.indptr[c + 1] - 1
            lo_b = lo.copy()
            while True:
                active = lo_b < hi
                if not active.any():
                    break
                mid = (lo_b + hi) // 2
                go_right = self.cum[mid] <= r
                lo_b = np.where(active & go_right, mid + 1, lo_b)
                hi = np.where(active & ~go_right, mid, hi)
            dead = total <= 0
            pick = self.indices[np.minimum(lo_b, self.indices.size - 1)]
            nxt[rest] = np.where(dead, start, pick)
        return nxt

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        people = request.surface is Surface.PEOPLE
        if request.surface is Surface.CONTENT or p.idx is None or p.idx >= self.n_users:
            return []
        cfg = self.config
        comm_nodes = self.n_users + p.communities[p.communities < self.n_nodes - self.n_users]
        start_nbrs = np.r_[p.friends[p.friends < self.n_users], comm_nodes].astype(np.int64)
        if start_nbrs.size == 0:
            return []
        start_w = np.r_[np.full((p.friends < self.n_users).sum(), cfg.friend_weight), np.ones(comm_nodes.size)]
        start_cum = None if np.all(start_w == 1.0) else np.cumsum(start_w)  # None: pick uniformly
        start = p.idx
        rng = np.random.default_rng([request.seed, zlib.crc32(p.id.encode())])
        visits = np.zeros(self.n_nodes, np.int64)
        cur = np.full(cfg.walkers, start, np.int64)
        steps = 0
        pending: list[np.ndarray] = []  # positions since the last count: one bincount per check, not np.add.at per step
        while steps < cfg.max_steps:
            cur = self._step(cur, rng, start_nbrs, start_cum, start)
            restart = rng.random(cur.size) < cfg.restart
            cur[restart] = start
            steps += cur.size
            pending.append(cur)
            if steps % (cfg.walkers * 4) == 0:
                visits += np.bincount(np.concatenate(pending), minlength=self.n_nodes)
                pending = []
                tgt = visits[: self.n_users] if people else visits[self.n_users:]
                if int((tgt >= cfg.n_p).sum()) >= cfg.n_v:
                    break
        if pending:
            visits += np.bincount(np.concatenate(pending), minlength=self.n_nodes)
        if people:
            scores = visits[: self.n_users].astype(np.float64)
            exclude = np.r_[p.friends, [start]].astype(np.int64)
        else:
            scores = visits[self.n_users:].astype(np.float64)
            exclude = p.communities
        top, vals = self._top(scores, cfg.k, exclude=exclude)
        text = ("often reached through your friends and communities" if people
                else "where walks through your communities and friends keep landing")
        total = max(float(steps), 1.0)
        name = self.name
        if not request.explain:  # batch work (training lists, evaluation): one shared reason, no per-item facts
            shared = Reason(text)
            return [Candidate(i, name, v / total, shared) for i, v in zip(top.tolist(), vals.tolist(), strict=True)]
        return [Candidate(i, name, v / total, Reason(text, {"visits": int(v), "steps": steps}))
                for i, v in zip(top.tolist(), vals.tolist(), strict=True)]
