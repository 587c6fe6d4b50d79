"""Embedded event log: one SQLite database in WAL mode with ``synchronous=FULL``.

SQLite is in the standard library, its WAL allows one writer and many readers across processes (the API reads while
``belong ingest`` writes), an index of the ids' 64-bit hashes checked and written in the append's own transaction
gives idempotency (:mod:`belong.eventlog.sqlite_ids`: small and mostly read, so appends stay fast with millions of
random ids stored), and one fsync per ``append`` makes every acknowledged batch survive SIGKILL and power loss. How it
compares with DuckDB and Parquet segments, and its cost with millions of stored events: docs/MEASUREMENTS.md and
``belong bench ingest``."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson
import pyarrow as pa

from belong.errors import StoreError
from belong.eventlog import sqlite_ids
from belong.eventlog.base import AppendResult, EventStore, events_query, state_columns
from belong.eventlog.forget import RELATED_SQL, SALT_KEY, ForgetResult, keep_mask, tombstone, users_named
from belong.schema import ENTITY_SCHEMAS, EVENT_COLUMNS, EVENT_SCHEMA

DB_NAME = "events.sqlite3"

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    target TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    value REAL NOT NULL,
    request_id TEXT,
    surface TEXT,
    position INTEGER,
    propensity REAL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_us);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, created_at_us INTEGER NOT NULL, age_group TEXT NOT NULL, locale TEXT NOT NULL,
    interests TEXT, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS communities (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at_us INTEGER NOT NULL, description TEXT, tags TEXT,
    locale TEXT NOT NULL, is_age_restricted INTEGER NOT NULL, discoverable INTEGER NOT NULL,
    invite_only INTEGER NOT NULL, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS content (
    id TEXT PRIMARY KEY, community_id TEXT NOT NULL, kind TEXT NOT NULL, created_at_us INTEGER NOT NULL,
    text TEXT, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS belong_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS belong_forgotten (h TEXT PRIMARY KEY, at_us INTEGER NOT NULL);
"""
_IN_CHUNK = 5000  # ids per IN (...) query, well under SQLite's variable limit

_INSERT_EVENTS = (
    f"INSERT INTO events (seq, {', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 1))})"
)
_LIST_COLUMNS = {"interests", "tags"}
_BOOL_COLUMNS = {"is_age_restricted", "discoverable", "invite_only"}


def table_rows(table: pa.Table, columns: Sequence[str]) -> list[tuple]:
    """Rows of ``columns`` as tuples for ``executemany``; list columns become JSON text."""
    cols = []
    for name in columns:
        vals = table.column(name).to_pylist()
        if name in _LIST_COLUMNS:
            vals = [None if v is None else json.dumps(v) for v in vals]
        cols.append(vals)
    return list(zip(*cols, strict=True))


class SqliteStore(EventStore):
    def __init__(self, path: Path, *, create: bool = True) -> None:
        path = Path(path)
        db = path / DB_NAME if path.suffix not in (".sqlite3", ".db") else path
        if not db.exists():
            if not create:
                raise StoreError(f"store: no belong store at {path}")
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store: cannot create {db.parent}: {exc}") from None
        self.path = db
        self.url = str(path)
        try:
            self._conn = sqlite3.connect(db, timeout=60, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache
            # checkpoint the WAL every ~40 MiB rather than 4 MiB: index pages dirtied by several batches are copied
            # into the database once (measured A/B, random ids, 0.1-0.8M events: ~10% more events/s)
            self._conn.execute("PRAGMA wal_autocheckpoint=10000")
            self._conn.execute("PRAGMA secure_delete=ON")  # deleted rows' bytes are zeroed (forget: no trace)
            if not self._has_id_index():
                self._migrate()
            # one transaction: one fsync, not one per table
            self._conn.executescript(f"BEGIN;{_DDL}{sqlite_ids.DDL}COMMIT;")
            self._salt = self._read_salt()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store: cannot open {db}: {exc}") from None
        self._lock = threading.Lock()
        #: appends merge the new ids into the big id index when due; a benchmark holds that back to time a merge
        self.merge_when_due = True

    def _has_id_index(self) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'belong_ids'"
        return self._conn.execute(sql).fetchone() is not None

    def _migrate(self) -> None:
        """Give the store the hashed id index (:mod:`belong.eventlog.sqlite_ids`), in one transaction: a new store
        gets its tables; a store made before it (``event_id TEXT UNIQUE``) has its ``events`` table rebuilt without
        the unique index (rows and ``seq`` kept) and its ids hashed into the new index. Minutes for tens of millions
        of events; other writers wait meanwhile; if it fails, nothing changed."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_id_index():
                old = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
                if old is not None:
                    cols = ", ".join(["seq", *EVENT_COLUMNS])
                    conn.execute("ALTER TABLE events RENAME TO belong_events_unique")
                    conn.execute("DROP INDEX IF EXISTS events_ts")
                stmts = [st for st in (_DDL + sqlite_ids.DDL).split(";") if st.strip()]
                for stmt in stmts:
                    if "CREATE INDEX" not in stmt:
                        conn.execute(stmt)
                if old is not None:  # rows first, then the time index (built sorted), then the id index
                    conn.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM belong_events_unique ORDER BY seq")
                    conn.execute("DROP TABLE belong_events_unique")
                for stmt in stmts:
                    if "CREATE INDEX" in stmt:
                        conn.execute(stmt)
                if old is not None:
                    sqlite_ids.build(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read_salt(self) -> str:
        """The store's tombstone salt, made once (a write only the first time: opening stays read-only)."""
        sql = "SELECT value FROM belong_meta WHERE key = ?"
        row = self._conn.execute(sql, (SALT_KEY,)).fetchone()
        if row is None:
            self._conn.executescript("BEGIN IMMEDIATE; INSERT OR IGNORE INTO belong_meta "
                                     f"VALUES ('{SALT_KEY}', lower(hex(randomblob(32)))); COMMIT;")
            row = self._conn.execute(sql, (SALT_KEY,)).fetchone()
        return str(row[0])

    # -- writes ------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE (write-locked) transaction, durable when the block ends (``synchronous=FULL``: the WAL is
        fsynced before COMMIT returns); rolled back on any error."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"store: writing to {self.path} failed: {exc}") from None

    def _write(self, sql: str, rows: list[tuple]) -> int:
        """``executemany`` in one transaction; the number of rows changed."""
        with self._transaction() as conn:
            start = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - start

    def _gone(self, conn: sqlite3.Connection, user_ids: set[str]) -> set[str]:
        """The forgotten ones among ``user_ids`` (one indexed lookup per id, none when nobody was forgotten)."""
        if not user_ids or conn.execute("SELECT NOT EXISTS (SELECT 1 FROM belong_forgotten)").fetchone()[0]:
            return set()
        by_hash = {tombstone(self._salt, u): u for u in user_ids}
        hashes = list(by_hash)
        out: set[str] = set()
        for lo in range(0, len(hashes), _IN_CHUNK):
            part = hashes[lo:lo + _IN_CHUNK]
            sql = f"SELECT h FROM belong_forgotten WHERE h IN ({', '.join('?' * len(part))})"
            out.update(by_hash[h] for (h,) in conn.execute(sql, part))
        return out

    def _append_table(self, table: pa.Table) -> AppendResult:
        n = table.num_rows
        with self._transaction() as conn:
            kept = table
            positions = list(range(n))
            if gone := self._gone(conn, users_named(table)):  # inside the write lock: no race with forget
                mask = keep_mask(table, gone)
                kept = table.filter(mask)
                positions = [i for i, keep in enumerate(mask.to_pylist()) if keep]
            top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            ids = kept.column("event_id").to_pylist()
            local, id_rows, clash_rows = sqlite_ids.new_rows(conn, ids, top + 1)
            if len(local) == kept.num_rows:  # every row new (the usual case): bound straight from the columns
                new = kept
            else:
                new = kept.take(pa.array(local, pa.int64()))
            cols = [new.column(k).to_pylist() for k in EVENT_COLUMNS]
            start = conn.total_changes
            conn.executemany(_INSERT_EVENTS, zip(range(top + 1, top + 1 + new.num_rows), *cols, strict=True))
            accepted = conn.total_changes - start
            if accepted != len(local):  # cannot happen while the write lock is held; rolled back, never folded
                raise StoreError(f"store: {self.path}: {accepted} rows inserted but {len(local)} were new")
            sqlite_ids.add(conn, id_rows, clash_rows)
            merge = sqlite_ids.merge_due(conn, top + accepted)
        if merge and self.merge_when_due:  # the batch is durable already; the merge follows in transactions of its own
            with contextlib.suppress(StoreError):  # e.g. another writer held the lock: the index stays valid (a
                self._merge_ids()                  # merge is maintenance) and the next append merges
        dropped = n - kept.num_rows
        return AppendResult(accepted=accepted, duplicates=n - accepted - dropped,
                            inserted=tuple(positions[i] for i in local), forgotten=dropped)

    def _merge_ids(self) -> int:
        """Move every new id into the big id index, a slice per transaction (:func:`sqlite_ids.merge_slice`)."""
        moved = 0
        while True:
            with self._transaction() as conn:
                step = sqlite_ids.merge_slice(conn)
            moved += step
            if step < sqlite_ids.MERGE_SLICE:
                return moved

    def merge_ids(self) -> tuple[int, int]:
        """Merge the new ids into the big id index now, whatever their number (appends do it when due, see
        :mod:`belong.eventlog.sqlite_ids`): the ids moved, and how many new ids an append waits for at this size."""
        moved = self._merge_ids()
        return moved, self.merge_every()

    def merge_every(self) -> int:
        """How many new ids appends let wait before they merge them, at the log's present size."""
        return sqlite_ids.merge_floor(self.position())

    def new_ids(self) -> int:
        """How many new ids wait for the next merge."""
        return int(self._query("SELECT count(*) FROM belong_ids_new")[0][0])

    def _forget(self, user_id: str) -> ForgetResult:
        with self._transaction() as conn:
            h = tombstone(self._salt, user_id)
            already = conn.execute("SELECT 1 FROM belong_forgotten WHERE h = ?", (h,)).fetchone() is not None
            conn.execute("INSERT OR IGNORE INTO belong_forgotten VALUES (?, ?)", (h, time.time_ns() // 1000))
            related = sorted(r[0] for r in conn.execute(RELATED_SQL.format(m="?"), (user_id,) * 3) if r[0] != user_id)
            mine = "actor = ? OR (target_kind = 'user' AND target = ?)"
            sqlite_ids.forget(conn, conn.execute(f"SELECT seq, event_id FROM events WHERE {mine}",
                                                 (user_id, user_id)).fetchall())
            events = conn.execute(f"DELETE FROM events WHERE {mine}", (user_id, user_id)).rowcount
            users = conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount
        self._truncate_wal()
        return ForgetResult(events=events, users=users, already=already, related=tuple(related))

    def _truncate_wal(self, tries: int = 100) -> None:
        """Copy the WAL into the database and truncate it: it still holds older page images with the forgotten
        rows. A reader of another connection can hold the WAL for a moment: try again for up to ~10 s."""
        for _ in range(tries):
            with self._lock:
                try:
                    busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                except sqlite3.Error as exc:
                    raise StoreError(f"store: checkpointing {self.path} failed: {exc}") from None
            if not busy:
                return
            time.sleep(0.1)
        raise StoreError(f"store: {self.path}: readers kept the WAL busy; forget the user again to truncate it")

    def _forgotten(self, user_ids: set[str]) -> set[str]:
        with self._lock:
            try:
                return self._gone(self._conn, user_ids)
            except sqlite3.Error as exc:
                raise StoreError(f"store: reading {self.path} failed: {exc}") from None

    def _upsert(self, kind: str, table: pa.Table) -> int:
        names = ENTITY_SCHEMAS[kind].names
        sql = f"INSERT OR REPLACE INTO {kind} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        rows = table_rows(table, names)
        self._write(sql, rows)
        return len(rows)

    def _query(self, sql: str) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"store: reading {self.path} failed: {exc}") from None

    # -- reads -------------------------------------------------------------------------------------------------
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
        sql, params = events_query(', '.join(EVENT_COLUMNS), start_us, end_us, types, "?", after_seq, upto_seq)
        # a separate read connection: a long export never blocks writers (WAL snapshot isolation)
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        try:
            cur = conn.execute(sql, params)
            while rows := cur.fetchmany(batch_size):
                cols = list(zip(*rows, strict=True))
                yield pa.RecordBatch.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(cols, EVENT_SCHEMA, strict=True)],
                    schema=EVENT_SCHEMA,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"store: reading events from {self.path} failed: {exc}") from None
        finally:
            conn.close()

    def read_columns(self, columns: Sequence[str], *, upto_seq: int | None = None) -> pa.Table:
        """Columnar: the columns a state needs, in ``seq`` order (a scan of the table by ``seq`` ranges, not a walk
        of the time index that reads the table's pages in random order), then sorted by time (stable: ties keep
        ``seq`` order; a log appended in time order is sorted already). One read transaction: one read snapshot of
        the log (WAL), taken while writers go on.

        Read through this process's own SQLite (``sqlite3``), in blocks of :data:`READ_BLOCK` positions. Each
        column of a block comes back as ONE string that SQLite builds itself (``group_concat``; REAL values printed
        with 20 significant digits, which read back exactly), split and parsed by Arrow: two Python objects per
        column and block instead of one per cell (:func:`_text_block`, 2.0x less CPU than the row path at 1M
        events; docs/SCALING.md). A block whose text does not split into its row count (a value holding a line
        break) or does not parse, and nullable columns, take the row path (:func:`_row_block`). The ADBC SQLite
        driver read 5x faster but links a second copy of SQLite into the process: closing its connection dropped
        the POSIX locks that ``sqlite3``'s connections held on the same file (SQLite's "multiple copies" hazard),
        and a server that had started from the log then lost sight of its own writes ("disk I/O error")."""
        import numpy as np

        names = state_columns(columns)
        read = list(dict.fromkeys(["ts_us", *names]))
        schema = pa.schema([EVENT_SCHEMA.field(n) for n in read])
        batches = []
        try:
            # a connection of its own (the same SQLite library, so locks stay right): writers go on meanwhile
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False,
                                   isolation_level=None)
            try:
                conn.execute("BEGIN")  # every block below from one snapshot of the log
                lo, top = conn.execute("SELECT COALESCE(MIN(seq), 1) - 1, COALESCE(MAX(seq), 0) FROM events"
                                       ).fetchone()
                if upto_seq is not None:
                    top = min(top, int(upto_seq))
                text = all(n in _NOT_NULL for n in read)
                while lo < top:
                    hi = min(lo + READ_BLOCK, top)
                    batch = _text_block(conn, read, schema, lo, hi) if text else None
                    if batch is None:
                        batch = _row_block(conn, read, schema, lo, hi)
                    if batch.num_rows:
                        batches.append(batch)
                    lo = hi
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"store: reading events from {self.path} failed: {exc}") from None
        if not batches:
            return schema.empty_table().select(names)
        table = pa.Table.from_batches(batches, schema=schema)
        ts = table.column("ts_us").to_numpy()
        if ts.size > 1 and not bool((ts[1:] >= ts[:-1]).all()):
            table = table.take(pa.array(np.argsort(ts, kind="stable")))
        return table.select(names)

    def read_entities(self, kind: str) -> pa.Table:
        if kind not in ENTITY_SCHEMAS:
            raise StoreError(f"kind: unknown entity kind {kind!r}")
        schema = ENTITY_SCHEMAS[kind]
        rows = self._query(f"SELECT {', '.join(schema.names)} FROM {kind} ORDER BY id")
        if not rows:
            return schema.empty_table()
        cols = [list(c) for c in zip(*rows, strict=True)]
        for i, name in enumerate(schema.names):
            if name in _LIST_COLUMNS:
                cols[i] = [None if v is None else orjson.loads(v) for v in cols[i]]
            elif name in _BOOL_COLUMNS:
                cols[i] = [bool(v) for v in cols[i]]
        return pa.table(dict(zip(schema.names, cols, strict=True)), schema=schema)

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:
            pass


#: positions (``seq``) per block of :meth:`SqliteStore.read_columns`
READ_BLOCK = 262_144
#: columns declared ``NOT NULL``: read as text by :func:`_text_block`
_NOT_NULL = frozenset({"seq", "event_id", "ts_us", "type", "actor", "target", "target_kind", "value"})


def _text_expr(name: str) -> str:
    # 20 significant digits ('!' lifts SQLite's 16-digit cap): every double prints so that it reads back exactly
    floating = name in EVENT_SCHEMA.names and pa.types.is_floating(EVENT_SCHEMA.field(name).type)
    return f"printf('%!.20g', {name})" if floating else name


def _text_block(conn: sqlite3.Connection, read: list[str], schema: pa.Schema, lo: int,
                hi: int) -> pa.RecordBatch | None:
    """Events with ``lo < seq <= hi`` in ``seq`` order, each column concatenated by SQLite into one string (line
    separated) and split and parsed by Arrow; None when the text does not give back exactly the block's rows."""
    import numpy as np
    import pyarrow.compute as pc

    cols = ["seq", *read]
    sql = (f"SELECT count(*), {', '.join(f'group_concat({_text_expr(c)}, char(10))' for c in cols)} "
           "FROM events WHERE seq > ? AND seq <= ?")  # a range of the rowid: scanned in seq order (checked below)
    n, *texts = conn.execute(sql, (lo, hi)).fetchone()
    if not n:
        return pa.RecordBatch.from_pylist([], schema=schema)
    arrays = []
    try:
        for name, text in zip(cols, texts, strict=True):
            parts = pc.split_pattern(pa.array([text], pa.string()), "\n").flatten()  # a block's text < 2 GiB
            if len(parts) != n:  # a value holding a line break: the row path reads this block
                return None
            typ = pa.int64() if name == "seq" else EVENT_SCHEMA.field(name).type
            arrays.append(parts if typ == pa.string() else pc.cast(parts, typ))
    except pa.ArrowInvalid:  # a value Arrow does not parse as its type (an infinite REAL, say)
        return None
    seq = arrays[0].to_numpy()
    batch = pa.RecordBatch.from_arrays(arrays[1:], schema=schema)
    if n > 1 and not bool((seq[1:] > seq[:-1]).all()):  # group_concat's order is SQLite's scan order: checked
        batch = batch.take(pa.array(np.argsort(seq, kind="stable")))
    return batch


def _row_block(conn: sqlite3.Connection, read: list[str], schema: pa.Schema, lo: int, hi: int) -> pa.RecordBatch:
    """Events with ``lo < seq <= hi`` in ``seq`` order, one Python tuple per row (any column, NULLs included)."""
    rows = conn.execute(f"SELECT {', '.join(read)} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq",
                        (lo, hi)).fetchall()
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    cols = list(zip(*rows, strict=True))
    return pa.record_batch([pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)], schema=schema)


def build_store(path: Path, tables: Iterable[pa.Table]) -> int:
    """Write a NEW embedded store at ``path`` from ``tables`` of events in one bulk pass (a benchmark's or an
    import's large prefill): the rows appended in order, then the time index and the id index built sorted, which
    takes minutes for tens of millions of events where appends would take hours. The database is built beside
    its final name without a journal and moved into place (after an fsync) only once complete: an interrupted
    build leaves no store. Rows are stored as given (no forget check); a repeated ``event_id`` fails the build.
    Returns the number of events."""
    path = Path(path)
    db = path / DB_NAME if path.suffix not in (".sqlite3", ".db") else path
    if db.exists():
        raise StoreError(f"store: {db} exists already; a bulk build makes a new store")
    tmp = db.with_name("building-" + db.name)  # the same suffix: SqliteStore opens it as a file
    for stale in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        stale.unlink(missing_ok=True)
    SqliteStore(tmp).close()  # the schema and the salt
    n = 0
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA cache_size=-262144")
            conn.execute("BEGIN")
            conn.execute("DROP INDEX events_ts")
            for table in tables:
                table = table.select(list(EVENT_COLUMNS))
                cols = [table.column(k).to_pylist() for k in EVENT_COLUMNS]
                conn.executemany(_INSERT_EVENTS, zip(range(n + 1, n + 1 + table.num_rows), *cols, strict=True))
                n += table.num_rows
            conn.execute("CREATE INDEX events_ts ON events (ts_us)")
            sqlite_ids.build(conn)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        db.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, db)
        dfd = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"store: building {db} failed: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
