"""``belong bench ingest-files``: ``belong ingest`` of JSONL, CSV (every string quoted, and without quotes) and
Parquet files into a fresh embedded store, rows per second end to end (read, validate, store durably), with the
column-wise validation (:mod:`belong.ingest_fast`) and, as the same-run baseline, row by row
(:func:`belong.domain.parse_event` per row, what ingest did before). Also the append alone (the store's own cost:
the same rows as one prepared table, no file, no validation), the ceiling either path can reach. With
``--prefilled``: the same file into an empty store and into one with many events already (:func:`bench_prefilled`)."""

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

FORMATS = ("jsonl", "csv", "csv_unquoted", "parquet")


def write_files(table: pa.Table, directory: Path) -> dict[str, Path]:
    """The events as the three file formats ``belong ingest`` reads (times as ``ts_us``, as exported)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {f: directory / f"events.{f}" for f in FORMATS if f != "csv_unquoted"}
    paths["csv_unquoted"] = directory / "events_unquoted.csv"  # no quotes (as pandas writes): Arrow's CSV reader
    with paths["jsonl"].open("wb") as f:
        for batch in table.to_batches(50_000):
            for row in batch.to_pylist():
                f.write(orjson.dumps({k: v for k, v in row.items() if v is not None}) + b"\n")
    pacsv.write_csv(table, paths["csv"])  # every string quoted: Python's csv reader
    pacsv.write_csv(table, paths["csv_unquoted"], pacsv.WriteOptions(quoting_style="none"))
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


def _ingest_rate(store_spec: Path, path: Path, chunk_rows: int, seed: int = 0) -> dict[str, Any]:
    """The ingest's rates. For the embedded log also its share of the merges of new ids into the big id index that
    appends do now and then (:mod:`belong.eventlog.sqlite_ids`): the file is ingested with merges held back, more
    synthetic events are appended (untimed) until as many new ids wait as appends let wait at this size
    (``merge_every``), and that one merge is timed; ``amortized_rows_per_s`` charges each row ``merge seconds /
    merge_every``, what appends pay for merges in the long run."""
    from belong.eventlog.sqlite import SqliteStore

    with open_store(store_spec) as st:
        if isinstance(st, SqliteStore):
            st.merge_when_due = False
        before = st.position()
        report, secs, cpu = _timed(partial(ingest_mod.ingest_file, path, st, chunk_rows=chunk_rows))
        out: dict[str, Any] = {"stored_before": before, "rows_per_s": round(report.rows / secs),
                               "rows_per_cpu_s": round(report.rows / cpu), "seconds": round(secs, 3),
                               "cpu_seconds": round(cpu, 3), "accepted": report.accepted}
        if isinstance(st, SqliteStore):
            off = 0
            while (short := st.merge_every() - st.new_ids()) > 0:
                # seeds no prefill or earlier top-up used: these ids are new
                st.append(synthetic_events(min(short, 50_000), seed=seed + 2**40 + before + off))
                off += 1
            (moved, every), msecs, mcpu = _timed(st.merge_ids)
            out["merge"] = {"ids": moved, "seconds": round(msecs, 3), "cpu_seconds": round(mcpu, 3),
                            "merge_every": every}
            out["amortized_rows_per_s"] = round(report.rows / (secs + msecs * report.rows / moved))
            out["amortized_rows_per_cpu_s"] = round(report.rows / (cpu + mcpu * report.rows / moved))
    return out


def prefill_store(spec: Path, events: int, seed: int = 0, batch: int = 200_000,
                  on_step: Callable[[int, int], None] | None = None, *, overlap: bool = False) -> dict[str, Any]:
    """Make a NEW store holding ``events`` synthetic events (uuid-like random ids: the idempotency index's worst
    case) by the bulk build (:func:`belong.eventlog.sqlite.build_store`: minutes for 20M, where appends take hours).
    Their times lie in the 30 days before the appended file's (a log holds the past), or in the same 30 days with
    ``overlap`` (then the time index takes random inserts too). Its wall and CPU seconds."""
    from belong.eventlog.sqlite import build_store

    day_us = 86_400 * 1_000_000
    start = 1_735_689_600_000_000 - (0 if overlap else 30 * day_us)

    def tables() -> Any:
        for off in range(0, events, batch):
            yield synthetic_events(min(batch, events - off), seed=seed + 7_000 + off, start_us=start)
            if on_step is not None:
                on_step(min(off + batch, events), events)

    stored, secs, cpu = _timed(lambda: build_store(spec, tables()))
    return {"events": stored, "seconds": round(secs, 1), "cpu_seconds": round(cpu, 1), "overlap": overlap}


def bench_prefilled(rows: int, prefilled: Path, seed: int = 0, chunk_rows: int = ingest_mod.CHUNK_ROWS,
                    fmt: str = "parquet") -> dict[str, Any]:
    """``belong ingest`` of the same file into an empty store (the same-run baseline) and into ``prefilled``, a store
    with many events already (it is appended to: give a copy), for uuid-like random ids and for time-prefixed ids
    (UUIDv7 / snowflake style). ``ratio`` = empty rows/s over pre-filled rows/s (the issue's target: at most 2)."""
    out: dict[str, Any] = {"rows": rows, "chunk_rows": chunk_rows, "format": fmt, "prefilled": str(prefilled),
                           "ids": {}}
    with tempfile.TemporaryDirectory(prefix="belong-bench-ingest-prefilled-") as tmp:
        root = Path(tmp)
        for ids in ("random", "ordered"):
            table = synthetic_events(rows, seed=seed + (1 if ids == "random" else 2), ordered_ids=ids == "ordered")
            path = write_files(table, root / ids)[fmt] if fmt != "parquet" else root / f"{ids}.parquet"
            if fmt == "parquet":
                pq.write_table(table, path)
            empty = _ingest_rate(root / f"empty-{ids}", path, chunk_rows, seed)
            full = _ingest_rate(prefilled, path, chunk_rows, seed)
            fig = {"empty": empty, "prefilled": full, "ratio": round(empty["rows_per_s"] / full["rows_per_s"], 2),
                   "cpu_ratio": round(empty["rows_per_cpu_s"] / full["rows_per_cpu_s"], 2)}
            if "amortized_rows_per_s" in full:
                fig["amortized_ratio"] = round(empty["amortized_rows_per_s"] / full["amortized_rows_per_s"], 2)
                fig["amortized_cpu_ratio"] = round(empty["amortized_rows_per_cpu_s"]
                                                   / full["amortized_rows_per_cpu_s"], 2)
            out["ids"][ids] = fig
    return out


def _single_events(n: int, seed: int) -> list[Any]:
    """``n`` synthetic events as the API's ``POST /v1/events`` parses them (:func:`belong.domain.parse_event`)."""
    import datetime as dt

    from belong.domain import parse_event

    out = []
    for row in synthetic_events(n, seed=seed).to_pylist():
        ts = dt.datetime.fromtimestamp(row.pop("ts_us") / 1e6, tz=dt.UTC).isoformat()
        out.append(parse_event({"ts": ts, **{k: v for k, v in row.items() if v is not None}}))
    return out


def _quantiles_ms(xs: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(xs) * 1e3
    return {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}


def bench_single_appends(prefilled: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """One-event appends, what ``POST /v1/events`` does per request: ``n`` into an empty store (the same-run
    baseline) and ``n`` into ``prefilled`` (appended to: give a copy), interleaved one by one so that both see the
    same machine load. Each append is its own durable transaction (the store's ``synchronous=FULL``); merges of the
    new ids into the big id index run when due, as in the server, and land in the tail. ``ratio`` = prefilled
    mean over empty mean (the issue's target: at most 2), wall and CPU."""
    events = _single_events(2 * n, seed + 3 * 2**40)  # seeds no prefill used: new ids
    walls: dict[str, list[float]] = {"empty": [], "prefilled": []}
    cpus: dict[str, list[float]] = {"empty": [], "prefilled": []}
    with tempfile.TemporaryDirectory(prefix="belong-bench-single-appends-") as tmp, \
            open_store(Path(tmp) / "empty") as empty, open_store(prefilled, create=False) as full:
        stores = {"empty": empty, "prefilled": full}
        before = {k: st.position() for k, st in stores.items()}
        for i in range(n):
            for j, (name, st) in enumerate(stores.items() if i % 2 == 0 else reversed(stores.items())):
                ev = events[2 * i + j]
                res, secs, cpu = _timed(partial(st.append, [ev]))
                if res.accepted != 1:
                    raise RuntimeError(f"single append into the {name} store accepted {res.accepted}, not 1")
                walls[name].append(secs)
                cpus[name].append(cpu)
    out: dict[str, Any] = {"appends": n, "store": str(prefilled)}
    for name in walls:
        out[name] = {"stored_before": before[name], "wall_ms": _quantiles_ms(walls[name]),
                     "cpu_ms": _quantiles_ms(cpus[name])}
    out["ratio"] = round(out["prefilled"]["wall_ms"]["mean"] / out["empty"]["wall_ms"]["mean"], 2)
    out["cpu_ratio"] = round(out["prefilled"]["cpu_ms"]["mean"] / out["empty"]["cpu_ms"]["mean"], 2)
    out["p50_ratio"] = round(out["prefilled"]["wall_ms"]["p50"] / out["empty"]["wall_ms"]["p50"], 2)
    return out
