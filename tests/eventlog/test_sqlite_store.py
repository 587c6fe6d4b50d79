"""SQLite-only behaviour of the embedded event log: opening, errors, durability settings, reader/writer isolation."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from belong.errors import StoreError
from belong.eventlog import open_store
from belong.eventlog.sqlite import DB_NAME, SqliteStore
from belong.schema import EVENT_SCHEMA


def _events(ids: list[str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"event_id": i, "ts_us": 1_700_000_000_000_000 + n, "type": "join", "actor": "u1", "target": "c1",
          "target_kind": "community", "value": 1.0} for n, i in enumerate(ids)],
        schema=EVENT_SCHEMA,
    )


def test_store_is_a_directory_with_one_wal_database(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as st:
        assert isinstance(st, SqliteStore) and st.path == tmp_path / "s" / DB_NAME
        assert st._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert st._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        st.append(_events(["a"]))
    with open_store(tmp_path / "s" / DB_NAME) as st:  # the database file itself also works
        assert st.count() == 1


def test_missing_and_unusable_stores_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no belong store"):
        open_store(tmp_path / "nothing", create=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(tmp_path / "bad")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create"):
        open_store(tmp_path / "file" / "store")


def test_a_long_export_does_not_block_appends(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as st:
        st.append(_events([f"e{i}" for i in range(30)]))
        reader = st.iter_events(batch_size=10)
        first = next(reader)  # the read transaction is open now
        assert st.append(_events(["late"])).accepted == 1  # the writer is not blocked (WAL)
        rest = list(reader)
        # the reader sees its snapshot, not the event appended after it started
        assert first.num_rows + sum(b.num_rows for b in rest) == 30
        assert st.count() == 31
