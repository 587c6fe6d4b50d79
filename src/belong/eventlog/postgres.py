"""PostgreSQL event log (psycopg 3).

Tables live in the connection's ``search_path`` (a URL may pick a schema with ``options=-csearch_path=NAME``) and
are created when missing. ``events`` is partitioned by time: declarative ``RANGE`` partitions on ``ts_us``, one per
calendar month (UTC), named ``events_pYYYYMM`` and created on demand by the append that first needs one (in its own
transaction, under an advisory lock), so time-range reads scan only the months they ask for (partition pruning).

Idempotency across partitions: a unique index of a partitioned table must contain the partition key, and the same
``event_id`` re-sent with another time would land in another partition, so the ids are kept unique in a table of
their own, ``belong_event_ids`` (primary key ``event_id``). ``append`` sends the batch as CSV with ``COPY`` into a
per-connection temporary staging table, then, in one statement of the same transaction, inserts the batch's ids
into ``belong_event_ids`` (``ORDER BY ord ... ON CONFLICT DO NOTHING RETURNING``: exactly the ids never seen before,
the first copy of an id repeated in the batch) and the first staged row of each of those ids into ``events``, in
batch order: the batch is atomic, re-sent ids are skipped, ``seq`` (a sequence) follows the batch order. The
session forces ``synchronous_commit = on``, so ``COMMIT`` returns only after the WAL is flushed: an acknowledged
batch survives a SIGKILL of the client and a crash of the server.

A store made before partitioning (a plain ``events`` table with its ``event_id`` primary key) is migrated when it is
opened, in one transaction: the table is renamed, the partitioned table and its months are created, the rows are
copied with their ``seq``, their ids go into ``belong_event_ids`` and the old table is dropped (docs/INGEST.md).

Indexes are the minimum the contract needs: the primary key of ``belong_event_ids`` (byte-wise collation: ids are
compared, never sorted for people) and ``(ts_us, seq)`` on every partition for time-range reads in order; ``seq``
has no index of its own.

One connection serves writes and small reads under a lock (thread-safe); every ``iter_events`` opens its own
connection with a server-side cursor, so a long export never holds the write lock.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from belong.errors import StoreError
from belong.eventlog.base import AppendResult, EventStore, events_query, inserted_positions
from belong.eventlog.forget import RELATED_SQL, SALT_KEY, ForgetResult, keep_mask, tombstone, users_named
from belong.schema import ENTITY_SCHEMAS, EVENT_COLUMNS, EVENT_SCHEMA

T = TypeVar("T")

_EVENT_COLS_SQL = ", ".join(EVENT_COLUMNS)
_DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('belong.eventlog.ddl:' || current_schema()))"
_DDL = """
CREATE SEQUENCE IF NOT EXISTS events_seq AS BIGINT;
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT NOT NULL DEFAULT nextval('events_seq'),
    event_id TEXT COLLATE "C" NOT NULL,
    ts_us BIGINT NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    target TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    request_id TEXT,
    surface TEXT,
    position INTEGER,
    propensity DOUBLE PRECISION
) PARTITION BY RANGE (ts_us);
CREATE INDEX IF NOT EXISTS events_ts_seq ON events (ts_us, seq);
CREATE TABLE IF NOT EXISTS belong_event_ids (event_id TEXT COLLATE "C" PRIMARY KEY);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, created_at_us BIGINT NOT NULL, age_group TEXT NOT NULL, locale TEXT NOT NULL,
    interests TEXT[], status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS communities (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at_us BIGINT NOT NULL, description TEXT, tags TEXT[],
    locale TEXT NOT NULL, is_age_restricted BOOLEAN NOT NULL, discoverable BOOLEAN NOT NULL,
    invite_only BOOLEAN NOT NULL, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS content (
    id TEXT PRIMARY KEY, community_id TEXT NOT NULL, kind TEXT NOT NULL, created_at_us BIGINT NOT NULL,
    text TEXT, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS belong_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS belong_forgotten (h TEXT COLLATE "C" PRIMARY KEY, at_us BIGINT NOT NULL);
INSERT INTO belong_meta VALUES ('tombstone_salt', md5(random()::text || clock_timestamp()::text)
    || md5(random()::text || clock_timestamp()::text)) ON CONFLICT (key) DO NOTHING;
"""
# appends hold this lock shared, forget exclusive: an append never races a forget of a user it names
_FORGET_LOCK = "hashtext('belong.eventlog.forget:' || current_schema())"

# Staging tables are session-local and emptied at every commit; ``ord`` keeps the batch order.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS belong_stage_events_v2 (
    ord BIGINT NOT NULL, event_id TEXT COLLATE "C", ts_us BIGINT, type TEXT, actor TEXT, target TEXT, target_kind TEXT,
    value DOUBLE PRECISION, request_id TEXT, surface TEXT, position INTEGER, propensity DOUBLE PRECISION
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS belong_stage_users (ord BIGINT NOT NULL, LIKE users) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS belong_stage_communities (ord BIGINT NOT NULL, LIKE communities)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS belong_stage_content (ord BIGINT NOT NULL, LIKE content) ON COMMIT DELETE ROWS;
"""
_COPY_EVENTS = f"COPY belong_stage_events_v2 (ord, {_EVENT_COLS_SQL}) FROM STDIN (FORMAT csv)"
#: new ids first (the first copy of each, in batch order), then the first staged row of each new id, in batch order
_MOVE_EVENTS = f"""
WITH new AS (
    INSERT INTO belong_event_ids (event_id) SELECT event_id FROM belong_stage_events_v2 ORDER BY ord
    ON CONFLICT (event_id) DO NOTHING RETURNING event_id
)
INSERT INTO events ({_EVENT_COLS_SQL})
SELECT {_EVENT_COLS_SQL} FROM (
    SELECT DISTINCT ON (s.event_id) s.* FROM belong_stage_events_v2 s JOIN new ON new.event_id = s.event_id
    ORDER BY s.event_id, s.ord
) AS first ORDER BY ord
RETURNING event_id"""
#: a plain ``events`` table of a store made before partitioning (``relkind`` 'r'; a partitioned one is 'p')
_EVENTS_KIND = "SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass('events')"
_PARTITIONS = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
               "WHERE i.inhparent = to_regclass('events')")
_MIGRATE_RENAME = """
ALTER TABLE events RENAME TO belong_events_unpartitioned;
ALTER INDEX IF EXISTS events_ts_seq RENAME TO belong_events_unpartitioned_ts_seq;
"""
_MIGRATE_COPY = f"""
INSERT INTO events (seq, {_EVENT_COLS_SQL}) SELECT seq, {_EVENT_COLS_SQL} FROM belong_events_unpartitioned;
INSERT INTO belong_event_ids (event_id) SELECT event_id FROM belong_events_unpartitioned;
SELECT setval('events_seq', COALESCE((SELECT MAX(seq) FROM belong_events_unpartitioned), 0) + 1, false);
DROP TABLE belong_events_unpartitioned;
"""
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def events_csv(table: pa.Table) -> bytes:
    """The events as CSV for ``COPY``: a leading 0-based ``ord`` column, then :data:`EVENT_COLUMNS`.

    Arrow writes strings quoted and nulls as empty fields, which is exactly PostgreSQL's CSV convention (a quoted
    empty string is ``''``, an unquoted empty field is NULL); floats are written in shortest round-trip form.
    """
    t = table.select(list(EVENT_COLUMNS))
    t = t.add_column(0, "ord", pa.array(range(t.num_rows), pa.int64()))
    buf = io.BytesIO()
    pacsv.write_csv(t, buf, _CSV_OPTIONS)
    return buf.getvalue()


def month_of(ts_us: np.ndarray) -> np.ndarray:
    """The distinct calendar months (UTC) of microsecond times, as months since 1970-01."""
    return np.unique(np.asarray(ts_us, np.int64).astype("datetime64[us]").astype("datetime64[M]").astype(np.int64))


def partition_name(month: int) -> str:
    """``events_pYYYYMM`` of a month counted from 1970-01."""
    return "events_p" + str(np.datetime64(month, "M")).replace("-", "")


def partition_ddl(month: int) -> str:
    """The month's partition: ``[first microsecond of the month, first of the next)``."""
    lo, hi = (int(np.datetime64(m, "M").astype("datetime64[us]").astype(np.int64)) for m in (month, month + 1))
    return f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF events FOR VALUES FROM ({lo}) TO ({hi})"


def _one(conn: psycopg.Connection, sql: str, *params: Any) -> Any:
    """The single value a query answers."""
    row = conn.execute(sql, params or None).fetchone()
    if row is None:
        raise StoreError(f"store: no answer to {sql!r}")
    return row[0]


class PostgresStore(EventStore):
    """The event log in PostgreSQL; ``url`` is a libpq URL (``postgresql://user@host:port/db?options=...``)."""

    def __init__(self, url: str) -> None:
        self.url = redact(url)
        self._dsn = url
        self._lock = threading.Lock()
        self._salt_value: str | None = None
        self._months: set[int] = set()  # months whose partition is known to exist
        self._conn = self._connect()
        try:
            self._guard(self._create_schema)  # also turns a failure (e.g. no CREATE privilege) into StoreError
        except StoreError:
            self._conn.close()
            raise

    # -- connection ------------------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
        except (psycopg.Error, ValueError) as exc:  # ValueError: a malformed URL or option
            raise StoreError(f"store: cannot connect to {self.url}: {str(exc).strip()}") from None
        try:
            conn.execute("SET synchronous_commit = on")  # acknowledged == flushed WAL, whatever the server default
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"store: cannot configure the session on {self.url}: {exc}") from None
        return conn

    def _create_schema(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute(_DDL_LOCK)
            if conn.execute(_EVENTS_KIND).fetchone() == ("r",):  # a store made before partitioning
                self._migrate(conn)
            else:
                conn.execute(_DDL)
            conn.execute(_STAGING_DDL)

    def _migrate(self, conn: psycopg.Connection) -> None:
        """The plain ``events`` table into the partitioned one, rows with their ``seq`` (in the caller's
        transaction: all or nothing)."""
        conn.execute(_MIGRATE_RENAME)
        conn.execute(_DDL)
        lo, hi = _one(conn, "SELECT ARRAY[MIN(ts_us), MAX(ts_us)] FROM belong_events_unpartitioned")
        if lo is not None:
            first, last = month_of(np.array([lo])), month_of(np.array([hi]))
            for month in range(int(first[0]), int(last[0]) + 1):
                conn.execute(partition_ddl(month))
        conn.execute(_MIGRATE_COPY)

    def _ensure_partitions(self, conn: psycopg.Connection, table: pa.Table) -> None:
        """Create the partitions of the batch's months that do not exist yet (own transaction, under the DDL lock:
        concurrent writers create each one once)."""
        months = set(month_of(table.column("ts_us").to_numpy()).tolist()) - self._months
        if not months:
            return
        with conn.transaction():
            conn.execute(_DDL_LOCK)
            existing = {r[0] for r in conn.execute(_PARTITIONS)}
            for month in sorted(months):
                if partition_name(month) not in existing:
                    conn.execute(partition_ddl(month))
        self._months |= months

    def partitions(self) -> list[str]:
        """The names of the partitions of ``events``, oldest month first."""
        return sorted(r[0] for r in self._query(_PARTITIONS))

    def _guard(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run ``fn`` on the shared connection under the lock; reconnect once if the connection was lost
        before, and turn database errors into :class:`StoreError`."""
        with self._lock:
            try:
                if self._conn.closed or self._conn.broken:
                    self._conn = self._connect()
                    self._create_schema(self._conn)
                return fn(self._conn)
            except psycopg.OperationalError as exc:
                self._months.clear()
                raise StoreError(f"store: lost the connection to {self.url}: {str(exc).strip()}") from None
            except psycopg.Error as exc:
                self._months.clear()  # e.g. a partition dropped by hand: look again next time
                raise StoreError(f"store: {self.url}: {str(exc).strip()}") from None

    # -- writes ----------------------------------------------------------------------------------------------------
    def _gone(self, conn: psycopg.Connection, user_ids: set[str]) -> set[str]:
        """The forgotten ones among ``user_ids`` (none, without hashing, when nobody was forgotten)."""
        if not user_ids or not _one(conn, "SELECT EXISTS (SELECT 1 FROM belong_forgotten)"):
            return set()
        by_hash = {tombstone(self._salt(conn), u): u for u in user_ids}
        rows = conn.execute("SELECT h FROM belong_forgotten WHERE h = ANY(%s)", (list(by_hash),)).fetchall()
        return {by_hash[h] for (h,) in rows}

    def _salt(self, conn: psycopg.Connection) -> str:
        if self._salt_value is None:
            self._salt_value = str(_one(conn, "SELECT value FROM belong_meta WHERE key = %s", SALT_KEY))
        return self._salt_value

    def _append_table(self, table: pa.Table) -> AppendResult:
        n = table.num_rows
        ids = table.column("event_id").to_pylist()
        named = users_named(table)

        def run(conn: psycopg.Connection) -> tuple[list[int], set[str]]:
            self._ensure_partitions(conn, table)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(f"SELECT pg_advisory_xact_lock_shared({_FORGET_LOCK})")
                kept, positions = table, list(range(n))
                if gone := self._gone(conn, named):
                    mask = keep_mask(table, gone)
                    kept = table.filter(mask)
                    positions = [i for i, keep in enumerate(mask.to_pylist()) if keep]
                with cur.copy(_COPY_EVENTS) as copy:
                    copy.write(events_csv(kept))
                cur.execute(_MOVE_EVENTS)
                return positions, {r[0] for r in cur.fetchall()}  # RETURNING: exactly the rows inserted

        positions, new_ids = self._guard(run)
        local = inserted_positions([ids[i] for i in positions], new_ids)
        dropped = n - len(positions)
        return AppendResult(accepted=len(local), duplicates=n - len(local) - dropped,
                            inserted=tuple(positions[i] for i in local), forgotten=dropped)

    def _forget(self, user_id: str) -> ForgetResult:
        def run(conn: psycopg.Connection) -> ForgetResult:
            with conn.transaction():
                conn.execute(f"SELECT pg_advisory_xact_lock({_FORGET_LOCK})")
                h = tombstone(self._salt(conn), user_id)
                added = conn.execute("INSERT INTO belong_forgotten VALUES (%s, %s) ON CONFLICT (h) DO NOTHING",
                                     (h, time.time_ns() // 1000)).rowcount
                related = sorted(r[0] for r in conn.execute(RELATED_SQL.format(m="%s"), (user_id,) * 3)
                                 if r[0] != user_id)
                events = conn.execute(  # the events and their ids (one id per event)
                    "WITH gone AS (DELETE FROM events WHERE actor = %s OR (target_kind = 'user' AND target = %s) "
                    "RETURNING event_id) DELETE FROM belong_event_ids WHERE event_id IN (SELECT event_id FROM gone)",
                    (user_id, user_id)).rowcount
                users = conn.execute("DELETE FROM users WHERE id = %s", (user_id,)).rowcount
            # the deleted tuples' space is reclaimed (autocommit: no block)
            conn.execute("VACUUM events, belong_event_ids, users")
            return ForgetResult(events=events, users=users, already=added == 0, related=tuple(related))

        return self._guard(run)

    def _forgotten(self, user_ids: set[str]) -> set[str]:
        return self._guard(lambda conn: self._gone(conn, user_ids))

    def _upsert(self, kind: str, table: pa.Table) -> int:
        names = ENTITY_SCHEMAS[kind].names
        cols = ", ".join(names)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != "id")
        # the last row of an id in the batch wins, like a sequence of single upserts
        move = (
            f"INSERT INTO {kind} ({cols}) SELECT DISTINCT ON (id) {cols} FROM belong_stage_{kind} "
            f"ORDER BY id, ord DESC ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        columns = [table.column(n).to_pylist() for n in names]

        def run(conn: psycopg.Connection) -> None:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY belong_stage_{kind} (ord, {cols}) FROM STDIN") as copy:
                    for i, row in enumerate(zip(*columns, strict=True)):
                        copy.write_row((i, *row))
                cur.execute(move)

        self._guard(run)
        return table.num_rows

    # -- reads -----------------------------------------------------------------------------------------------------
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
        sql, params = events_query(_EVENT_COLS_SQL, start_us, end_us, types, "%s", after_seq, upto_seq)
        try:
            conn = psycopg.connect(self._dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"store: cannot connect to {self.url}: {str(exc).strip()}") from None
        try:
            with conn.transaction(), conn.cursor(name="belong_iter_events") as cur:
                cur.itersize = batch_size
                cur.execute(sql, params)
                while rows := cur.fetchmany(batch_size):
                    cols = list(zip(*rows, strict=True))
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(c, type=f.type) for c, f in zip(cols, EVENT_SCHEMA, strict=True)],
                        schema=EVENT_SCHEMA,
                    )
        except psycopg.Error as exc:
            raise StoreError(f"store: reading events from {self.url}: {str(exc).strip()}") from None
        finally:
            conn.close()

    def read_entities(self, kind: str) -> pa.Table:
        if kind not in ENTITY_SCHEMAS:
            raise StoreError(f"kind: unknown entity kind {kind!r}")
        schema = ENTITY_SCHEMAS[kind]
        rows = self._guard(
            lambda conn: conn.execute(f"SELECT {', '.join(schema.names)} FROM {kind} ORDER BY id").fetchall()
        )
        if not rows:
            return schema.empty_table()
        cols = [list(c) for c in zip(*rows, strict=True)]
        return pa.table(dict(zip(schema.names, cols, strict=True)), schema=schema)

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        return self._guard(lambda conn: conn.execute(sql).fetchall())

    def synchronous_commit(self) -> str:
        """This session's ``synchronous_commit`` (``on`` unless someone changed it on the connection)."""
        return str(self._query("SHOW synchronous_commit")[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
