"""``belong recommend`` (one explained list from a store) and ``belong bench sources`` / ``belong bench ann``.

Importing this module also makes ``--model pipeline:SURFACE`` available to ``belong evaluate``.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from belong.domain import AgeGroup, parse_locale, parse_tags
from belong.errors import ValidationError

err = Console(stderr=True)


def _new_user(locale: str | None, age: str | None, interests: str | None):
    from belong.pipeline.types import NewUser

    if locale is None and age is None and interests is None:
        return None
    try:
        age_group = AgeGroup((age or "unknown").strip().lower())
    except ValueError:
        raise ValidationError("new-user-age",
                              f"must be one of {', '.join(a.value for a in AgeGroup)}, got {age!r}") from None
    return NewUser(locale=parse_locale(locale, "new-user-locale"), age_group=age_group,
                   interests=parse_tags(interests, "new-user-interests"))


def _print_response(console: Console, pipeline, response, trace: bool) -> None:
    table = Table(title=f"{response.surface} for {response.user_id}", show_lines=False)
    for col, just in (("#", "right"), ("id", "left"), ("name", "left"), ("score", "right"), ("sources", "left"),
                      ("why", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for it in response.items:
        table.add_row(str(it.rank), it.id, pipeline.item_label(it.index), f"{it.score:.4f}", ", ".join(it.sources),
                      it.explanation)
    console.print(table)
    if not response.items:
        console.print("[yellow]no recommendations[/] (nothing left after the filters)")
    if trace:
        t = response.trace
        stages = Table(title="stages (ms)")
        stages.add_column("stage")
        stages.add_column("ms", justify="right")
        stages.add_column("detail")
        for name, ms in t.stage_ms.items():
            stages.add_row(name, f"{ms:.2f}", f"{t.n_candidates} candidates" if name == "sources" else "")
        for name, ms in t.source_ms.items():
            stages.add_row(f"  source {name}", f"{ms:.2f}", f"{t.source_counts[name]} candidates")
        console.print(stages)
        removed = Table(title=f"removed by filters ({len(t.removed)})")
        for col in ("filter", "id", "name", "reason"):
            removed.add_column(col, overflow="fold")
        for r in t.removed:
            removed.add_row(r.filter, pipeline.item_id(r.item), pipeline.item_label(r.item), r.reason)
        console.print(removed)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``recommend`` to the app and ``sources`` / ``ann`` to ``belong bench``."""

    @app.command()
    def recommend(
        store: str = typer.Option(None, "--store",
                                  help="Store: a directory or a postgresql:// URL (default: BELONG_STORE)."),
        surface: str = typer.Option("communities", "--surface", "-s",
                                    help="A catalogue surface (communities, communities_ranked, people, content) "
                                    "or a surface TOML file."),
        user: str = typer.Option(..., "--user", "-u", help="User id (an unknown id needs --new-user-*)."),
        k: int = typer.Option(20, "--k", help="How many items."),
        new_user_locale: str = typer.Option(None, "--new-user-locale", help="Brand-new user: language, e.g. en."),
        new_user_age: str = typer.Option(None, "--new-user-age", help="Brand-new user: teen | adult | unknown."),
        new_user_interests: str = typer.Option(None, "--new-user-interests",
                                               help="Brand-new user: interests, comma-separated."),
        seed: int = typer.Option(0, "--seed", help="Seed of randomised sources (walks)."),
        models: Path = typer.Option(None, "--models", help="A `belong train` artifact, or a directory of them (the "
                                    "newest); default: the newest in the store's models directory."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
        trace: bool = typer.Option(False, "--trace", help="Also show stage timings and what each filter removed."),
        why_not: list[str] = typer.Option([], "--why-not", help="Also say why this item is or is not in the answer "
                                          "(not a candidate, removed by a rule, ranked below the cut); repeatable."),
    ) -> None:
        """Recommend for one user from a store, with scores and explanations: from the newest trained artifact
        when there is one (fast), else by fitting every source first."""
        from belong import surfaces
        from belong.pipeline import Request
        from belong.settings import get_settings
        from belong.state import from_store
        from belong.training.locate import artifact_surface, resolve_artifact

        spec = store or get_settings().store
        if not spec.startswith(("postgresql://", "postgres://")) and not Path(spec).exists():
            raise ValidationError("store", f"no store at {spec!r} (load one with `belong load` or `belong demo`)")
        pipeline = surfaces.load(surface)
        new_user = _new_user(new_user_locale, new_user_age, new_user_interests)
        request = Request(user, pipeline.surface, k=k, new_user=new_user, seed=seed)
        if models is not None and not Path(models).is_dir():
            raise ValidationError("models", f"{models} is not a directory (write one with `belong train`)")
        artifact = resolve_artifact(models, spec)
        entry = artifact_surface(artifact, pipeline.name, pipeline.surface.value) if artifact else None
        with err.status(f"reading {spec}") as status:
            t0 = time.perf_counter()
            state = from_store(spec)
            load_s = time.perf_counter() - t0
            state.profile(request)  # unknown user: fail before training anything
            t0 = time.perf_counter()
            if artifact is not None and entry is not None:
                from belong.training.artifact import load_pipeline

                status.update(f"loading {pipeline.surface.value} from {artifact}")
                pipeline = load_pipeline(artifact, entry, state)
            else:
                where = f"in {artifact.parent}" if artifact else "for this store"
                err.print(f"[yellow]no trained artifact of {surface!r} {where}: fitting every source now (slow); "
                          f"`belong train --store {spec} --surface {surface}` makes one[/]")
                status.update(f"preparing {pipeline.surface.value} sources (training models)")
                pipeline.fit(state)
            fit_s = time.perf_counter() - t0
        response = pipeline.run(request)
        answers = [pipeline.why_not(request, item) for item in why_not]
        if as_json:
            out = {"surface": response.surface, "user": response.user_id, "new_user": request.new_user is not None
                   and request.user_id not in state.users.index,
                   "items": [{**it.to_dict(), "name": pipeline.item_label(it.index)} for it in response.items],
                   "artifact": str(artifact) if entry else None,
                   "timing_s": {"load": round(load_s, 3), "prepare": round(fit_s, 3)}}
            if trace:
                out["trace"] = response.trace.to_dict(pipeline.item_id)
            if answers:
                out["why_not"] = [a.to_dict() for a in answers]
            typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            return
        how = f"loaded from {artifact}" if entry else "prepared"
        err.print(f"state built in {load_s:.2f}s, sources {how} in {fit_s:.2f}s")
        console = Console()
        _print_response(console, pipeline, response, trace)
        for a in answers:
            console.print(f"[bold]why not {a.item}?[/] {a.verdict}: {a.text}")

    @bench.command("sources")
    def bench_sources(
        users: int = typer.Option(100_000, "--users", help="Simulated users."),
        communities: int = typer.Option(20_000, "--communities", help="Simulated communities."),
        requests: int = typer.Option(300, "--requests", help="Requests (test users) measured per source."),
        holdout_days: float = typer.Option(14.0, "--holdout-days", help="Joins in the last N days are held out."),
        seed: int = typer.Option(0, "--seed"),
        dataset: str = typer.Option(None, "--dataset", help="Measure on a dataset spec (e.g. lightgcn:DIR) with its "
                                    "default split instead of a simulated world."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """Per source: p50/p99 ms per request and candidate recall@200 of later joins; union and blend too."""
        from belong.bench.sources import bench_sources as run

        result = run(users, communities, requests=requests, holdout_days=holdout_days, seed=seed, dataset=dataset,
                     console=err)
        if as_json:
            typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        else:
            Console().print_json(orjson.dumps(result).decode())

    @bench.command("ann")
    def bench_ann(
        users: int = typer.Option(100_000, "--users", help="Simulated users."),
        communities: int = typer.Option(20_000, "--communities", help="Simulated communities."),
        sizes: str = typer.Option("1000,5000,20000,100000", "--sizes",
                                  help="Catalogue sizes to measure (the factor table is tiled/subsampled)."),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """Recall@100 and latency of each ANN backend on real iALS factors, and which one is chosen per size."""
        from belong.bench.sources import bench_ann as run

        try:
            size_list = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise ValidationError("sizes", f"must be comma-separated integers, got {sizes!r}") from None
        result = run(users, communities, size_list, seed=seed, console=err)
        if as_json:
            typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        else:
            Console().print_json(orjson.dumps(result).decode())


