"""``belong candidates precompute``: every active person's candidate lists, stored for the API's cold path
(:mod:`belong.serve.precomputed`)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from belong.settings import get_settings

err = Console(stderr=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    candidates = typer.Typer(help="Precomputed candidate lists.", no_args_is_help=True)
    app.add_typer(candidates, name="candidates")

    @candidates.command("precompute")
    def precompute_cmd(
        store: str = typer.Option(None, "--store", help="Store: a directory or a postgresql:// URL (default: "
                                  "BELONG_STORE)."),
        redis: str = typer.Option(None, "--redis", help="Redis holding the lists (default: BELONG_PRECOMPUTED_REDIS, "
                                  "else BELONG_REDIS_URL)."),
        models: Path = typer.Option(None, "--models", help="belong train artifacts (default: STORE/models); the "
                                    "newest is the version the lists belong to."),
        prefix: str = typer.Option("belong:candidates:", "--prefix", help="Key prefix (BELONG_PRECOMPUTED_PREFIX "
                                   "of the API)."),
        surface: list[str] = typer.Option([], "--surface", "-s", help="communities, people or content (repeatable; "
                                          "default: every surface)."),
        limit: int = typer.Option(None, "--limit", min=1, help="Only the first N active people."),
        users_file: Path = typer.Option(None, "--users-file", help="Only the people named in this file, one id a "
                                        "line (the day's active people, say); each must be an active person."),
        stale: bool = typer.Option(False, "--stale", help="Only the lists marked stale by their people's own events "
                                   "(the API's BELONG_PRECOMPUTED_REFRESH=job: run it on a schedule, the freshness "
                                   "bound); their marks are spent once the lists are stored."),
        as_json: bool = typer.Option(False, "--json", help="Print the job's figures as one JSON object."),
        engine: str = typer.Option("inprocess", "--engine", help="inprocess (default) or ray: a Ray Data pipeline "
                                   "over blocks of people (belong.batch)."),
        ray_workers: int = typer.Option(None, "--ray-workers", help="With --engine ray: worker processes (and "
                                        "CPUs of the local cluster started; default 1)."),
        ray_address: str = typer.Option(None, "--ray-address", help="With --engine ray: a running Ray cluster "
                                        "(default: start a local one)."),
    ) -> None:
        """Run each surface's candidate stage for every active person and store the lists, versioned with the
        model the API serves."""
        import os

        from belong.batch import parse_engine
        from belong.domain import Surface, parse_enum
        from belong.errors import ValidationError
        from belong.serve.precomputed import precompute

        spec = store or get_settings().store
        if not spec:
            raise ValidationError("store", "give --store or set BELONG_STORE")
        url = redis or os.environ.get("BELONG_PRECOMPUTED_REDIS") or os.environ.get("BELONG_REDIS_URL")
        if not url:
            raise ValidationError("redis", "give --redis URL (or BELONG_PRECOMPUTED_REDIS)")
        surfaces = [parse_enum(s, Surface, "surface") for s in surface] or None
        people: list[str] | None = None
        if users_file is not None:
            try:
                people = [line.strip() for line in users_file.read_text().splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                raise ValidationError("users-file", f"cannot read {users_file}: {exc}") from None
            if not people:
                raise ValidationError("users-file", f"{users_file} names nobody")
        eng = parse_engine(engine, ray_workers, ray_address)
        if stale and (eng.is_ray or people is not None or limit is not None):
            raise ValidationError("stale", "--stale refreshes the marked lists in process: not with --engine ray, "
                                  "--users-file or --limit")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as bar:
            task = bar.add_task("candidate lists", total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            if eng.is_ray:
                from belong.batch.precompute import precompute as on_ray

                meta = on_ray(spec, url, eng, models_dir=models, prefix=prefix, surfaces=surfaces, limit=limit,
                              users=people, progress=on_progress)
            else:
                meta = precompute(spec, url, models_dir=models, prefix=prefix, surfaces=surfaces, limit=limit,
                                  users=people, progress=on_progress, stale=stale)
        if as_json:
            typer.echo(orjson.dumps(meta).decode())
        else:
            err.print(f"{meta['lists']:,} lists of {meta['users']:,} people, model {meta['version']}, "
                      f"{meta['seconds']} s ({meta['ms_per_list']} ms per list)")
