"""Per-user candidate cache: the ranked candidates of the last candidate run, with a TTL.

One entry per (surface, user): the model version, when it was made, the ranked ``(Merged, score)`` list (at most
``depth``) and the pipeline's memo of its answers on it. A fresh entry of the active version is a hit; an expired
one is served while it is refreshed in the background. Least-recently-used entries beyond ``max_users`` go.

The list is kept *packed* (:class:`Packed`, plain tuples) so that a warm cache adds almost nothing to a full
garbage collection (docs/MEASUREMENTS.md); a request unpacks only the slice its rules read, without reasons.
Invalidation (:meth:`CandidateCache.on_event`): a join removes that community from the user's list; a leave, a
friendship change or a block drop the affected lists. The rules still run against the live state."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from belong.domain import Event, EventType, Surface
from belong.pipeline.types import Candidate, Candidates, ListMemo, Merged, Reason

Ranked = list[tuple[Merged, float]]


def _pack_one(m: Merged, score: float) -> tuple:
    hits = tuple((src, int(rank), float(c.score), c.reason.text, tuple(c.reason.data.items()))
                 for src, (rank, c) in m.hits.items())
    return (m.item, float(score), hits, tuple(m.features.items()))


def _unpack_one(row: tuple) -> tuple[Merged, float]:
    item, score, hits, features = row
    return Merged(item, {src: (rank, Candidate(item, src, cs, Reason(text, dict(data))))
                         for src, rank, cs, text, data in hits}, dict(features)), score


#: the reason of a lightly unpacked candidate (:meth:`Packed.light`): its text is read from the full row instead
UNEXPLAINED = Reason("")


def _unpack_light(row: tuple) -> tuple[Merged, float]:
    item, score, hits, features = row
    return Merged(item, {src: (rank, Candidate(item, src, cs, UNEXPLAINED)) for src, rank, cs, _, _ in hits},
                  dict(features)), score


class Packed:
    """A ranked ``(Merged, score)`` list stored as plain tuples (a :class:`~belong.pipeline.types.Ranked`); indexing
    and slicing unpack fresh objects."""

    __slots__ = ("rows",)

    def __init__(self, ranked: Ranked | Packed) -> None:
        self.rows: tuple = ranked.rows if isinstance(ranked, Packed) else tuple(_pack_one(m, s) for m, s in ranked)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int | slice):
        if isinstance(i, slice):
            return [_unpack_one(r) for r in self.rows[i]]
        return _unpack_one(self.rows[i])

    def __iter__(self):
        return (_unpack_one(r) for r in self.rows)

    def light(self, start: int, stop: int) -> list[tuple[Merged, float]]:
        """Rows ``start:stop`` with every field but the reasons (each candidate's reason is :data:`UNEXPLAINED`):
        what rules, selection and hydration read, at half the allocations. :meth:`full` gives an item's reasons."""
        return self.light_rows(self.rows, start, stop)

    @staticmethod
    def light_rows(rows: tuple | list, start: int, stop: int) -> list[tuple[Merged, float]]:
        return [_unpack_light(r) for r in rows[start:stop]]

    def head(self, n: int) -> list[int]:
        """The first ``n`` items, best first."""
        return [r[0] for r in self.rows[:n]]

    def full(self, item: int) -> Merged | None:
        """The fully unpacked row of ``item`` (None when it is not in the list)."""
        for r in self.rows:
            if r[0] == item:
                return _unpack_one(r)[0]
        return None

    def reasons(self, item: int) -> dict[str, tuple[int, str]] | None:
        """Each source's rank and reason text for ``item`` (None when it is not in the list), read from the packed
        row: no candidate objects are made."""
        for r in self.rows:
            if r[0] == item:
                return {src: (rank, text) for src, rank, _, text, _ in r[2]}
        return None

    def explained(self, item: int) -> tuple | None:
        """None: a list in memory carries no explanations made before (:meth:`Ranked.explained`)."""
        return None

    @property
    def shared(self) -> bool:
        """Never: every unpack makes fresh objects (a memoised answer's objects are the memo's concern)."""
        return False

    def without(self, item: int) -> Packed:
        out = Packed([])
        out.rows = tuple(r for r in self.rows if r[0] != item)
        return out


@dataclass(slots=True)
class Serialized:
    """The serialised ``items`` of an answer on a cached list and everything they were made of: reused while all of
    it is equal (the chosen items and their hydration, the stored feature rows' times; see the engine)."""

    key: tuple
    body: bytes
    ranked: Any  # the list, and the memoised chosen list, they were made from (compared by identity)
    chosen: list


@dataclass(slots=True)
class Entry:
    """One user's cached candidate list (of one model version) with what was learnt making and serving it."""

    version: str
    created: float  # time.monotonic()
    ranked: Packed | Ranked  # packed by CandidateCache.put
    #: what the candidate stage did (for debug): per-source ms and counts, how many candidates, removals as
    #: (item, filter, reason) tuples
    source_ms: dict[str, float] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    n_candidates: int = 0
    removed: tuple = ()
    #: the pipeline's memo of rules, selection, hydration and explanations on this list (exact, see ListMemo)
    memo: ListMemo = field(default_factory=ListMemo)
    #: assembled online feature rows of this user's candidates, by item id, with the materialisation times of
    #: the user's and the item's stored rows they were computed from (reused only while both are unchanged)
    feature_rows: dict[str, tuple[tuple[int, int], dict]] = field(default_factory=dict)
    serialized: Serialized | None = None
    #: a stored list made before the person's own events (:mod:`belong.serve.precomputed`): answered as stale
    stale: bool = False

    @classmethod
    def of(cls, version: str, made: Candidates) -> Entry:
        """The entry of a candidate run (the list is packed when the cache takes it)."""
        return cls(version, time.monotonic(), made.ranked, dict(made.source_ms), dict(made.source_counts),
                   made.n_candidates, tuple((r.item, r.filter, r.reason) for r in made.removed))


class CandidateCache:
    def __init__(self, ttl_s: float, max_users: int) -> None:
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._data: OrderedDict[tuple[Surface, str], Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, surface: Surface, user: str, version: str) -> tuple[Entry | None, bool]:
        """(entry of this version or None, whether it is fresh). A TTL of 0 keeps nothing: every request runs the
        candidate stage (the closed loop's deterministic serving, docs/LOOP.md)."""
        if self.ttl_s <= 0:
            return None, False
        key = (surface, user)
        entry = self._data.get(key)
        if entry is None or entry.version != version:
            return None, False
        self._data.move_to_end(key)
        return entry, (time.monotonic() - entry.created) <= self.ttl_s

    def put(self, surface: Surface, user: str, entry: Entry) -> None:
        if self.ttl_s <= 0:
            return
        if not isinstance(entry.ranked, Packed):
            entry.ranked = Packed(entry.ranked)
        key = (surface, user)
        self._data[key] = entry
        self._data.move_to_end(key)
        while len(self._data) > self.max_users:
            self._data.popitem(last=False)

    def drop(self, surface: Surface, user: str) -> None:
        self._data.pop((surface, user), None)

    def clear(self) -> None:
        """Drop every list (a user was forgotten: any list may hold them)."""
        self._data.clear()

    def remove_item(self, surface: Surface, user: str, item_index: int, version: str) -> None:
        entry = self._data.get((surface, user))
        if entry is not None and entry.version == version:
            entry.ranked = Packed(entry.ranked).without(item_index)

    def on_event(self, event: Event, community_index: int | None, version: str) -> None:
        """Invalidate what ``event`` changes (:func:`dropped_lists`); ``community_index`` is the joined community in
        ``version``, removed from the joiner's list."""
        if event.type is EventType.JOIN and community_index is not None:
            self.remove_item(Surface.COMMUNITIES, event.actor, community_index, version)
        for surface, user in dropped_lists(event):
            self.drop(surface, user)


def dropped_lists(event: Event) -> tuple[tuple[Surface, str], ...]:
    """The lists ``(surface, person)`` that ``event`` makes stale: dropped from the in-process cache
    (:meth:`CandidateCache.on_event`), marked stale among the stored ones (:mod:`belong.serve.precomputed`). A join
    leaves the joiner's communities list standing (the joined community is removed from it, and the live rules
    remove it anyway) but not their content (a new community brings new content); a leave changes both; a
    friendship change every list of both people; a block every list of the blocker."""
    t, u = event.type, event.actor
    if t is EventType.JOIN:
        return ((Surface.CONTENT, u),)
    if t is EventType.LEAVE:
        return ((Surface.COMMUNITIES, u), (Surface.CONTENT, u))
    if t in (EventType.FRIEND_ACCEPT, EventType.FRIEND_REMOVE):
        return tuple((s, who) for who in (u, event.target) for s in Surface)
    if t is EventType.BLOCK:
        return tuple((s, u) for s in Surface)
    return ()
