"""The event-log interface every backend implements.

Contract (the tests of :class:`belong.testing.EventStoreContract`, run against every backend):

* ``append`` is atomic per call and durable on return: once it returns, a SIGKILL of the process loses none of
  the events it acknowledged. Re-sending an ``event_id`` already stored is a no-op (counted in ``duplicates``);
  within one batch the first row of an ``event_id`` is the one stored. ``AppendResult.inserted`` names the rows
  of the batch the log actually inserted (their positions): only those may change a live state.
* ``forget(user_id)`` deletes a user's events and row for good; later appends and upserts naming them are dropped
  (:mod:`belong.eventlog.forget`).
* Entities (users, communities, content) are upserted by id: the last write wins.
* Reads filter by half-open time range ``[start_us, end_us)`` and by event type, and return Arrow tables in
  (ts_us, seq) order, where ``seq`` is the order of acknowledgement.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from belong.domain import Community, ContentItem, Event, User
from belong.errors import StoreError
from belong.eventlog.forget import ForgetResult
from belong.schema import (
    ENTITY_SCHEMAS,
    EVENT_SCHEMA,
    communities_to_table,
    content_to_table,
    events_to_table,
    users_to_table,
    validate_entity_table,
    validate_event_table,
)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one ``append`` did: ``accepted`` new rows, ``duplicates`` skipped, and ``inserted``, the positions in
    the batch of the rows the log inserted (ascending; ``len(inserted) == accepted``); ``forgotten`` rows named a
    forgotten user and were dropped. A sum of results (several batches) keeps the counts only."""

    accepted: int
    duplicates: int
    inserted: tuple[int, ...] = field(default=(), compare=False)
    #: rows dropped because they name a forgotten user (see :mod:`belong.eventlog.forget`)
    forgotten: int = field(default=0, compare=False)

    def __add__(self, other: AppendResult) -> AppendResult:
        return AppendResult(self.accepted + other.accepted, self.duplicates + other.duplicates,
                            forgotten=self.forgotten + other.forgotten)


def inserted_positions(event_ids: Sequence[str], inserted_ids: set[str]) -> tuple[int, ...]:
    """Positions of the rows a backend inserted, given the batch's ids and the set of ids it inserted: the first
    row of each inserted id (a store keeps the first copy of an id repeated in one batch)."""
    left = set(inserted_ids)
    out: list[int] = []
    for i, eid in enumerate(event_ids):
        if eid in left:
            out.append(i)
            left.discard(eid)
    return tuple(out)


def events_query(
    columns: str, start_us: int | None, end_us: int | None, types: Sequence[str] | None, mark: str,
    after_seq: int | None = None, upto_seq: int | None = None,
) -> tuple[str, list]:
    """The read query of :meth:`EventStore.iter_events` for a driver whose placeholder is ``mark``."""
    where: list[str] = []
    params: list = []
    for cond, bound in (("seq > ", after_seq), ("seq <= ", upto_seq)):
        if bound is not None:
            where.append(f"{cond}{mark}")
            params.append(int(bound))
    if start_us is not None:
        where.append(f"ts_us >= {mark}")
        params.append(int(start_us))
    if end_us is not None:
        where.append(f"ts_us < {mark}")
        params.append(int(end_us))
    if types:
        where.append(f"type IN ({', '.join([mark] * len(types))})")
        params.extend(str(t) for t in types)
    sql = f"SELECT {columns} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    # a log's tail (after a position) is found by seq and sorted; ``+ts_us`` keeps the planner off the time index,
    # which would walk every event in time order to find the few after the position
    return sql + (" ORDER BY +ts_us, seq" if after_seq is not None else " ORDER BY ts_us, seq"), params


def state_columns(columns: Sequence[str]) -> list[str]:
    """``columns`` checked against :data:`EVENT_SCHEMA` (a :class:`StoreError` names an unknown one)."""
    names = list(columns)
    for name in names:
        if name not in EVENT_SCHEMA.names:
            raise StoreError(f"columns: unknown event column {name!r}; known: {', '.join(EVENT_SCHEMA.names)}")
    return names


class EventStore(abc.ABC):
    """A durable, idempotent event log plus the entity catalogue (users, communities, content)."""

    url: str

    # -- writes ------------------------------------------------------------------------------------------------
    def append(self, events: Sequence[Event] | pa.Table) -> AppendResult:
        """Store events durably; returns how many were new and how many were already there."""
        table = events if isinstance(events, pa.Table) else events_to_table(events)
        table = validate_event_table(table)
        if table.num_rows == 0:
            return AppendResult(0, 0)
        return self._append_table(table)

    def upsert_users(self, users: Sequence[User] | pa.Table) -> int:
        t = validate_entity_table("users", users if isinstance(users, pa.Table) else users_to_table(users))
        if t.num_rows and (gone := self.forgotten(t.column("id").to_pylist())):  # a forgotten user stays gone
            t = t.filter(pc.invert(pc.is_in(t.column("id"), value_set=pa.array(sorted(gone), pa.string()))))
        return self._upsert("users", t) if t.num_rows else 0

    def upsert_communities(self, communities: Sequence[Community] | pa.Table) -> int:
        t = communities if isinstance(communities, pa.Table) else communities_to_table(communities)
        return self._upsert("communities", validate_entity_table("communities", t))

    def upsert_content(self, items: Sequence[ContentItem] | pa.Table) -> int:
        t = items if isinstance(items, pa.Table) else content_to_table(items)
        return self._upsert("content", validate_entity_table("content", t))

    def forget(self, user_id: str) -> ForgetResult:
        """Forget a user for good: a durable tombstone, their events and entity row deleted (see
        :mod:`belong.eventlog.forget`)."""
        from belong.domain import parse_id

        return self._forget(parse_id(user_id, "user_id"))

    def forgotten(self, user_ids: Iterable[str]) -> set[str]:
        """Which of ``user_ids`` were forgotten."""
        ids = set(user_ids)
        return self._forgotten(ids) if ids else set()

    def tombstone_count(self) -> int:
        """How many users were forgotten (a cheap change detector for running processes)."""
        return int(self._query("SELECT COUNT(*) FROM belong_forgotten")[0][0])

    @abc.abstractmethod
    def _forget(self, user_id: str) -> ForgetResult: ...

    @abc.abstractmethod
    def _forgotten(self, user_ids: set[str]) -> set[str]: ...

    @abc.abstractmethod
    def _append_table(self, table: pa.Table) -> AppendResult: ...

    @abc.abstractmethod
    def _upsert(self, kind: str, table: pa.Table) -> int: ...

    # -- reads -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def iter_events(
        self,
        start_us: int | None = None,
        end_us: int | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 100_000,
        *,
        after_seq: int | None = None,
        upto_seq: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield events in (ts_us, seq) order as record batches of :data:`EVENT_SCHEMA`; ``after_seq`` /
        ``upto_seq`` keep those acknowledged after / up to a log position (:meth:`position`)."""

    def read_events(
        self, start_us: int | None = None, end_us: int | None = None, types: Sequence[str] | None = None,
        *, after_seq: int | None = None, upto_seq: int | None = None,
    ) -> pa.Table:
        batches = list(self.iter_events(start_us, end_us, types, after_seq=after_seq, upto_seq=upto_seq))
        return pa.Table.from_batches(batches, schema=EVENT_SCHEMA)

    def read_columns(self, columns: Sequence[str], *, upto_seq: int | None = None) -> pa.Table:
        """Every event up to log position ``upto_seq``, only ``columns`` (of :data:`EVENT_SCHEMA`), in (ts_us, seq)
        order: what building a state reads (:data:`belong.schema.STATE_COLUMNS`). A backend may read it columnar
        (no Python object per event); this default selects from :meth:`read_events`."""
        names = state_columns(columns)
        return self.read_events(upto_seq=upto_seq).select(names)

    def export_parquet(
        self,
        path: str | Path,
        start_us: int | None = None,
        end_us: int | None = None,
        types: Sequence[str] | None = None,
    ) -> int:
        """Write the selected events to one Parquet file, streaming; returns the row count."""
        n = 0
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(path, EVENT_SCHEMA, compression="zstd") as writer:
            for batch in self.iter_events(start_us, end_us, types):
                writer.write_batch(batch)
                n += batch.num_rows
        return n

    @abc.abstractmethod
    def read_entities(self, kind: str) -> pa.Table:
        """All rows of ``kind`` ('users', 'communities', 'content') as an Arrow table."""

    def users(self) -> pa.Table:
        return self.read_entities("users")

    def communities(self) -> pa.Table:
        return self.read_entities("communities")

    def content(self) -> pa.Table:
        return self.read_entities("content")

    # The catalogue queries below are plain SQL that SQLite and PostgreSQL both run; a backend only supplies
    # ``_query``. A non-SQL backend overrides these four methods instead.
    @abc.abstractmethod
    def _query(self, sql: str) -> list[tuple]:
        """Rows of a read-only SQL query against the backend's ``events`` and entity tables."""

    def counts_by_type(self) -> dict[str, int]:
        return {t: int(n) for t, n in self._query("SELECT type, COUNT(*) FROM events GROUP BY type")}

    def entity_counts(self) -> dict[str, int]:
        sql = " UNION ALL ".join(f"SELECT '{k}', COUNT(*) FROM {k}" for k in ENTITY_SCHEMAS)
        return {k: int(n) for k, n in self._query(sql)}

    def time_span(self) -> tuple[int, int] | None:
        """(min ts_us, max ts_us) of stored events, or None when empty."""
        # two subqueries: each is one index probe (MIN and MAX in one SELECT scan the whole index in SQLite)
        lo, hi = self._query("SELECT (SELECT MIN(ts_us) FROM events), (SELECT MAX(ts_us) FROM events)")[0]
        return None if lo is None else (int(lo), int(hi))

    def activity_counts(self) -> dict[str, int]:
        """Ids seen in events: ``active_users`` (distinct actors) and ``active_communities`` (distinct
        community targets) — meaningful even when no entity records were loaded."""
        users, communities = self._query(
            "SELECT COUNT(DISTINCT actor), COUNT(DISTINCT CASE WHEN target_kind = 'community' THEN target END) "
            "FROM events"
        )[0]
        return {"active_users": int(users), "active_communities": int(communities)}

    def position(self) -> int:
        """The log position: the ``seq`` of the last acknowledged event (0 when empty). Events appended later have
        a greater ``seq``; a state snapshot records the position it folded in (:mod:`belong.state.snapshot`)."""
        (last,) = self._query("SELECT MAX(seq) FROM events")[0]
        return 0 if last is None else int(last)

    def count(self) -> int:
        return sum(self.counts_by_type().values())

    def stats(self) -> dict[str, object]:
        from belong.domain import us_to_iso

        span = self.time_span()
        by_type = self.counts_by_type()
        return {
            "store": self.url,
            "events": sum(by_type.values()),
            "events_by_type": dict(sorted(by_type.items())),
            **self.entity_counts(),
            **self.activity_counts(),
            "first_event": us_to_iso(span[0]) if span else None,
            "last_event": us_to_iso(span[1]) if span else None,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
