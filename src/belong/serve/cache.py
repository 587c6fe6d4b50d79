"""Per-user candidate cache: the ranked candidates of the last full pipeline run, with a TTL.

One entry per (surface, user): the model version it was computed with, when, and the ranked ``(Merged, score)``
list (at most ``depth``). A fresh entry of the active version is a hit; an expired one is the user's last good
list, served while it is refreshed in the background. Entries are evicted least-recently-used beyond ``max_users``.

Invalidation on events (see :meth:`CandidateCache.on_event`): a join removes that community from the user's
cached list at once; a leave, a new or removed friendship, or a block recompute the affected users' lists.
The rules (filters) still run on every request against the live state, so nothing stale is ever shown.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from belong.domain import Event, EventType, Surface
from belong.pipeline.types import Merged

Ranked = list[tuple[Merged, float]]


@dataclass(slots=True)
class Entry:
    version: str
    created: float  # time.monotonic()
    ranked: Ranked
    trace: dict  # source timings/counts of the run that produced it (for debug)
    #: item -> the response fields that depend only on the item and this list (id, name, score, sources, ...),
    #: filled on first use so that repeated requests do not rebuild them
    statics: dict[int, dict] = field(default_factory=dict)
    #: assembled online feature rows of this user's candidates, by item id, with the materialisation times of
    #: the user's and the item's stored rows they were computed from (reused only while both are unchanged)
    feature_rows: dict[str, tuple[tuple[int, int], dict]] = field(default_factory=dict)


class CandidateCache:
    def __init__(self, ttl_s: float, max_users: int) -> None:
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._data: OrderedDict[tuple[Surface, str], Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, surface: Surface, user: str, version: str) -> tuple[Entry | None, bool]:
        """(entry of this version or None, whether it is fresh)."""
        key = (surface, user)
        entry = self._data.get(key)
        if entry is None or entry.version != version:
            return None, False
        self._data.move_to_end(key)
        return entry, (time.monotonic() - entry.created) <= self.ttl_s

    def put(self, surface: Surface, user: str, entry: Entry) -> None:
        key = (surface, user)
        self._data[key] = entry
        self._data.move_to_end(key)
        while len(self._data) > self.max_users:
            self._data.popitem(last=False)

    def drop(self, surface: Surface, user: str) -> None:
        self._data.pop((surface, user), None)

    def remove_item(self, surface: Surface, user: str, item_index: int, version: str) -> None:
        entry = self._data.get((surface, user))
        if entry is not None and entry.version == version:
            entry.ranked = [(m, s) for m, s in entry.ranked if m.item != item_index]

    def on_event(self, event: Event, community_index: int | None, version: str) -> None:
        """Invalidate what ``event`` changes; ``community_index`` is the joined community in ``version``."""
        u = event.actor
        t = event.type
        if t is EventType.JOIN:
            if community_index is not None:
                self.remove_item(Surface.COMMUNITIES, u, community_index, version)
            self.drop(Surface.CONTENT, u)  # a new community brings new content
        elif t is EventType.LEAVE:
            self.drop(Surface.COMMUNITIES, u)
            self.drop(Surface.CONTENT, u)
        elif t in (EventType.FRIEND_ACCEPT, EventType.FRIEND_REMOVE):
            for who in (u, event.target):
                for s in Surface:
                    self.drop(s, who)
        elif t is EventType.BLOCK:
            for s in Surface:
                self.drop(s, u)
