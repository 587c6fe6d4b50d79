"""Bulk building of a :class:`~belong.state.world.WorldState`: from a ``World`` (entity tables + event table),
an event store, or :class:`~belong.interactions.Interactions` (offline evaluation).

Events are folded vectorised, in time order (ties keep log order): memberships are ``join`` minus a later
``leave``, friendships ``friend_accept`` minus a later ``friend_remove``, pending requests the pairs whose last
friend event is a request; blocks, engagement and heat follow. ``before_us`` builds the world as it was just before
that time (the point-in-time cut, :mod:`belong.state.cut`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from belong.domain import AgeGroup, Community, EntityStatus, User
from belong.interactions import Interactions
from belong.schema import STATE_COLUMNS
from belong.state.heat import HEAT_HALF_LIFE_DAYS
from belong.state.ids import IdMap
from belong.state.relation import Relation
from belong.state.timeline import ActivityLog, PairEvents
from belong.state.world import ACTIVITY_TYPES, ENGAGE_TYPES, WorldState


def from_world(world: object, *, before_us: int | None = None, now_us: int | None = None,
               user_ids: Iterable[str] = (), community_ids: Iterable[str] = (), content_ids: Iterable[str] = (),
               half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
    """A state of a ``World`` (``users``, ``communities``, ``content`` and ``events`` Arrow tables).

    ``before_us``: only events with ``ts < before_us`` and the entities created before it; the state's ``source``
    is then the world with those events only (a shallow copy), so nothing reading it sees the cut's future.
    ``user_ids`` / ``community_ids`` / ``content_ids`` are registered first, in order, so that their dense indices
    are ``0..n-1`` whatever their creation time (offline evaluation passes the training data's id maps). ``now_us``:
    the time heat is decayed to (default: the last event's)."""
    st = WorldState(half_life_days=half_life_days)
    _register(st, [str(u) for u in user_ids], [str(c) for c in community_ids])
    registered_content = set(map(str, content_ids))
    events: pa.Table = world.events  # type: ignore[attr-defined]
    if before_us is not None:
        events = events.filter(pc.less(events.column("ts_us"), int(before_us)))
    _fill_entities(st, world, before_us, registered_content)
    _load_events(st, events, now_us)
    st.source = world
    if before_us is not None and events.num_rows < world.events.num_rows:  # type: ignore[attr-defined]
        # the cut's source holds its own past only: whatever reads ``state.source`` (the rankers' friend requests,
        # friendship times, engagements) cannot see an event at or after the cut, not even one at the cut itself
        st.source = copy.copy(world)
        st.source.events = events  # type: ignore[attr-defined]
    return st


def from_store(spec: str | Path, *, half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
    """A state of an event store (a directory or a PostgreSQL URL)."""
    from belong.datasets import World
    from belong.eventlog import open_store

    with open_store(spec, create=False) as store:
        world = World(users=store.users(), communities=store.communities(), content=store.content(),
                      events=encode_events(store.read_columns(STATE_COLUMNS)))
    return from_world(world, half_life_days=half_life_days)


def from_interactions(data: Interactions, *, now_us: int | None = None,
                      half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
    """Offline evaluation: users x items become memberships (or, for a square user x user matrix, friendships).
    Items get their id as name; timestamps, when present, feed trending and are kept as the memberships' join
    times (a pair's earliest row). Interactions say nothing of leaves or reports: those stay ``None``. ``now_us``:
    the time heat is decayed to (default: the last row's)."""
    st = WorldState(half_life_days=half_life_days)
    st.source = data
    square = bool(data.meta.get("square")) or (
        data.n_users == data.n_items and np.array_equal(data.user_ids, data.item_ids))
    ts = data.ts_us if data.ts_us is not None else np.zeros(len(data), np.int64)
    st.now_us = int(now_us) if now_us is not None else (int(ts.max()) if ts.size else 0)
    ages = data.meta.get("user_age_group")
    for i, u in enumerate(data.user_ids.tolist()):
        age = AgeGroup(ages[i]) if ages is not None and ages[i] in AgeGroup._value2member_map_ else AgeGroup.UNKNOWN
        st.add_user(User(id=str(u), created_at_us=0, age_group=age))
    X = data.csr()
    if square:
        F = ((X + X.T) > 0).astype(np.float32).tocsr()
        F.setdiag(0)
        F.eliminate_zeros()
        st.friends = Relation(F, symmetric=True)
        st.members = Relation.empty((st.n_users, 0))
        st.engaged = Relation.empty((st.n_users, 0))
        st.community_heat = {"all": np.zeros(0)}
        st.content_heat = {"all": np.zeros(0)}
        return st
    first = np.full(data.n_items, np.iinfo(np.int64).max)
    np.minimum.at(first, data.items, ts)
    for j, c in enumerate(data.item_ids.tolist()):
        st.add_community(Community(id=str(c), name=str(c), created_at_us=int(min(first[j], st.now_us))))
    st.members = Relation(X)
    st.join_ts = _ts_csr(data.users, data.items, ts, X.shape)
    order = np.argsort(ts, kind="stable")
    st.join_events = PairEvents(data.users[order].astype(np.int64), data.items[order].astype(np.int64),
                                np.asarray(ts, np.int64)[order])
    st.activity_log = ActivityLog(data.items.astype(np.int64), data.users.astype(np.int64),
                                  np.ones(len(data), np.float64), np.asarray(ts, np.int64))
    st.friends = Relation.empty((st.n_users, st.n_users), symmetric=True)
    st.engaged = Relation.empty((st.n_users, 0))
    st.community_heat = st.heat(data.items.astype(np.int64), data.users.astype(np.int64),
                                st.decay(ts).astype(np.float64), st.n_communities)
    st.content_heat = {"all": np.zeros(0)}
    return st


# ----------------------------------------------------------------------------------------------- entities
def _fill_entities(st: WorldState, world: object, before_us: int | None, registered_content: set[str]) -> None:
    """Entity tables: those created before ``before_us`` (when given) and every id registered already."""
    users: pa.Table = world.users  # type: ignore[attr-defined]
    comms: pa.Table = world.communities  # type: ignore[attr-defined]
    content: pa.Table = world.content  # type: ignore[attr-defined]
    if before_us is None and not len(st.users) and not len(st.communities) and _bulk_entities(st, users, comms):
        users = users.schema.empty_table()
        comms = comms.schema.empty_table()

    if before_us is not None and _registered_users(st, users):
        users = users.schema.empty_table()

    def exists(r: dict, index: dict[str, int]) -> bool:
        return before_us is None or r["created_at_us"] < before_us or r["id"] in index

    for r in users.to_pylist():
        if not exists(r, st.users.index):
            continue
        known = before_us is not None and r["id"] in st.users.index  # registered with a placeholder time
        i = st.add_user(User(id=r["id"], created_at_us=r["created_at_us"], age_group=AgeGroup(r["age_group"]),
                             locale=r["locale"], interests=tuple(r["interests"] or ()),
                             status=EntityStatus(r["status"])))
        if known:
            st.users.created[i] = r["created_at_us"]
    for r in comms.to_pylist():
        if not exists(r, st.communities.index):
            continue
        st.add_community(Community(
            id=r["id"], name=r["name"], created_at_us=r["created_at_us"], description=r["description"] or "",
            tags=tuple(r["tags"] or ()), locale=r["locale"], is_age_restricted=r["is_age_restricted"],
            discoverable=r["discoverable"], invite_only=r["invite_only"], status=EntityStatus(r["status"])))
    for r in content.to_pylist():
        if before_us is not None and r["created_at_us"] >= before_us and r["id"] not in registered_content:
            continue
        st.add_content(r["id"], st.ensure_community(r["community_id"], r["created_at_us"]), r["kind"],
                       r["created_at_us"], r["text"] or "", r["status"])


def _register(st: WorldState, user_ids: list[str], community_ids: list[str]) -> None:
    """Register ids first, in order (their attributes the defaults of an id seen in an event: ``ensure_user`` /
    ``ensure_community`` at time 0), the users column by column when unique (a state's own ids: a cut)."""
    if user_ids and len(set(user_ids)) == len(user_ids):
        u, n = st.users, len(user_ids)
        blank = User(id="", created_at_us=0)
        u.ids, u.index = user_ids, {s: i for i, s in enumerate(user_ids)}
        u.locale, u.age_group, u.interests = [blank.locale] * n, [str(blank.age_group)] * n, [()] * n
        u.created, u.status = [0] * n, [str(blank.status)] * n
        st.version += 1
    else:
        for uid in user_ids:
            st.ensure_user(uid, 0)
    for c in community_ids:
        st.ensure_community(c, 0)


def _registered_users(st: WorldState, users: pa.Table) -> bool:
    """A cut's users when the table's ids are the first ids registered, in order (a state's own users, cut in
    time): each one's attributes and creation time from its row, column by column (what ``add_user`` of every
    row does); anything else is left to the row-by-row path (False)."""
    n = users.num_rows
    ids = users.column("id").to_pylist()
    u = st.users
    if n == 0 or n > len(u.ids) or ids != u.ids[:n]:
        return False
    u.locale[:n], u.age_group[:n] = users.column("locale").to_pylist(), users.column("age_group").to_pylist()
    u.interests[:n] = [tuple(x or ()) for x in users.column("interests").to_pylist()]
    u.status[:n], u.created[:n] = users.column("status").to_pylist(), users.column("created_at_us").to_pylist()
    st.version += 1
    return True


def _bulk_entities(st: WorldState, users: pa.Table, comms: pa.Table) -> bool:
    """Users and communities of a whole world into empty tables, column by column (a store's tables have unique
    ids; anything else is left to the row-by-row path: False)."""
    uid, cid = users.column("id").to_pylist(), comms.column("id").to_pylist()
    if len(set(uid)) != len(uid) or len(set(cid)) != len(cid):
        return False
    u, c = st.users, st.communities
    u.ids, u.index = uid, {s: i for i, s in enumerate(uid)}
    u.locale, u.age_group = users.column("locale").to_pylist(), users.column("age_group").to_pylist()
    u.interests = [tuple(x or ()) for x in users.column("interests").to_pylist()]
    u.created, u.status = users.column("created_at_us").to_pylist(), users.column("status").to_pylist()
    c.ids, c.index = cid, {s: i for i, s in enumerate(cid)}
    c.name, c.locale = comms.column("name").to_pylist(), comms.column("locale").to_pylist()
    c.description = [d or "" for d in comms.column("description").to_pylist()]
    c.tags = [tuple(t or ()) for t in comms.column("tags").to_pylist()]
    c.age_restricted = comms.column("is_age_restricted").to_pylist()
    c.discoverable, c.invite_only = comms.column("discoverable").to_pylist(), comms.column("invite_only").to_pylist()
    c.status, c.created = comms.column("status").to_pylist(), comms.column("created_at_us").to_pylist()
    st.version += 1
    st.c_rev += 1
    return True


#: the string columns of events that :func:`encode_events` dictionary-encodes
CODED_COLUMNS = ("type", "target_kind", "actor", "target")


def encode_events(events: pa.Table) -> pa.Table:
    """``events`` with :data:`CODED_COLUMNS` dictionary-encoded, one dictionary per column (int32 codes into the
    distinct values): a million people's 24 million events hold a million ids once each, and a state is built by
    mapping each distinct id once. Columns encoded already (one dictionary) are kept as they are."""
    for name in CODED_COLUMNS:
        col = events.column(name)
        if pa.types.is_dictionary(col.type) and col.num_chunks == 1:
            continue
        if not pa.types.is_dictionary(col.type):
            col = col.dictionary_encode()
        one = (col.unify_dictionaries().combine_chunks() if col.num_chunks
               else pa.array([], pa.string()).dictionary_encode())
        events = events.set_column(events.schema.get_field_index(name), name, pa.chunked_array([one]))
    return events


class _Codes:
    """A dictionary-encoded column: int32 ``codes`` per row into ``values``; maps the distinct values to the dense
    indices of an :class:`IdMap` once per (map, size)."""

    def __init__(self, col: pa.ChunkedArray, id_arrays: dict[int, tuple[int, pa.Array]]) -> None:
        arr = col.chunk(0)
        self.codes = arr.indices.to_numpy(zero_copy_only=False)
        self.values = arr.dictionary
        self._maps: dict[int, tuple[int, np.ndarray]] = {}
        self._id_arrays = id_arrays  # shared by the columns of one build: each IdMap's ids as Arrow, by size

    def index_map(self, ids: IdMap) -> np.ndarray:
        """Per distinct value, its index in ``ids`` or -1 (kept while ``ids`` does not grow: ids are never
        removed)."""
        hit = self._maps.get(id(ids))
        if hit is not None and hit[0] == len(ids):
            return hit[1]
        if not len(ids):
            m = np.full(len(self.values), -1, np.int64)
        else:
            found = pc.index_in(self.values, value_set=self._id_array(ids))
            m = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        self._maps[id(ids)] = (len(ids), m)
        return m

    def lookup(self, ids: IdMap, mask: np.ndarray | None, ts: np.ndarray, ensure) -> np.ndarray:
        """Dense indices of the rows ``mask`` (all: None); unknown ids are added (in order of first appearance,
        at the time of that row) via ``ensure``, or map to -1 when ``ensure`` is None."""
        codes = self.codes if mask is None else self.codes[mask]
        if codes.size == 0:
            return np.empty(0, np.int64)
        idx = self.index_map(ids)[codes]
        miss = np.flatnonzero(idx < 0)
        if miss.size and ensure is not None:
            uniq, first = np.unique(codes[miss], return_index=True)
            order = np.argsort(first, kind="stable")
            at = ts if mask is None else ts[mask]
            for code, t in zip(uniq[order].tolist(), at[miss][first[order]].tolist(), strict=True):
                ensure(self.values[code].as_py(), int(t))
            idx = self.index_map(ids)[codes]
        return idx


    def _id_array(self, ids: IdMap) -> pa.Array:
        hit = self._id_arrays.get(id(ids))
        if hit is not None and hit[0] == len(ids):
            return hit[1]
        arr = pa.array(ids.ids, pa.string())
        self._id_arrays[id(ids)] = (len(ids), arr)
        return arr


# ----------------------------------------------------------------------------------------------- events
def _load_events(st: WorldState, events: pa.Table, now_us: int | None = None) -> None:
    order = events.column("ts_us").to_numpy()
    if order.size > 1 and not bool((order[1:] >= order[:-1]).all()):  # a store's read is in time order already:
        events = events.take(pc.sort_indices(events, [("ts_us", "ascending")]))  # no copy of the whole log then
    del order  # (stable sort: ties keep log order either way)
    events = encode_events(events)
    ts = events.column("ts_us").to_numpy().astype(np.int64)
    value = events.column("value").to_numpy().astype(np.float64)
    id_arrays: dict[int, tuple[int, pa.Array]] = {}
    actor = _Codes(events.column("actor"), id_arrays)
    target = _Codes(events.column("target"), id_arrays)

    def codes(name: str) -> tuple[np.ndarray, dict[str, int]]:
        col = _Codes(events.column(name), id_arrays)
        return col.codes, {v: i for i, v in enumerate(col.values.to_pylist())}

    type_codes, type_dict = codes("type")
    kind_codes, kind_dict = codes("target_kind")

    def is_type(*names: str) -> np.ndarray:
        return np.isin(type_codes, [type_dict[n] for n in names if n in type_dict])

    def is_kind(name: str) -> np.ndarray:
        return kind_codes == kind_dict.get(name, -1)

    etype_join = type_codes == type_dict.get("join", -1)
    etype_accept = type_codes == type_dict.get("friend_accept", -1)
    st.now_us = int(now_us) if now_us is not None else (int(ts.max()) if ts.size else 0)
    uidx = actor.lookup(st.users, None, ts, st.ensure_user)

    def target_idx(mask: np.ndarray, kind: str) -> np.ndarray:
        if kind == "community":
            return target.lookup(st.communities, mask, ts, st.ensure_community)
        if kind == "user":
            return target.lookup(st.users, mask, ts, st.ensure_user)
        return target.lookup(st.content, mask, ts, None)

    def pair_events(mask: np.ndarray) -> PairEvents:
        """Rows ``mask`` as (user, known community, time); unknown communities are dropped, never added."""
        c = target.lookup(st.communities, mask, ts, None)
        ok = (c >= 0) & (uidx[mask] >= 0)
        return PairEvents(uidx[mask][ok].astype(np.int64), c[ok], ts[mask][ok].astype(np.int64))

    # memberships
    m = is_type("join", "leave")
    a, b, a_ts = _last_state_ts(uidx[m], target_idx(m, "community"), etype_join[m], ts[m])
    # joins, leaves and reports of communities, for cuts and for labels of later outcomes of a join
    st.join_events, st.leave_events, st.community_reports = (
        pair_events(is_type(t) & is_kind("community")) for t in ("join", "leave", "report"))
    # friendships (undirected)
    f = is_type("friend_accept", "friend_remove")
    fu, fv = uidx[f], target_idx(f, "user")
    lo, hi = np.minimum(fu, fv), np.maximum(fu, fv)
    lo, hi, _ = _last_state_ts(lo, hi, etype_accept[f], ts[f])
    # pending friend requests: pairs whose last friend event (either direction) is a request
    pm = is_type("friend_request", "friend_accept", "friend_remove") | (is_type("block") & is_kind("user"))
    pending_args = (uidx[pm], target_idx(pm, "user"), type_codes[pm] == type_dict.get("friend_request", -1))
    # blocks
    for kind, blocked in (("user", st.blocked_users), ("community", st.blocked_communities)):
        bm = is_type("block") & is_kind(kind)
        for i, j in zip(uidx[bm].tolist(), target_idx(bm, kind).tolist(), strict=True):
            blocked[i].add(j)
    # activity heat
    cm = is_type(*ACTIVITY_TYPES) & is_kind("community")
    c_idx = target_idx(cm, "community")
    xm = is_type(*ENGAGE_TYPES) & is_kind("content")
    x_idx = target_idx(xm, "content")
    nu, nc, nx = st.n_users, st.n_communities, st.n_content
    st.members = Relation(_csr(a, b, (nu, nc)))
    st.join_ts = _ts_csr(a, b, a_ts, (nu, nc))
    st.friends = Relation(_csr(np.r_[lo, hi], np.r_[hi, lo], (nu, nu)), symmetric=True)
    _index_pending(st, *pending_args)
    ok = x_idx >= 0
    st.engaged = Relation(_csr(uidx[xm][ok], x_idx[ok], (nu, nx)))
    st.community_heat = st.heat(c_idx, uidx[cm], np.log1p(value[cm]) * st.decay(ts[cm]), nc)
    st.activity_log = ActivityLog(c_idx.astype(np.int64), uidx[cm].astype(np.int64),
                                  np.log1p(value[cm]).astype(np.float64), ts[cm].astype(np.int64))
    st.content_heat = st.heat(x_idx[ok], uidx[xm][ok], np.log1p(value[xm][ok]) * st.decay(ts[xm][ok]), nx)
    st.version += 1


def _index_pending(st: WorldState, req: np.ndarray, tgt: np.ndarray, is_request: np.ndarray) -> None:
    """Events in time order between user pairs; the last one per unordered pair decides."""
    ok = (req >= 0) & (tgt >= 0) & (req != tgt)
    i, j, r = req[ok], tgt[ok], np.asarray(is_request, bool)[ok]
    if i.size == 0:
        return
    # per unordered pair its last event (pairs in order of their first event, as a dict filled in time order)
    df = pd.DataFrame({"lo": np.minimum(i, j), "hi": np.maximum(i, j), "r": r, "i": i, "j": j})
    last = df.groupby(["lo", "hi"], sort=False).last()
    last = last[last["r"].to_numpy()]
    for a, b in zip(last["i"].tolist(), last["j"].tolist(), strict=True):
        if not st.friends.has(a, b):
            st.pending_requests[a].add(b)


def _last_state_ts(a: np.ndarray, b: np.ndarray, on: np.ndarray, ts: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b) whose last event (input is in time order) turned the relation on, with that event's time."""
    if a.size == 0:
        return a, b, ts.astype(np.int64)
    df = pd.DataFrame({"a": a, "b": b, "on": on, "ts": ts}).drop_duplicates(["a", "b"], keep="last")
    df = df[df["on"]]
    return df["a"].to_numpy(np.int64), df["b"].to_numpy(np.int64), df["ts"].to_numpy(np.int64)


def _ts_csr(rows: np.ndarray, cols: np.ndarray, ts: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """users x communities int64 CSR of times; duplicate pairs keep their earliest time."""
    rows, cols, ts = (np.asarray(x, np.int64) for x in (rows, cols, ts))
    if rows.size:
        key = rows * max(shape[1], 1) + cols
        order = np.lexsort((ts, key))
        first = np.r_[True, key[order][1:] != key[order][:-1]]
        rows, cols, ts = rows[order][first], cols[order][first], ts[order][first]
    m = sp.csr_matrix((ts, (rows, cols)), shape=shape, dtype=np.int64)
    m.sort_indices()
    return m


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
