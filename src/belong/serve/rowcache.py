"""In-process cache of candidate entity rows (communities, content, people) read from the online feature store.

Candidate rows change slowly (their declared ``freshness_s`` is an hour or more) and the same few thousand are
read by every request, while the requesting user's row must be read fresh. A request therefore reads the user's
row and only the candidates missing here from the store, still in one round trip, and decodes far fewer bytes.

A row is kept at most ``min(ttl_s, the entity's smallest freshness_s)`` seconds after it was read, so a served
value is never older than the store's copy by more than that. Rows are decoded values shared between requests:
callers must not mutate them. Beyond ``max_rows`` the oldest reads are evicted first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from belong.features.registry import STORED_ENTITIES, specs_for

Row = Mapping[str, Any]


def entity_ttl_s(entity: str, ttl_s: float) -> float:
    """How long a row of ``entity`` may be kept: ``ttl_s`` capped by the entity's smallest positive freshness."""
    fresh = [s.freshness_s for s in specs_for(entity) if s.freshness_s > 0]  # type: ignore[arg-type]
    return min([ttl_s, *fresh])


class RowCache:
    """Entity rows by (entity, key) with a per-entity expiry; see the module docstring."""

    def __init__(self, ttl_s: float, max_rows: int) -> None:
        self.max_rows = max_rows
        self._ttl = {e: entity_ttl_s(e, ttl_s) for e in STORED_ENTITIES}
        self._rows: OrderedDict[tuple[str, str], tuple[float, Row]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get_many(self, entity: str, keys: Sequence[str], now: float | None = None) -> list[Row | None]:
        """The cached row of each key (None where absent or expired; expired rows are dropped)."""
        now = time.monotonic() if now is None else now
        rows = self._rows
        out: list[Row | None] = []
        for k in keys:
            hit = rows.get((entity, k))
            if hit is not None and hit[0] <= now:
                del rows[(entity, k)]
                hit = None
            out.append(None if hit is None else hit[1])
        return out

    def put_many(self, entity: str, items: Sequence[tuple[str, Row]], now: float | None = None) -> None:
        """Keep freshly read rows (nothing when the entity's ttl is 0)."""
        ttl = self._ttl[entity]
        if ttl <= 0:
            return
        expires = (time.monotonic() if now is None else now) + ttl
        rows = self._rows
        for k, row in items:
            rows[(entity, k)] = (expires, row)
            rows.move_to_end((entity, k))
        while len(rows) > self.max_rows:
            rows.popitem(last=False)

    def clear(self) -> None:
        self._rows.clear()
