"""Turn a dataset spec, a :class:`~belong.datasets.World` or an event store into :class:`Interactions`.

Two shapes come out:

* **user x item** (``join`` events by default): one row per event, actor = user, target = community/item, with the
  event value as weight and its timestamp.
* **user x user** (``friend_accept`` events, e.g. ``edges:FILE.csv`` worlds): the square friendship graph, every
  undirected edge stored in both directions; ``user_ids`` and ``item_ids`` are the same array and
  ``meta["square"]`` is true. A later ``friend_remove`` of the same pair deletes the edge.

``meta`` also carries ``dataset`` (a name), ``user_age_group`` (an array aligned with ``user_ids``; ``"unknown"``
where the users table says nothing), when the data comes with its own split, ``given_split_ts_us``, and — for an
event store whose log holds other events than the interactions (friendships, activity, leaves, reports) —
``world`` itself, which time-split protocols let the ``pipeline:`` models read as of the split (``as_of_us`` on the
training part) — the friendship graph of a store included: the people surface's sources and rankers then see the
friend requests, removals, communities, ages and locales before the cut, and nothing at or after it. Public
datasets loaded by name keep the interactions only: some of their event times are made up by the loader (hetrec
friendships have none), so "as of the cut" would not mean what it says (docs/MEASUREMENTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from belong.datasets import World
from belong.errors import ValidationError
from belong.interactions import Interactions

GRAPH_EVENT = "friend_accept"
GRAPH_REMOVE_EVENT = "friend_remove"


def is_store_spec(spec: str) -> bool:
    """True for a PostgreSQL URL or an existing path (a store directory or its SQLite file)."""
    return spec.startswith(("postgresql://", "postgres://")) or Path(spec).exists()


def load_interactions(spec: str, event_types: Sequence[str] | None = None) -> Interactions:
    """Read ``spec`` (what ``belong load`` takes, or a store) into :class:`Interactions`."""
    if not spec or not spec.strip():
        raise ValidationError("dataset", "must name a dataset spec or a store")
    if is_store_spec(spec):
        world = world_from_store(spec)
    else:
        from belong.datasets import load_world

        world = load_world(spec)
    world.meta.setdefault("name", spec)
    return interactions_from_world(world, event_types, keep_world=is_store_spec(spec))


def world_from_store(spec: str) -> World:
    """The users, communities and events of a store as a :class:`World` (named after the store)."""
    from belong.eventlog import open_store

    with open_store(spec, create=False) as store:  # content too: the content surface's items (view, reaction)
        return World(
            users=store.users(), communities=store.communities(), content=store.content(),
            events=store.read_events(),
            meta={"name": store.url},
        )


def interactions_from_world(world: World, event_types: Sequence[str] | None = None, *,
                            keep_world: bool = False) -> Interactions:
    """Interactions of ``world``: ``event_types`` (default ``("join",)``) as user x item rows, or — when those
    types are absent and the world has ``friend_accept`` events, or ``event_types == ("friend_accept",)`` — the
    square friendship graph."""
    events = world.events
    present = set(pc.unique(events.column("type")).to_pylist()) if events.num_rows else set()
    types = tuple(event_types) if event_types else ("join",)
    if types == (GRAPH_EVENT,) or (event_types is None and not present & set(types) and GRAPH_EVENT in present):
        inter = _graph(events)
    else:
        if not present & set(types):
            raise ValidationError(
                "dataset", f"has no {', '.join(types)} events (found: {', '.join(sorted(present)) or 'none'})"
            )
        inter = _bipartite(events.filter(pc.is_in(events.column("type"), pa.array(types))))
    inter.meta["dataset"] = str(world.meta.get("name", "unknown"))
    # the whole world travels along for models that read more than the interactions (``pipeline:``): only when it
    # has something they would otherwise lose (friendships, activity, leaves, reports, ...; for the friendship
    # graph: friend requests and removals, communities, ages, locales). Time splits hand it to the models as of
    # their cut; other protocols leave it unread (``PipelineEvaluable.fit``).
    if keep_world and present - set(types):
        inter.meta["world"] = world
    inter.meta["user_age_group"] = _age_groups(world.users, inter.user_ids)
    if "given_split_ts_us" in world.meta:
        inter.meta["given_split_ts_us"] = int(world.meta["given_split_ts_us"])
    return inter


def _sorted_ids(col: pa.ChunkedArray) -> np.ndarray:
    return np.sort(np.asarray(pc.unique(col).to_pylist(), dtype=str))


def _index(col: pa.ChunkedArray, vocab: np.ndarray) -> np.ndarray:
    return np.asarray(pc.index_in(col, value_set=pa.array(vocab.tolist(), pa.string())), dtype=np.int32)


def _bipartite(ev: pa.Table) -> Interactions:
    users, items = ev.column("actor"), ev.column("target")
    uid, iid = _sorted_ids(users), _sorted_ids(items)
    return Interactions(
        uid, iid, _index(users, uid), _index(items, iid),
        np.asarray(ev.column("value"), dtype=np.float32), np.asarray(ev.column("ts_us"), dtype=np.int64),
        {"square": False},
    )


def _graph(events: pa.Table) -> Interactions:
    ev = events.filter(pc.is_in(events.column("type"), pa.array([GRAPH_EVENT, GRAPH_REMOVE_EVENT])))
    if ev.num_rows == 0:
        raise ValidationError("dataset", "has no friend_accept events to build a friendship graph from")
    ids = np.union1d(_sorted_ids(ev.column("actor")), _sorted_ids(ev.column("target")))
    a, b = _index(ev.column("actor"), ids), _index(ev.column("target"), ids)
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    ts = np.asarray(ev.column("ts_us"), dtype=np.int64)
    accept = np.asarray(pc.equal(ev.column("type"), GRAPH_EVENT))
    # the last event of each pair decides (events come in time order); ts = first accept of the surviving pair
    key = lo * len(ids) + hi
    order = np.lexsort((np.arange(len(key)), ts, key))
    key_s = key[order]
    last = np.r_[key_s[1:] != key_s[:-1], True]
    first = np.r_[True, key_s[1:] != key_s[:-1]]
    alive = accept[order][last]
    first_ts = ts[order][first]
    pair_key = key_s[last][alive]
    pair_ts = first_ts[alive]
    u, v = pair_key // len(ids), pair_key % len(ids)
    return Interactions(
        ids, ids, np.r_[u, v], np.r_[v, u], None, np.r_[pair_ts, pair_ts], {"square": True},
    )


def _age_groups(users: pa.Table, user_ids: np.ndarray) -> np.ndarray:
    out = np.full(len(user_ids), "unknown", dtype=object)
    if users.num_rows == 0 or "age_group" not in users.column_names:
        return out
    pos = pc.index_in(pa.array(user_ids.tolist(), pa.string()), value_set=users.column("id"))
    pos = np.asarray(pc.fill_null(pos, -1), dtype=np.int64)
    groups = np.asarray(pc.fill_null(users.column("age_group"), "unknown").to_pylist(), dtype=object)
    known = pos >= 0
    out[known] = groups[pos[known]]
    return out
