"""The embedded log's idempotency index: which ``event_id`` values are stored, kept small and mostly read.

A unique index on the ids themselves (``event_id TEXT UNIQUE``, what the log had before) costs one page write per
new id once the log holds millions of random (uuid-like) ids: each new id lands on another page of a B-tree too big
to stay in the page cache, SQLite writes that page to the WAL and again at the checkpoint (docs/INGEST.md: 2.9x
slower appends at 5M stored ids). Instead:

* an id is known by a 64-bit hash of its UTF-8 bytes (:func:`id_hashes`, BLAKE2b, 8 bytes, signed), stored as the
  rowid of a table with the event's ``seq``: ~20 bytes an id instead of ~45;
* new hashes go into a small table, ``belong_ids_new``; the big one, ``belong_ids``, is only read, until the small
  one holds more than a sixteenth of the log (at least :data:`MERGE_MIN` ids): then it is merged into the big one
  in hash order, a slice of the hashes per transaction (:func:`merge_slice`). Each page of the big table is then
  written once per merge, not once per new id (LSM style, two levels);
* a hash found in either table is a duplicate only if the event at its ``seq`` has the same id (the full id is
  compared); a new id whose hash is taken by another id (a collision: ~1e-5 likely at 20M ids) goes into
  ``belong_id_clash`` by its full id, which every look-up also checks while it is not empty.

So an id is stored iff its hash row points at an event with that id, or it is in ``belong_id_clash``: re-sending an
id is a duplicate whatever else differs, as before. Everything is written in the append's own transaction."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np
import orjson

#: the merge of the new ids into the big table waits for at least this many
MERGE_MIN = 262_144
#: ... and for a sixteenth of the log (each merge writes every page of the big table once)
MERGE_FRACTION = 16
#: ids moved per transaction of a merge (:func:`merge_slice`)
MERGE_SLICE = 262_144

DDL = """
CREATE TABLE IF NOT EXISTS belong_ids (h INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS belong_ids_new (h INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS belong_id_clash (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
"""
_HASH_TABLES = ("belong_ids", "belong_ids_new")


def id_hash(event_id: str) -> int:
    """The 64-bit hash of one id (the first 8 bytes of its BLAKE2b digest, little-endian, signed): stable across
    processes and versions, as the stored index needs."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)


def id_hashes(event_ids: Sequence[str]) -> list[int]:
    return hash_array(event_ids).tolist()


def hash_array(event_ids: Sequence[str]) -> np.ndarray:
    """:func:`id_hash` of each id, as an int64 array."""
    b2 = hashlib.blake2b
    return np.frombuffer(b"".join([b2(i.encode(), digest_size=8).digest() for i in event_ids]), "<i8")


def _lookup(conn: sqlite3.Connection, table: str, hashes: np.ndarray) -> list[tuple[int, int]]:
    """(h, seq) of the given (sorted) hashes found in ``table``: one statement, the hashes as one JSON array (SQLite
    seeks each, in order, in the rowid B-tree)."""
    sql = f"SELECT h, seq FROM {table} WHERE h IN (SELECT value FROM json_each(?))"
    return conn.execute(sql, (orjson.dumps(hashes, option=orjson.OPT_SERIALIZE_NUMPY).decode(),)).fetchall()


def _ids_at(conn: sqlite3.Connection, seqs: Iterable[int]) -> dict[int, str]:
    sql = "SELECT seq, event_id FROM events WHERE seq IN (SELECT value FROM json_each(?))"
    return dict(conn.execute(sql, (orjson.dumps(sorted(set(seqs))).decode(),)).fetchall())


def new_rows(conn: sqlite3.Connection, event_ids: Sequence[str], start_seq: int
             ) -> tuple[list[int], list[tuple[int, int]], list[tuple[str, int]]]:
    """Which rows of a batch are new, inside the write transaction: their positions (the first row of each id not
    stored yet, in batch order), the (hash, seq) rows to add to ``belong_ids_new`` (sorted by hash) and the
    (event_id, seq) rows to add to ``belong_id_clash``. The k-th new row gets ``seq = start_seq + k``."""
    n = len(event_ids)
    hashes = hash_array(event_ids)
    order = np.argsort(hashes, kind="stable")
    sorted_h = hashes[order]
    hits: dict[int, int] = {}  # stored hash -> seq of the event holding it
    for table in _HASH_TABLES:
        hits.update(_lookup(conn, table, sorted_h))
    clashes = bool(conn.execute("SELECT EXISTS (SELECT 1 FROM belong_id_clash)").fetchone()[0])
    if not hits and not clashes and not (sorted_h[1:] == sorted_h[:-1]).any():
        # the usual case: no id stored, no hash twice in the batch (so no id twice): every row new
        seqs = np.arange(start_seq, start_seq + n, dtype=np.int64)[order]
        return list(range(n)), list(zip(sorted_h.tolist(), seqs.tolist(), strict=True)), []
    hash_list = hashes.tolist()
    first: dict[str, int] = {}
    for k, eid in enumerate(event_ids):
        first.setdefault(eid, k)
    cand = list(range(n)) if len(first) == n else sorted(first.values())
    stored: set[str] = set()
    if hits:
        at = _ids_at(conn, hits.values())
        stored.update(at[s] for s in hits.values() if s in at)
    if clashes:
        sql = "SELECT event_id FROM belong_id_clash WHERE event_id IN (SELECT value FROM json_each(?))"
        stored.update(r[0] for r in conn.execute(sql, (orjson.dumps([event_ids[k] for k in cand]).decode(),)))
    taken = set(hits)  # hashes held by another id (stored, or new earlier in this batch)
    fresh: list[int] = []
    id_rows: list[tuple[int, int]] = []
    clash_rows: list[tuple[str, int]] = []
    for k in cand:
        eid = event_ids[k]
        if eid in stored:
            continue
        seq = start_seq + len(fresh)
        fresh.append(k)
        h = hash_list[k]
        if h in taken:
            clash_rows.append((eid, seq))
        else:
            taken.add(h)
            id_rows.append((h, seq))
    id_rows.sort()
    return fresh, id_rows, clash_rows


def add(conn: sqlite3.Connection, id_rows: list[tuple[int, int]], clash_rows: list[tuple[str, int]]) -> None:
    conn.executemany("INSERT INTO belong_ids_new (h, seq) VALUES (?, ?)", id_rows)
    if clash_rows:
        conn.executemany("INSERT INTO belong_id_clash (event_id, seq) VALUES (?, ?)", clash_rows)


def forget(conn: sqlite3.Connection, events: list[tuple[int, str]]) -> None:
    """Drop the index rows of deleted events, given their (seq, event_id)."""
    rows = [(h, seq) for (seq, _), h in zip(events, hash_array([e for _, e in events]).tolist(), strict=True)]
    for table in _HASH_TABLES:
        conn.executemany(f"DELETE FROM {table} WHERE h = ? AND seq = ?", rows)
    conn.executemany("DELETE FROM belong_id_clash WHERE event_id = ? AND seq = ?", [(e, s) for s, e in events])
    # the log's top may fall (the newest events deleted) while the rows they left in belong_ids_new stay: the bound
    # is counted again at the next append
    conn.execute("DELETE FROM belong_meta WHERE key = ?", (NEW_BOUND,))


def merge_floor(top_seq: int) -> int:
    """How many new ids wait in ``belong_ids_new`` before a merge, for a log at position ``top_seq``."""
    return max(MERGE_MIN, top_seq // MERGE_FRACTION)


#: ``belong_meta`` key: a log position ``m`` such that ``belong_ids_new`` holds at most ``top_seq - m`` rows (each
#: row it gains is an event appended after it; merges and forgetting only remove rows)
NEW_BOUND = "ids_new_bound"


def merge_due(conn: sqlite3.Connection, top_seq: int) -> bool:
    """Whether ``belong_ids_new`` is big enough to merge. Counting it took ~20 ms of CPU per append at 24.7M
    events (up to 1.5M rows counted), so it is counted only when the bound kept in ``belong_meta``
    (:data:`NEW_BOUND`) says it may have reached the floor; the count then sets the bound exactly."""
    floor = merge_floor(top_seq)
    row = conn.execute("SELECT value FROM belong_meta WHERE key = ?", (NEW_BOUND,)).fetchone()
    if row is not None and top_seq - int(row[0]) < floor:
        return False
    n = conn.execute("SELECT count(*) FROM (SELECT 1 FROM belong_ids_new LIMIT ?)", (floor,)).fetchone()[0]
    conn.execute("INSERT OR REPLACE INTO belong_meta (key, value) VALUES (?, ?)", (NEW_BOUND, str(top_seq - n)))
    return n >= floor


def merge_slice(conn: sqlite3.Connection, limit: int | None = None) -> int:
    """Move the ``limit`` lowest hashes of ``belong_ids_new`` into ``belong_ids``, in hash order (call inside a
    write transaction; 0 when there is nothing left). A merge is a series of slices, each a transaction of its own:
    a look-up checks both tables, so any prefix of a merge is a valid index, and other writers wait for one slice
    at most, not for the whole merge."""
    limit = MERGE_SLICE if limit is None else limit
    row = conn.execute("SELECT h FROM belong_ids_new ORDER BY h LIMIT 1 OFFSET ?", (limit - 1,)).fetchone()
    if row is None:
        sql = "INSERT INTO belong_ids (h, seq) SELECT h, seq FROM belong_ids_new ORDER BY h"
        moved = conn.execute(sql).rowcount
        conn.execute("DELETE FROM belong_ids_new")
        return moved
    sql = "INSERT INTO belong_ids (h, seq) SELECT h, seq FROM belong_ids_new WHERE h <= ? ORDER BY h"
    moved = conn.execute(sql, row).rowcount
    conn.execute("DELETE FROM belong_ids_new WHERE h <= ?", row)
    return moved


def build(conn: sqlite3.Connection, block: int = 1_000_000) -> int:
    """Fill the empty index from every stored event (a migration, or a bulk load), inside a write transaction: the
    hashes sorted, so ``belong_ids`` is written in key order (full pages, each once). Of several ids with one hash,
    the one with the lowest ``seq`` keeps the hash row and the others go to ``belong_id_clash``; a repeated id (a
    log that was not unique) is an error."""
    hs: list[np.ndarray] = []
    seqs: list[np.ndarray] = []
    lo = 0
    while True:
        rows = conn.execute("SELECT seq, event_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (lo, block)
                            ).fetchall()
        if not rows:
            break
        s, ids = zip(*rows, strict=True)
        seqs.append(np.array(s, dtype=np.int64))
        hs.append(hash_array(ids))
        lo = int(s[-1])
    if not hs:
        return 0
    h = np.concatenate(hs)
    seq = np.concatenate(seqs)
    del hs, seqs
    order = np.lexsort((seq, h))
    h, seq = h[order], seq[order]
    dup = np.zeros(h.size, dtype=bool)
    dup[1:] = h[1:] == h[:-1]
    for lo in range(0, h.size, block):
        keep = ~dup[lo:lo + block]
        conn.executemany("INSERT INTO belong_ids (h, seq) VALUES (?, ?)",
                         zip(h[lo:lo + block][keep].tolist(), seq[lo:lo + block][keep].tolist(), strict=True))
    if dup.any():
        clash = _ids_at(conn, seq[dup].tolist())
        first = np.flatnonzero(~dup)  # the hash row each repeated hash keeps: the last non-repeated one before it
        keeper = _ids_at(conn, seq[first[np.searchsorted(first, np.flatnonzero(dup), side="right") - 1]].tolist())
        if set(clash.values()) & set(keeper.values()) or len(set(clash.values())) < len(clash):
            raise sqlite3.IntegrityError("events: an event_id is stored twice")
        conn.executemany("INSERT INTO belong_id_clash (event_id, seq) VALUES (?, ?)",
                         [(e, s) for s, e in sorted(clash.items())])
    return int(h.size)
