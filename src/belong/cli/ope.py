"""``belong ope`` (off-policy evaluation of a surface or artifact from a store's logged lists) and
``belong bench ope`` (belong's estimators against Open Bandit Pipeline on the same data)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from belong.errors import ValidationError

err = Console(stderr=True)


def _echo_estimates(title: str, part: dict | None) -> None:
    if not part:
        return
    typer.echo(title)
    for name, e in part.items():
        if e["value"] is None:
            typer.echo(f"  {name:24s} refused")
        else:
            ess = f"ESS {e['ess']:.1f}, max weight {e['max_weight']:.3g}" if e["ess"] is not None else ""
            se = f" ± {e['se']:.4f}" if e["se"] is not None else ""
            typer.echo(f"  {name:24s} {e['value']:.5f}{se}  {ess}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("ope")
    def ope_cmd(
        policy: str = typer.Option(..., "--policy", help="The new policy: a catalogue surface, a surface TOML file "
                                   "or a `belong train` artifact directory."),
        store: str = typer.Option(None, "--store", help="Store with logged impressions (default: BELONG_STORE)."),
        logging: str = typer.Option("communities", "--logging", help="The surface that logged the lists (its "
                                    "exploration slot and support)."),
        window_days: float = typer.Option(7.0, "--window-days", help="A shown item earns 1 when acted on within."),
        max_lists: int = typer.Option(2000, "--max-lists", min=1, help="Evaluate on the first N logged lists."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """Estimate a new policy's value from logged lists: IPS, SNIPS, DM, DR at the exploration slot and
        slate estimators for whole lists, with effective sample sizes; refused where logging never went."""
        import orjson
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from belong.experiments.ope_data import evaluate_store
        from belong.settings import get_settings

        spec = store or get_settings().store
        if not spec.startswith(("postgresql://", "postgres://")) and not Path(spec).exists():
            raise ValidationError("store", f"no store at {spec!r}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("running both policies on the logged requests", total=None)
            out = evaluate_store(spec, policy, logging=logging, window_days=window_days, max_lists=max_lists,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
        if as_json:
            typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            return
        typer.echo(f"{out['slot_rounds']} slot rounds of {out['logged_lists']} lists; logged value at the slot "
                   f"{out['logged_value_at_slot']}")
        _echo_estimates(f"exploration slot (position {out['slot_position']})", out["slot"])
        _echo_estimates("whole lists", out["lists"])
        for w in out["warnings"]:
            err.print(f"[yellow]refused:[/] {w}")

    @bench.command("ope")
    def bench_ope_cmd(
        rounds: int = typer.Option(5000, "--rounds", min=10, help="Logged rounds at the exploration slot."),
        lists: int = typer.Option(2000, "--lists", min=10, help="Logged lists for the slate estimators."),
        obp_python: str = typer.Option(None, "--obp-python", help="Interpreter with obp 0.5.7 installed "
                                       "(default: BELONG_OBP_PYTHON)."),
        seed: int = typer.Option(0, "--seed"),
        keep: Path = typer.Option(None, "--keep", help="Keep the dumped data and obp script in this folder."),
        store: str = typer.Option(None, "--store", help="Compare on this store's logged lists (with --policy) "
                                  "instead of generated data."),
        policy: str = typer.Option(None, "--policy", help="With --store: the evaluation policy (as `belong ope`)."),
        logging: str = typer.Option("communities", "--logging", help="With --store: the logging surface."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """belong's off-policy estimators against obp's on the same logged data (max abs difference, goal 1e-6)."""
        import orjson

        from belong.bench.ope import bench_ope

        with err.status("estimating (belong, then obp in its own interpreter)"):
            out = bench_ope(rounds, lists, seed=seed, python=obp_python, keep=keep, store=store, policy=policy,
                            logging=logging)
        if as_json:
            typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            return
        for name, e in out["belong"].items():
            ref = (out.get("obp") or {}).get(name)
            mine = "refused" if e["value"] is None else f"{e['value']:.10f}"
            typer.echo(f"{name:24s} belong {mine}" + (f"  obp {ref:.10f}" if ref is not None else ""))
        if out.get("obp"):
            typer.echo(f"max abs difference {out['max_abs_diff']:.3g} (goal 1e-6)")
        else:
            typer.echo(out["note"])
