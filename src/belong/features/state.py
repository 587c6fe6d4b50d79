"""As-of feature state: events folded in time order into per-entity state, answering entity rows at a time t.

This is the one implementation of every entity-level feature (see :mod:`belong.features.registry`). Training sets
advance a state to each label's timestamp and read rows there; ``belong features materialize`` advances one to
"now" and writes the rows to the online store. Point-in-time correctness holds by construction: a row at ``t`` may
only be read when every folded event is strictly before ``t`` (:meth:`FeatureState.user_row` and friends raise
otherwise), and :class:`EventCursor` folds exactly the events with ``ts_us < t``.

Windowed counts are exact sliding windows ``[t - w, t)``: each entity keeps the sorted timestamps of its events
(append-only, since events arrive in time order) and a window count is one binary search.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from belong.domain import EventType
from belong.features.catalog import Catalog
from belong.features.registry import DAY_S

US = 1_000_000
DAY_US = DAY_S * US
HOUR_US = 3600 * US
NEIGHBORS_K = 50

#: events that count as activity of their actor, of the target community (or the target item's community) and
#: as engagement of a target content item.
ACTIVITY_TYPES = frozenset(
    {EventType.MESSAGE, EventType.REACTION, EventType.VOICE_MINUTES, EventType.VIEW, EventType.CLICK}
)
#: user-to-user events that count as past interactions of the pair (impressions are the system's, not theirs).
PAIR_INTERACTION_TYPES = frozenset(
    {EventType.FRIEND_REQUEST, EventType.FRIEND_ACCEPT, EventType.FRIEND_REMOVE, EventType.BLOCK,
     EventType.REPORT, EventType.CLICK}
)
_FOLD_COLUMNS = ("ts_us", "type", "actor", "target", "target_kind")
_ACT = frozenset(t.value for t in ACTIVITY_TYPES)
_PAIR = frozenset(t.value for t in PAIR_INTERACTION_TYPES)


def _window(stamps: array | None, t: int, width_us: int) -> int:
    """Events in ``[t - width, t)``; all stored stamps are < t (checked by the caller)."""
    if not stamps:
        return 0
    return len(stamps) - bisect_left(stamps, t - width_us)


def _decrement(counts: dict[str, int], key: str) -> None:
    counts[key] -= 1
    if counts[key] == 0:
        del counts[key]


class FeatureState:
    """Per-entity state folded from events in time order."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or Catalog()
        self.last_event_us: int | None = None
        self.events_applied = 0
        self._user_activity: dict[str, array] = {}
        self._community_activity: dict[str, array] = {}
        self._content_engagement: dict[str, array] = {}
        self._memberships: dict[str, set[str]] = {}
        self._members: dict[str, set[str]] = {}
        self._size_ts: dict[str, array] = {}
        self._size_val: dict[str, array] = {}
        self._co: defaultdict[str, Counter[str]] = defaultdict(Counter)  # co-member counts of two communities
        self._friends: dict[str, set[str]] = {}
        self._interactions: dict[str, dict[str, int]] = {}
        self._blocked_users: dict[str, set[str]] = {}
        self._blocked_communities: dict[str, set[str]] = {}
        self._seen_users: set[str] = set()
        self._seen_communities: set[str] = set()
        self._seen_content: set[str] = set()

    # -- folding -----------------------------------------------------------------------------------------------
    def apply(self, ts_us: int, etype: str, actor: str, target: str, target_kind: str) -> None:
        """Fold one event. Events must come in non-decreasing time order."""
        if self.last_event_us is not None and ts_us < self.last_event_us:
            raise ValueError(f"events out of time order: {ts_us} after {self.last_event_us}")
        self.last_event_us = ts_us
        self.events_applied += 1
        self._seen_users.add(actor)
        if target_kind == "user":
            self._seen_users.add(target)
        elif target_kind == "community":
            self._seen_communities.add(target)
        else:
            self._seen_content.add(target)

        if etype in _ACT:
            self._user_activity.setdefault(actor, array("q")).append(ts_us)
            if target_kind == "community":
                self._community_activity.setdefault(target, array("q")).append(ts_us)
            elif target_kind == "content":
                self._content_engagement.setdefault(target, array("q")).append(ts_us)
                item = self.catalog.content.get(target)
                if item is not None:
                    self._community_activity.setdefault(item.community_id, array("q")).append(ts_us)
        if etype == "join":
            self._join(ts_us, actor, target)
        elif etype == "leave":
            self._leave(ts_us, actor, target)
        elif target_kind == "user":
            if etype in _PAIR:
                a = self._interactions.setdefault(actor, {})
                a[target] = a.get(target, 0) + 1
                b = self._interactions.setdefault(target, {})
                b[actor] = b.get(actor, 0) + 1
            if etype == "friend_accept":
                self._friends.setdefault(actor, set()).add(target)
                self._friends.setdefault(target, set()).add(actor)
            elif etype == "friend_remove":
                self._friends.get(actor, set()).discard(target)
                self._friends.get(target, set()).discard(actor)
            elif etype in ("block", "report"):
                self._blocked_users.setdefault(actor, set()).add(target)
        elif etype in ("block", "report") and target_kind == "community":
            self._blocked_communities.setdefault(actor, set()).add(target)

    def _record_size(self, ts_us: int, community: str, size: int) -> None:
        self._size_ts.setdefault(community, array("q")).append(ts_us)
        self._size_val.setdefault(community, array("q")).append(size)

    def _join(self, ts_us: int, user: str, community: str) -> None:
        mine = self._memberships.setdefault(user, set())
        if community in mine:
            return
        co = self._co
        co[community].update(mine)  # counted in C; the reverse direction needs the loop
        for other in mine:
            co[other][community] += 1
        mine.add(community)
        members = self._members.setdefault(community, set())
        members.add(user)
        self._record_size(ts_us, community, len(members))

    def _leave(self, ts_us: int, user: str, community: str) -> None:
        mine = self._memberships.get(user)
        if not mine or community not in mine:
            return
        mine.discard(community)
        for other in mine:
            _decrement(self._co[community], other)
            _decrement(self._co[other], community)
        members = self._members[community]
        members.discard(user)
        self._record_size(ts_us, community, len(members))

    # -- keys --------------------------------------------------------------------------------------------------
    def user_ids(self) -> list[str]:
        """Users in the catalogue or seen in folded events, sorted."""
        return sorted(self._seen_users | self.catalog.users.keys())

    def community_ids(self) -> list[str]:
        return sorted(self._seen_communities | self.catalog.communities.keys())

    def content_ids(self) -> list[str]:
        return sorted(self._seen_content | self.catalog.content.keys())

    # -- rows as of t ------------------------------------------------------------------------------------------
    def _check_as_of(self, t: int) -> None:
        if self.last_event_us is not None and self.last_event_us >= t:
            raise ValueError(
                f"point-in-time violation: state holds an event at {self.last_event_us}, asked for a row as of {t}"
            )

    def user_row(self, user: str, t: int) -> dict[str, Any]:
        """Every ``user`` feature of ``user`` as of ``t`` (only events strictly before ``t`` count)."""
        self._check_as_of(t)
        acts = self._user_activity.get(user)
        attrs = self.catalog.users.get(user)
        friends = sorted(self._friends.get(user, ()))
        communities = sorted(self._memberships.get(user, ()))
        friend_communities: dict[str, int] = {}
        for f in friends:
            for c in self._memberships.get(f, ()):
                friend_communities[c] = friend_communities.get(c, 0) + 1
        return {
            "user_activity_1d": _window(acts, t, DAY_US),
            "user_activity_7d": _window(acts, t, 7 * DAY_US),
            "user_activity_28d": _window(acts, t, 28 * DAY_US),
            "user_communities_joined": len(communities),
            "user_friend_count": len(friends),
            "user_age_group": attrs.age_group if attrs else "unknown",
            "user_locale": attrs.locale if attrs else "und",
            "user_account_age_days": max(0.0, (t - attrs.created_at_us) / DAY_US) if attrs else 0.0,
            "user_interests": list(attrs.interests) if attrs else [],
            "user_community_ids": communities,
            "user_friend_degrees": {f: len(self._friends[f]) for f in friends},
            "user_friend_communities": friend_communities,
            "user_interactions": dict(self._interactions.get(user, {})),
            "user_blocked_users": sorted(self._blocked_users.get(user, ())),
            "user_blocked_communities": sorted(self._blocked_communities.get(user, ())),
        }

    def _size_at(self, community: str, t: int) -> int:
        stamps = self._size_ts.get(community)
        if not stamps:
            return 0
        i = bisect_left(stamps, t)
        return self._size_val[community][i - 1] if i else 0

    def community_row(self, community: str, t: int) -> dict[str, Any]:
        """Every ``community`` feature as of ``t``."""
        self._check_as_of(t)
        size = len(self._members.get(community, ()))
        before = self._size_at(community, t - 7 * DAY_US)
        activity = _window(self._community_activity.get(community), t, 7 * DAY_US)
        attrs = self.catalog.communities.get(community)
        return {
            "community_size": size,
            "community_new_members_7d": size - before,
            "community_growth_7d": (size - before) / max(before, 1),
            "community_activity_7d": activity,
            "community_activity_per_member_7d": activity / max(size, 1),
            "community_locale": attrs.locale if attrs else "und",
            "community_tags": list(attrs.tags) if attrs else [],
            "community_age_restricted": int(attrs.age_restricted) if attrs else 0,
            "community_age_days": max(0.0, (t - attrs.created_at_us) / DAY_US) if attrs else 0.0,
            "community_neighbors": self._neighbors(community, size),
        }

    def _neighbors(self, community: str, size: int) -> dict[str, float]:
        co = self._co.get(community)
        if not co:
            return {}
        members = self._members
        # (-Jaccard, id): best first, ties by id, so every process picks the same top K
        scored = [(-n / (size + len(members[other]) - n), other) for other, n in co.items()]
        top = sorted(scored) if len(scored) <= NEIGHBORS_K else heapq.nsmallest(NEIGHBORS_K, scored)
        return {other: -neg for neg, other in top}

    def content_row(self, item: str, t: int) -> dict[str, Any]:
        """Every ``content`` feature as of ``t``."""
        self._check_as_of(t)
        stamps = self._content_engagement.get(item)
        attrs = self.catalog.content.get(item)
        return {
            "content_engagement_1d": _window(stamps, t, DAY_US),
            "content_engagement_7d": _window(stamps, t, 7 * DAY_US),
            "content_age_hours": max(0.0, (t - attrs.created_at_us) / HOUR_US) if attrs else 0.0,
            "content_kind": attrs.kind if attrs else "",
            "content_community_id": attrs.community_id if attrs else "",
        }

    def row(self, entity: str, key: str, t: int) -> dict[str, Any]:
        """The row of a stored entity (``user``, ``community``, ``content``) as of ``t``."""
        if entity == "user":
            return self.user_row(key, t)
        if entity == "community":
            return self.community_row(key, t)
        if entity == "content":
            return self.content_row(key, t)
        raise ValueError(f"not a stored entity: {entity!r}")


class EventCursor:
    """Feeds a :class:`FeatureState` from time-ordered event batches, up to (strictly before) a given time."""

    def __init__(self, state: FeatureState, batches: Iterable[pa.RecordBatch | pa.Table]) -> None:
        self.state = state
        self._batches: Iterator[pa.RecordBatch | pa.Table] = iter(batches)
        self._cols: list[list[Any]] = [[], [], [], [], []]
        self._pos = 0
        self._done = False

    def _refill(self) -> bool:
        while not self._done:
            batch = next(self._batches, None)
            if batch is None:
                self._done = True
                return False
            if batch.num_rows:
                self._cols = [batch.column(n).to_pylist() for n in _FOLD_COLUMNS]
                self._pos = 0
                return True
        return False

    def advance_to(self, t_us: int | None) -> int:
        """Fold every remaining event with ``ts_us < t_us`` (all of them when None); returns how many."""
        n = 0
        apply = self.state.apply
        while True:
            if self._pos >= len(self._cols[0]) and not self._refill():
                return n
            ts, types, actors, targets, kinds = self._cols
            end = len(ts) if t_us is None else bisect_left(ts, t_us, lo=self._pos)
            for i in range(self._pos, end):
                apply(ts[i], types[i], actors[i], targets[i], kinds[i])
            n += end - self._pos
            self._pos = end
            if end < len(ts):
                return n
