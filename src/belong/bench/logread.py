"""``belong bench log-read``: reading an embedded store's log as the columns a state is built from
(:meth:`SqliteStore.read_columns`: each column of a block concatenated by SQLite into one string, split and parsed
by Arrow), against the row path it replaced (one Python tuple per event, ``fetchmany`` into Arrow) on the same
store in the same run: CPU and wall seconds of each, and whether the two tables are identical."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from belong.errors import ValidationError
from belong.schema import EVENT_SCHEMA, STATE_COLUMNS


def row_path(db: Path, columns: list[str], upto_seq: int) -> pa.Table:
    """The baseline: the read ``read_columns`` did before (rows as tuples, 262,144 at a time), then the same stable
    sort by time."""
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in columns])
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    batches = []
    try:
        cur = conn.execute(f"SELECT {', '.join(columns)} FROM events WHERE seq <= ? ORDER BY seq", (upto_seq,))
        while rows := cur.fetchmany(262_144):
            cols = list(zip(*rows, strict=True))
            batches.append(pa.record_batch([pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)],
                                           schema=schema))
    finally:
        conn.close()
    table = pa.Table.from_batches(batches, schema=schema)
    ts = table.column("ts_us").to_numpy()
    if ts.size > 1 and not bool((ts[1:] >= ts[:-1]).all()):
        table = table.take(pa.array(np.argsort(ts, kind="stable")))
    return table


def _warm(db: Path) -> None:
    with open(db, "rb") as f:
        while f.read(1 << 24):
            pass


def _timed(fn: Any) -> tuple[pa.Table, dict[str, float]]:
    c0, w0 = time.process_time(), time.perf_counter()
    table = fn()
    return table, {"cpu_s": round(time.process_time() - c0, 2), "wall_s": round(time.perf_counter() - w0, 2)}


def bench_log_read(store: Path, upto_seq: int | None = None) -> dict[str, Any]:
    from belong.eventlog import open_store
    from belong.eventlog.sqlite import READ_BLOCK, SqliteStore

    columns = list(STATE_COLUMNS)
    with open_store(store, create=False) as st:
        if not isinstance(st, SqliteStore):
            raise ValidationError("store", "the log-read bench reads an embedded (SQLite) store")
        top = st.position() if upto_seq is None else min(int(upto_seq), st.position())
        _warm(st.path)  # both reads then find the file in the page cache: neither pays the disk for the other
        base, base_t = _timed(lambda: row_path(st.path, columns, top))
        rows = base.num_rows
        new, new_t = _timed(lambda: st.read_columns(columns, upto_seq=top))
        identical = base.equals(new)
    del base, new
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "store": str(store), "upto_seq": top, "events": rows, "columns": columns, "block": READ_BLOCK,
        "baseline_row_path": base_t, "columnar": new_t, "identical": identical,
        "cpu_ratio": round(base_t["cpu_s"] / new_t["cpu_s"], 2) if new_t["cpu_s"] else None,
        "wall_ratio": round(base_t["wall_s"] / new_t["wall_s"], 2) if new_t["wall_s"] else None,
        "cpu_us_per_event": {"baseline": round(base_t["cpu_s"] / max(rows, 1) * 1e6, 3),
                             "columnar": round(new_t["cpu_s"] / max(rows, 1) * 1e6, 3)},
        "load_average": [round(x, 1) for x in load] if load else None,
    }
