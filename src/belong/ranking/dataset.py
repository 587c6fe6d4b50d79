"""Training lists for the ranker, from candidate sources over a validation cut of the training data.

This implements the "candidates table" contract of :mod:`belong.features.training` for data without impressions
(public datasets, a new surface): part of the memberships of the *training state* is held out (the evaluation test
set is never seen), fresh copies of the surface's sources are fitted on the rest, the sources' candidates (top-N of
each, merged, filtered by the surface's rules) are generated for a sample of validation users, and a candidate's
label is 1 when it is one of that user's held-out memberships. Rows are grouped by user (one list per request) for
LambdaRank. Two cuts (``by``):

* ``random`` (:func:`holdout`): a random share of every eligible user's memberships (and, for a share ``cold`` of
  them, all of it) — matches a random-holdout test split, and data whose timestamps mean nothing (the LightGCN
  splits);
* ``time`` (:func:`time_holdout`): one global time ``T``, the ``1 - fraction`` quantile of the join times: the cut
  state holds the memberships as of ``T`` (joins and leaves before it), the positives are the joins at or after
  ``T`` — what the temporal test protocol asks, so the ranker learns what predicts the *next* joins (recent heat
  rather than all-time size). Like that protocol, joins of communities nobody joined before ``T`` are not
  positives; users with no membership before ``T`` are the cold lists. The cut state also sees the world as of
  ``T``: ``now`` is ``T``, community heat is recomputed from activity before ``T``, creation times are clipped
  to ``T``. Friendships and entity attributes are not cut (the state keeps no friendship times);
* ``auto``: ``time`` when the join times span at least ``min_span_days``, else ``random``.

Besides ``join``, held-out joins carry the labels of later outcomes when the state has the events for them
(:func:`outcome_labels`): ``retained`` (not left within 7 days of joining; unknown when those 7 days are not over
yet) and ``report`` (the user reported the community after joining). Without leave / report events they are
absent and ``TrainingLists.label_notes`` says why.

Features (:func:`feature_names`) are request-time values only: each source's score, rank and gap to its best score
in the same list (missing when the source did not find the item), a source's own second signal where it gives one
(``<s>_aux``, from its candidate's reason data; co_membership: the strongest single-community weight), how many
sources found it, and cheap entity / pair features read from the :class:`~belong.state.WorldState` (community
size, decayed activity, the user's number of memberships, friends who are members, age of the community, the mean
log size of the user's communities and the candidate's log size against it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.components import Progress
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, MergedArrays, Request
from belong.state import WorldState, as_of, with_memberships

HOLDOUT_BY = ("auto", "time", "random")
RETAINED_DAYS = 7
ENTITY_FEATURES = ("n_sources", "log_members", "log_heat", "log_user_degree", "friends_in", "age_days",
                   "locale_match", "interest_overlap", "tag_affinity", "user_log_members", "log_members_vs_user")
DAY_US = 86_400_000_000


def feature_names(source_names: Sequence[str]) -> list[str]:
    """Column names, in order: per source ``<s>_score`` and ``<s>_rank``, then :data:`ENTITY_FEATURES`, then per
    source ``<s>_gap`` (the score minus that source's best score in the same list: comparable across users), then
    per source ``<s>_aux`` (the source's second signal; missing for sources without one)."""
    return ([f"{s}_{part}" for s in source_names for part in ("score", "rank")] + list(ENTITY_FEATURES)
            + [f"{s}_gap" for s in source_names] + [f"{s}_aux" for s in source_names])


def feature_matrix(source_names: Sequence[str], request: Request, state: WorldState,
                   cands: Sequence[Merged]) -> np.ndarray:
    """One float32 row per candidate (NaN where a source did not find it); see :func:`feature_names`."""
    n_src = len(source_names)
    out = np.full((len(cands), 4 * n_src + len(ENTITY_FEATURES)), np.nan, np.float32)
    if not cands:
        return out
    col = {s: i for i, s in enumerate(source_names)}
    rr: list[int] = []
    cc: list[int] = []
    score: list[float] = []
    rank_: list[int] = []
    aux_r: list[int] = []
    aux_c: list[int] = []
    aux_v: list[float] = []
    aux0 = 3 * n_src + len(ENTITY_FEATURES)
    for r, m in enumerate(cands):
        for s, (rank, cand) in m.hits.items():
            i = col.get(s)
            if i is not None:
                rr.append(r)
                cc.append(2 * i)
                score.append(cand.score)
                rank_.append(rank)
                aux = cand.reason.data.get("aux")
                if aux is not None:
                    aux_r.append(r)
                    aux_c.append(aux0 + i)
                    aux_v.append(aux)
    if rr:
        ri, ci = np.array(rr, np.int64), np.array(cc, np.int64)
        out[ri, ci] = score
        out[ri, ci + 1] = rank_
    if aux_r:
        out[np.array(aux_r, np.int64), np.array(aux_c, np.int64)] = aux_v
    items = np.fromiter((m.item for m in cands), np.int64, len(cands))
    n_hits = np.fromiter((len(m.hits) for m in cands), np.float64, len(cands))
    near = np.fromiter((m.features.get("friends_in", m.features.get("mutual_friends", 0.0)) for m in cands),
                       np.float64, len(cands))
    _entity_columns(out, n_src, request, state, items, n_hits, near)
    return out


def feature_matrix_arrays(source_names: Sequence[str], request: Request, state: WorldState,
                          m: MergedArrays) -> np.ndarray:
    """:func:`feature_matrix` of merged candidates given as arrays (offline batches): the same rows, value for
    value (a source's ``aux`` where it gave one, a feature absent where NaN, as :class:`Merged` objects built from
    the arrays carry them)."""
    n_src = len(source_names)
    out = np.full((len(m), 4 * n_src + len(ENTITY_FEATURES)), np.nan, np.float32)
    if not len(m):
        return out
    aux0 = 3 * n_src + len(ENTITY_FEATURES)
    found = m.ranks >= 0
    col = {s: j for j, s in enumerate(m.sources)}
    for i, s in enumerate(source_names):
        j = col.get(s)
        if j is None:
            continue
        rows = np.flatnonzero(found[:, j])
        out[rows, 2 * i] = m.scores[rows, j]
        out[rows, 2 * i + 1] = m.ranks[rows, j]
        aux = m.aux[rows, j]
        has = ~np.isnan(aux)
        out[rows[has], aux0 + i] = aux[has]
    near = np.zeros(len(m))
    for name in ("mutual_friends", "friends_in"):  # friends_in first, then mutual_friends, else 0
        v = m.features.get(name)
        if v is not None:
            near = np.where(np.isnan(v), near, v)
    _entity_columns(out, n_src, request, state, m.items, found.sum(axis=1).astype(np.float64), near)
    return out


def _entity_columns(out: np.ndarray, n_src: int, request: Request, state: WorldState, items: np.ndarray,
                    n_hits: np.ndarray, near: np.ndarray) -> None:
    """The entity and pair columns of :func:`feature_matrix` and the per-source gaps (the source columns filled)."""
    p = state.profile(request)
    base = 2 * n_src
    aux0 = 3 * n_src + len(ENTITY_FEATURES)
    out[:, base] = n_hits
    comm = items if request.surface is Surface.COMMUNITIES else None
    if comm is not None:
        out[:, base + 1] = np.log1p(state.member_counts(comm))
        heat = state.community_heat.get("all", np.zeros(0))
        okh = comm < heat.size
        out[okh, base + 2] = np.log1p(heat[comm[okh]])
        out[:, base + 5] = (state.now_us - state.created_array()[comm]) / DAY_US
        _pair_features(out[:, base + 6:base + 9], p, state, comm)
        # the user's taste for size: mean log size of their communities, and the candidate's size against it
        if p.communities.size:
            taste = float(np.log1p(state.member_counts(p.communities)).mean())
            out[:, base + 9] = taste
            out[:, base + 10] = out[:, base + 1] - taste
    out[:, base + 3] = np.log1p(p.communities.size)
    out[:, base + 4] = near
    scores = out[:, 0:base:2]
    found = ~np.isnan(scores)
    best = np.where(found, scores, -np.inf).max(axis=0)
    out[:, base + len(ENTITY_FEATURES):aux0] = np.where(found, scores - best, np.nan)


def _pair_features(out: np.ndarray, p, state: WorldState, comm: np.ndarray) -> None:
    """User x community columns: same locale (NaN when either is undetermined), declared interests among the
    community's tags, and how often the community's tags occur among the user's communities (per community)."""
    terms = state.community_terms()
    mine = p.communities[p.communities < terms.locale.size]
    code = -1 if p.locale in ("", "und") else terms.locale_ids.get(p.locale, -2)  # -2: known, no community has it
    loc = terms.locale[comm]
    out[:, 0] = np.where((loc >= 0) & (code != -1), (loc == code).astype(np.float32), np.nan)
    # products over the whole (small) catalogue, then the candidates' rows: cheaper than slicing the sparse
    # matrix per list, and the same values (tag counts are whole numbers: every sum is exact in any order)
    T = terms.tags
    wanted = np.zeros(T.shape[1])
    ids = [terms.tag_ids[t] for t in set(p.interests) if t in terms.tag_ids]
    wanted[ids] = 1.0
    out[:, 1] = (T @ wanted)[comm] if ids else 0.0
    if mine.size:
        lo, hi = T.indptr[mine], T.indptr[mine + 1]
        n = hi - lo
        at = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))  # the rows' entries
        counts = np.bincount(T.indices[at], weights=T.data[at], minlength=T.shape[1])
        out[:, 2] = (T @ counts)[comm] / max(p.communities.size, 1)
    else:
        out[:, 2] = 0.0


def holdout(X: sp.csr_matrix, fraction: float, seed: int, min_items: int = 2, cold: float = 0.0
            ) -> tuple[sp.csr_matrix, dict[int, set[int]]]:
    """Hold out ``fraction`` (at least one) of the items of each user with >= ``min_items``; the rest and the pairs.

    A share ``cold`` of those users lose *all* their items instead: lists of users with no history, so the ranker
    also learns the cold-start regime (where only popularity-like sources find anything)."""
    rng = np.random.default_rng(seed)
    X = X.tocsr()
    keep = np.ones(X.nnz, bool)
    held: dict[int, set[int]] = {}
    counts = np.diff(X.indptr)
    eligible = np.flatnonzero(counts >= min_items)
    is_cold = rng.random(eligible.size) < cold
    for u, c in zip(eligible.tolist(), is_cold.tolist(), strict=True):
        lo, n = X.indptr[u], counts[u]
        n_out = n if c else min(n - 1, max(1, int(round(fraction * n))))
        pos = lo + rng.choice(n, n_out, replace=False)
        keep[pos] = False
        held[u] = set(X.indices[pos].tolist())
    rows = np.repeat(np.arange(X.shape[0]), counts)
    Xt = sp.csr_matrix((X.data[keep], (rows[keep], X.indices[keep])), shape=X.shape)
    return Xt, held


def _pair_keys(u: np.ndarray, c: np.ndarray, n_cols: int) -> np.ndarray:
    return np.asarray(u, np.int64) * max(n_cols, 1) + np.asarray(c, np.int64)


def join_span_days(state: WorldState) -> float:
    """Days between the first and the last join time of the state's memberships (0 without times)."""
    ts = state.join_events.ts if state.join_events is not None else state.membership_since().data
    return float((ts.max() - ts.min()) / DAY_US) if ts.size else 0.0


def resolve_holdout_by(state: WorldState, by: str, min_span_days: float = 7.0) -> str:
    """``time`` or ``random`` for ``by`` (``auto``: ``time`` when joins span >= ``min_span_days`` days)."""
    if by not in HOLDOUT_BY:
        raise ValidationError("holdout_by", f"must be one of {', '.join(HOLDOUT_BY)}, got {by!r}")
    if by != "auto":
        return by
    return "time" if join_span_days(state) >= min_span_days else "random"


def time_holdout(state: WorldState, fraction: float
                 ) -> tuple[WorldState, sp.csr_matrix, dict[int, set[int]], dict, int]:
    """The ``time`` cut (see the module docstring): the state as of ``T`` (:func:`belong.state.as_of`), its
    memberships, held-out joins per user, the join time of each held-out pair ``{(u, c): ts}`` and ``T``."""
    joins = state.join_events
    if joins is not None:
        u, c, ts = joins.user, joins.community, joins.ts
    else:
        since = state.membership_since()
        u = np.repeat(np.arange(state.n_users), np.diff(since.indptr))
        c, ts = since.indices.astype(np.int64), since.data
    if ts.size == 0 or ts.min() == ts.max():
        raise ValidationError("holdout_by", "a time cut needs join times that differ; use holdout_by = 'random'")
    T = int(np.sort(ts)[min(int(np.floor(ts.size * (1.0 - fraction))), ts.size - 1)])
    if T <= ts.min():
        T = int(np.unique(ts)[1])
    cut = as_of(state, T)
    Xcut = cut.membership_csr()
    seen = np.zeros(state.n_communities, bool)
    seen[c[ts < T]] = True
    after = (ts >= T) & seen[c]
    coo = Xcut.tocoo()
    after[after] = ~np.isin(_pair_keys(u[after], c[after], state.n_communities),
                            _pair_keys(coo.row, coo.col, state.n_communities))  # re-joins: already a member at T
    held: dict[int, set[int]] = {}
    when: dict[tuple[int, int], int] = {}
    for uu, cc, tt in zip(u[after].tolist(), c[after].tolist(), ts[after].tolist(), strict=True):
        held.setdefault(uu, set()).add(cc)
        when.setdefault((uu, cc), tt)  # joins come in time order: the first join at or after T
    return cut, Xcut, held, when, T


def outcome_labels(state: WorldState, u: np.ndarray, c: np.ndarray, join_ts: np.ndarray
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Labels of later outcomes of the joins ``(u, c)`` at ``join_ts``: ``retained`` (1: no leave within
    :data:`RETAINED_DAYS` days; NaN while those days are not over at ``state.now_us``) and ``report`` (1: the user
    reported the community at or after joining). Objectives without the events they need are left out, with the
    reason in the second dict."""
    labels: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    n = state.n_communities
    keys = _pair_keys(u, c, n)
    for name, ev in (("retained", state.leave_events), ("report", state.community_reports)):
        if ev is None:
            notes[name] = f"the data has no {'leave' if name == 'retained' else 'report'} events (joins only)"
            continue
        if len(ev) == 0:
            notes[name] = f"no {'leave' if name == 'retained' else 'community report'} events in the data"
            continue
        ek = _pair_keys(ev.user, ev.community, n)
        order = np.lexsort((ev.ts, ek))
        ek, ets = ek[order], ev.ts[order]
        # the first event of the pair at or after the join
        lo = np.searchsorted(ek, keys, side="left")
        hi = np.searchsorted(ek, keys, side="right")
        first = np.full(keys.size, np.iinfo(np.int64).max)
        for i in np.flatnonzero(hi > lo).tolist():
            t = ets[lo[i]:hi[i]]
            t = t[t >= join_ts[i]]
            if t.size:
                first[i] = t[0]
        if name == "retained":
            horizon = join_ts + RETAINED_DAYS * DAY_US
            y = (first > horizon).astype(np.float32)
            y[(horizon > state.now_us) & (first > horizon)] = np.nan  # not left yet, but the 7 days are not over
        else:
            y = (first < np.iinfo(np.int64).max).astype(np.float32)
        labels[name] = y
    return labels, notes


@dataclass
class TrainingLists:
    """Grouped training rows: ``X`` (rows x features), ``y`` (0/1), ``groups`` (rows per list, in order)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    feature_names: list[str]
    source_names: list[str]
    users: np.ndarray
    positives_held: np.ndarray  # held-out items per list (recall denominators)
    stats: dict[str, Any] = field(default_factory=dict)
    #: per row labels of later outcomes of a join (``retained``, ``report``): NaN where unknown or not a join
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    #: objectives without labels, and why
    label_notes: dict[str, str] = field(default_factory=dict)
    #: the candidate (community) of every row
    items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def subset(self, keep: np.ndarray) -> TrainingLists:
        """The lists where ``keep`` (one bool per list) holds, rows and per-row labels with them, in order."""
        keep = np.asarray(keep, bool)
        rows = np.repeat(keep, self.groups)
        return TrainingLists(self.X[rows], self.y[rows], self.groups[keep], list(self.feature_names),
                             list(self.source_names), self.users[keep], self.positives_held[keep],
                             dict(self.stats), {k: v[rows] for k, v in self.labels.items()},
                             dict(self.label_notes), self.items[rows] if self.items.size else self.items)


#: what the per-user list builder reads: set by :func:`build_lists` around the generation (forked workers inherit it)
_LISTS_CONTEXT: tuple | None = None


def _lists_for(users: list[int]) -> dict:
    """Training lists of ``users`` (one chunk), from :data:`_LISTS_CONTEXT`: the chunk's candidate stage as one
    batch on arrays (:meth:`~belong.pipeline.pipeline.Pipeline.candidate_arrays`), or one request at a time on
    candidate objects when the context says ``arrays=False`` (the reference: the same rows, value for value)."""
    assert _LISTS_CONTEXT is not None
    user_ids, stage, cut, names, held, out_of, arrays = _LISTS_CONTEXT
    if arrays:
        return _lists_for_arrays(users)
    out: dict = {"blocks": [], "labels": [], "groups": [], "users": [], "n_pos": [], "items": [],
                 "extra": {name: [] for name in out_of}}
    for u in users:
        req = Request(user_ids[u], stage.surface, k=20, explain=False)
        cands = [m for m, _ in stage.candidates(req, score=False).ranked]
        if not cands:
            continue
        pos = held[u]
        for name, lab in out_of.items():
            out["extra"][name].append(np.array([lab.get((u, m.item), np.nan) if m.item in pos else np.nan
                                                for m in cands], np.float32))
        out["blocks"].append(feature_matrix(names, req, cut, cands))
        out["labels"].append(np.fromiter((m.item in pos for m in cands), np.float32, len(cands)))
        out["items"].append(np.fromiter((m.item for m in cands), np.int64, len(cands)))
        out["groups"].append(len(cands))
        out["users"].append(u)
        out["n_pos"].append(len(pos))
    return out


def _lists_for_arrays(users: list[int]) -> dict:
    """:func:`_lists_for` on arrays: every source proposes for the whole chunk at once, no candidate objects."""
    assert _LISTS_CONTEXT is not None
    user_ids, stage, cut, names, held, out_of, _ = _LISTS_CONTEXT
    out: dict = {"blocks": [], "labels": [], "groups": [], "users": [], "n_pos": [], "items": [],
                 "extra": {name: [] for name in out_of}}
    reqs = [Request(user_ids[u], stage.surface, k=20, explain=False) for u in users]
    for u, req, m in zip(users, reqs, stage.candidate_arrays(reqs), strict=True):
        if not len(m):
            continue
        pos = held[u]
        items = m.items.tolist()
        for name, lab in out_of.items():
            out["extra"][name].append(np.array([lab.get((u, i), np.nan) if i in pos else np.nan for i in items],
                                               np.float32))
        out["blocks"].append(feature_matrix_arrays(names, req, cut, m))
        out["labels"].append(np.fromiter((i in pos for i in items), np.float32, len(items)))
        out["items"].append(m.items.astype(np.int64, copy=True))
        out["groups"].append(len(items))
        out["users"].append(u)
        out["n_pos"].append(len(pos))
    return out


def lists_of(context: tuple, users: list[int]) -> dict:
    """Training lists of ``users`` from a builder's ``context`` (what a batch engine's worker calls)."""
    global _LISTS_CONTEXT
    before = _LISTS_CONTEXT
    _LISTS_CONTEXT = context
    try:
        return _lists_for(users)
    finally:
        _LISTS_CONTEXT = before


def _run_chunks(users: np.ndarray, workers: int, progress) -> list[dict]:
    """:func:`_lists_for` over chunks of ``users``, in order: in this process, in ``workers`` forked ones, or by
    the batch engine's runner when one is installed (:mod:`belong.ranking.runners`)."""
    import multiprocessing as mp

    from belong.ranking.runners import lists_runner

    chunk = 100
    chunks = [users[i:i + chunk].tolist() for i in range(0, users.size, chunk)]
    runner = lists_runner()
    if runner is not None and _LISTS_CONTEXT is not None:
        return runner(_LISTS_CONTEXT, chunks, progress)
    parts: list[dict] = []
    done = 0
    if workers > 1 and "fork" in mp.get_all_start_methods() and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            for part, c in zip(pool.map(_lists_for, chunks), chunks, strict=True):
                parts.append(part)
                done += len(c)
                if progress is not None:
                    progress(done, int(users.size))
        return parts
    for c in chunks:
        parts.append(_lists_for(c))
        done += len(c)
        if progress is not None:
            progress(done, int(users.size))
    return parts


def build_lists(state: WorldState, upstream: Callable[[], Pipeline], *, fraction: float = 0.15,
                cold: float = 0.0, max_users: int = 2000, seed: int = 0, by: str = "random",
                min_span_days: float = 7.0, progress: Progress | None = None, workers: int = 1,
                arrays: bool = True) -> TrainingLists:
    """Fit a fresh candidate stage (``upstream()``: sources, hydrators, filters of the surface) on a validation cut
    of ``state`` and label its candidates (:meth:`~belong.pipeline.pipeline.Pipeline.candidates`, unscored).

    ``by``: ``random`` | ``time`` | ``auto`` (see the module docstring; ``cold`` applies to ``random`` only).
    ``progress(done, total)`` is called while candidates are generated. ``workers > 1`` generates the lists in
    that many forked processes (the prepared sources are shared copy-on-write; the result is the same lists in the
    same order as with one). ``arrays`` (the default) runs each chunk's candidate stage as one batch on arrays;
    ``False`` one request at a time on candidate objects: the same lists, row for row."""
    how = resolve_holdout_by(state, by, min_span_days)
    T: int | None
    if how == "time":
        cut, Xcut, held, when, T = time_holdout(state, fraction)
    else:
        Xcut, held = holdout(state.membership_csr(), fraction, seed, cold=cold)
        since = state.membership_since()
        when = {}
        for u, items in held.items():
            row = since.indices[since.indptr[u]:since.indptr[u + 1]]
            t = since.data[since.indptr[u]:since.indptr[u + 1]]
            for i in items:
                when[(u, i)] = int(t[np.searchsorted(row, i)])
        T = None
        cut = with_memberships(state, Xcut)
    pairs = np.array(sorted(when), np.int64).reshape(-1, 2)
    out_labels, notes = outcome_labels(state, pairs[:, 0], pairs[:, 1],
                                       np.array([when[(a, b)] for a, b in pairs.tolist()], np.int64))
    out_of = {name: dict(zip(map(tuple, pairs.tolist()), lab.tolist(), strict=True))
              for name, lab in out_labels.items()}
    stage = upstream().fit(cut, candidates_only=True)
    names = [s.name for s in stage.sources]
    rng = np.random.default_rng(seed + 1)
    users = np.array(sorted(held), np.int64)
    if users.size > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    global _LISTS_CONTEXT
    _LISTS_CONTEXT = (state.users.ids, stage, cut, names, held, out_of, arrays)
    try:
        parts = _run_chunks(users, workers, progress)
    finally:
        _LISTS_CONTEXT = None
    blocks = [b for part in parts for b in part["blocks"]]
    labels = [b for part in parts for b in part["labels"]]
    groups = [g for part in parts for g in part["groups"]]
    kept_users = [u for part in parts for u in part["users"]]
    n_pos = [n for part in parts for n in part["n_pos"]]
    row_items = [r for part in parts for r in part["items"]]
    extra = {name: [a for part in parts for a in part["extra"][name]] for name in out_of}
    fn = feature_names(names)
    if not blocks:
        return TrainingLists(np.zeros((0, len(fn)), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), fn,
                             names, np.zeros(0, np.int64), np.zeros(0, np.int64), {"lists": 0})
    y_all = np.concatenate(labels)
    n_pos_arr = np.array(n_pos, np.int64)
    found = np.array([lab.sum() for lab in labels])
    stats: dict[str, Any] = {"lists": len(groups), "rows": int(y_all.size), "positive_rate": float(y_all.mean()),
             "candidate_recall": float(np.mean(found / np.maximum(n_pos_arr, 1))), "holdout_fraction": fraction,
             "holdout_by": how, "cold_share": cold if how == "random" else None,
             "cold_lists": int(sum(Xcut[u].nnz == 0 for u in kept_users))}
    if T is not None:
        stats["cut_us"] = T
    return TrainingLists(np.concatenate(blocks), y_all, np.array(groups, np.int64), fn, names,
                         np.array(kept_users, np.int64), n_pos_arr, stats,
                         {name: np.concatenate(v) for name, v in extra.items()}, notes, np.concatenate(row_items))
