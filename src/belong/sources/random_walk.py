"""``pixie``: Pixie-style random walks with restarts on the graph of users, communities and friendships.

Nodes are users and communities; edges are memberships (user - community) and friendships (user - user). Many
walkers start at the request's user and step together (vectorised); at each step a walker restarts at the user
with probability ``restart``. A batch of requests walks together too (:meth:`Pixie.propose_batch`: one array of
walkers over every user of the batch), each user's walk drawing from its own generator (seeded by the request's
``seed`` and the user id) exactly as it would alone: per step ``walkers`` uniforms to move (the walkers at the user
first, in order, then the others) and ``walkers`` to restart — so a batch gives each user the walk of one request.
Visits to target nodes (communities, or users for the people surface) are counted, and the walk stops early
once ``n_v`` targets have been visited ``n_p`` times each (Pixie's early stopping) or after ``max_steps`` steps in
all. The user's own edges are read from the live state, so a fresh join or
friendship steers the very next walk; the rest of the graph is the one prepared.
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.pipeline.components import CandidateSource, SourceConfig, register
from belong.pipeline.types import Candidate, Proposals, Reason, Request
from belong.state import WorldState

_BLOCK = 16_384  # walkers stepped together in one block of a batch


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
        self.has_dead = bool((self.row_total <= 0).any())

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

    def _setup(self, request: Request, state: WorldState
               ) -> tuple[int, np.ndarray, np.ndarray | None, np.random.Generator, np.ndarray] | None:
        """``(start node, its live neighbours, their cumulative weights or None when all weigh 1, the walk's
        generator, the items never proposed)`` of a request; None: no walk."""
        p = state.profile(request)
        people = request.surface is Surface.PEOPLE
        if request.surface is Surface.CONTENT or p.idx is None or p.idx >= self.n_users:
            return None
        cfg = self.config
        comm_nodes = self.n_users + p.communities[p.communities < self.n_nodes - self.n_users]
        start_nbrs = np.r_[p.friends[p.friends < self.n_users], comm_nodes].astype(np.int64)
        if start_nbrs.size == 0:
            return None
        start_w = np.r_[np.full((p.friends < self.n_users).sum(), cfg.friend_weight), np.ones(comm_nodes.size)]
        start_cum = None if np.all(start_w == 1.0) else np.cumsum(start_w)  # None: pick uniformly
        rng = np.random.default_rng([request.seed, zlib.crc32(p.id.encode())])
        exclude = np.r_[p.friends, [p.idx]].astype(np.int64) if people else p.communities
        return p.idx, start_nbrs, start_cum, rng, exclude

    def _walk(self, starts: list[int], nbrs: list[np.ndarray], cums: list[np.ndarray | None],
              rngs: list[np.random.Generator], people: bool) -> tuple[np.ndarray, np.ndarray]:
        """Walk from every start at once: ``(visits of the targets per start, int64 rows; steps per start)``.

        Each start's live neighbours are one extra row of the graph (so a walker at its start — after a restart
        or arriving there — steps through the same code); its uniforms come from its own generator, drawn four
        steps at a time: per step the move (walkers at the start first, then the others, each in walker order)
        then the restart — the sequence one walk alone draws."""
        cfg = self.config
        W, B = cfg.walkers, len(starts)
        n_t = self.n_users if people else self.n_nodes - self.n_users
        t_off = 0 if people else self.n_users
        sizes = np.array([a.size for a in nbrs], np.int64)
        nnz = self.indices.size
        v_lo = nnz + np.r_[0, np.cumsum(sizes)[:-1]]
        indices = np.concatenate([self.indices, *nbrs])
        lo = np.concatenate([self.indptr[:-1], v_lo])
        uniform = self.uniform and all(c is None for c in cums)
        if uniform:
            total = np.concatenate([self.row_total, sizes.astype(np.float64)])
            cum = hi = None
        else:
            total = np.concatenate([self.row_total, [float(a.size) if c is None else c[-1]
                                                     for a, c in zip(nbrs, cums, strict=True)]])
            cum = np.concatenate([self.cum, *(np.arange(1, a.size + 1, dtype=np.float64) if c is None else c
                                              for a, c in zip(nbrs, cums, strict=True))])
            hi = np.concatenate([self.indptr[1:] - 1, v_lo + sizes - 1])
        if indices.size < 2**30 and self.n_nodes + B < 2**30:  # positions and nodes fit 32 bits
            indices, lo = indices.astype(np.int32), lo.astype(np.int32)
            hi = None if hi is None else hi.astype(np.int32)
        visits = np.zeros((B, n_t), np.int64)
        steps = np.zeros(B, np.int64)
        block = max(1, _BLOCK // W)  # walkers of a few users at a time: the temporaries stay in cache
        for b0 in range(0, B, block):
            sl = slice(b0, min(B, b0 + block))
            steps[sl] = self._walk_block(np.asarray(starts[sl], np.int64), rngs[sl], visits[sl], b0, uniform,
                                         indices, lo, total, cum, hi, t_off)
        return visits, steps

    def _walk_block(self, starts: np.ndarray, rngs: list[np.random.Generator], visits: np.ndarray, v0: int,
                    uniform: bool, indices: np.ndarray, lo: np.ndarray, total: np.ndarray, cum: np.ndarray | None,
                    hi: np.ndarray | None, t_off: int) -> np.ndarray:
        """The walks of some starts (virtual rows ``n_nodes + v0 + i``); their target visits are added to
        ``visits`` (one row per start); returns their steps. Node and position arrays are ``indices``' integer
        type (32 bits where the graph allows: half the memory traffic of a step)."""
        cfg = self.config
        W, B = cfg.walkers, starts.size
        it = indices.dtype
        n_t = visits.shape[1]
        n_nodes = self.n_nodes
        n_steps = -(-cfg.max_steps // W)  # the walk alone steps while steps < max_steps
        steps = np.zeros(B, np.int64)
        active = np.arange(B)
        start = starts.astype(it)[:, None]
        vrow = (self.n_nodes + v0 + np.arange(B)).astype(it)[:, None]
        cur = np.repeat(start, W, axis=1)
        j = np.arange(W, dtype=it)[None, :]
        draws = np.empty((B, 4, 2, W))
        seen = np.empty((B, 4, W), it)
        wide = 2 * n_t > n_nodes
        counts = np.zeros((B, n_nodes) if wide else (0, 0), np.int64)
        t = 0
        while t < n_steps and active.size:
            chunk = min(4, n_steps - t)
            na = active.size
            for a, b in enumerate(active.tolist()):
                rngs[b].random(out=draws[a, :chunk])  # per step: the move's uniforms, then the restart's
            base = (np.arange(na, dtype=it) * (8 * W))[:, None]
            flat = draws.reshape(-1)
            for c in range(chunk):
                at = cur == start
                ca = np.cumsum(at, axis=1, dtype=it)
                off = base + 2 * c * W
                # the walker's uniform: those at the start first (in order), then the others (in order)
                idx = np.where(at, ca + (off - 1), (j + (ca[:, -1:] + off)) - ca)
                r = flat.take(idx)
                row = np.where(at, vrow, cur)
                tot = total.take(row)
                x = r * tot
                if uniform:  # every edge weighs 1: the floor(x)-th neighbour
                    nxt = indices.take(lo.take(row) + x.astype(it))
                else:  # binary search inside each row's cumulative weights
                    assert cum is not None and hi is not None
                    a_, h = lo.take(row), hi.take(row)
                    while True:
                        live = a_ < h
                        if not live.any():
                            break
                        mid = (a_ + h) // 2
                        right = cum.take(mid) <= x
                        a_ = np.where(live & right, mid + 1, a_)
                        h = np.where(live & ~right, mid, h)
                    nxt = indices.take(a_)
                back = draws[:na, c, 1] < cfg.restart
                if self.has_dead:  # a node without edges sends its walker home
                    back |= tot <= 0
                cur = np.where(back, start, nxt)
                seen[:na, c] = cur
            t += chunk
            steps[active] += chunk * W
            if wide:  # the targets are most nodes (people): count in place
                keys = seen[:na, :chunk] + (active * n_nodes).astype(it)[:, None, None]
                np.add.at(counts.reshape(-1), keys.reshape(-1), 1)
            else:  # a few targets: count the chunk's visits of targets (others in a spare column); people are
                # few where communities outnumber them (hetrec-lastfm's artists): nodes past the targets are others
                s = seen[:na, :chunk]
                keys = (np.where((s >= t_off) & (s < t_off + n_t), s - t_off, n_t)
                        + (np.arange(na, dtype=it) * (n_t + 1))[:, None, None])
                chunk_counts = np.bincount(keys.reshape(-1), minlength=na * (n_t + 1)).reshape(na, n_t + 1)
                if na == B:
                    visits += chunk_counts[:, :n_t]
                else:
                    visits[active] += chunk_counts[:, :n_t]
            if chunk == 4 and t % 4 == 0:  # the early stop, checked every four steps
                tgt = counts[:, t_off:t_off + n_t] if wide else visits
                done = ((tgt >= cfg.n_p).sum(axis=1) >= cfg.n_v)[active]
                if done.any():
                    keep = ~done
                    active, cur, start, vrow = active[keep], cur[keep], start[keep], vrow[keep]
        if wide:
            visits += counts[:, t_off:t_off + n_t]
        return steps

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

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """Every request's walk at once (see :meth:`_walk`): the candidates and scores of :meth:`generate` (which
        walks one request alone, with no copy of the graph: the serving path)."""
        out = [Proposals.empty() for _ in requests]
        for i, top, vals, steps in self._walks(requests, state):
            out[i] = Proposals(top, vals / max(float(steps), 1.0))
        return out

    def generate_batch(self, requests: list[Request], state: WorldState) -> list[list[Candidate]]:
        """:meth:`generate` of each request, every walk at once (:meth:`_walks`): the same candidates, scores and
        reasons (a batch of the server's cold path, offline batches)."""
        out: list[list[Candidate]] = [[] for _ in requests]
        name = self.name
        for i, top, vals, steps in self._walks(requests, state):
            people = requests[i].surface is Surface.PEOPLE
            text = ("often reached through your friends and communities" if people
                    else "where walks through your communities and friends keep landing")
            total = max(float(steps), 1.0)
            if not requests[i].explain:
                shared = Reason(text)
                out[i] = [Candidate(j, name, v / total, shared) for j, v in zip(top.tolist(), vals.tolist(),
                                                                                   strict=True)]
            else:
                out[i] = [Candidate(j, name, v / total, Reason(text, {"visits": int(v), "steps": steps}))
                          for j, v in zip(top.tolist(), vals.tolist(), strict=True)]
        return out

    def _walks(self, requests: list[Request], state: WorldState) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
        """``(request position, the best k items, their visits, the walk's steps)`` of every request that walks."""
        out = []
        for people in (False, True):
            todo = [(i, s) for i, r in enumerate(requests) if (r.surface is Surface.PEOPLE) is people
                    and (s := self._setup(r, state)) is not None]
            if not todo:
                continue
            visits, steps = self._walk([s[0] for _, s in todo], [s[1] for _, s in todo], [s[2] for _, s in todo],
                                       [s[3] for _, s in todo], people)
            for row, (i, s) in enumerate(todo):
                top, vals = self._top(visits[row].astype(np.float64), self.config.k, exclude=s[4])
                out.append((i, top, vals, int(steps[row])))
        return out
