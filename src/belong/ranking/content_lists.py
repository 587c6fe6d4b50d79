"""Training lists and features for the content ranker: which content a person engages with next.

The validation cut is carved from the *training* state's content engagements (an evaluation's test part is never
seen): one time ``T``, the ``1 - fraction`` quantile of the content engagement times before the state's ``now``;
the cut is the one point-in-time cut :func:`belong.state.as_of` (memberships, friendships, engagement, heat and
activity as of ``T``) and the labels are the engagements at or after ``T`` with content that existed at ``T`` and
the person had not engaged with before it — the temporal protocol's "next engagements", one level down.

Labels are **graded** (:data:`GRADES`): 2 for a reaction (or a message / click aimed at the content item), 1 for
a view only, 0 for a candidate without engagement after ``T``. The order objective learns from the grades; the
binary ``p(engage)`` (reported as ``p_join``, the ranker's calibrated probability) and the validation figures read
``grade > 0``. (The simulated worlds' ``message`` events are aimed at communities, not content items: there they
are no label. Every feature is live — read from relations that events change at once — so a state built from a
snapshot plus the log's tail scores exactly as one built from the whole log; the state's activity log, which
events folded in live do not extend, is not read.)

Fresh copies of the surface's sources, hydrators and filters are fitted on the cut, and for a sample of people
with an engagement after ``T`` the candidate stage's list (merged, filtered, unscored) is labelled.

Features (:func:`feature_names`) are request-time values only: each source's score, rank and gap to its best score
in the list (missing where it did not find the item), then :data:`CONTENT_FEATURES`: how many sources found it,
the shipped blend's score (weighted RRF, c = :data:`BLEND_C`), whether the person is a member of the item's
community and for how many days, the person's engagement with that community's content (count and share of all
their engagement), the person's total engagement, friends who engaged with the item and friends who are members of its
community, the item's age, engagers and decayed heat, its community's number of items, members and heat, and its
kind (channel / post / event, one column each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.pipeline.components import Progress
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.dataset import DAY_US, TrainingLists
from belong.ranking.list_parts import candidate_lists, no_lists, sample_users, source_columns, source_gaps
from belong.state import WorldState, as_of

#: label grade of an engagement type aimed at a content item (the strongest of a person's engagements counts)
GRADES = {"view": 1.0, "voice_minutes": 1.0, "click": 1.0, "reaction": 2.0, "message": 2.0}
KINDS = ("channel", "post", "event")
CONTENT_FEATURES = ("n_sources", "blend", "member", "member_days", "log_user_items_in_community",
                    "user_community_share", "log_user_engaged",
                    "friends_engaged", "log_friends_in_community", "age_days", "log_engagers", "log_heat",
                    "log_community_items", "log_community_members", "log_community_heat",
                    *(f"kind_{k}" for k in KINDS))
BLEND_C = 60.0  # the rank offset of the shipped content blend (surfaces/content.toml)


def feature_names(source_names: Sequence[str]) -> list[str]:
    """Per source ``<s>_score`` and ``<s>_rank``, then :data:`CONTENT_FEATURES`, then per source ``<s>_gap``."""
    return ([f"{s}_{part}" for s in source_names for part in ("score", "rank")] + list(CONTENT_FEATURES)
            + [f"{s}_gap" for s in source_names])


def _content_arrays(state: WorldState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(community, created, kind code, items per community) of the state's content, kept per size."""
    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        comm = np.asarray(state.content.community, np.int64)
        created = np.asarray(state.content.created, np.int64)
        code = {k: i for i, k in enumerate(KINDS)}
        kind = np.fromiter((code.get(k, -1) for k in state.content.kind), np.int64, comm.size)
        per_c = np.bincount(comm, minlength=state.n_communities) if comm.size else np.zeros(state.n_communities)
        return comm, created, kind, per_c
    return state._derived("content_ranker_items", (state.n_content, state.n_communities), build)


def _join_times(state: WorldState, u: int, comms: np.ndarray) -> np.ndarray:
    """Join time (us) of ``u``'s membership of each of ``comms`` (0 where unknown or not a member)."""
    out = np.zeros(comms.size, np.int64)
    J = state.join_ts
    if u < J.shape[0]:
        lo, hi = J.indptr[u], J.indptr[u + 1]
        cols, vals = J.indices[lo:hi], np.asarray(J.data[lo:hi], np.int64)
        if cols.size:
            order = np.argsort(cols, kind="stable")
            cols, vals = cols[order], vals[order]
            pos = np.minimum(np.searchsorted(cols, comms), cols.size - 1)
            hit = cols[pos] == comms
            out[hit] = vals[pos[hit]]
    live = state._join_ts_live  # noqa: SLF001 - joins folded in since the state was built
    if live:
        for k, c in enumerate(comms.tolist()):
            t = live.get((u, c))
            if t is not None:
                out[k] = t
    return out


def feature_matrix(source_names: Sequence[str], request: Request, state: WorldState,
                   cands: Sequence[Merged], weights: dict[str, float] | None = None) -> np.ndarray:
    """One float32 row per candidate content item (NaN where a value is unknown); see :func:`feature_names`.
    ``weights``: the sources' blend weights (the ``blend`` column: the shipped blend's score)."""
    n_src = len(source_names)
    base = 2 * n_src
    out, blend = source_columns(source_names, cands, len(CONTENT_FEATURES), weights, BLEND_C)
    if not cands:
        return out
    f = {name: base + j for j, name in enumerate(CONTENT_FEATURES)}
    out[:, f["n_sources"]] = [len(m.hits) for m in cands]
    out[:, f["blend"]] = blend
    x = np.fromiter((m.item for m in cands), np.int64, len(cands))
    comm_of, created, kind, per_c = _content_arrays(state)
    known = x < comm_of.size
    xx = np.where(known, x, 0)
    c = np.where(known, comm_of[xx] if comm_of.size else 0, -1)
    cc = np.maximum(c, 0)
    p = state.profile(request)
    u = p.idx
    mine = np.zeros(state.n_communities, bool)
    mine[p.communities[p.communities < state.n_communities]] = True
    member = known & mine[cc] if state.n_communities else np.zeros(len(cands), bool)
    out[:, f["member"]] = member
    if u is not None and member.any():
        joined = _join_times(state, u, cc[member])
        out[np.flatnonzero(member), f["member_days"]] = np.where(joined > 0, (state.now_us - joined) / DAY_US,
                                                                 np.nan)
    own = state.engaged.row(u) if u is not None else np.zeros(0, np.int64)
    own = own[own < comm_of.size]
    out[:, f["log_user_engaged"]] = np.log1p(own.size)
    if own.size:
        by_c = np.bincount(comm_of[own], minlength=state.n_communities)
        out[:, f["log_user_items_in_community"]] = np.where(known, np.log1p(by_c[cc]), np.nan)
        out[:, f["user_community_share"]] = np.where(known, by_c[cc] / own.size, np.nan)
    else:
        out[:, f["log_user_items_in_community"]] = 0.0
        out[:, f["user_community_share"]] = 0.0
    fe: Counter[int] = Counter()
    fin: Counter[int] = Counter()
    for fr in p.friends.tolist():
        fe.update(state.engaged.row(fr).tolist())
        fin.update(state.communities_of(fr).tolist())
    out[:, f["friends_engaged"]] = [fe.get(i, 0) for i in x.tolist()]
    out[:, f["log_friends_in_community"]] = np.log1p([fin.get(j, 0) for j in c.tolist()])
    out[:, f["age_days"]] = np.where(known, (state.now_us - created[xx]) / DAY_US if created.size else np.nan,
                                     np.nan)
    out[:, f["log_engagers"]] = np.where(known, np.log1p(state.engaged.col_sizes(xx)), np.nan)
    heat = state.content_heat.get("all", np.zeros(0))
    okh = known & (xx < heat.size)
    out[okh, f["log_heat"]] = np.log1p(heat[xx[okh]])
    out[:, f["log_community_items"]] = np.where(known, np.log1p(per_c[cc]) if per_c.size else 0.0, np.nan)
    out[:, f["log_community_members"]] = np.where(known, np.log1p(state.member_counts(cc)), np.nan)
    cheat = state.community_heat.get("all", np.zeros(0))
    okc = known & (cc < cheat.size)
    out[okc, f["log_community_heat"]] = np.log1p(cheat[cc[okc]])
    for j, _ in enumerate(KINDS):
        out[:, base + len(CONTENT_FEATURES) - len(KINDS) + j] = np.where(known, kind[xx] == j, np.nan)
    source_gaps(out, n_src, len(CONTENT_FEATURES))
    return out


def engagements(state: WorldState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, content, ts, grade) of the content engagements the state was built from, before its ``now``, in the
    state's indices (events of ids it does not know are left out). Empty where the source holds no events."""
    empty = np.zeros(0, np.int64)
    src = state.source
    events = getattr(src, "events", None) if not isinstance(src, Interactions) else None
    if events is None or events.num_rows == 0:
        return empty, empty, empty, np.zeros(0, np.float32)

    def plain(name: str) -> pa.ChunkedArray:
        col = events.column(name)
        return col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col

    mask = pc.and_(pc.is_in(plain("type"), pa.array(list(GRADES))), pc.equal(plain("target_kind"), "content"))
    ev = events.filter(mask)
    if ev.num_rows == 0:
        return empty, empty, empty, np.zeros(0, np.float32)
    uid = pc.index_in(ev.column("actor").cast(pa.string()), value_set=pa.array(state.users.ids, pa.string()))
    xid = pc.index_in(ev.column("target").cast(pa.string()), value_set=pa.array(state.content.ids, pa.string()))
    u = np.asarray(pc.fill_null(uid, -1), np.int64)
    x = np.asarray(pc.fill_null(xid, -1), np.int64)
    ts = np.asarray(ev.column("ts_us"), np.int64)
    types = np.asarray(ev.column("type").cast(pa.string()).to_pylist(), dtype=object)
    grade = np.array([GRADES[t] for t in types], np.float32)
    ok = (u >= 0) & (x >= 0) & ((ts < state.now_us) if state.now_us > 0 else True)  # the cut's own past
    return u[ok], x[ok], ts[ok], grade[ok]


def time_cut(state: WorldState, fraction: float
             ) -> tuple[WorldState, dict[int, dict[int, float]], int]:
    """The state as of ``T`` (the ``1 - fraction`` quantile of the engagement times), per person the grade of each
    item engaged with at or after ``T`` (not before it; the item existed at ``T``), and ``T``."""
    if not 0.0 < fraction < 1.0:
        raise ValidationError("holdout", f"must be between 0 and 1, got {fraction}")
    u, x, ts, grade = engagements(state)
    if ts.size == 0 or ts.min() == ts.max():
        raise ValidationError("training", "the content ranker needs content engagements (view, reaction) at "
                              "different times; this state has none")
    T = int(np.sort(ts)[min(int(np.floor(ts.size * (1.0 - fraction))), ts.size - 1)])
    if T <= ts.min():
        T = int(np.unique(ts)[1])
    cut = as_of(state, T)
    if cut.content.ids != state.content.ids[:cut.n_content]:
        raise ValidationError("state", f"the cut as of {T} orders content unlike the state; rebuild the state")
    before = cut.engagement_csr().tocsr()
    after = (ts >= T) & (x < cut.n_content)
    held: dict[int, dict[int, float]] = {}
    for uu, xx, g in zip(u[after].tolist(), x[after].tolist(), grade[after].tolist(), strict=True):
        if uu < before.shape[0]:
            lo, hi = before.indptr[uu], before.indptr[uu + 1]
            if xx in before.indices[lo:hi]:
                continue  # engaged with before T: not a next engagement
        mine = held.setdefault(uu, {})
        mine[xx] = max(mine.get(xx, 0.0), g)
    return cut, held, T


def build_lists(state: WorldState, upstream: Callable[[], Pipeline], *, fraction: float = 0.2,
                max_users: int = 2000, seed: int = 0, progress: Progress | None = None,
                weights: dict[str, float] | None = None) -> TrainingLists:
    """Graded candidate lists of a fresh candidate stage (``upstream()``) fitted on the time cut of ``state``
    (see the module docstring)."""
    cut, held, T = time_cut(state, fraction)
    stage = upstream().fit(cut, candidates_only=True)
    names = [s.name for s in stage.sources]
    users = sample_users(held, max_users, seed)
    blocks, labels, groups, kept, n_pos, items = [], [], [], [], [], []
    for uu, req, cands in candidate_lists(stage, cut.users.ids, users, progress):
        pos = held[uu]
        blocks.append(feature_matrix(names, req, cut, cands, weights))
        labels.append(np.fromiter((pos.get(m.item, 0.0) for m in cands), np.float32, len(cands)))
        items.append(np.fromiter((m.item for m in cands), np.int64, len(cands)))
        groups.append(len(cands))
        kept.append(uu)
        n_pos.append(len(pos))
    fn = feature_names(names)
    if not blocks:
        return no_lists(fn, names, {"lists": 0, "cut_us": T})
    y = np.concatenate(labels)
    n_pos_arr = np.array(n_pos, np.int64)
    found = np.array([(lab > 0).sum() for lab in labels])
    stats: dict[str, Any] = {"lists": len(groups), "rows": int(y.size), "positive_rate": float((y > 0).mean()),
                             "grade_2_rate": float((y >= 2).mean()),
                             "candidate_recall": float(np.mean(found / np.maximum(n_pos_arr, 1))),
                             "holdout_fraction": fraction, "holdout_by": "time", "cut_us": T,
                             "next_engagements": int(sum(len(v) for v in held.values()))}
    return TrainingLists(np.concatenate(blocks), y, np.array(groups, np.int64), fn, names,
                         np.array(kept, np.int64), n_pos_arr, stats, {}, {}, np.concatenate(items))
