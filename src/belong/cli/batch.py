"""``belong batch score`` (every person's top-k to Parquet, in process or on Ray) and ``belong bench ray`` (each batch
job's wall time in process and on Ray with 1, 2, … workers, same run). See docs/BATCH_RAY.md."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from belong.settings import get_settings

err = Console(stderr=True)


def _workers(raw: str) -> list[int]:
    from belong.errors import ValidationError

    try:
        out = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ValidationError("workers", f"must be a comma-separated list of counts, got {raw!r}") from None
    if not out or min(out) < 1:
        raise ValidationError("workers", f"must be counts >= 1, got {raw!r}")
    return out


def register(app: typer.Typer, bench: typer.Typer) -> None:
    batch = typer.Typer(help="Batch jobs (in process or on Ray).", no_args_is_help=True)
    app.add_typer(batch, name="batch")

    @batch.command("score")
    def score_cmd(
        out: Path = typer.Option(..., "--out", help="Parquet file to write (user, rank, item, score)."),
        store: str = typer.Option(None, "--store", help="Store: a directory or a postgresql:// URL (default: "
                                  "BELONG_STORE)."),
        surface: str = typer.Option("communities", "--surface", "-s", help="communities, people or content."),
        models: Path = typer.Option(None, "--models", help="belong train artifacts (default: STORE/models); the "
                                    "newest is used."),
        k: int = typer.Option(20, "--k", help="Items per person."),
        limit: int = typer.Option(None, "--limit", min=1, help="Only the first N active people."),
        engine: str = typer.Option("inprocess", "--engine", help="inprocess (default) or ray."),
        ray_workers: int = typer.Option(None, "--ray-workers", help="With --engine ray: worker processes "
                                        "(default 1)."),
        ray_address: str = typer.Option(None, "--ray-address", help="With --engine ray: a running Ray cluster "
                                        "(default: start a local one)."),
        as_json: bool = typer.Option(False, "--json", help="Print the job's figures as one JSON object."),
    ) -> None:
        """Rank every active person's top-k of a surface with the newest artifact and write them to Parquet."""
        from belong.batch import parse_engine
        from belong.batch.score import score
        from belong.errors import ValidationError

        spec = store or get_settings().store
        if not spec:
            raise ValidationError("store", "give --store or set BELONG_STORE")
        eng = parse_engine(engine, ray_workers, ray_address)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as bar:
            task = bar.add_task(f"scoring on {eng.name}", total=None)
            res = score(spec, out, eng, surface=surface, k=k, models_dir=models, limit=limit,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
        if as_json:
            typer.echo(orjson.dumps(res).decode())
        else:
            err.print(f"{res['rows']:,} rows for {res['users']:,} people -> {res['out']} in {res['seconds']} s "
                      f"({res['ms_per_user']} ms per person, {eng.name})")

    @bench.command("ray")
    def bench_ray_cmd(
        users: int = typer.Option(10_000, "--users", min=10, help="People of the simulated world."),
        workers: str = typer.Option("1,2", "--workers", help="Ray worker counts to run (comma-separated)."),
        store: str = typer.Option(None, "--store", help="Use this store instead of simulating one (not written)."),
        communities: int = typer.Option(None, "--communities", min=1, help="Communities (default: users / 50)."),
        surface: str = typer.Option("communities_ranked", "--surface", help="The trained surface (name or TOML)."),
        limit: int = typer.Option(None, "--limit", min=1, help="Score / precompute a sample: the first N active "
                                  "people (the report gives the cost per list and per million people)."),
        redis: str = typer.Option(None, "--redis", help="Redis for the precompute job (default: BELONG_REDIS_URL; "
                                  "none: skipped)."),
        job: list[str] = typer.Option([], "--job", help="train, score, precompute (repeatable; default: all)."),
        models: Path = typer.Option(None, "--models", help="Artifacts for score / precompute (default: the ones "
                                    "the train job writes in process)."),
        work: Path = typer.Option(None, "--work", help="Working directory (default: a temporary one, removed)."),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    ) -> None:
        """Each batch job in process and on Ray with each worker count, same run: wall times and ratios."""
        import os

        from belong.batch.engine import ray_available
        from belong.bench.ray_batch import JOBS, bench_ray
        from belong.errors import ValidationError

        counts = _workers(workers)
        bad = [j for j in job if j not in JOBS]
        if bad:
            raise ValidationError("job", f"must be one of {', '.join(JOBS)}, got {bad[0]!r}")
        if not ray_available():
            raise ValidationError("engine", "belong bench ray needs ray[data,train] installed")
        url = redis or os.environ.get("BELONG_REDIS_URL")
        with tempfile.TemporaryDirectory(prefix="belong-bench-ray-") as tmp:
            report = bench_ray(users, counts, work or Path(tmp), store=store, communities=communities,
                               surface=surface, limit=limit, redis_url=url, jobs=tuple(job) or JOBS, seed=seed,
                               models=models,
                               progress=lambda msg: err.print(msg, style="dim", markup=False, highlight=False,
                                                             soft_wrap=True))
        if as_json:
            typer.echo(orjson.dumps(report).decode())
            return
        for name, rows in report["jobs"].items():
            if "skipped" in rows:
                err.print(f"{name}: skipped ({rows['skipped']})")
                continue
            line = ", ".join(f"{key} failed ({row['error']})" if "error" in row else
                             f"{key} {row['seconds']} s, {row['cpu_seconds']} CPU-s (x{row['ratio_vs_inprocess']})"
                             for key, row in rows.items())
            err.print(f"{name}: {line}")
