"""In-process cache of entity rows read from the online feature store.

Two modes, per row:

* **time-bounded** (no invalidation feed, or the feed is down): candidate rows (communities, content, people)
  change slowly (their declared ``freshness_s`` is an hour or more) and the same few thousand are read by every
  request, so one is kept at most ``min(ttl_s, the entity's smallest freshness_s)`` seconds after it was read: a
  served value is never older than the store's copy by more than that. The requesting user's row is never kept
  in this mode (``exact_only``): it is read fresh on every request.
* **exact** (an :class:`~belong.serve.tracking.InvalidationListener` is connected): Redis reports every changed
  key, the cache drops it, and rows of every entity, the requesting user's too, are kept until they change
  (still within the time cap). A warm request then needs no round trip at all.

Invalidations are applied by the thread that uses the cache, before each lookup (:meth:`RowCache.mark`), from the
listener's queue. A row read from the store is only kept if no invalidation of its key was applied after the read
was sent (``since``: the mark taken before sending), so a reply that raced a write is never cached. Losing the feed
clears the cache; regaining it clears it again (rows kept meanwhile were only time-bounded).

Rows are decoded values shared between requests: callers must not mutate them. Beyond ``max_rows`` the oldest
reads are evicted first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from belong.features.registry import STORED_ENTITIES, specs_for
from belong.serve.tracking import LIVE, RESET, InvalidationListener

Row = Mapping[str, Any]
#: invalidated keys remembered for the ``since`` check; beyond this, older reads are refused wholesale
INVALIDATED_KEPT = 100_000
#: a backlog of invalidations longer than this (a whole materialisation) clears the cache instead of being applied
#: key by key: one request never pays for 100k invalidations
BULK_CLEAR = 5_000


def entity_ttl_s(entity: str, ttl_s: float) -> float:
    """How long a row of ``entity`` may be kept: ``ttl_s`` capped by the entity's smallest positive freshness."""
    fresh = [s.freshness_s for s in specs_for(entity) if s.freshness_s > 0]  # type: ignore[arg-type]
    return min([ttl_s, *fresh])


class RowCache:
    """Entity rows by (entity, key, tag) with a per-entity expiry; see the module docstring.

    ``tag`` tells apart rows of one entity read with different feature names (the user's row of one surface
    holds only the names that surface reads); an invalidation drops every tag of the key.
    ``listener``/``prefix``: the invalidation feed and the store's key prefix (``<prefix><entity>:<key>``)."""

    def __init__(self, ttl_s: float, max_rows: int, listener: InvalidationListener | None = None,
                 prefix: str = "") -> None:
        self.max_rows = max_rows
        self.listener = listener
        self.prefix = prefix.encode()
        self._ttl: dict[str, float] = {e: entity_ttl_s(e, ttl_s) for e in STORED_ENTITIES}
        self._rows: OrderedDict[tuple[str, str, str], tuple[float, Row]] = OrderedDict()
        self._tags: dict[tuple[str, str], set[str]] = {}  # (entity, key) -> tags held (for invalidation)
        self.exact = False  # the feed is connected: rows are dropped when they change
        self._seq = 0  # invalidations applied so far
        self._floor = 0  # reads sent before this mark may not be kept
        self._invalid: OrderedDict[tuple[str, str], int] = OrderedDict()  # key -> seq of its last invalidation
        self.hits: dict[str, int] = dict.fromkeys(STORED_ENTITIES, 0)
        self.misses: dict[str, int] = dict.fromkeys(STORED_ENTITIES, 0)
        self.invalidations = 0

    def __len__(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------------------------------------- feed
    def mark(self) -> int:
        """Apply the invalidations received so far and return the current mark: pass it as ``since`` to
        :meth:`put_many` for rows read after this call."""
        events = self.listener.events if self.listener is not None else None
        if events:
            self._apply(events)
        return self._seq

    def _apply(self, events) -> None:
        if len(events) > BULK_CLEAR:  # everything may have changed: drop it all (exact, and cheap for this request)
            events.clear()  # a key queued after this is applied next time; one queued before is cleared below
            self.clear()
            self.invalidations += 1
            self._seq += 1
            self._floor = self._seq  # reads sent before now are not kept
            # the markers went with the backlog: the listener's flag is set before a LIVE and cleared before a RESET
            # is queued, so it is never more optimistic than the queue was
            self.exact = bool(getattr(self.listener, "connected", False))
            return
        prefix, n = self.prefix, len(self.prefix)
        while events:
            ev = events.popleft()
            self._seq += 1
            if ev is RESET or ev is LIVE:
                self.clear()
                self.exact = ev is LIVE
                self._floor = self._seq
                continue
            if not ev.startswith(prefix):
                continue
            entity, _, key = ev[n:].decode("utf-8", "replace").partition(":")
            ek = (entity, key)
            self.invalidations += 1
            for tag in self._tags.pop(ek, ()):
                self._rows.pop((entity, key, tag), None)
            inv = self._invalid
            inv[ek] = self._seq
            inv.move_to_end(ek)
            if len(inv) > INVALIDATED_KEPT:
                _, seq = inv.popitem(last=False)
                self._floor = max(self._floor, seq)

    @property
    def mode(self) -> str:
        """``exact`` (invalidated by Redis), ``time-bounded`` (candidate rows only, for their freshness) or
        ``off``."""
        self.mark()
        if self.exact:
            return "exact"
        return "time-bounded" if any(t > 0 for t in self._ttl.values()) else "off"

    # ------------------------------------------------------------------------------------------- rows
    def get_many(self, entity: str, keys: Sequence[str], now: float | None = None, *, tag: str = "",
                 exact_only: bool = False) -> list[Row | None]:
        """The cached row of each key (None where absent or expired; expired rows are dropped). ``exact_only``:
        only while the invalidation feed is connected (else every key misses)."""
        self.mark()
        if exact_only and not self.exact:
            self.misses[entity] += len(keys)
            return [None] * len(keys)
        now = time.monotonic() if now is None else now
        rows = self._rows
        out: list[Row | None] = []
        hits = 0
        for k in keys:
            hit = rows.get((entity, k, tag))
            if hit is not None and hit[0] <= now:
                del rows[(entity, k, tag)]
                hit = None
            if hit is None:
                out.append(None)
            else:
                hits += 1
                out.append(hit[1])
        self.hits[entity] += hits
        self.misses[entity] += len(keys) - hits
        return out

    def put_many(self, entity: str, items: Sequence[tuple[str, Row]], now: float | None = None, *, tag: str = "",
                 since: int | None = None, exact_only: bool = False) -> None:
        """Keep freshly read rows (nothing when the entity's ttl is 0). ``since``: the :meth:`mark` taken before
        the read was sent; a row whose key was invalidated after it is not kept (nor any, when the feed was lost
        or regained after it). ``exact_only``: keep them only while the feed is connected."""
        ttl = self._ttl[entity]
        if ttl <= 0:
            return
        self.mark()
        if exact_only and not self.exact:
            return
        if since is not None and since < self._floor:
            return
        expires = (time.monotonic() if now is None else now) + ttl
        rows, inv, tags = self._rows, self._invalid, self._tags
        for k, row in items:
            if since is not None and inv.get((entity, k), -1) > since:
                continue  # changed in Redis while this read was in flight
            rows[(entity, k, tag)] = (expires, row)
            rows.move_to_end((entity, k, tag))
            tags.setdefault((entity, k), set()).add(tag)
        while len(rows) > self.max_rows:
            (e, k, t), _ = rows.popitem(last=False)
            held = tags.get((e, k))
            if held is not None:
                held.discard(t)
                if not held:
                    del tags[(e, k)]

    def clear(self) -> None:
        self._rows.clear()
        self._tags.clear()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
