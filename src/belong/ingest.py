"""Ingestion of event (or entity) files into a store: JSONL, CSV and Parquet, streamed in chunks.

Every row goes through the same validation as the API (:func:`belong.domain.parse_event`, or ``parse_user`` /
``parse_community`` / ``parse_content`` for entity files). A bad row is reported as ``{"line", "field", "reason"}``
and not stored; the good rows are stored chunk by chunk (each chunk is one atomic, durable ``append``). With
``strict`` the whole file is validated first and nothing is stored when any row is bad.

How a chunk is read (docs/INGEST.md): event chunks are read as columns — JSONL by Arrow's JSON reader (a chunk it
might read differently from ``orjson``, line by line, is read line by line), CSV by Python's ``csv`` module into
columns, Parquet in record batches — and validated column by column (:mod:`belong.ingest_fast`); a chunk that
path cannot vouch for goes row by row, which names each bad row's field. Chunks are stored on a second thread
while the next one is read and validated, in file order.

Line numbers: JSONL — the physical line of the file (1-based, blank lines count); CSV — the physical line where the
record starts, the header being line 1; Parquet — the 1-based row number.

Timestamps may be given as ``ts`` / ``timestamp`` (ISO-8601 or epoch seconds) or as ``ts_us`` (integer
microseconds, what ``export_parquet`` writes), so an exported file can be ingested again.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
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
CHUNK_ROWS = 50_000
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


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValidationError("file", f"{path.name} is not a readable Parquet file: {exc}") from None


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


# --------------------------------------------------------------------------------------------- blocks


@dataclass
class _Block:
    """``chunk_rows`` rows of a file: ``table``, the columns of its readable rows as read (for the column-wise
    check; None when there is none, e.g. unreadable rows only), and ``items()``, every row in file order for the
    row path (built only when the column-wise check refuses the block)."""

    rows: int
    pos: int
    table: pa.Table | None
    items: Callable[[], list[tuple[int, Mapping[str, Any] | _RowError]]]
    unreadable: list[tuple[int, _RowError]] = field(default_factory=list)


#: an integer literal of 19+ digits: pyarrow reads it as a float, orjson refuses it (the row path decides)
_BIG_INT = re.compile(rb":\s*-?\d{19}")
#: a line that does not start with an object (pyarrow 26 crashes on a block that starts with ``null``)
_NOT_OBJECT = re.compile(rb"(?:^|\n)[ \t\r]*[^{ \t\r\n]")
_BOM = b"\xef\xbb\xbf"


def _jsonl_items(lines: list[tuple[int, bytes]]) -> list[tuple[int, Mapping[str, Any] | _RowError]]:
    out: list[tuple[int, Mapping[str, Any] | _RowError]] = []
    for lineno, raw in lines:
        try:
            out.append((lineno, orjson.loads(raw)))
        except orjson.JSONDecodeError as exc:
            out.append((lineno, _RowError("line", f"invalid JSON: {exc}")))
    return out


def _json_table(lines: list[tuple[int, bytes]]) -> pa.Table | None:
    """The block read by Arrow's JSON reader, or None where it might read it differently from ``orjson`` line by
    line (a byte-order mark, huge integers, anything it refuses, a row count other than the line count)."""
    data = b"".join(raw for _, raw in lines)
    if _BOM in data or _BIG_INT.search(data) or _NOT_OBJECT.search(data):
        return None
    try:
        table = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(
            use_threads=False, block_size=len(data) + 1))
    except (pa.ArrowException, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return table if table.num_rows == len(lines) else None


def _jsonl_blocks(path: Path, chunk_rows: int, events: bool) -> Iterator[_Block]:
    pos = 0
    lineno = 0
    with _open_binary(path) as f:
        while True:
            lines: list[tuple[int, bytes]] = []
            for raw in f:
                lineno += 1
                pos += len(raw)
                if raw.strip():
                    lines.append((lineno, raw))
                    if len(lines) == chunk_rows:
                        break
            if not lines:
                return
            table = _json_table(lines) if events else None
            if table is not None:
                yield _Block(len(lines), pos, table, partial(_jsonl_items, lines))
                continue
            items = _jsonl_items(lines)  # Arrow refused the block: line by line, as before
            bad = [(n, r) for n, r in items if isinstance(r, _RowError)]
            records = [r for _, r in items if not isinstance(r, _RowError)]
            table = _records_table(records) if events and records else None
            yield _Block(len(lines), pos, table, lambda items=items: items, bad)  # type: ignore[misc]


def _csv_blocks(path: Path, chunk_rows: int, events: bool) -> Iterator[_Block]:
    """Blocks of a CSV file. Event files whose data lines hold fields either plain or wholly quoted (no quote and
    no line break inside the quotes) are read by Arrow's CSV reader (every record is then one line: both readers
    split it the same way); from the first block with other quoting on, and for entity files, by Python's ``csv``
    reader (quoted newlines, line numbers as before)."""
    with _open_binary(path) as f:
        first = f.readline()
        header = _plain_header(first) if events else None
        if header is None:
            yield from _csv_python(path.name, itertools.chain([first], f), chunk_rows, events)
            return
        index = {k: i for i, k in enumerate(header) if k}
        options = (pacsv.ReadOptions(column_names=header, use_threads=False, block_size=1 << 26),
                   pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True),
                   pacsv.ConvertOptions(column_types={k: pa.string() for k in header}, strings_can_be_null=False,
                                        include_columns=sorted(index)))
        lineno, pos = 1, len(first)
        while raws := list(itertools.islice(f, chunk_rows)):
            data = b"".join(raws)
            if (not _SIMPLE_QUOTES.fullmatch(data)) if b'"' in data else data.count(b"\r") != data.count(b"\r\n"):
                # quotes inside a field or line breaks inside quotes (or a lone CR): Python's csv from here on
                yield from _csv_python(path.name, itertools.chain(raws, f), chunk_rows, events, lineno, pos, header)
                return
            table = _arrow_csv(data, options)
            n_lines, lineno, pos = len(raws), lineno + len(raws), pos + len(data)
            lines = [n for n, raw in enumerate(raws, start=lineno - n_lines + 1) if raw.strip(b"\r\n")]
            if table is None or table.num_rows != len(lines):  # not UTF-8, a row of another width...: by Python
                yield from _csv_python(path.name, iter(raws), n_lines, events, lineno - n_lines, pos - len(data),
                                       header)
                continue

            def items(table: pa.Table = table, lines: list[int] = lines, index: dict[str, int] = index
                      ) -> list[tuple[int, Mapping[str, Any] | _RowError]]:
                cols = {k: table.column(k).to_pylist() for k in index}
                return [(n, {k: cols[k][j] for k in index}) for j, n in enumerate(lines)]

            yield _Block(table.num_rows, pos, table, items)


_SIMPLE_FIELD = rb'(?:"[^"\r\n]*"|[^",\r\n]*)'
#: lines of fields either plain or wholly quoted, with no quote or line break inside the quotes: each record is one
#: line and Arrow's reader gives the same strings as Python's ``csv``
_SIMPLE_QUOTES = re.compile(rb"(?:%s(?:,%s)*\r?\n)*(?:%s(?:,%s)*)?" % ((_SIMPLE_FIELD,) * 4))
#: a header line of plain or wholly quoted names (no doubled quotes, no line break inside)
_PLAIN_HEADER = re.compile(r'(?:"[^",\r\n]*"|[^",\r\n]*)(?:,(?:"[^",\r\n]*"|[^",\r\n]*))*')


def _plain_header(first: bytes) -> list[str] | None:
    """The header of a CSV file when it is one plain line (names plain or wholly quoted, distinct), else None."""
    try:
        text = first.decode("utf-8-sig").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        return None
    if not _PLAIN_HEADER.fullmatch(text):
        return None
    header = [c[1:-1].strip() if c.startswith('"') else c.strip() for c in text.split(",")]
    if not any(header) or len(set(header)) != len(header):
        return None
    return header


def _arrow_csv(data: bytes, options: tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]
               ) -> pa.Table | None:
    try:
        data.decode("utf-8")
        return pacsv.read_csv(io.BytesIO(data), *options)
    except (pa.ArrowException, ValueError):
        return None


def _csv_python(name: str, raw_lines: Iterator[bytes], chunk_rows: int, events: bool, line0: int = 0,
                pos0: int = 0, header: list[str] | None = None) -> Iterator[_Block]:
    """Records by Python's ``csv`` reader over the lines from ``line0`` on (quoted newlines, line numbers as
    before), in blocks; the columns of a block are the reader's strings without a dict per row."""
    bad_utf8: set[int] = set()
    state = {"pos": pos0}

    def lines() -> Iterator[str]:
        n = line0
        while raws := list(itertools.islice(raw_lines, 4096)):
            try:
                texts = [raw.decode("utf-8") for raw in raws]
            except UnicodeDecodeError:
                texts = []
                for i, raw in enumerate(raws, start=n + 1):
                    try:
                        texts.append(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        bad_utf8.add(i)
                        texts.append(raw.decode("utf-8", errors="replace"))
            if n == 0 and texts[0].startswith("\ufeff"):  # utf-8-sig on the header line
                texts[0] = texts[0][1:]
            n += len(raws)
            state["pos"] += sum(map(len, raws))
            yield from texts

    reader = csv.reader(lines())
    index: dict[str, int] = {} if header is None else {k: i for i, k in enumerate(header) if k}
    done = False
    while not done:
        items: list[tuple[int, list[str] | _RowError]] = []
        while len(items) < chunk_rows:
            start = line0 + reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                done = True
                break
            except csv.Error as exc:
                items.append((start, _RowError("line", f"unreadable CSV: {exc}")))
                continue
            if header is None:
                if not any(c.strip() for c in row):
                    raise ValidationError("file", f"{name}: the first line must be a header row naming the fields")
                header = [c.strip() for c in row]
                index = {k: i for i, k in enumerate(header) if k}  # a repeated name: the last column, as a dict
                continue
            if not row:  # blank line
                continue
            end = line0 + reader.line_num
            bad = next((n for n in range(start, end + 1) if n in bad_utf8), None) if bad_utf8 else None
            if bad is not None:
                items.append((bad, _RowError("line", "is not valid UTF-8")))
            elif len(row) != len(header):
                items.append((start, _RowError("line", f"has {len(row)} fields, the header has {len(header)}")))
            else:
                items.append((start, row))
        if header is None and done:
            raise ValidationError("file", f"{name} is empty: a CSV file needs a header row")
        if not items:
            return
        rows = [r for _, r in items if not isinstance(r, _RowError)]
        unreadable = [(n, r) for n, r in items if isinstance(r, _RowError)]
        table = None
        if events and rows:
            columns = list(zip(*rows, strict=True))
            table = pa.table({k: pa.array(columns[i], pa.string()) for k, i in sorted(index.items())})

        def as_records(items: list[tuple[int, list[str] | _RowError]] = items,
                       index: dict[str, int] = index) -> list[tuple[int, Mapping[str, Any] | _RowError]]:
            return [(n, r if isinstance(r, _RowError) else {k: r[i] for k, i in index.items()}) for n, r in items]

        yield _Block(len(items), state["pos"], table, as_records, unreadable)


def _parquet_blocks(path: Path, chunk_rows: int, events: bool) -> Iterator[_Block]:
    n = 0
    for batch in _parquet_batches(path, chunk_rows):
        table = pa.Table.from_batches([batch])
        first = n + 1
        n += batch.num_rows

        def items(batch: pa.RecordBatch = batch, first: int = first) -> list[tuple[int, Mapping[str, Any] | _RowError]]:
            return list(enumerate(batch.to_pylist(), start=first))

        yield _Block(batch.num_rows, n, table if events else None, items)


_BLOCKS = {"jsonl": _jsonl_blocks, "csv": _csv_blocks, "parquet": _parquet_blocks}


class _Writer:
    """Stores a file's chunks in order, each as one append, on a second thread: the next chunk is read and
    validated while the store writes (and fsyncs) the previous one. Counts and progress are taken on the caller's
    thread, one chunk behind."""

    def __init__(self, store: EventStore | None, kind: str, report: IngestReport, total: int,
                 on_progress: ProgressFn | None) -> None:
        self.store, self.kind, self.report, self.total, self.on_progress = store, kind, report, total, on_progress
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="belong-ingest") if store is not None else None
        self.pending: Future[AppendResult] | None = None
        self.pending_pos = 0
        self.reported = -1

    def put(self, records: list[Any] | pa.Table, pos: int) -> None:
        self.wait()
        n = records.num_rows if isinstance(records, pa.Table) else len(records)
        if self.pool is None:  # validation only
            self.report.accepted += n
        elif n:
            assert self.store is not None
            self.pending, self.pending_pos = self.pool.submit(_store_chunk, self.store, self.kind, records), pos
            return
        self._progress(pos)

    def wait(self) -> None:
        if self.pending is None:
            return
        future, self.pending = self.pending, None
        result = future.result()
        self.report.accepted += result.accepted
        self.report.duplicates += result.duplicates
        self._progress(self.pending_pos)

    def _progress(self, pos: int) -> None:
        if self.on_progress is not None:
            self.on_progress(pos, self.total)
        self.reported = pos

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
                self.pending = None


def _run(
    path: Path, fmt: str, kind: str, store: EventStore | None, report: IngestReport, chunk_rows: int,
    total: int, on_progress: ProgressFn | None,
) -> None:
    """One pass over the file: validate every row; store the good ones when ``store`` is given. Event blocks are
    validated column by column (:mod:`belong.ingest_fast`) when that path vouches for every row of the block;
    otherwise, and for entities, row by row."""
    if fmt not in _BLOCKS:
        raise ValidationError("format", f"must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if on_progress is not None:
        on_progress(0, total)
    writer = _Writer(store, kind, report, total, on_progress)
    try:
        for block in _BLOCKS[fmt](path, chunk_rows, kind == "events"):
            report.rows += block.rows
            fast = _fast_table(block.table) if block.table is not None else None
            if fast is not None:
                for line, err in block.unreadable:
                    report.reject(line, err.field, err.reason)
                writer.put(fast, block.pos)
                continue
            good: list[Any] = []
            for line, record in block.items():  # in file order: unreadable and invalid rows
                if isinstance(record, _RowError):
                    report.reject(line, record.field, record.reason)
                    continue
                try:
                    good.append(parse_row(kind, record))
                except ValidationError as exc:
                    report.reject(line, exc.field, exc.reason)
            writer.put(good, block.pos)
        writer.wait()
    finally:
        writer.close()
    if writer.reported != total and on_progress is not None:
        on_progress(total, total)


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


def _records_table(records: list[Any]) -> pa.Table | None:
    """Parsed JSON records as columns (None when they are not all objects or Arrow cannot hold them)."""
    if not all(type(r) is dict for r in records):
        return None
    keys: set[str] = set().union(*records)
    try:
        return pa.table({k: pa.array([r.get(k) for r in records]) for k in sorted(keys)})
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None


def _fast_chunk(records: list[Mapping[str, Any]]) -> pa.Table | None:
    """The chunk's events validated as columns, or None (the row path decides; see :mod:`belong.ingest_fast`)."""
    table = _records_table(list(records))
    return None if table is None else _fast_table(table)


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
