"""``belong train --store STORE [--out DIR] [--surface S ...] [--tune-budget SECONDS [--retune]] [--json]``: train every
model the store's surfaces need and write a versioned artifact directory (see :mod:`belong.training.train`)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from belong.settings import get_settings

err = Console(stderr=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        store: str = typer.Option(None, "--store",
                                  help="Store: a directory or a postgresql:// URL (default: BELONG_STORE)."),
        out: Path = typer.Option(None, "--out", help="Artifacts go to OUT/<version>/ (default: the store's models "
                                 "directory, STORE/models for an embedded store, ./models for PostgreSQL)."),
        surface: list[str] = typer.Option([], "--surface", "-s", help="Surface name or TOML (repeatable; default: "
                                          "communities_ranked, people, content)."),
        as_json: bool = typer.Option(False, "--json", help="Print the manifest as one JSON object on stdout."),
        tune_budget: float = typer.Option(None, "--tune-budget", help="Seconds of tuning (sources, ranker) on "
                                          "validation cuts of the store's own data; the newest tuned artifact's "
                                          "values are reused while the data has not drifted (belong.training.tune)."),
        retune: bool = typer.Option(False, "--retune", help="With --tune-budget: search again even without drift."),
        engine: str = typer.Option("inprocess", "--engine", help="inprocess (default) or ray: training lists as a "
                                   "Ray Data pipeline, the ranker's order model by Ray Train's LightGBMTrainer."),
        ray_workers: int = typer.Option(None, "--ray-workers", help="With --engine ray: Ray workers (list builders "
                                        "and LightGBM workers; default 1)."),
        ray_address: str = typer.Option(None, "--ray-address", help="With --engine ray: a running Ray cluster "
                                        "(default: start a local one)."),
    ) -> None:
        """Train every model a store's surfaces need (sources, ranker) and write a versioned model artifact."""
        from belong.batch import parse_engine
        from belong.batch.train import train
        from belong.training.locate import default_models_dir
        from belong.training.train import DEFAULT_SURFACES

        spec = store or get_settings().store
        eng = parse_engine(engine, ray_workers, ray_address)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=False) as bar:
            tasks: dict[str, int] = {}

            def on_progress(name: str, step: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(TaskID(tasks[name]), description=f"{name}: {step}", completed=done, total=total)

            result = train(spec, out or default_models_dir(spec), surface or DEFAULT_SURFACES, eng,
                           progress=on_progress, tune_budget=tune_budget, retune=retune)
        if as_json:
            typer.echo(orjson.dumps(result).decode())
            return
        err.print(f"[bold]wrote[/] {result['path']} in {result['seconds']:.1f} s")
        for name, entry in result["surfaces"].items():
            metrics = entry.get("ranker", {}).get("metrics", {})
            line = f"  {name}: fitted in {entry['fit_seconds']:.1f} s"
            if metrics:
                line += (f"; validation ndcg@20 {metrics['ranker']['ndcg@20']:.4f}, "
                         f"ECE {metrics['calibration']['ece_before']:.4f} -> {metrics['calibration']['ece_after']:.4f}")
            err.print(line)
        tuning = result.get("tuning")
        if tuning:
            how = (f"reused from {tuning['reused_from']} (drift {tuning['drift']:.0%})" if tuning["mode"] == "reused"
                   else f"tuned in {tuning['seconds']:.1f} s of a {tuning['budget_seconds']:.0f} s budget "
                        f"({tuning['reason']})")
            err.print(f"  tuning: {how}")
        for name, why in result["skipped"].items():
            err.print(f"  {name}: skipped ({why})")
