"""``belong bench ingest-files``: ``belong ingest`` of JSONL, CSV and Parquet files into a fresh embedded store, rows
per second end to end (read, validate, store durably), with the column-wise validation (:mod:`belong.ingest_fast`)
and, as the same-run baseline, row by row (:func:`belong.domain.parse_event` per row, what ingest did before).
Also the append alone (the store's own cost: the same rows as one prepared table, no file, no validation), the
ceiling either path can reach."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from belong import ingest as ingest_mod
from belong.bench.ingest import synthetic_events
from belong.eventlog import open_store

FORMATS = ("jsonl", "csv", "parquet")


def write_files(table: pa.Table, directory: Path) -> dict[str, Path]:
    """The events as the three file formats ``belong ingest`` reads (times as ``ts_us``, as exported)."""
    paths = {f: directory / f"events.{f}" for f in FORMATS}
    with paths["jsonl"].open("wb") as f:
        for batch in table.to_batches(50_000):
            for row in batch.to_pylist():
                f.write(orjson.dumps({k: v for k, v in row.items() if v is not None}) + b"\n")
    pacsv.write_csv(table, paths["csv"])
    pq.write_table(table, paths["parquet"])
    return paths


def _row_by_row(_table: pa.Table) -> pa.Table | None:
    """No column-wise path: every chunk row by row (the baseline)."""
    return None


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and this process's CPU seconds (the rate a busy, shared machine still shows)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_ingest_files(rows: int, seed: int = 0, chunk_rows: int = ingest_mod.CHUNK_ROWS,
                       formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    table = synthetic_events(rows, seed=seed)
    out: dict[str, Any] = {"rows": rows, "chunk_rows": chunk_rows, "formats": {}}
    with tempfile.TemporaryDirectory(prefix="belong-bench-ingest-files-") as tmp:
        root = Path(tmp)
        paths = write_files(table, root)
        with open_store(root / "append-only") as st:
            _, secs, cpu = _timed(lambda: [st.append(pa.Table.from_batches([b]))
                                           for b in table.to_batches(chunk_rows)])
        out["append_only"] = {"rows_per_s": round(rows / secs), "rows_per_cpu_s": round(rows / cpu)}
        real = ingest_mod._fast_table
        for fmt in formats:
            fig: dict[str, Any] = {}
            for name, fast in (("vectorised", real), ("row_by_row", _row_by_row)):
                setattr(ingest_mod, "_fast_table", fast)  # noqa: B010 - the baseline swaps the path
                try:
                    with open_store(root / f"{fmt}-{name}") as st:
                        path = paths[fmt]
                        report, secs, cpu = _timed(partial(ingest_mod.ingest_file, path, st, chunk_rows=chunk_rows))
                        stored = st.count()
                finally:
                    ingest_mod._fast_table = real
                fig[name] = {"rows_per_s": round(rows / secs), "rows_per_cpu_s": round(rows / cpu),
                             "seconds": round(secs, 3), "cpu_seconds": round(cpu, 3),
                             "accepted": report.accepted, "rejected": report.rejected, "stored": stored}
            fig["speedup"] = round(fig["vectorised"]["rows_per_s"] / fig["row_by_row"]["rows_per_s"], 2)
            fig["cpu_speedup"] = round(fig["vectorised"]["rows_per_cpu_s"] / fig["row_by_row"]["rows_per_cpu_s"], 2)
            out["formats"][fmt] = fig
    return out
