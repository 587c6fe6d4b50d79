"""Training lists for the people ranker: who becomes friends with whom, learned from the training graph only.

The validation cut is carved from the *training* friendships (the evaluation's hidden edges are never seen), in
one of two ways (``by``):

* ``random`` (:func:`hide_edges`): a seeded random ``fraction`` of the undirected edges is hidden in both directions
  (the hide-edges protocol of :mod:`belong.evaluation.splitters`, one level down): for graphs without times;
* ``time`` (:func:`time_cut`): one time ``T``, the ``1 - fraction`` quantile of the friendship times before the
  state's ``now``; the cut is the one point-in-time cut :func:`belong.state.as_of` (friendships, memberships,
  activity, account ages as of ``T``) and the positives are the friendships formed at or after ``T`` — what a
  temporal test asks for;
* ``auto``: ``time`` when the friendship times span at least ``min_span_days`` days, else ``random``.

Fresh copies of the surface's sources, hydrators and filters are fitted on the cut, and for a sample of users with
a hidden edge the candidate stage's list (merged, filtered, unscored) is labelled: 1 where the candidate is one of
the user's hidden friends. That is ``p(edge)``: the chance
that a friendship forms, the product of ``p(user sends a request)`` and ``p(other accepts)``, learned end to end
where the data holds friendships but no requests (a friendship graph such as LastFM-Asia).

Features (:func:`feature_names`) are request-time values only: each source's score, rank and gap to its best score
in the list (missing where it did not find the person), then pair and entity values read from the state (see
:data:`PEOPLE_FEATURES`): mutual friends, their Jaccard and resource-allocation weight, both degrees, shared
communities, declared interests in common, locale and age-group match (missing where either is unknown), the
candidate's activity (memberships and engagement) and both account ages (days before ``state.now_us``: the state
is the point-in-time cut the pipeline was fitted on, so the values are those of that time).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.pipeline.components import Progress
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.dataset import DAY_US, TrainingLists
from belong.ranking.list_parts import candidate_lists, no_lists, sample_users, source_columns, source_gaps
from belong.state import WorldState, as_of
from belong.state.relation import Relation

PEOPLE_FEATURES = ("n_sources", "mutual_friends", "jaccard", "resource_allocation", "log_degree_user",
                   "log_degree_candidate", "shared_communities", "shared_interests", "locale_match", "age_match",
                   "log_activity_candidate", "account_days_candidate", "account_days_user", "blend", "log_paths3",
                   "ppr", "ppr_vs_best")
BLEND_C = 10.0  # the rank offset of the shipped people blend (surfaces/people.toml)
PPR_RESTART = 0.3
PPR_STEPS = 8
UNKNOWN = ("", "und", "unknown", "none")
HOLDOUT_BY = ("auto", "time", "random")


def feature_names(source_names: Sequence[str]) -> list[str]:
    """Per source ``<s>_score`` and ``<s>_rank``, then :data:`PEOPLE_FEATURES`, then per source ``<s>_gap``."""
    return ([f"{s}_{part}" for s in source_names for part in ("score", "rank")] + list(PEOPLE_FEATURES)
            + [f"{s}_gap" for s in source_names])


def _graph(state: WorldState) -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """(friends, degree, memberships, the walk's transposed transition matrix) of ``state``, kept per version."""
    def build() -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix, sp.csr_matrix]:
        F = state.friend_csr().tocsr().astype(np.float64)
        F.data[:] = 1.0
        deg = np.diff(F.indptr).astype(np.float64)
        step = sp.csr_matrix(F.multiply(1.0 / np.maximum(deg, 1.0)[:, None]).T)  # column-stochastic
        return F, deg, state.membership_csr().tocsr(), step
    return state._derived("people_ranker_graph", (state.version, state.friends.version, state.members.version), build)


def _walk_features(F: sp.csr_matrix, step: sp.csr_matrix, mine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(paths of length 3 from the user, personalized PageRank from the user) over every person: exact, a few
    sparse products on the friendship graph (restart :data:`PPR_RESTART`, truncated after :data:`PPR_STEPS`
    steps from the user's friends)."""
    paths3 = F @ (F @ mine)
    x = mine / max(mine.sum(), 1.0)
    ppr = PPR_RESTART * x
    for _ in range(PPR_STEPS):
        x = (1.0 - PPR_RESTART) * (step @ x)
        ppr += PPR_RESTART * x
    return paths3, ppr


def feature_matrix(source_names: Sequence[str], request: Request, state: WorldState,
                   cands: Sequence[Merged], weights: dict[str, float] | None = None) -> np.ndarray:
    """One float32 row per candidate person (NaN where a value is unknown); see :func:`feature_names`.
    ``weights``: the sources' blend weights (the ``blend`` column: the shipped blend's score)."""
    n_src = len(source_names)
    base = 2 * n_src
    out, blend = source_columns(source_names, cands, len(PEOPLE_FEATURES), weights, BLEND_C)
    if not cands:
        return out
    v = np.fromiter((m.item for m in cands), np.int64, len(cands))
    p = state.profile(request)
    F, deg, M, step = _graph(state)
    known = v < F.shape[0]
    vv = np.where(known, v, 0)
    out[:, base] = [len(m.hits) for m in cands]
    du = float(p.friends.size)
    dv = np.where(known, deg[vv], 0.0)
    mine = np.zeros(F.shape[0])
    mine[p.friends[p.friends < F.shape[0]]] = 1.0
    rows = F[vv]
    common = np.where(known, rows @ mine, 0.0)
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1.0), 0.0)
    out[:, base + 1] = common
    out[:, base + 2] = common / np.maximum(du + dv - common, 1.0)
    out[:, base + 3] = np.where(known, rows @ (mine * inv), 0.0)
    out[:, base + 4] = np.log1p(du)
    out[:, base + 5] = np.log1p(dv)
    mc = np.zeros(M.shape[1])
    mc[p.communities[p.communities < M.shape[1]]] = 1.0
    out[:, base + 6] = np.where(known & (vv < M.shape[0]), M[np.minimum(vv, max(M.shape[0] - 1, 0))] @ mc, 0.0) \
        if M.shape[0] and M.shape[1] else 0.0
    users = state.users
    mine_tags = set(p.interests)
    out[:, base + 7] = [len(mine_tags.intersection(users.interests[i])) if k else 0
                        for i, k in zip(vv.tolist(), known.tolist(), strict=True)]
    for j, attr, own in ((base + 8, users.locale, p.locale), (base + 9, users.age_group, p.age_group)):
        if str(own).lower() in UNKNOWN:
            continue
        out[:, j] = [np.nan if not k or str(attr[i]).lower() in UNKNOWN else float(attr[i] == own)
                     for i, k in zip(vv.tolist(), known.tolist(), strict=True)]
    E = state.engagement_csr() if state.n_content else None
    act = np.diff(M.indptr)[vv] if M.shape[0] else np.zeros(vv.size)
    if E is not None and E.shape[0]:
        act = act + np.diff(E.indptr)[np.minimum(vv, E.shape[0] - 1)]
    out[:, base + 10] = np.log1p(act)
    created = np.asarray(users.created, np.int64)
    if created.size:
        out[:, base + 11] = np.where(known, (state.now_us - created[vv]) / DAY_US, np.nan)
        if p.idx is not None:
            out[:, base + 12] = (state.now_us - created[p.idx]) / DAY_US
    out[:, base + 13] = blend
    if p.friends.size:
        paths3, ppr = _walk_features(F, step, mine)
        out[:, base + 14] = np.log1p(np.where(known, paths3[vv], 0.0))
        pv = np.where(known, ppr[vv], 0.0) * F.shape[0]
        out[:, base + 15] = pv
        out[:, base + 16] = pv / max(float(pv.max()), 1e-12)
    source_gaps(out, n_src, len(PEOPLE_FEATURES))
    return out


def hide_edges(F: sp.csr_matrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, dict[int, set[int]]]:
    """Hide a seeded random ``fraction`` of the undirected edges of ``F`` in both directions: the rest, and per
    user the hidden friends."""
    if not 0.0 < fraction < 1.0:
        raise ValidationError("holdout", f"must be between 0 and 1, got {fraction}")
    coo = sp.triu(F, k=1).tocoo()
    a, b = coo.row.astype(np.int64), coo.col.astype(np.int64)
    hidden = np.random.default_rng(seed).random(a.size) < fraction
    keep_a, keep_b = a[~hidden], b[~hidden]
    n = F.shape[0]
    rest = sp.csr_matrix((np.ones(2 * keep_a.size, np.float32), (np.r_[keep_a, keep_b], np.r_[keep_b, keep_a])),
                         shape=(n, n))
    held: dict[int, set[int]] = {}
    for x, y in zip(a[hidden].tolist(), b[hidden].tolist(), strict=True):
        held.setdefault(x, set()).add(y)
        held.setdefault(y, set()).add(x)
    return rest, held


def with_friends(state: WorldState, friends: sp.csr_matrix) -> WorldState:
    """A shallow copy of ``state`` whose friendships are ``friends`` (everything else shared, read-only)."""
    cut = copy.copy(state)
    cut.friends = Relation(friends, symmetric=True)
    cut._cache = {}
    cut.version = state.version + 1_000_000  # never equal to a key computed on the full state
    return cut


def friendship_times(state: WorldState) -> np.ndarray:
    """The times (us) of the friendships the state was built from, up to its ``now`` (empty when unknown)."""
    src = state.source
    if isinstance(src, Interactions):
        ts = src.ts_us if src.meta.get("square") and src.ts_us is not None else np.zeros(0, np.int64)
    else:
        events = getattr(src, "events", None)
        if events is None or events.num_rows == 0:
            return np.zeros(0, np.int64)
        import pyarrow.compute as pc

        ts = events.filter(pc.equal(events.column("type"), "friend_accept")).column("ts_us").to_numpy()
    ts = np.asarray(ts, np.int64)
    return ts[ts <= state.now_us] if state.now_us > 0 and (ts <= state.now_us).any() else ts


def resolve_holdout_by(state: WorldState, by: str, min_span_days: float = 7.0) -> str:
    """``time`` or ``random`` for ``by`` (``auto``: ``time`` when friendship times span >= ``min_span_days``)."""
    if by not in HOLDOUT_BY:
        raise ValidationError("holdout_by", f"must be one of {', '.join(HOLDOUT_BY)}, got {by!r}")
    if by != "auto":
        return by
    ts = friendship_times(state)
    return "time" if ts.size and (ts.max() - ts.min()) / DAY_US >= min_span_days else "random"


def time_cut(state: WorldState, fraction: float) -> tuple[WorldState, dict[int, set[int]], int]:
    """The ``time`` cut: the state as of ``T`` (:func:`belong.state.as_of`), per user the friends made since, ``T``."""
    if not 0.0 < fraction < 1.0:
        raise ValidationError("holdout", f"must be between 0 and 1, got {fraction}")
    ts = np.sort(friendship_times(state))
    if ts.size == 0 or ts[0] == ts[-1]:
        raise ValidationError("holdout_by", "a time cut needs friendship times that differ; use holdout_by = 'random'")
    T = int(ts[min(int(np.floor(ts.size * (1.0 - fraction))), ts.size - 1)])
    if T <= ts[0]:
        T = int(np.unique(ts)[1])
    cut = as_of(state, T)
    n = state.n_users
    before = cut.friend_csr()
    if before.shape != (n, n):  # the cut registers the state's ids first: same indices
        raise ValidationError("state", f"the cut as of {T} has {before.shape[0]} users, the state {n}")
    new = sp.triu(state.friend_csr() - before.multiply(state.friend_csr()), k=1).tocoo()
    held: dict[int, set[int]] = {}
    for a, b in zip(new.row.tolist(), new.col.tolist(), strict=True):
        held.setdefault(a, set()).add(b)
        held.setdefault(b, set()).add(a)
    return cut, held, T


def build_lists(state: WorldState, upstream: Callable[[], Pipeline], *, fraction: float = 0.2,
                max_users: int = 2000, seed: int = 0, by: str = "random", min_span_days: float = 7.0,
                progress: Progress | None = None, weights: dict[str, float] | None = None,
                positives: Callable[[WorldState, int], dict[int, set[int]]] | None = None) -> TrainingLists:
    """Labelled candidate lists of a fresh candidate stage (``upstream()``) fitted on a validation cut of the
    training graph (``by``: random | time | auto; see the module docstring).

    ``positives(cut, T)`` (time cuts only): per user the people labelled 1 instead of the friendships made since
    ``T`` (e.g. the requests sent since, :mod:`belong.ranking.people_two_sided`); the friendships are then kept as
    the row labels ``labels["edge"]`` and their count per list as ``labels["edge_n"]``."""
    how = resolve_holdout_by(state, by, min_span_days)
    T: int | None = None
    edges: dict[int, set[int]] | None = None
    if how == "time":
        cut, held, T = time_cut(state, fraction)
        if positives is not None:
            edges, held = held, positives(cut, T)
    else:
        rest, held = hide_edges(state.friend_csr(), fraction, seed)
        cut = with_friends(state, rest)
    stage = upstream().fit(cut, candidates_only=True)
    names = [s.name for s in stage.sources]
    users = sample_users(held, max_users, seed)
    blocks, labels, groups, kept, n_pos, items, edge_y, edge_n = [], [], [], [], [], [], [], []
    for u, req, cands in candidate_lists(stage, state.users.ids, users, progress):
        pos = held[u]
        blocks.append(feature_matrix(names, req, cut, cands, weights))
        labels.append(np.fromiter((m.item in pos for m in cands), np.float32, len(cands)))
        items.append(np.fromiter((m.item for m in cands), np.int64, len(cands)))
        if edges is not None:
            mine = edges.get(u, set())
            edge_y.append(np.fromiter((m.item in mine for m in cands), np.float32, len(cands)))
            edge_n.append(np.full(len(cands), len(mine), np.float32))
        groups.append(len(cands))
        kept.append(u)
        n_pos.append(len(pos))
    fn = feature_names(names)
    if not blocks:
        return no_lists(fn, names, {"lists": 0, "holdout_by": how})
    y = np.concatenate(labels)
    n_pos_arr = np.array(n_pos, np.int64)
    found = np.array([lab.sum() for lab in labels])
    stats: dict[str, Any] = {"lists": len(groups), "rows": int(y.size), "positive_rate": float(y.mean()),
                             "candidate_recall": float(np.mean(found / np.maximum(n_pos_arr, 1))),
                             "holdout_fraction": fraction, "holdout_by": how,
                             "hidden_edges": int(sum(len(s) for s in held.values()) // 2)}
    if T is not None:
        stats["cut_us"] = T
    extra = {"edge": np.concatenate(edge_y), "edge_n": np.concatenate(edge_n)} if edges is not None else {}
    return TrainingLists(np.concatenate(blocks), y, np.array(groups, np.int64), fn, names,
                         np.array(kept, np.int64), n_pos_arr, stats, extra, {}, np.concatenate(items))
