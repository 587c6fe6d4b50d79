"""Training lists for the ranker, from candidate sources over a validation cut of the training data.

This implements the "candidates table" contract of :mod:`belong.features.training` for data without impressions
(public datasets, a new surface): a random part of every eligible user's memberships is held out *of the
training state* (the evaluation test set is never seen), fresh copies of the surface's sources are fitted on the
rest, the sources' candidates (top-N of each, merged, filtered by the surface's rules) are generated for a sample
of validation users, and a candidate's label is 1 when it is one of that user's held-out memberships. Rows are
grouped by user (one list per request) for LambdaRank.

Features (:func:`feature_names`) are request-time values only: each source's score, rank and gap to its best score
in the same list (missing when the source did not find the item), how many sources found it, and cheap entity / pair features read from the
:class:`~belong.pipeline.state.WorldState` (community size, decayed activity, the user's number of memberships,
friends who are members, age of the community).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.pipeline.components import CandidateSource, Filter, Hydrator
from belong.pipeline.state import WorldState, _Overlay
from belong.pipeline.types import Merged, Request

ENTITY_FEATURES = ("n_sources", "log_members", "log_heat", "log_user_degree", "friends_in", "age_days",
                   "locale_match", "interest_overlap", "tag_affinity")
DAY_US = 86_400_000_000


def feature_names(source_names: Sequence[str]) -> list[str]:
    """Column names, in order: per source ``<s>_score`` and ``<s>_rank``, then :data:`ENTITY_FEATURES`, then per
    source ``<s>_gap`` (the score minus that source's best score in the same list: comparable across users)."""
    return ([f"{s}_{part}" for s in source_names for part in ("score", "rank")] + list(ENTITY_FEATURES)
            + [f"{s}_gap" for s in source_names])


def feature_matrix(source_names: Sequence[str], request: Request, state: WorldState,
                   cands: Sequence[Merged]) -> np.ndarray:
    """One float32 row per candidate (NaN where a source did not find it); see :func:`feature_names`."""
    n_src = len(source_names)
    out = np.full((len(cands), 3 * n_src + len(ENTITY_FEATURES)), np.nan, np.float32)
    if not cands:
        return out
    col = {s: i for i, s in enumerate(source_names)}
    for r, m in enumerate(cands):
        for s, (rank, cand) in m.hits.items():
            i = col.get(s)
            if i is not None:
                out[r, 2 * i] = cand.score
                out[r, 2 * i + 1] = rank
    items = np.fromiter((m.item for m in cands), np.int64, len(cands))
    p = state.profile(request)
    base = 2 * n_src
    out[:, base] = [len(m.hits) for m in cands]
    comm = items if request.surface is Surface.COMMUNITIES else None
    if comm is not None:
        counts = _member_counts(state)
        ok = comm < counts.size
        out[ok, base + 1] = np.log1p(counts[comm[ok]])
        heat = state.community_heat.get("all", np.zeros(0))
        okh = comm < heat.size
        out[okh, base + 2] = np.log1p(heat[comm[okh]])
        created = np.asarray(state.c_created, np.int64)
        out[:, base + 5] = (state.now_us - created[comm]) / DAY_US
        _pair_features(out[:, base + 6:base + 9], p, state, comm)
    out[:, base + 3] = np.log1p(p.communities.size)
    out[:, base + 4] = [m.features.get("friends_in", m.features.get("mutual_friends", 0.0)) for m in cands]
    scores = out[:, 0:base:2]
    found = ~np.isnan(scores)
    best = np.where(found, scores, -np.inf).max(axis=0)
    out[:, base + len(ENTITY_FEATURES):] = np.where(found, scores - best, np.nan)
    return out


def _pair_features(out: np.ndarray, p, state: WorldState, comm: np.ndarray) -> None:
    """User x community columns: same locale (NaN when either is undetermined), declared interests among the
    community's tags, and how often the community's tags occur among the user's communities (per community)."""
    interests = set(p.interests)
    mine: Counter[str] = Counter(t for c in p.communities.tolist() for t in state.c_tags[c])
    n_mine = max(p.communities.size, 1)
    known = p.locale not in ("", "und")
    for r, c in enumerate(comm.tolist()):
        tags = state.c_tags[c]
        loc = state.c_locale[c]
        out[r, 0] = float(loc == p.locale) if known and loc not in ("", "und") else np.nan
        out[r, 1] = sum(t in interests for t in tags)
        out[r, 2] = sum(mine[t] for t in tags) / n_mine


def _member_counts(state: WorldState) -> np.ndarray:
    """Members per community, cached on the state per version (size features for every request)."""
    key = ("_ranking_member_counts", state.version, state.members.version)
    cached = getattr(state, "_ranking_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    counts = np.diff(state.membership_csr().tocsc().indptr).astype(np.float64)
    state._ranking_cache = (key, counts)  # type: ignore[attr-defined]
    return counts


def candidates(request: Request, state: WorldState, sources: Sequence[CandidateSource],
               hydrators: Sequence[Hydrator], filters: Sequence[Filter]) -> list[Merged]:
    """The pipeline's candidate stages (sources -> merge -> hydrate -> filter) for one request."""
    merged: dict[int, Merged] = {}
    for src in sources:
        cands = sorted(src.generate(request, state), key=lambda c: (-c.score, c.item))[: src.config.k]
        for rank, c in enumerate(cands):
            merged.setdefault(c.item, Merged(c.item)).hits[src.name] = (rank, c)
    out = list(merged.values())
    for h in hydrators:
        h.hydrate(request, state, out)
    for f in filters:
        out = f.apply(request, state, out).kept
    return out


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


def cut_state(state: WorldState, memberships: sp.csr_matrix) -> WorldState:
    """A shallow copy of ``state`` whose memberships are ``memberships`` (everything else shared, read-only)."""
    cut = copy.copy(state)
    cut.members = _Overlay(memberships)
    cut._profile_cache = None
    cut.version = state.version + 1_000_000  # never equal to a cache key of the full state
    return cut


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
    stats: dict[str, float] = field(default_factory=dict)


def build_lists(state: WorldState, surface: Surface, sources: Sequence[CandidateSource],
                hydrators: Sequence[Hydrator], filters: Sequence[Filter], *, fraction: float = 0.15,
                cold: float = 0.0, max_users: int = 2000, seed: int = 0, progress=None) -> TrainingLists:
    """Fit ``sources`` (fresh, unfitted components) on a validation cut of ``state`` and label their candidates.

    ``progress(done, total)`` is called while candidates are generated."""
    Xcut, held = holdout(state.membership_csr(), fraction, seed, cold=cold)
    cut = cut_state(state, Xcut)
    for comp in (*sources, *hydrators, *filters):
        comp.prepare(cut)
    names = [s.name for s in sources]
    rng = np.random.default_rng(seed + 1)
    users = np.array(sorted(held), np.int64)
    if users.size > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    blocks, labels, groups, kept_users, n_pos = [], [], [], [], []
    for done, u in enumerate(users.tolist(), start=1):
        req = Request(state.users.ids[u], surface, k=20, explain=False)
        cands = candidates(req, cut, sources, hydrators, filters)
        if progress is not None and (done % 100 == 0 or done == users.size):
            progress(done, int(users.size))
        if not cands:
            continue
        pos = held[u]
        y = np.fromiter((m.item in pos for m in cands), np.float32, len(cands))
        blocks.append(feature_matrix(names, req, cut, cands))
        labels.append(y)
        groups.append(len(cands))
        kept_users.append(u)
        n_pos.append(len(pos))
    fn = feature_names(names)
    if not blocks:
        return TrainingLists(np.zeros((0, len(fn)), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), fn,
                             names, np.zeros(0, np.int64), np.zeros(0, np.int64), {"lists": 0})
    y_all = np.concatenate(labels)
    n_pos_arr = np.array(n_pos, np.int64)
    found = np.array([lab.sum() for lab in labels])
    stats = {"lists": len(groups), "rows": int(y_all.size), "positive_rate": float(y_all.mean()),
             "candidate_recall": float(np.mean(found / np.maximum(n_pos_arr, 1))), "holdout_fraction": fraction,
             "cold_share": cold}
    return TrainingLists(np.concatenate(blocks), y_all, np.array(groups, np.int64), fn, names,
                         np.array(kept_users, np.int64), n_pos_arr, stats)
