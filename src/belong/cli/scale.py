"""``belong snapshot`` (the live state as memory-mappable arrays, for a fast API start), ``belong bench scale``
(simulate, train and serve one world, each step's wall time and peak memory) and ``belong bench log-read`` (the
columnar log read against the row path)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console

from belong.settings import get_settings

err = Console(stderr=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    register_ingest(bench)

    @bench.command("log-read")
    def bench_log_read_cmd(
        store: Path = typer.Option(..., "--store", help="An embedded store (directory)."),
        upto: int = typer.Option(None, "--upto", min=1, help="Read only up to this log position (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """The state's columns read from the log (columnar) against the row path, same store, same run: CPU and
        wall seconds, identical tables."""
        from belong.bench.logread import bench_log_read
        from belong.errors import ValidationError

        if not store.is_dir():
            raise ValidationError("store", f"{store} is not a store directory")
        result = bench_log_read(store, upto)
        typer.echo(orjson.dumps(result, option=0 if as_json else orjson.OPT_INDENT_2).decode())

    @app.command("snapshot")
    def snapshot_cmd(
        store: str = typer.Option(None, "--store", help="Store: a directory or a postgresql:// URL (default: "
                                  "BELONG_STORE)."),
        out: Path = typer.Option(None, "--out", help="Snapshot directory (default: MODELS/snapshot of the store's "
                                 "models directory, where belong serve --models looks)."),
        verify: bool = typer.Option(False, "--verify", help="Only check an existing snapshot (every file's sha256)."),
        load: bool = typer.Option(False, "--load", help="Only load an existing snapshot plus the log's tail, as the "
                                  "API does at start: seconds and resident memory."),
        as_json: bool = typer.Option(False, "--json", help="Print the snapshot's metadata as JSON on stdout."),
    ) -> None:
        """Write the store's current state (entities, relations, heat, timelines) as arrays versioned with the
        log position: belong serve --models starts from it and replays only the events after it."""
        import time

        from belong.state import snapshot
        from belong.training.locate import SNAPSHOT, default_models_dir

        spec = store or get_settings().store
        directory = out or default_models_dir(spec) / SNAPSHOT
        t0 = time.perf_counter()
        if load:
            import psutil

            rss0 = psutil.Process().memory_info().rss
            state, done = snapshot.load(spec, directory)
            done.update({"users": state.n_users, "rss_mb": round(psutil.Process().memory_info().rss / 1e6, 1),
                         "rss_added_mb": round((psutil.Process().memory_info().rss - rss0) / 1e6, 1)})
            typer.echo(orjson.dumps(done).decode())
            return
        if verify:
            meta = snapshot.verify(directory)
        else:
            with err.status(f"reading {spec} and writing {directory}"):
                meta = snapshot.take(spec, directory).meta
        summary = {"path": str(directory), "position": meta["position"], "store": meta.get("store"),
                   "counts": meta["counts"], "bytes": sum(f["size"] for f in meta["files"].values()),
                   "seconds": round(time.perf_counter() - t0, 3)}
        if as_json:
            typer.echo(orjson.dumps(summary).decode())
            return
        err.print(f"[bold]{'verified' if verify else 'wrote'}[/] {directory}: position {summary['position']:,}, "
                  f"{summary['counts']['users']:,} users, {summary['bytes'] / 1e6:.1f} MB in "
                  f"{summary['seconds']:.1f} s")

    @bench.command("scale")
    def bench_scale_cmd(
        users: int = typer.Option(1_000_000, min=1, help="Simulated people."),
        communities: int = typer.Option(50_000, min=1, help="Simulated communities."),
        directory: Path = typer.Option(Path("/tmp/belong-scale"), "--dir", help="Where the world, its models and "
                                       "snapshot are kept (a store of the same size and seed is reused)."),
        steps: str = typer.Option("simulate,train,serve", help="Steps to run, comma-separated."),
        seed: int = typer.Option(0, help="Random seed of the world."),
        people: int = typer.Option(30, min=1, help="People whose first request is timed on each API start."),
        timeout_s: float = typer.Option(3600.0, help="Longest a step may take."),
        surface: list[str] = typer.Option([], "--surface", "-s", help="What belong train trains (repeatable; "
                                          "default: its default surfaces)."),
        serve_baseline: bool = typer.Option(True, help="Also start the API from the whole log (the baseline)."),
        json_out: bool = typer.Option(False, "--json", help="Print only the JSON result on stdout."),
    ) -> None:
        """Simulate, train and serve one world with this installation: each step's wall time and peak resident
        memory, per million people; the API start from the snapshot next to the start from the whole log."""
        from belong.bench.scale import STEPS, bench_scale
        from belong.errors import ValidationError

        chosen = [s.strip() for s in steps.split(",") if s.strip()]
        bad = [s for s in chosen if s not in STEPS]
        if bad or not chosen:
            raise ValidationError("steps", f"must be among {', '.join(STEPS)}, got {steps!r}")

        def say(step: str, msg: str) -> None:
            err.print(f"[bold]{step}[/]: {msg}")

        result = bench_scale(users, communities, directory, chosen, seed, people, timeout_s, say, surface or None,
                             serve_baseline)
        typer.echo(orjson.dumps(result, option=0 if json_out else orjson.OPT_INDENT_2).decode())


def register_ingest(bench: typer.Typer) -> None:
    @bench.command("ingest-files")
    def bench_ingest_files_cmd(
        rows: int = typer.Option(200_000, min=1, help="Events per file."),
        chunk_rows: int = typer.Option(50_000, min=1, help="Rows validated and stored per append."),
        seed: int = typer.Option(0, help="Random seed of the events."),
        prefilled: Path = typer.Option(None, help="A store with many events already (appended to: give a copy): "
                                       "ingest into it against an empty store, instead of the format comparison."),
        prefill: int = typer.Option(0, min=0, help="With --prefilled: first fill that store with this many synthetic "
                                    "events (random ids), a new store made by the bulk build; their times lie before "
                                    "the file's."),
        prefill_overlap: bool = typer.Option(False, help="With --prefill: the stored events' times in the same 30 "
                                             "days as the file's (the time index takes random inserts too)."),
        singles: int = typer.Option(0, min=0, help="With --prefilled: first this many one-event appends (what POST "
                                    "/v1/events does) into an empty store and into the pre-filled one, interleaved."),
        files: bool = typer.Option(True, help="With --prefilled: the file ingest comparison (--no-files: the "
                                   "one-event appends only)."),
        json_out: bool = typer.Option(False, "--json", help="Print only the JSON result on stdout."),
    ) -> None:
        """belong ingest of JSONL, CSV and Parquet into a fresh embedded store: rows/s with column-wise
        validation next to row-by-row validation (the same-run baseline) and the bare append. With --prefilled:
        the same file into an empty store and into one with many events already (random and time-prefixed ids), and
        with --singles N one-event appends into both."""
        from belong.bench.ingest_files import bench_ingest_files, bench_prefilled, bench_single_appends, prefill_store
        from belong.errors import ValidationError

        if prefilled is None and (singles or not files):
            raise ValidationError("singles", "--singles and --no-files need --prefilled")
        if not singles and not files:
            raise ValidationError("files", "--no-files needs --singles N (nothing to measure)")
        if prefilled is None:
            result: dict = bench_ingest_files(rows, seed, chunk_rows)
        else:
            fill = None
            if prefill:
                from belong.cli.store import _progress

                with _progress(Console(stderr=True)) as bar:
                    task = bar.add_task("prefill", total=prefill)
                    fill = prefill_store(prefilled, prefill, seed, overlap=prefill_overlap,
                                         on_step=lambda done, total: bar.update(task, completed=done))
            result = {"prefilled": str(prefilled)}
            if singles:
                result["single"] = bench_single_appends(prefilled, singles, seed)
            if files:
                result.update(bench_prefilled(rows, prefilled, seed, chunk_rows))
            if fill is not None:
                result["prefill"] = fill
        typer.echo(orjson.dumps(result, option=0 if json_out else orjson.OPT_INDENT_2).decode())
