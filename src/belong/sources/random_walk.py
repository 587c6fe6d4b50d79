"""``pixie``: Pixie-style random walks with restarts on the graph of users, communities and friendships.

Nodes are users and communities; edges are memberships (user - community) and friendships (user - user). Many
walkers start at the request's user and step together (vectorised). Per step each walker takes one 32-bit draw
from the walk's generator (seeded by the request's ``seed`` and the user id; two draws per raw 64-bit output,
walker ``w`` the ``w``-th of the step): below ``q32`` (probability ``1 - restart``) it moves to the neighbour at
weight position ``draw * total / q32`` of its row, else it goes home to the user. A batch of requests walks
together too (:meth:`Pixie.propose_batch`: one array of walkers over every user of the batch), each user's walkers
taking the draws of that user's own generator — so a batch gives each user the walk of one request.
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
_SEGMENT = 1 << 20  # walker positions kept between counts (a block's steps of a segment)
_SHRINK = 1.0 - 2.0**-50  # keeps r * total / q32 below total for every 32-bit draw r < q32


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
        # a walker moves when its 32-bit draw is below q32 (probability 1 - restart; a restart of 0 still has
        # a chance of 2**-32), else goes home
        self.q32 = min(max(int((1.0 - self.config.restart) * 2.0**32), 0), 2**32 - 1)
        self._below = np.uint32(max(self.q32 - 1, 0))  # the largest draw that moves (restart 1: none moves)
        self.scale = self._scale(self.row_total)

    def _scale(self, totals: np.ndarray) -> np.ndarray:
        """Per row, what a walker's 32-bit draw ``r`` is multiplied by to pick a neighbour: ``r < q32`` moves (else
        the walker goes home), so ``r * total / q32`` is uniform on ``[0, total)`` — shrunk by ``2**-50`` so that
        rounding never reaches ``total``."""
        if self.q32 <= 0:  # every step restarts: no move is ever read
            return np.zeros_like(totals, dtype=np.float64)
        return totals.astype(np.float64) / float(self.q32) * _SHRINK

    @staticmethod
    def _draws(rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` 32-bit draws of a walk's generator: ``ceil(n / 2)`` raw 64-bit outputs, each two draws (half the
        generator's work of a float per draw)."""
        return rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]

    def _dead_reachable(self, start_nbrs: np.ndarray) -> bool:
        """Whether a walker can reach a node without edges: only through the start's live edges (every prepared
        edge with a weight leads to a node with that edge), or through edges that weigh nothing."""
        return self.has_dead and (self.config.friend_weight <= 0 or bool((self.row_total[start_nbrs] <= 0).any()))

    def _own_row(self, start: int, nbrs: np.ndarray, cum: np.ndarray | None, total: float) -> bool:
        """Whether the start's live edges are its prepared row, weights included (then a batch walks the prepared
        row: the same picks as the live one's)."""
        a, b = int(self.indptr[start]), int(self.indptr[start + 1])
        if b - a != nbrs.size or float(self.row_total[start]) != total or not np.array_equal(self.indices[a:b], nbrs):
            return False
        return bool(np.array_equal(self.cum[a:b], np.arange(1, nbrs.size + 1, dtype=np.float64) if cum is None
                                   else cum))

    def _step(self, cur: np.ndarray, u: np.ndarray, start: int, start_nbrs: np.ndarray,
              start_cum: np.ndarray | None, start_scale: float, dead: bool) -> np.ndarray:
        """One step of one request's walkers, walker ``w`` with uniform ``u[w]``: home (``start``) when
        ``u >= 1 - restart`` (or at a node without edges), else to the neighbour of weight position
        ``u * scale`` in its row (the start's row: its live edges) — what :meth:`_walk_block` computes."""
        nxt = np.empty_like(cur)
        back = u >= self.q32
        u = np.minimum(u, self._below)  # a walker going home still picks (and drops) a neighbour
        at = cur == start
        if at.any():
            x = u[at] * start_scale
            if start_cum is None:  # every start edge weighs 1: the floor(x)-th
                nxt[at] = start_nbrs[x.astype(np.int64)]
            else:
                nxt[at] = start_nbrs[np.searchsorted(start_cum, x, side="right")]
        rest = ~at
        if rest.any():
            c = cur[rest]
            sc = self.scale[c]
            x = u[rest] * sc
            lo = self.indptr[c]
            if self.uniform:  # all edges weigh 1: the floor(x)-th neighbour
                pos = lo + x.astype(np.int64)
            else:  # binary search inside each row's cumulative weights: the first above x
                hi = self.indptr[c + 1] - 1
                pos = lo.copy()
                while True:
                    active = pos < hi
                    if not active.any():
                        break
                    mid = (pos + hi) // 2
                    go_right = self.cum[mid] <= x
                    pos = np.where(active & go_right, mid + 1, pos)
                    hi = np.where(active & ~go_right, mid, hi)
            nxt[rest] = self.indices[np.minimum(pos, self.indices.size - 1)]
            if dead:  # a node without edges sends its walker home
                back[rest] |= sc <= 0
        return np.where(back, start, nxt)

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
        or arriving there — steps through the same code; where they are its prepared row, weights included, the
        prepared row is walked); its draws come from its own generator, four steps at a time, as one walk alone
        draws them."""
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
        v_total = np.array([float(a.size) if c is None else c[-1] for a, c in zip(nbrs, cums, strict=True)],
                           np.float64)
        scale = np.concatenate([self.scale, self._scale(v_total)])
        if uniform:
            cum = hi = None
        else:
            cum = np.concatenate([self.cum, *(np.arange(1, a.size + 1, dtype=np.float64) if c is None else c
                                              for a, c in zip(nbrs, cums, strict=True))])
            hi = np.concatenate([self.indptr[1:] - 1, v_lo + sizes - 1])
        dead = any(self._dead_reachable(a) for a in nbrs)
        own = np.array([self._own_row(s, a, c, v) for s, a, c, v in zip(starts, nbrs, cums, v_total.tolist(),
                                                                         strict=True)], bool)
        visits = np.zeros((B, n_t), np.int64)
        steps = np.zeros(B, np.int64)
        block = max(1, _BLOCK // W)  # walkers of a few users at a time: the temporaries stay in cache
        for b0 in range(0, B, block):
            sl = slice(b0, min(B, b0 + block))
            steps[sl] = self._walk_block(np.asarray(starts[sl], np.int64), rngs[sl], visits[sl], b0, uniform,
                                         indices, lo, scale, cum, hi, t_off, dead, bool(own[sl].all()))
        return visits, steps

    def _walk_block(self, starts: np.ndarray, rngs: list[np.random.Generator], visits: np.ndarray, v0: int,
                    uniform: bool, indices: np.ndarray, lo: np.ndarray, scale: np.ndarray, cum: np.ndarray | None,
                    hi: np.ndarray | None, t_off: int, dead: bool, own: bool) -> np.ndarray:
        """The walks of some starts (virtual rows ``n_nodes + v0 + i``); their target visits are added to
        ``visits`` (one row per start); returns their steps. Node and position arrays are ``indices``' integer
        type (32 bits where the graph allows: half the memory traffic of a step).

        Positions are kept for a segment of steps, then counted (one ``bincount`` per start). The early stop is
        checked per segment: its condition only grows with the visits, so where it holds at a segment's end, the
        segment is counted again four steps at a time to the first check (every four steps) where it held — the
        walk one request alone stops at."""
        cfg = self.config
        W, B = cfg.walkers, starts.size
        it = indices.dtype
        n_t = visits.shape[1]
        n_nodes = self.n_nodes
        n_steps = -(-cfg.max_steps // W)  # the walk alone steps while steps < max_steps
        last_check = n_steps - n_steps % 4  # the walk alone checks after each full four steps
        steps = np.zeros(B, np.int64)
        active = np.arange(B)
        start = starts.astype(it)[:, None]
        vrow = (self.n_nodes + v0 + np.arange(B)).astype(it)[:, None]
        cur = np.repeat(start, W, axis=1)
        home_at = cur.copy()  # every walker's start
        seg = min(n_steps, max(4, (_SEGMENT // (B * W)) // 4 * 4))  # steps per segment, a multiple of four
        seen = np.empty((B, seg, W), it)
        draws = np.empty((B, 2 * W), np.uint64)  # per user four steps of 32-bit draws: 2 * W raw outputs
        counts = np.zeros((B, n_nodes), np.int64)
        q32 = np.uint32(self.q32)

        def stopped(c: np.ndarray) -> bool:
            return int((c[t_off:t_off + n_t] >= cfg.n_p).sum()) >= cfg.n_v

        t = 0
        while t < n_steps and active.size:
            na, s_len = active.size, min(seg, n_steps - t)
            for c0 in range(0, s_len, 4):
                chunk = min(4, s_len - c0)
                m = (chunk * W + 1) // 2
                for a, b in enumerate(active.tolist()):  # per step one draw per walker, in walker order (_draws)
                    draws[a, :m] = rngs[b].bit_generator.random_raw(m)
                r = draws.view(np.uint32)[:na, :chunk * W].reshape(na, chunk, W)
                home = r >= q32
                moves = np.minimum(r, self._below)  # going home: a valid pick, then dropped
                for c in range(chunk):
                    u = moves[:, c]
                    # at the start: its live row (the prepared one where they are the same: ``own``)
                    row = cur if own else np.where(cur == start, vrow, cur)
                    if uniform:  # every edge weighs 1: the floor(x)-th neighbour
                        nxt = indices.take(lo.take(row) + (u * scale.take(row)).astype(it))
                    else:  # binary search inside each row's cumulative weights: the first above x
                        assert cum is not None and hi is not None
                        x = u * scale.take(row)
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
                    back = home[:, c]
                    if dead:  # a node without edges sends its walker home
                        back |= scale.take(row) <= 0
                    np.putmask(nxt, back, home_at)
                    cur = nxt
                    seen[:na, c0 + c] = cur
            keep = np.ones(na, bool)
            for a, b in enumerate(active.tolist()):
                got = np.bincount(seen[a, :s_len].reshape(-1), minlength=n_nodes)
                counts[b] += got
                steps[b] = (t + s_len) * W
                if cfg.n_v > n_t or t + 4 > last_check or not stopped(counts[b]):
                    continue
                before = counts[b] - got
                for c in range(4, s_len + 1, 4):  # where the walk alone stopped
                    if t + c > last_check:
                        break
                    before += np.bincount(seen[a, c - 4:c].reshape(-1), minlength=n_nodes)
                    if stopped(before):
                        counts[b], steps[b], keep[a] = before, (t + c) * W, False
                        break
            t += s_len
            if not keep.all():
                active, cur, start, vrow, home_at = active[keep], cur[keep], start[keep], vrow[keep], home_at[keep]
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
        start_total = np.array([float(start_nbrs.size) if start_cum is None else start_cum[-1]], np.float64)
        start_scale = float(self._scale(start_total)[0])
        dead = self._dead_reachable(start_nbrs)
        visits = np.zeros(self.n_nodes, np.int64)
        cur = np.full(cfg.walkers, start, np.int64)
        n_steps = -(-cfg.max_steps // cfg.walkers)
        steps = t = 0
        pending: list[np.ndarray] = []  # positions since the last count: one bincount per check, not np.add.at per step
        while t < n_steps:
            chunk = min(4, n_steps - t)
            u = self._draws(rng, chunk * cfg.walkers).reshape(chunk, cfg.walkers)  # per step one per walker
            for c in range(chunk):
                cur = self._step(cur, u[c], start, start_nbrs, start_cum, start_scale, dead)
                pending.append(cur)
            t += chunk
            steps += chunk * cfg.walkers
            if chunk == 4 and t % 4 == 0:  # the early stop, checked every four steps
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
