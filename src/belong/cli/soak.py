"""``belong bench soak --json [--minutes 30] [--rate R | --held-rate R]``: the API at a steady rate with events
flowing, for a long time: memory growth per hour, errors, p99 drift (see :mod:`belong.bench.soak`)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from belong.errors import ValidationError


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("soak")
    def bench_soak(
        minutes: float = typer.Option(30.0, "--minutes", help="How long to soak."),
        seconds: float = typer.Option(None, "--seconds", help="How long to soak, in seconds (instead of --minutes)."),
        rate: float = typer.Option(None, "--rate", help="Requests per second (default: half the held rate)."),
        held_rate: float = typer.Option(None, "--held-rate", help="The highest rate `belong bench serve` held: "
                                        "soak at half of it (default: found by a short sweep in this run)."),
        windows: int = typer.Option(None, "--windows", help="Measurement windows (default: one a minute, >= 3)."),
        event_rate: float = typer.Option(20.0, "--event-rate", help="Event batches posted per second."),
        event_batch: int = typer.Option(10, "--event-batch", help="Events per batch."),
        users: int = typer.Option(20_000, "--users", help="Simulated users."),
        communities: int = typer.Option(1_000, "--communities", help="Simulated communities."),
        working_set: int = typer.Option(2_000, "--working-set", help="Users the requests and events cycle over."),
        p99_ms: float = typer.Option(50.0, "--p99-ms", help="p99 budget of the sweep that finds the held rate."),
        store: Path = typer.Option(Path(".belong/bench-soak"), "--store", help="Where the simulated store is kept."),
        redis: str = typer.Option(None, "--redis", help="Redis URL for online features (default: in process)."),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
    ) -> None:
        """Soak the API: steady requests and events for a long time; RSS slope per hour, errors, p99 drift."""
        from belong.bench.soak import bench_soak as run

        total = seconds if seconds is not None else minutes * 60.0
        for name, value in (("seconds", total), ("event_rate", event_rate), ("event_batch", event_batch),
                            ("users", users), ("communities", communities), ("working_set", working_set)):
            if value is None or value < 0 or (name != "event_rate" and value == 0):
                raise ValidationError(name.replace("_", "-"), f"must be positive, got {value}")
        for name, value in (("rate", rate), ("held-rate", held_rate)):
            if value is not None and value <= 0:
                raise ValidationError(name, f"must be positive, got {value}")
        n_windows = windows if windows is not None else max(3, round(total / 60))
        if n_windows < 1:
            raise ValidationError("windows", f"must be at least 1, got {n_windows}")
        out = run(store, users, communities, seed, total, rate, held_rate, n_windows, event_rate, event_batch,
                  working_set, p99_ms, redis)
        if as_json:
            typer.echo(orjson.dumps(out).decode())
            return
        typer.echo(f"rate {out['rate']:g}/s ({out['rate_from']}), {out['seconds']:g} s: RSS slope "
                   f"{out['rss_slope_mb_per_hour']} MB/h, p99 {out['p99_ms']['first_window']} -> "
                   f"{out['p99_ms']['last_window']} ms, errors {out['requests']['errors']}")
