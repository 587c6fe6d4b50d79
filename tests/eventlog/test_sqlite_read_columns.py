"""The embedded log's columnar read (``SqliteStore.read_columns``): SQLite builds each column of a block as one
string, Arrow splits and parses it. It must give exactly the row path's table: the same values (every double
bit for bit), the same (time, arrival) order, across blocks, gaps left by ``forget``, ``upto_seq``, and the
cases the text cannot carry (a line break inside an id, nullable columns), which take the row path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from belong.eventlog import open_store
from belong.eventlog import sqlite as sqlite_store
from belong.schema import EVENT_SCHEMA, STATE_COLUMNS
from belong.testing.eventlog import T0, tbl


def _records(n: int, rng: np.random.Generator, *, actor_of=lambda i: f"u{i % 13}", tag: str = "") -> list[dict]:
    values = np.concatenate([np.abs(rng.standard_normal(n // 2)) * 1e6, np.exp(rng.uniform(-300, 300, n - n // 2))])
    ts = T0 + rng.integers(0, 10_000, n) * 1_000  # out of time order, with ties
    return [{"event_id": f"{tag}e{i}", "ts_us": int(ts[i]), "type": "join", "actor": actor_of(i), "target": f"c{i % 5}",
             "target_kind": "community", "value": float(values[i]),
             "surface": None if i % 3 else "communities", "position": None if i % 4 else i % 10}
            for i in range(n)]


def _row_path(st, columns, upto_seq=None) -> pa.Table:
    return st.read_events(upto_seq=upto_seq).select(list(columns))


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "READ_BLOCK", 97)  # many blocks, one partly empty


def test_same_table_as_the_row_path(tmp_path, small_blocks) -> None:
    rng = np.random.default_rng(0)
    with open_store(tmp_path / "s") as st:
        for part in range(4):
            st.append(tbl(_records(250, rng, actor_of=lambda i, p=part: f"p{p}u{i % 17}", tag=f"p{part}")))
        position = st.position()
        st.append(tbl(_records(50, rng, actor_of=lambda i: f"late{i}", tag="late")))
        got = st.read_columns(STATE_COLUMNS)
        assert got.equals(_row_path(st, STATE_COLUMNS))
        assert got.num_rows == 1050
        values = got.column("value").to_numpy()
        assert np.array_equal(values.view(np.int64), _row_path(st, ["value"]).column(0).to_numpy().view(np.int64))
        assert st.read_columns(STATE_COLUMNS, upto_seq=position).equals(_row_path(st, STATE_COLUMNS, position))
        assert st.read_columns(STATE_COLUMNS, upto_seq=0).num_rows == 0
        # nullable columns take the row path; the result is the same projection
        cols = ["event_id", "surface", "position", "ts_us"]
        assert st.read_columns(cols).equals(_row_path(st, cols))


def test_gaps_left_by_forget(tmp_path, small_blocks) -> None:
    rng = np.random.default_rng(1)
    with open_store(tmp_path / "s") as st:
        st.append(tbl(_records(600, rng)))
        st.forget("u3")
        st.forget("u4")
        got = st.read_columns(STATE_COLUMNS)
        assert got.equals(_row_path(st, STATE_COLUMNS))
        assert not {"u3", "u4"} & set(got.column("actor").to_pylist())


def test_a_line_break_in_an_id_takes_the_row_path(tmp_path, small_blocks) -> None:
    """Validation refuses such an id on append; a log written by other means may still hold one."""
    import sqlite3

    rng = np.random.default_rng(2)
    with open_store(tmp_path / "s") as st:
        st.append(tbl(_records(300, rng)))
        with sqlite3.connect(st.path) as raw:
            raw.execute("UPDATE events SET actor = ? WHERE event_id = 'e150'", ("a\nb",))
        got = st.read_columns(STATE_COLUMNS)
        assert got.equals(_row_path(st, STATE_COLUMNS))
        assert "a\nb" in got.column("actor").to_pylist()


def test_empty_store_has_the_schema(tmp_path) -> None:
    with open_store(tmp_path / "s") as st:
        got = st.read_columns(STATE_COLUMNS)
        assert got.num_rows == 0
        assert got.schema == pa.schema([EVENT_SCHEMA.field(n) for n in STATE_COLUMNS])
