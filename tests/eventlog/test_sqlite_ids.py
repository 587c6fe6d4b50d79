"""The embedded log's hashed, two-level id index (belong.eventlog.sqlite_ids): idempotency through merges and hash
collisions, forget, the migration of stores made with ``event_id TEXT UNIQUE``, and the bulk build."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from belong.errors import StoreError
from belong.eventlog import open_store, sqlite_ids
from belong.eventlog.sqlite import DB_NAME, SqliteStore, build_store
from belong.schema import EVENT_SCHEMA


def _events(ids: list[str], actor: str = "u1", t0: int = 1_700_000_000_000_000) -> pa.Table:
    return pa.Table.from_pylist(
        [{"event_id": i, "ts_us": t0 + n, "type": "join", "actor": actor, "target": "c1",
          "target_kind": "community", "value": 1.0} for n, i in enumerate(ids)],
        schema=EVENT_SCHEMA,
    )


def _index_rows(st: SqliteStore) -> dict[str, int]:
    return {t: st._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("belong_ids", "belong_ids_new", "belong_id_clash")}


@pytest.fixture
def weak_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash with 7 values: nearly every id collides, so the full-id checks and the clash table do the work."""
    monkeypatch.setattr(sqlite_ids, "hash_array",
                        lambda ids: np.array([sum(map(ord, i)) % 7 for i in ids], dtype=np.int64))


@pytest.fixture
def small_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_ids, "MERGE_MIN", 40)
    monkeypatch.setattr(sqlite_ids, "MERGE_SLICE", 16)  # a merge in several transactions


def test_the_hash_is_stable_and_64_bit() -> None:
    # stored in every log: must never change
    assert sqlite_ids.id_hash("e1") == sqlite_ids.id_hashes(["e1"])[0] == 292540415853092123
    assert all(-(2**63) <= h < 2**63 for h in sqlite_ids.id_hashes([str(i) for i in range(1000)]))


@pytest.mark.parametrize("hashing", ["real", "weak"])
def test_idempotency_through_merges_and_collisions(tmp_path: Path, request: pytest.FixtureRequest,
                                                   small_merges: None, hashing: str) -> None:
    if hashing == "weak":
        request.getfixturevalue("weak_hash")
    rng = random.Random(7)
    stored: list[str] = []
    with open_store(tmp_path / "s") as st:
        assert isinstance(st, SqliteStore)
        for _ in range(30):
            batch = [f"id{rng.randrange(400)}" for _ in range(rng.randrange(1, 30))]
            res = st.append(_events(batch))
            seen: set[str] = set(stored)
            want = []
            for k, eid in enumerate(batch):  # the first copy of an id never stored before
                if eid not in seen:
                    want.append(k)
                    seen.add(eid)
            assert res.inserted == tuple(want)
            assert res.accepted == len(want) and res.duplicates == len(batch) - len(want)
            stored.extend(batch[k] for k in want)
        got = st.read_events().column("event_id").to_pylist()
        assert sorted(got) == sorted(stored) and len(set(got)) == len(got)
        rows = _index_rows(st)
        assert sum(rows.values()) == len(stored)  # one index row per stored event
        if hashing == "weak":  # 7 hash rows; every other id by its full id
            assert rows["belong_id_clash"] == len(stored) - 7
        else:
            assert rows["belong_id_clash"] == 0 and rows["belong_ids"] > 0  # merged at least once
        # every stored id is a duplicate once more, whichever table holds it
        again = st.append(_events(stored))
        assert again.accepted == 0 and again.duplicates == len(stored)


@pytest.mark.parametrize("hashing", ["real", "weak"])
def test_forget_drops_index_rows(tmp_path: Path, request: pytest.FixtureRequest, small_merges: None,
                                 hashing: str) -> None:
    if hashing == "weak":
        request.getfixturevalue("weak_hash")
    with open_store(tmp_path / "s") as st:
        assert isinstance(st, SqliteStore)
        st.append(_events([f"a{i}" for i in range(50)], actor="ann"))
        st.append(_events([f"b{i}" for i in range(30)], actor="bob"))
        st.forget("ann")
        assert sum(_index_rows(st).values()) == st.count() == 30
        assert st.append(_events([f"b{i}" for i in range(30)], actor="bob")).duplicates == 30
        # ann's ids are free in the index; her events are dropped by the tombstone, another user's are stored
        res = st.append(_events([f"a{i}" for i in range(50)], actor="cy"))
        assert res.accepted == 50
        assert sum(_index_rows(st).values()) == st.count() == 80


_OLD_DDL = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, ts_us INTEGER NOT NULL, type TEXT NOT NULL,
    actor TEXT NOT NULL, target TEXT NOT NULL, target_kind TEXT NOT NULL, value REAL NOT NULL, request_id TEXT,
    surface TEXT, position INTEGER, propensity REAL
);
CREATE INDEX events_ts ON events (ts_us);
CREATE TABLE belong_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO belong_meta VALUES ('forget_salt', 'aa');
"""


def _old_store(path: Path, n: int) -> None:
    """A store as the log made it before the hashed index (the main branch's DDL), with gaps in ``seq``."""
    path.mkdir()
    with sqlite3.connect(path / DB_NAME) as conn:
        conn.executescript(_OLD_DDL)
        conn.executemany("INSERT INTO events (seq, event_id, ts_us, type, actor, target, target_kind, value, "
                         "request_id, surface, position, propensity) VALUES (?, ?, ?, 'impression', 'u1', 'c1', "
                         "'community', 1.0, 'r', 'communities', 3, 0.5)",
                         [(2 * i + 1, f"old{i}", 1_700_000_000_000_000 - i) for i in range(n)])


@pytest.mark.parametrize("hashing", ["real", "weak"])
def test_a_store_made_with_a_unique_event_id_is_migrated(tmp_path: Path, request: pytest.FixtureRequest,
                                                         hashing: str) -> None:
    if hashing == "weak":
        request.getfixturevalue("weak_hash")
    _old_store(tmp_path / "s", 100)
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as conn:
        before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    with open_store(tmp_path / "s") as st:
        assert isinstance(st, SqliteStore)
        conn = st._conn
        assert conn.execute("SELECT * FROM events ORDER BY seq").fetchall() == before  # rows and seq kept
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "events_ts" in names and "belong_events_unique" not in names
        assert not [n for n in names if n.startswith("sqlite_autoindex_events")]  # the unique index is gone
        rows = _index_rows(st)
        assert rows["belong_ids"] + rows["belong_id_clash"] == 100 and rows["belong_ids_new"] == 0
        assert rows["belong_id_clash"] == (93 if hashing == "weak" else 0)
        res = st.append(_events([f"old{i}" for i in range(0, 100, 9)] + ["new1"]))
        assert res.accepted == 1 and res.inserted == (12,) and res.duplicates == 12
        assert st.position() == 200  # after the last old seq (199)
    with open_store(tmp_path / "s") as st:  # opened again: nothing to migrate
        assert st.count() == 101


def test_a_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_store(tmp_path / "s", 10)

    def broken(conn: sqlite3.Connection, block: int = 0) -> int:
        raise sqlite3.OperationalError("disk full")

    monkeypatch.setattr(sqlite_ids, "build", broken)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(tmp_path / "s")
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "belong_ids" not in names and "sqlite_autoindex_events_1" in names
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 10


@pytest.mark.parametrize("hashing", ["real", "weak"])
def test_bulk_build_makes_the_store_appends_would(tmp_path: Path, request: pytest.FixtureRequest,
                                                  hashing: str) -> None:
    if hashing == "weak":
        request.getfixturevalue("weak_hash")
    parts = [_events([f"e{i}-{k}" for i in range(25)], t0=1_700_000_000_000_000 - k) for k in range(4)]
    assert build_store(tmp_path / "b", parts) == 100
    with open_store(tmp_path / "a") as appended:
        for p in parts:
            appended.append(p)
        want = appended.read_events()
    with open_store(tmp_path / "b") as st:
        assert isinstance(st, SqliteStore)
        assert st.read_events().equals(want)
        assert st.position() == 100
        assert st._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert "events_ts" in {r[0] for r in st._conn.execute("SELECT name FROM sqlite_master")}
        assert sum(_index_rows(st).values()) == 100
        res = st.append(pa.concat_tables([parts[2], _events(["fresh"])]))
        assert res.accepted == 1 and res.duplicates == 25
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [DB_NAME]  # the build file was moved into place


def test_bulk_build_refuses_an_existing_store_and_repeated_ids(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as st:
        st.append(_events(["x"]))
    with pytest.raises(StoreError, match="exists already"):
        build_store(tmp_path / "s", [_events(["y"])])
    with pytest.raises(StoreError, match="stored twice"):
        build_store(tmp_path / "r", [_events(["a", "b"]), _events(["c", "a"])])
    assert not (tmp_path / "r" / DB_NAME).exists()
    assert not list((tmp_path / "r").iterdir())  # no half-built file left


def test_a_merge_moves_every_new_id_in_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_ids, "MERGE_MIN", 10**9)
    monkeypatch.setattr(sqlite_ids, "MERGE_SLICE", 7)
    with open_store(tmp_path / "s") as st:
        assert isinstance(st, SqliteStore)
        st.append(_events([f"x{i}" for i in range(50)]))
        assert _index_rows(st) == {"belong_ids": 0, "belong_ids_new": 50, "belong_id_clash": 0}
        with st._transaction() as conn:  # one slice: the 7 lowest hashes
            assert sqlite_ids.merge_slice(conn) == 7
            low = [r[0] for r in conn.execute("SELECT h FROM belong_ids ORDER BY h")]
            assert max(low) < conn.execute("SELECT min(h) FROM belong_ids_new").fetchone()[0]
        assert st.append(_events([f"x{i}" for i in range(50)])).duplicates == 50  # a half-merged index is valid
        assert st.merge_ids() == (43, 10**9)
        assert _index_rows(st) == {"belong_ids": 50, "belong_ids_new": 0, "belong_id_clash": 0}
        assert st.append(_events([f"x{i}" for i in range(50)] + ["y"])).inserted == (50,)


def test_appends_count_the_new_ids_only_when_the_bound_allows_a_merge(tmp_path: Path, small_merges: None) -> None:
    """The small table is counted (20 ms an append at 24.7M events, 1.5M new ids) only when the bound kept in
    ``belong_meta`` says the floor may be reached: appends far below it count nothing, and the merges still come
    when due."""
    counts: list[str] = []
    with open_store(tmp_path / "s") as st:
        assert isinstance(st, SqliteStore)
        st._conn.set_trace_callback(lambda sql: counts.append(sql) if "count(*)" in sql else None)
        st.append(_events(["a0", "a1"]))
        assert len(counts) == 1  # no bound yet: counted once, and the bound is set
        for k in range(10):
            st.append(_events([f"b{k}"]))
        assert len(counts) == 1  # 12 new ids, floor 40: nothing counted
        st.forget("u1")  # forgetting removes index rows: the bound stays an upper bound
        st.append(_events([f"c{k}" for k in range(30)], actor="u2"))
        merged = _index_rows(st)
        st.append(_events([f"d{k}" for k in range(15)], actor="u2"))
        rows = _index_rows(st)
        assert merged["belong_ids"] == 0 and rows["belong_ids"] == 45 and rows["belong_ids_new"] == 0  # merged when due
        before = len(counts)
        st.append(_events(["e0"], actor="u2"))  # after the merge: the stale bound asks once, the count resets it
        st.append(_events(["e1"], actor="u2"))
        assert len(counts) - before == 1
