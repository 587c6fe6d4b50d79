"""Ingestion of event (or entity) files into a store: JSONL, CSV and Parquet, streamed in chunks.

Every row goes through the same validation as the API (:func:`belong.domain.parse_event`, or ``parse_user`` /
``parse_community`` / ``parse_content`` for entity files). A bad row is reported as ``{"line", "field", "reason"}``
and not stored; the good rows are stored chunk by chunk (each chunk is one atomic, durable ``append``). With
``strict`` the whole file is validated first and nothing is stored when any row is bad.

Line numbers: JSONL — the physical line of the file (1-based, blank lines count); CSV — the physical line where the
record starts, the header being line 1; Parquet — the 1-based row number.

Timestamps may be given as ``ts`` / ``timestamp`` (ISO-8601 or epoch seconds) or as ``ts_us`` (integer
microseconds, what ``export_parquet`` writes), so an exported file can be ingested again.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from belong.domain import (
    MAX_TS_US,
    MIN_TS_US,
    parse_community,
    parse_content,
    parse_event,
    parse_int,
    parse_user,
)
from belong.errors import ValidationError
from belong.eventlog.base import AppendResult, EventStore

FORMATS = ("jsonl", "csv", "parquet")
KINDS = ("events", "users", "communities", "content")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
             ".pq": "parquet"}
#: rows validated and stored per ``append`` call
CHUNK_ROWS = 10_000
#: at most this many row errors are kept in a report (all are counted)
MAX_ERRORS = 1_000

_PARSERS: dict[str, Callable[[Any], Any]] = {
    "events": parse_event, "users": parse_user, "communities": parse_community, "content": parse_content,
}
#: progress callback: (done, total) in the unit of the source (bytes for text files, rows for Parquet)
ProgressFn = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What happened to a file. ``rejected`` counts every bad row; ``errors`` keeps the first :data:`MAX_ERRORS`."""

    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    errors: list[dict[str, object]] = field(default_factory=list)
    stored: bool = True

    def reject(self, line: int, fld: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "field": fld, "reason": reason})

    def to_dict(self) -> dict[str, object]:
        return {
            "accepted": self.accepted, "rejected": self.rejected, "duplicates": self.duplicates,
            "errors": self.errors, "rows": self.rows, "errors_truncated": self.rejected > len(self.errors),
            "stored": self.stored,
        }


@dataclass(frozen=True, slots=True)
class _RowError:
    field: str
    reason: str


#: one item of a source: (line or row number, the record or why it could not be read, progress position)
_Row = tuple[int, Mapping[str, Any] | _RowError, int]


# --------------------------------------------------------------------------------------------- sources


def detect_format(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValidationError(
            "format", f"cannot tell the format of {path.name!r} from its suffix; pass --format {'|'.join(FORMATS)}"
        )
    return fmt


def source_size(path: Path, fmt: str) -> int:
    """The progress total: bytes for JSONL/CSV, rows for Parquet."""
    if fmt == "parquet":
        return _open_parquet(path).metadata.num_rows
    return path.stat().st_size


def _open_binary(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ValidationError("file", f"cannot read {path}: {exc.strerror or exc}") from None


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    pos = 0
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            pos += len(raw)
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield lineno, _RowError("line", f"invalid JSON: {exc}"), pos
                continue
            yield lineno, record, pos


def _csv_rows(path: Path) -> Iterator[_Row]:
    state = {"lines": 0, "pos": 0}
    bad_utf8: set[int] = set()

    def lines() -> Iterator[str]:
        with _open_binary(path) as f:
            for raw in f:
                state["lines"] += 1
                state["pos"] += len(raw)
                try:
                    yield raw.decode("utf-8-sig" if state["lines"] == 1 else "utf-8")
                except UnicodeDecodeError:
                    bad_utf8.add(state["lines"])
                    yield raw.decode("utf-8", errors="replace")

    reader = csv.reader(lines())
    header: list[str] | None = None
    while True:
        start = state["lines"] + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield start, _RowError("line", f"unreadable CSV: {exc}"), state["pos"]
            continue
        end = state["lines"]
        if header is None:
            if not any(c.strip() for c in row):
                raise ValidationError("file", f"{path.name}: the first line must be a header row naming the fields")
            header = [c.strip() for c in row]
            continue
        if not row:  # blank line
            continue
        bad = next((n for n in range(start, end + 1) if n in bad_utf8), None)
        if bad is not None:
            yield bad, _RowError("line", "is not valid UTF-8"), state["pos"]
        elif len(row) != len(header):
            yield start, _RowError("line", f"has {len(row)} fields, the header has {len(header)}"), state["pos"]
        else:
            yield start, {k: v for k, v in zip(header, row, strict=True) if k}, state["pos"]
    if header is None:
        raise ValidationError("file", f"{path.name} is empty: a CSV file needs a header row")


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValidationError("file", f"{path.name} is not a readable Parquet file: {exc}") from None


def _parquet_rows(path: Path, chunk_rows: int) -> Iterator[_Row]:
    pf = _open_parquet(path)
    n = 0
    batches = pf.iter_batches(batch_size=chunk_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            raise ValidationError("file", f"{path.name}: cannot read rows after row {n}: {exc}") from None
        for record in batch.to_pylist():
            n += 1
            yield n, record, n


def read_rows(path: Path, fmt: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[_Row]:
    """Stream ``(line, record | _RowError, position)`` from a file without loading it whole."""
    if fmt == "jsonl":
        return _jsonl_rows(path)
    if fmt == "csv":
        return _csv_rows(path)
    if fmt == "parquet":
        return _parquet_rows(path, chunk_rows)
    raise ValidationError("format", f"must be one of {', '.join(FORMATS)}; got {fmt!r}")


# --------------------------------------------------------------------------------------------- validation


def _parse_event_row(record: Any) -> Any:
    """``parse_event`` that also takes ``ts_us`` (integer microseconds) in place of ``ts``."""
    if not (isinstance(record, Mapping) and "ts_us" in record):
        return parse_event(record)
    record = dict(record)
    raw = record.pop("ts_us")
    if record.get("ts") not in (None, "") or record.get("timestamp") not in (None, ""):
        raise ValidationError("ts_us", "give the time once: ts, timestamp or ts_us")
    ts_us = parse_int(raw, "ts_us")
    if not MIN_TS_US <= ts_us < MAX_TS_US:
        raise ValidationError("ts_us", "must be between 1970-01-01 and 2100-01-01")
    record["ts"] = ts_us // 1_000_000  # whole seconds for parse_event's checks, then the exact value
    return msgspec.structs.replace(parse_event(record), ts_us=ts_us)


def parse_row(kind: str, record: Any) -> Any:
    """Validate one record of ``kind``; raises :class:`ValidationError`."""
    if kind == "events":
        return _parse_event_row(record)
    return _PARSERS[kind](record)


def _store_chunk(store: EventStore, kind: str, records: list[Any] | pa.Table) -> AppendResult:
    if kind == "events":
        return store.append(records)
    upsert = {"users": store.upsert_users, "communities": store.upsert_communities, "content": store.upsert_content}
    return AppendResult(upsert[kind](records), 0)


def _run(
    path: Path, fmt: str, kind: str, store: EventStore | None, report: IngestReport, chunk_rows: int,
    total: int, on_progress: ProgressFn | None,
) -> None:
    """One pass over the file: validate every row; store the good ones when ``store`` is given. Event chunks are
    validated column by column (:mod:`belong.ingest_fast`) when that path vouches for every row of the chunk;
    otherwise, and for entities, row by row."""
    good: list[Any] = []
    pending: list[tuple[int, Mapping[str, Any] | _RowError]] = []
    if on_progress is not None:
        on_progress(0, total)

    def store_good(records: list[Any] | pa.Table) -> None:
        n = records.num_rows if isinstance(records, pa.Table) else len(records)
        if store is not None and n:
            result = _store_chunk(store, kind, records)
            report.accepted += result.accepted
            report.duplicates += result.duplicates
        elif store is None:
            report.accepted += n

    def flush(pos: int) -> None:
        records: list[Mapping[str, Any]] = [r for _, r in pending if not isinstance(r, _RowError)]
        fast = _fast_chunk(records) if kind == "events" and records else None
        for line, record in pending:  # in file order: unreadable rows, then (row path) invalid ones
            if isinstance(record, _RowError):
                report.reject(line, record.field, record.reason)
            elif fast is None:
                try:
                    good.append(parse_row(kind, record))
                except ValidationError as exc:
                    report.reject(line, exc.field, exc.reason)
        store_good(fast if fast is not None else good)
        good.clear()
        pending.clear()
        if on_progress is not None:
            on_progress(pos, total)

    if fmt == "parquet" and kind == "events":  # batches straight to the column-wise check, rows only if refused
        n = 0
        for batch in _parquet_batches(path, chunk_rows):
            fast = _fast_table(pa.Table.from_batches([batch]))
            if fast is not None:
                report.rows += batch.num_rows
                store_good(fast)
            else:
                for k, record in enumerate(batch.to_pylist(), start=n + 1):
                    report.rows += 1
                    pending.append((k, record))
            n += batch.num_rows
            _flush_rows(pending, kind, report, good, store_good)
            if on_progress is not None:
                on_progress(n, total)
        return
    for i, (line, record, pos) in enumerate(read_rows(path, fmt, chunk_rows), start=1):
        report.rows += 1
        pending.append((line, record))
        if i % chunk_rows == 0:
            flush(pos)
    flush(total)


def _flush_rows(pending: list[tuple[int, Mapping[str, Any] | _RowError]], kind: str, report: IngestReport,
                good: list[Any], store_good: Callable[[list[Any]], None]) -> None:
    """The row path over ``pending`` (file order), then store the good rows; both lists are emptied."""
    for line, record in pending:
        if isinstance(record, _RowError):
            report.reject(line, record.field, record.reason)
            continue
        try:
            good.append(parse_row(kind, record))
        except ValidationError as exc:
            report.reject(line, exc.field, exc.reason)
    store_good(good)
    good.clear()
    pending.clear()


def _parquet_batches(path: Path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    pf = _open_parquet(path)
    batches = pf.iter_batches(batch_size=chunk_rows)
    n = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            raise ValidationError("file", f"{path.name}: cannot read rows after row {n}: {exc}") from None
        n += batch.num_rows
        yield batch


def _fast_table(table: pa.Table) -> pa.Table | None:
    """Event columns validated at once, or None (the row path decides; see :mod:`belong.ingest_fast`)."""
    from belong.ingest_fast import fast_events

    return fast_events(table)


def _fast_chunk(records: list[Mapping[str, Any]]) -> pa.Table | None:
    """The chunk's events validated as columns, or None (the row path decides; see :mod:`belong.ingest_fast`)."""
    if not all(type(r) is dict for r in records):
        return None
    keys: set[str] = set().union(*records)
    try:
        table = pa.table({k: pa.array([r.get(k) for r in records]) for k in sorted(keys)})
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    return _fast_table(table)


def check_input(path: Path, kind: str, fmt: str | None) -> str:
    """Check the file, kind and format before anything is opened; returns the format."""
    if kind not in KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    if not path.exists():
        raise ValidationError("file", f"no such file: {path}")
    if not path.is_file():
        raise ValidationError("file", f"not a regular file: {path}")
    fmt = detect_format(path) if fmt is None else fmt
    if fmt not in FORMATS:
        raise ValidationError("format", f"must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def ingest_file(
    path: str | Path,
    store: EventStore,
    *,
    kind: str = "events",
    fmt: str | None = None,
    strict: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Validate and store the rows of a JSONL/CSV/Parquet file; see the module docstring.

    ``on_progress(done, total)`` is called after every chunk; in strict mode ``done`` runs to ``total`` twice
    (validation pass, then storing pass).
    """
    path = Path(path)
    fmt = check_input(path, kind, fmt)
    if chunk_rows < 1:
        raise ValidationError("chunk_rows", f"must be >= 1, got {chunk_rows}")
    total = source_size(path, fmt)
    if strict:
        check = IngestReport()
        _run(path, fmt, kind, None, check, chunk_rows, total, on_progress)
        if check.rejected:
            check.accepted = 0
            check.stored = False
            return check
    report = IngestReport()
    _run(path, fmt, kind, store, report, chunk_rows, total, on_progress)
    return report
