"""State snapshots: a :class:`WorldState` written as numpy arrays and Arrow tables, versioned with the event log's
position, and read back with memory maps — so an API process starts from the snapshot and replays only the log's
tail (the events appended after that position) instead of the whole log.

Layout (``DIR/``)::

    snapshot.json                 format, log position (last ``seq`` included), now_us, half-life, counts,
                                  entity counts of the store, heat keys, every file's size and sha256
    users.arrow                   ids, locale, age group, interests, creation time, status (Arrow IPC)
    communities.arrow / content.arrow
    members.*.npy / friends.*.npy / engaged.*.npy     CSR (indptr, indices int64) of each relation and of its
                                                      transpose; memory-mapped read-only at load
    join_ts.*.npy                 the join time of every membership (CSR aligned with members)
    join_events.*.npy, leave_events.*.npy, reports.*.npy, activity.*.npy    time-stamped facts (memory-mapped)
    heat.community.<i>.npy, heat.content.<i>.npy                          heat per key (read, writable)
    blocked_users.npy, blocked_communities.npy, pending.npy               (n, 2) int64 pairs

Only data: arrays are read with ``allow_pickle=False``; a file missing, extra or of another size than written is
refused with a :class:`ValidationError` naming it. A snapshot state has no source table: it serves and takes events
(:meth:`WorldState.apply`), and a point-in-time cut needs a state built from the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import scipy.sparse as sp

from belong.domain import Event, EventType, TargetKind
from belong.errors import ValidationError
from belong.schema import STATE_COLUMNS
from belong.state.relation import Relation
from belong.state.timeline import ActivityLog, PairEvents
from belong.state.world import WorldState

FORMAT = 1
META = "snapshot.json"
_SEP = "\x1f"  # joins a list of tags/interests into one string column (dictionary-encoded at load)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot was taken of: the log position (last ``seq`` folded in) and the store's entity counts."""

    path: Path
    position: int
    entity_counts: dict[str, int]
    meta: dict[str, Any]


# ------------------------------------------------------------------------------------------------ writing
def _save(root: Path, name: str, a: np.ndarray) -> None:
    np.save(root / f"{name}.npy", np.ascontiguousarray(a), allow_pickle=False)


def _save_csr(root: Path, name: str, m: sp.csr_matrix, data: bool = False) -> None:
    m = m.tocsr()
    m.sort_indices()
    _save(root, f"{name}.indptr", m.indptr.astype(np.int64))
    _save(root, f"{name}.indices", m.indices.astype(np.int64))
    if data:
        _save(root, f"{name}.data", np.asarray(m.data))


def _pairs(d: dict[int, set[int]]) -> np.ndarray:
    rows = [(i, j) for i, js in d.items() for j in js]
    return np.asarray(rows, np.int64).reshape(-1, 2)


def _write_table(root: Path, name: str, table: pa.Table) -> None:
    with pa.OSFile(str(root / f"{name}.arrow"), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _joined(values: Iterable[tuple[str, ...]]) -> list[str]:
    return [_SEP.join(v) for v in values]


def store_key(store: str | Path) -> str:
    """How a snapshot names its store: an embedded store's absolute directory, a URL without its password."""
    text = str(store)
    if text.startswith(("postgresql://", "postgres://")):
        import re

        return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", text)
    path = Path(text)
    return str((path.parent if path.suffix in (".sqlite3", ".db") else path).resolve())


def same_store(directory: str | Path, store: str | Path) -> bool:
    """Whether the snapshot in ``directory`` was taken of ``store``."""
    try:
        meta = orjson.loads((Path(directory) / META).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("store") == store_key(store)


def write_snapshot(state: WorldState, directory: str | Path, position: int,
                   entity_counts: dict[str, int] | None = None, store: str | Path | None = None) -> SnapshotInfo:
    """Write ``state`` (every event up to log ``seq`` ``position`` folded in; taken of ``store``) to
    ``directory`` (replaced)."""
    root = Path(directory)
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        _remove(tmp)
    tmp.mkdir(parents=True)
    u, c, x = state.users, state.communities, state.content
    _write_table(tmp, "users", pa.table({
        "id": pa.array(u.ids, pa.string()), "locale": pa.array(u.locale, pa.string()),
        "age_group": pa.array(u.age_group, pa.string()), "interests": pa.array(_joined(u.interests), pa.string()),
        "created": pa.array(u.created, pa.int64()), "status": pa.array(u.status, pa.string())}))
    _write_table(tmp, "communities", pa.table({
        "id": pa.array(c.ids, pa.string()), "name": pa.array(c.name, pa.string()),
        "description": pa.array(c.description, pa.string()), "tags": pa.array(_joined(c.tags), pa.string()),
        "locale": pa.array(c.locale, pa.string()), "age_restricted": pa.array(c.age_restricted, pa.bool_()),
        "discoverable": pa.array(c.discoverable, pa.bool_()), "invite_only": pa.array(c.invite_only, pa.bool_()),
        "status": pa.array(c.status, pa.string()), "created": pa.array(c.created, pa.int64())}))
    _write_table(tmp, "content", pa.table({
        "id": pa.array(x.ids, pa.string()), "community": pa.array(x.community, pa.int64()),
        "kind": pa.array(x.kind, pa.string()), "text": pa.array(x.text, pa.string()),
        "created": pa.array(x.created, pa.int64()), "status": pa.array(x.status, pa.string())}))
    nu, nc, nx = state.n_users, state.n_communities, state.n_content
    for name, rel, shape in (("members", state.members, (nu, nc)), ("friends", state.friends, (nu, nu)),
                             ("engaged", state.engaged, (nu, nx))):
        m = rel.matrix(shape)
        _save_csr(tmp, name, m)
        if not rel.symmetric:
            _save_csr(tmp, f"{name}_t", m.T.tocsr())
    _save_csr(tmp, "join_ts", state.membership_since(), data=True)
    for name, ev in (("join_events", state.join_events), ("leave_events", state.leave_events),
                     ("reports", state.community_reports)):
        if ev is not None:
            for part in ("user", "community", "ts"):
                _save(tmp, f"{name}.{part}", getattr(ev, part))
    if state.activity_log is not None:
        for part in ("community", "user", "weight", "ts"):
            _save(tmp, f"activity.{part}", getattr(state.activity_log, part))
    heat_keys: dict[str, list[str]] = {}
    for kind, heat in (("community", state.community_heat), ("content", state.content_heat)):
        heat_keys[kind] = list(heat)
        for i, arr in enumerate(heat.values()):
            _save(tmp, f"heat.{kind}.{i}", np.asarray(arr, np.float64))
    _save(tmp, "blocked_users", _pairs(state.blocked_users))
    _save(tmp, "blocked_communities", _pairs(state.blocked_communities))
    _save(tmp, "pending", _pairs(state.pending_requests))
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
    meta = {
        "format": FORMAT, "store": store_key(store) if store is not None else None, "position": int(position),
        "now_us": int(state.now_us),
        "half_life_us": float(state.half_life_us),
        "counts": {"users": nu, "communities": nc, "content": nx,
                   "memberships": int(np.load(tmp / "members.indices.npy", mmap_mode="r").size),
                   "activity": int(state.activity_log.ts.size) if state.activity_log is not None else 0},
        "entity_counts": dict(entity_counts or {}), "heat_keys": heat_keys,
        "timeline": sorted({n.split(".")[0] for n in files if n.split(".")[0] in
                            ("join_events", "leave_events", "reports", "activity")}),
        "files": files,
    }
    (tmp / META).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    if root.exists():
        _remove(root)
    tmp.rename(root)
    return SnapshotInfo(root, int(position), dict(entity_counts or {}), meta)


def _remove(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ reading
def read_meta(directory: str | Path) -> dict[str, Any]:
    """The snapshot's metadata, after checking its files are exactly those written, of the sizes written."""
    root = Path(directory)
    path = root / META
    if not path.is_file():
        raise ValidationError("snapshot", f"{root} holds no {META} (write one with belong snapshot)")
    try:
        meta = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValidationError("snapshot", f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValidationError("snapshot", f"{root}: format {got!r}, this version reads format {FORMAT}")
    listed: dict[str, Any] = meta["files"]
    present = {p.name for p in root.iterdir()} - {META}
    for name in sorted(present - set(listed)):
        raise ValidationError("snapshot", f"{root / name} is not listed in {META}")
    for name, entry in listed.items():
        p = root / name
        if not p.is_file():
            raise ValidationError("snapshot", f"{p} is missing")
        if p.stat().st_size != entry["size"]:
            raise ValidationError("snapshot", f"{p} has {p.stat().st_size} bytes, {entry['size']} were written")
    return meta


def verify(directory: str | Path) -> dict[str, Any]:
    """:func:`read_meta` plus every file's sha256 (reads everything: for ``belong snapshot --verify``)."""
    root = Path(directory)
    meta = read_meta(root)
    for name, entry in meta["files"].items():
        if _sha256(root / name) != entry["sha256"]:
            raise ValidationError("snapshot", f"{root / name} does not match its sha256 in {META}")
    return meta


def _load(root: Path, name: str, mmap: bool = True) -> np.ndarray:
    """An array of the snapshot: a plain read-only view of a memory map (pages read when touched), or in memory."""
    return np.asarray(np.load(root / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False))


def _table(root: Path, name: str) -> pa.Table:
    return ipc.open_file(pa.memory_map(str(root / f"{name}.arrow"), "r")).read_all()


def _shared(col: pa.ChunkedArray) -> list[Any]:
    """A column as a Python list whose equal values are one object each (dictionary-encoded: a million users
    with a handful of locales hold a handful of strings)."""
    enc = col.combine_chunks().dictionary_encode()
    values = enc.dictionary.to_pylist()
    return [values[i] for i in enc.indices.to_numpy(zero_copy_only=False).tolist()]


def _split(col: pa.ChunkedArray) -> list[tuple[str, ...]]:
    enc = col.combine_chunks().dictionary_encode()
    values = [tuple(v.split(_SEP)) if v else () for v in enc.dictionary.to_pylist()]
    return [values[i] for i in enc.indices.to_numpy(zero_copy_only=False).tolist()]


def _relation(root: Path, name: str, shape: tuple[int, int], symmetric: bool) -> Relation:
    def parts(part: str, shp: tuple[int, int]) -> tuple[sp.csr_matrix, tuple[np.ndarray, np.ndarray]]:
        indptr, indices = _load(root, f"{part}.indptr"), _load(root, f"{part}.indices")
        m = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=shp, copy=False)
        m.has_sorted_indices = True
        return m, (indptr, indices)

    base, rows = parts(name, shape)
    base_t, cols = (base, rows) if symmetric else parts(f"{name}_t", (shape[1], shape[0]))
    return Relation.from_sorted(base, base_t, rows, cols, symmetric=symmetric)


def read_snapshot(directory: str | Path) -> tuple[WorldState, SnapshotInfo]:
    """The state a snapshot holds (large arrays memory-mapped read-only) and what it was taken of."""
    root = Path(directory)
    meta = read_meta(root)
    st = WorldState()
    st.half_life_us = float(meta["half_life_us"])
    st.now_us = int(meta["now_us"])
    users, comms, content = _table(root, "users"), _table(root, "communities"), _table(root, "content")
    u = st.users
    u.ids = users.column("id").to_pylist()
    u.index = {s: i for i, s in enumerate(u.ids)}
    u.locale, u.age_group, u.status = (_shared(users.column(n)) for n in ("locale", "age_group", "status"))
    u.interests = _split(users.column("interests"))
    u.created = users.column("created").to_pylist()
    c = st.communities
    c.ids = comms.column("id").to_pylist()
    c.index = {s: i for i, s in enumerate(c.ids)}
    c.name, c.description = comms.column("name").to_pylist(), comms.column("description").to_pylist()
    c.tags = _split(comms.column("tags"))
    c.locale, c.status = _shared(comms.column("locale")), _shared(comms.column("status"))
    c.age_restricted = comms.column("age_restricted").to_pylist()
    c.discoverable, c.invite_only = comms.column("discoverable").to_pylist(), comms.column("invite_only").to_pylist()
    c.created = comms.column("created").to_pylist()
    x = st.content
    x.ids = content.column("id").to_pylist()
    x.index = {s: i for i, s in enumerate(x.ids)}
    x.community = content.column("community").to_pylist()
    x.kind, x.status = _shared(content.column("kind")), _shared(content.column("status"))
    x.text, x.created = content.column("text").to_pylist(), content.column("created").to_pylist()
    nu, nc, nx = len(u), len(c), len(x)
    st.members = _relation(root, "members", (nu, nc), False)
    st.friends = _relation(root, "friends", (nu, nu), True)
    st.engaged = _relation(root, "engaged", (nu, nx), False)
    st.join_ts = sp.csr_matrix((_load(root, "join_ts.data"), _load(root, "join_ts.indices"),
                                _load(root, "join_ts.indptr")), shape=(nu, nc), copy=False)
    timeline = set(meta.get("timeline", []))

    def pair(name: str) -> PairEvents | None:
        if name not in timeline:
            return None
        return PairEvents(*(_load(root, f"{name}.{p}") for p in ("user", "community", "ts")))

    st.join_events, st.leave_events, st.community_reports = (
        pair(n) for n in ("join_events", "leave_events", "reports"))
    if "activity" in timeline:
        st.activity_log = ActivityLog(*(_load(root, f"activity.{p}") for p in ("community", "user", "weight", "ts")))
    for kind, target in (("community", st.community_heat), ("content", st.content_heat)):
        for i, key in enumerate(meta["heat_keys"][kind]):
            target[key] = _load(root, f"heat.{kind}.{i}", mmap=False)  # written to by apply(): in memory
    for name, d in (("blocked_users", st.blocked_users), ("blocked_communities", st.blocked_communities),
                    ("pending", st.pending_requests)):
        for i, j in _load(root, name, mmap=False).tolist():
            d[i].add(j)
    st.version += 1
    st.c_rev += 1
    info = SnapshotInfo(root, int(meta["position"]), dict(meta.get("entity_counts", {})), meta)
    return st, info


def advance(state: WorldState, now_us: int) -> None:
    """Move the time heat is decayed to forward to ``now_us`` (every key's heat scaled by the decay between):
    what a state built from the log at that time holds, before the tail's own events are folded in."""
    if now_us <= state.now_us:
        return
    factor = float(np.exp2((state.now_us - now_us) / state.half_life_us))
    for heat in (state.community_heat, state.content_heat):
        for arr in heat.values():
            arr *= factor
    state.now_us = int(now_us)
    state.version += 1




# ------------------------------------------------------------------------------------------------ the store
def take(store: str | Path, directory: str | Path) -> SnapshotInfo:
    """Snapshot a store's state at its current log position (events appended meanwhile are left to the tail)."""
    from belong.datasets import World
    from belong.eventlog import open_store
    from belong.state.build import encode_events, from_world

    with open_store(store, create=False) as st:
        position = st.position()
        counts = st.entity_counts()
        world = World(users=st.users(), communities=st.communities(), content=st.content(),
                      events=encode_events(st.read_columns(STATE_COLUMNS, upto_seq=position)))
    state = from_world(world)
    del world
    state.release_source()
    return write_snapshot(state, directory, position, counts, store)


def load(store: str | Path, directory: str | Path) -> tuple[WorldState, dict[str, Any]]:
    """The store's current state from a snapshot plus the log's tail: entities registered since (new ids) and
    every event after the snapshot's position folded in with :meth:`WorldState.apply`. Returns the state and
    what was done (position, tail events, seconds)."""
    import time

    from belong.eventlog import open_store

    t0 = time.perf_counter()
    state, info = read_snapshot(directory)
    t_read = time.perf_counter() - t0
    with open_store(store, create=False) as st:
        counts = st.entity_counts()
        added = _new_entities(state, st, info.entity_counts, counts)
        tail = st.read_events(after_seq=info.position)
        position = st.position()
    if tail.num_rows:
        advance(state, int(pc.max(tail.column("ts_us")).as_py()))
        for event in _events(tail):
            state.apply(event)
    done = {"snapshot": str(info.path), "snapshot_position": info.position, "position": max(position, info.position),
            "tail_events": tail.num_rows, "entities_added": added, "read_seconds": round(t_read, 3),
            "seconds": round(time.perf_counter() - t0, 3)}
    return state, done


def _events(table: pa.Table) -> Iterable[Event]:
    """The tail's rows as events (what :meth:`WorldState.apply` reads of them)."""
    cols = [table.column(n).to_pylist() for n in ("event_id", "ts_us", "type", "actor", "target", "target_kind",
                                                  "value")]
    for eid, ts, et, actor, target, kind, value in zip(*cols, strict=True):
        yield Event(event_id=eid, ts_us=ts, type=EventType(et), actor=actor, target=target,
                    target_kind=TargetKind(kind), value=value)


def _new_entities(state: WorldState, store: Any, before: dict[str, int], now: dict[str, int]) -> int:
    """Register entities the store holds and the snapshot does not (only tables whose count changed are read)."""
    from belong.domain import AgeGroup, Community, EntityStatus, User

    added = 0
    if now.get("users", 0) != before.get("users", 0):
        for r in store.users().to_pylist():
            if r["id"] not in state.users.index:
                state.add_user(User(id=r["id"], created_at_us=r["created_at_us"], age_group=AgeGroup(r["age_group"]),
                                    locale=r["locale"], interests=tuple(r["interests"] or ()),
                                    status=EntityStatus(r["status"])))
                added += 1
    if now.get("communities", 0) != before.get("communities", 0):
        for r in store.communities().to_pylist():
            if r["id"] not in state.communities.index:
                state.add_community(Community(
                    id=r["id"], name=r["name"], created_at_us=r["created_at_us"], description=r["description"] or "",
                    tags=tuple(r["tags"] or ()), locale=r["locale"], is_age_restricted=r["is_age_restricted"],
                    discoverable=r["discoverable"], invite_only=r["invite_only"], status=EntityStatus(r["status"])))
                added += 1
    if now.get("content", 0) != before.get("content", 0):
        for r in store.content().to_pylist():
            if r["id"] not in state.content.index:
                state.add_content(r["id"], state.ensure_community(r["community_id"], r["created_at_us"]), r["kind"],
                                  r["created_at_us"], r["text"] or "", r["status"])
                added += 1
    return added


__all__ = ["FORMAT", "SnapshotInfo", "advance", "load", "read_meta", "read_snapshot", "same_store", "store_key",
           "take", "verify", "write_snapshot"]
