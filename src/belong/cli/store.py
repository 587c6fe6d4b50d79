"""Event-log commands: ``belong ingest``, ``belong stats``, ``belong export`` and ``belong bench ingest``.

``STORE`` is a directory (embedded SQLite store) or a ``postgresql://`` URL; it defaults to ``BELONG_STORE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from belong.errors import ValidationError

_STORE_HELP = "Store: a directory (embedded) or a postgresql:// URL. Default: $BELONG_STORE."


def _store_spec(store: str | None) -> str:
    from belong.settings import get_settings

    return store or get_settings().store


def _print_json(data: object) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@contextmanager
def _progress(console: Console, *, counts: bool = True) -> Iterator[Progress]:
    """Progress bars on stderr (stdout stays clean for ``--json``), only on a terminal; removed when done.
    ``counts`` shows done/total (rows, events) next to the percentage; off for byte positions."""
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if counts:
        columns.append(MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        yield progress


def _parse_time(raw: str | None, field: str) -> int | None:
    from belong.domain import parse_ts

    return None if raw is None else parse_ts(raw, field)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this module's commands to the main app and to the bench sub-app."""
    err = Console(stderr=True)

    @app.command()
    def ingest(
        file: Path = typer.Argument(..., help="A .jsonl/.ndjson, .csv (header row) or .parquet file."),
        store: str = typer.Option(None, "--store", "-s", help=_STORE_HELP),
        kind: str = typer.Option("events", help="What the rows are: events, users, communities or content."),
        fmt: str = typer.Option(None, "--format", help="jsonl, csv or parquet (default: from the file suffix)."),
        strict: bool = typer.Option(False, "--strict", help="Reject the whole file if any row is bad."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    ) -> None:
        """Validate and store the rows of FILE.

        Bad rows are reported (line, field, reason) and not stored; good rows are stored, each chunk of 50,000
        rows as one durable, idempotent append (re-ingesting a file stores nothing twice: re-sent event_ids are
        counted as duplicates). Exit code 0 when the file was processed, even if some rows were rejected (see
        "rejected" in the report); 2 with --strict when any row is bad (then nothing is stored), or when the file,
        format or store is unusable. Line numbers: JSONL and CSV count file lines (the CSV header is line 1),
        Parquet counts rows from 1. Timestamps: ts/timestamp (ISO-8601 or epoch seconds) or ts_us (microseconds).
        """
        from belong.eventlog import open_store
        from belong.ingest import check_input, ingest_file

        fmt = check_input(file, kind, fmt)  # before the store is opened (and created)
        with open_store(_store_spec(store)) as st, _progress(err, counts=fmt == "parquet") as progress:
            task = progress.add_task(f"ingest {file.name}", total=None)
            report = ingest_file(  # progress is by rows for Parquet, by bytes for text files
                file, st, kind=kind, fmt=fmt, strict=strict,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        if as_json:
            _print_json(report.to_dict())
        else:
            out = Console()
            out.print(
                f"{escape(file.name)}: [green]{report.accepted:,} accepted[/], {report.duplicates:,} duplicates, "
                f"[{'red' if report.rejected else 'green'}]{report.rejected:,} rejected[/] "
                f"of {report.rows:,} rows" + ("" if report.stored else " — nothing stored (--strict)")
            )
            for e in report.errors[:20]:
                out.print(f"  line {e['line']}: {e['field']}: {e['reason']}", markup=False)
            if report.rejected > 20:
                out.print(f"  ... {report.rejected - 20:,} more (use --json for the first {len(report.errors):,})")
        if strict and report.rejected:
            raise typer.Exit(2)

    @app.command()
    def stats(
        store: str = typer.Option(None, "--store", "-s", help=_STORE_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    ) -> None:
        """Counts of events by type, users, communities, content and the time span of a store."""
        from belong.eventlog import open_store

        with open_store(_store_spec(store), create=False) as st:
            data = st.stats()
        if as_json:
            _print_json(data)
            return
        table = Table(title=f"belong store {data['store']}", show_header=False)
        table.add_column("what")
        table.add_column("value", justify="right")
        table.add_row("events", f"{data['events']:,}")
        for etype, n in data["events_by_type"].items():  # type: ignore[attr-defined]
            table.add_row(f"  {etype}", f"{n:,}")
        for key in ("users", "communities", "content", "active_users", "active_communities"):
            table.add_row(key.replace("_", " "), f"{data[key]:,}")
        table.add_row("first event", str(data["first_event"] or "-"))
        table.add_row("last event", str(data["last_event"] or "-"))
        Console().print(table)

    @app.command()
    def export(
        out: Path = typer.Argument(..., help="The Parquet file to write."),
        store: str = typer.Option(None, "--store", "-s", help=_STORE_HELP),
        start: str = typer.Option(None, help="First timestamp included (ISO-8601 or epoch seconds)."),
        end: str = typer.Option(None, help="First timestamp excluded."),
        types: list[str] = typer.Option(None, "--type", help="Event types to keep (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    ) -> None:
        """Export events in (time, arrival) order to a Parquet file for training jobs."""
        from belong.domain import EventType
        from belong.eventlog import open_store

        for t in types or ():
            if t not in {e.value for e in EventType}:
                raise ValidationError("type", f"must be one of {', '.join(e.value for e in EventType)}; got {t!r}")
        start_us, end_us = _parse_time(start, "start"), _parse_time(end, "end")
        with open_store(_store_spec(store), create=False) as st:
            n = st.export_parquet(out, start_us, end_us, types or None)
        if as_json:
            _print_json({"rows": n, "path": str(out)})
        else:
            err.print(f"wrote {n:,} events to {out}")

    @bench.command("ingest")
    def bench_ingest(
        events: int = typer.Option(200_000, help="Events to append (timed)."),
        batch_size: int = typer.Option(10_000, help="Events per append call (one durable commit each)."),
        postgres_url: str = typer.Option(
            None, help="PostgreSQL to measure (a fresh schema, dropped afterwards). "
            "Default: $BELONG_BENCH_POSTGRES_URL, else $BELONG_TEST_POSTGRES_URL; none: sqlite only."
        ),
        preload: int = typer.Option(0, help="Events stored first (not timed), to measure a large store."),
        ordered_ids: bool = typer.Option(
            False, "--ordered-ids", help="Time-prefixed ids (UUIDv7/snowflake style) instead of random uuid4-like."
        ),
        seed: int = typer.Option(0),
        as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    ) -> None:
        """Sustained durable ingest rate (events/s) of each backend next to the same engine's raw bulk insert."""
        from belong.bench import ingest as bi

        for name, val, low in (("events", events, 1), ("batch_size", batch_size, 1), ("preload", preload, 0)):
            if val < low:
                raise ValidationError(name, f"must be >= {low}, got {val}")
        url = postgres_url or os.environ.get("BELONG_BENCH_POSTGRES_URL") or os.environ.get(
            "BELONG_TEST_POSTGRES_URL"
        )
        with _progress(err) as progress:
            tasks: dict[str, int] = {}

            def on_phase(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=total)
                progress.update(TaskID(tasks[name]), completed=done)

            workload = bi.Workload(events, batch_size, preload, seed, ordered_ids)
            result = bi.run(workload, url, on_phase)
        if as_json:
            _print_json(result)
            return
        table = Table(title=f"belong bench ingest: {events:,} events, batches of {batch_size:,}")
        for col in ("backend", "events/s", "baseline events/s", "ratio", "note"):
            table.add_column(col)
        for name, fig in result["backends"].items():
            if "skipped" in fig:
                table.add_row(name, "-", "-", "-", fig["skipped"])
            else:
                table.add_row(name, f"{fig['events_per_s']:,}", f"{fig['baseline_events_per_s']:,}",
                              f"{fig['ratio']:.2f}", fig["durability"])
        Console().print(table)
