"""``belong experiment create FILE.toml | list | show NAME | stop NAME | analyze NAME [--json] [--report F] |
force NAME USER ARM | cluster NAME`` (``--store S`` on each). See docs/EXPERIMENTS.md."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from belong.settings import get_settings

err = Console(stderr=True)
out = Console()
STORE = typer.Option(None, "--store", help="Store: a directory or a postgresql:// URL (default: BELONG_STORE).")


def _spec(store: str | None) -> str:
    return str(store or get_settings().store)


def _fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("exposure")
    def bench_exposure(
        users: int = typer.Option(5_000, help="Simulated users."),
        communities: int = typer.Option(500, help="Simulated communities."),
        store: Path = typer.Option(Path(".belong/bench-exposure"), help="Where the simulated store is kept."),
        working_set: int = typer.Option(500, help="Users timed (their lists cached first)."),
        rounds: int = typer.Option(10, min=1, help="Interleaved rounds over the working set per condition."),
        seed: int = typer.Option(0),
    ) -> None:
        """The hot path's cost of experiments: cached answers timed with no router, an idle one, and a running
        experiment, interleaved in one process (JSON)."""
        from belong.bench.exposure import run

        with err.status("timing the hot path with and without experiments"):
            result = run(store, users=users, communities=communities, seed=seed, working_set=working_set,
                         rounds=rounds)
        typer.echo(orjson.dumps(result).decode())

    exp_app = typer.Typer(help="Online experiments: declare, list, stop, analyse.", no_args_is_help=True)
    app.add_typer(exp_app, name="experiment")

    @exp_app.command("create")
    def create_cmd(file: Path = typer.Argument(..., help="The declaration (TOML, docs/EXPERIMENTS.md)."),
                   store: str = STORE, as_json: bool = typer.Option(False, "--json")) -> None:
        """Validate a declaration and store it (running from its start)."""
        from belong.experiments.declaration import from_toml
        from belong.experiments.store import open_experiments

        decl = from_toml(file)
        with open_experiments(_spec(store)) as st:
            exp = st.create(decl)
        if as_json:
            typer.echo(orjson.dumps(exp.describe()).decode())
            return
        lo, hi = exp.layer_range
        arms = ", ".join(f"{a.name} {a.weight:g}" for a in decl.arms)
        err.print(f"[bold]created[/] {exp.name} (version {exp.version}): arms {arms}; layer {decl.layer!r} "
                  f"buckets [{lo}, {hi})")

    @exp_app.command("list")
    def list_cmd(store: str = STORE, as_json: bool = typer.Option(False, "--json")) -> None:
        """Every experiment of the store."""
        from belong.experiments.store import open_experiments

        with open_experiments(_spec(store)) as st:
            exps = st.experiments()
        if as_json:
            typer.echo(orjson.dumps([e.describe() for e in exps]).decode())
            return
        table = Table("name", "status", "version", "surface", "unit", "layer", "arms", "primary metric")
        for e in exps:
            d = e.declaration
            table.add_row(e.name, e.status, str(e.version), d.surface, d.unit, d.layer,
                          ", ".join(a.name for a in d.arms), d.primary_metric)
        out.print(table)

    @exp_app.command("show")
    def show_cmd(name: str, store: str = STORE) -> None:
        """One experiment and its version history (JSON)."""
        from belong.experiments.store import open_experiments

        with open_experiments(_spec(store)) as st:
            exp = st.get(name)
            typer.echo(orjson.dumps({**exp.describe(), "history": st.history(name)},
                                    option=orjson.OPT_INDENT_2).decode())

    @exp_app.command("stop")
    def stop_cmd(name: str, store: str = STORE) -> None:
        """Stop an experiment now (a new version; its layer range is freed)."""
        from belong.experiments.store import open_experiments

        with open_experiments(_spec(store)) as st:
            exp = st.stop(name)
        err.print(f"[bold]stopped[/] {exp.name} (version {exp.version})")

    @exp_app.command("force")
    def force_cmd(name: str, user: str, arm: str, store: str = STORE) -> None:
        """Put USER in ARM of NAME whatever its bucket (QA)."""
        from belong.experiments.store import open_experiments

        with open_experiments(_spec(store)) as st:
            st.force(name, user, arm)
        err.print(f"{user} is in {name}/{arm}")

    @exp_app.command("cluster")
    def cluster_cmd(name: str, store: str = STORE,
                    method: str = typer.Option("leiden", "--method", help="leiden (igraph + leidenalg) or ego."),
                    seed: int = typer.Option(0, "--seed"),
                    resolution: float = typer.Option(1.0, "--resolution", help="Leiden resolution.")) -> None:
        """Cluster the store's friend graph and save user -> cluster with the experiment (unit = cluster)."""
        from belong.experiments.clusters import cluster_users
        from belong.experiments.store import open_experiments

        spec = _spec(store)
        with open_experiments(spec) as st:
            st.get(name)
            with err.status("clustering the friend graph"):
                clusters, report = cluster_users(spec, method=method, seed=seed, resolution=resolution)
            st.save_clusters(name, clusters, report)
        typer.echo(orjson.dumps(report).decode())

    @exp_app.command("analyze")
    def analyze_cmd(name: str, store: str = STORE, as_json: bool = typer.Option(False, "--json"),
                    report: Path = typer.Option(None, "--report", help="Write an HTML report here."),
                    as_of: str = typer.Option(None, "--as-of", help="Analyse as of this time (ISO-8601)."),
                    alpha: float = typer.Option(0.05, "--alpha", min=0.0001, max=0.5)) -> None:
        """Per arm and per day: exposures, every metric's effect (fixed-horizon and always-valid intervals,
        CUPED), SRM."""
        from belong.domain import parse_ts
        from belong.experiments.analyze import analyze

        with err.status(f"analysing {name}"):
            result = analyze(_spec(store), name, as_of_us=parse_ts(as_of, "as_of") if as_of else None, alpha=alpha)
        if report is not None:
            from belong.experiments.report import write

            err.print(f"[bold]wrote[/] {write(result, report)}")
        if as_json:
            typer.echo(orjson.dumps(result).decode())
            return
        srm = result["srm"]
        err.print(f"{name}: {result['status']}, as of {result['as_of']}; SRM p = {_fmt(srm.get('p_value'))}"
                  + (" [bold red]FLAGGED[/]" if srm.get("flagged") else ""))
        arms = Table("arm", "weight", "units", "users", "exposures")
        for a in result["arms"]:
            arms.add_row(a["arm"], _fmt(a["weight"]), str(a["units"]), str(a["users"]), str(a["exposures"]))
        out.print(arms)
        table = Table("metric", "arm", "control", "treatment", "effect", "95% CI", "always-valid CI", "p", "CUPED")
        for metric, effects in result["metrics"].items():
            for e in effects:
                table.add_row(metric, str(e.get("arm")), _fmt(e.get("control_mean")), _fmt(e.get("mean")),
                              _fmt(e.get("effect")), f"[{_fmt(e.get('ci_low'))}, {_fmt(e.get('ci_high'))}]",
                              f"[{_fmt(e.get('av_ci_low'))}, {_fmt(e.get('av_ci_high'))}]", _fmt(e.get("p_value")),
                              _fmt(e.get("variance_reduction")) if e.get("cuped_used") else "–")
        out.print(table)
        for metric, why in result.get("skipped_metrics", {}).items():
            err.print(f"  {metric}: not estimated ({why})")
