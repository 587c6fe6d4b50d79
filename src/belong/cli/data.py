"""``belong load`` (public datasets into a store) and ``belong simulate`` (a simulated community world)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from belong.datasets import SPEC_HELP, load_world, write_world


def _print(result: dict[str, object], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in result.items():
        if isinstance(value, dict):
            for sub, n in value.items():
                table.add_row(f"{key}.{sub}", f"{n:,}" if isinstance(n, int) else str(n))
        else:
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this module's commands to the main app and to the bench sub-app."""

    @app.command()
    def load(
        spec: str = typer.Argument(..., help=f"Dataset: {SPEC_HELP}."),
        store: str = typer.Option(None, "--store", help="Store directory or postgresql:// URL (default BELONG_STORE)."),
        data_dir: Path = typer.Option(None, "--data-dir",
                                      help="Folder of the public datasets (default BELONG_DATA_DIR)."),
        as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON on stdout."),
    ) -> None:
        """Load a public dataset (or your files in the same format) into a store and print the counts."""
        from belong.eventlog import open_store

        t0 = time.perf_counter()
        world = load_world(spec, data_dir)
        t_load = time.perf_counter() - t0
        with open_store(store) as st:
            written = write_world(st, world, progress=True)
        result: dict[str, object] = {
            "dataset": world.meta.get("name", spec),
            **world.meta.get("counts", {}),
            "store": {"accepted": written["accepted"], "duplicates": written["duplicates"]},
            "seconds": {"read": round(t_load, 3), "total": round(time.perf_counter() - t0, 3)},
        }
        if "given_split_ts_us" in world.meta:
            result["given_split_ts_us"] = world.meta["given_split_ts_us"]
        _print(result, as_json, f"loaded {spec}")

    @app.command()
    def simulate(
        users: int = typer.Option(10_000, "--users", help="Number of users."),
        communities: int = typer.Option(1_000, "--communities", help="Number of communities."),
        seed: int = typer.Option(0, "--seed", help="Random seed: same seed and sizes, same world."),
        store: str = typer.Option(None, "--store", help="Store directory or postgresql:// URL (default BELONG_STORE)."),
        chunk_users: int = typer.Option(50_000, "--chunk-users", help="Users generated and written per chunk."),
        days: int = typer.Option(180, "--days", help="Length of the activity window ending 2026-11-01."),
        as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON on stdout."),
    ) -> None:
        """Simulate a Discord-like community world into a store (streamed in chunks) and print the counts."""
        from belong.eventlog import open_store
        from belong.simulate import EVENT_TYPES, SimConfig
        from belong.simulate import simulate as run_simulation

        cfg = SimConfig(n_users=users, n_communities=communities, seed=seed, chunk_users=chunk_users, days=days)
        t0 = time.perf_counter()
        totals = {"users": 0, "communities": 0, "content": 0, "events": 0, "accepted": 0, "duplicates": 0}
        by_type = dict.fromkeys(EVENT_TYPES, 0)
        gen_s = 0.0
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with open_store(store) as st, Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("simulating users", total=users)
            chunks = run_simulation(users, communities, seed, chunk_users=chunk_users, days=days)
            while True:
                g0 = time.perf_counter()
                world = next(chunks, None)
                gen_s += time.perf_counter() - g0
                if world is None:
                    break
                written = write_world(st, world, progress=False)
                for key in totals:
                    totals[key] += written[key]
                for key, n in world.meta["counts"].items():
                    if key in by_type:
                        by_type[key] += n
                bar.advance(task, world.users.num_rows)
        total_s = time.perf_counter() - t0
        result: dict[str, object] = {
            "world": cfg.tag,
            **{k: totals[k] for k in ("users", "communities", "content", "events")},
            "events_by_type": by_type,
            "store": {"accepted": totals["accepted"], "duplicates": totals["duplicates"]},
            "seconds": {"generate": round(gen_s, 2), "write": round(total_s - gen_s, 2), "total": round(total_s, 2)},
        }
        _print(result, as_json, f"simulated world {cfg.tag}")
