"""``belong bench experiments``: the experiment statistics on simulated A/A, A/B and SRM runs whose truth is known."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("experiments")
    def bench_experiments_cmd(
        runs: int = typer.Option(500, "--runs", min=2, help="Simulated experiments of each kind (A/A, A/B)."),
        days: int = typer.Option(28, "--days", min=1, help="Days per experiment, read at the end of each."),
        users: int = typer.Option(4000, "--users", min=20, help="Users per experiment."),
        effect: float = typer.Option(0.15, "--effect", help="Planted relative effect of the A/B runs."),
        n_tune: float = typer.Option(None, "--n-tune", help="Always-valid tuning (default: expected exposed users)."),
        seed: int = typer.Option(0, "--seed"),
        world_users: int = typer.Option(10_000, "--world-users", min=0, help="Users of the belong-simulated world "
                                        "CUPED is also measured on (0: skip)."),
        report: Path = typer.Option(None, "--report", help="Also write an HTML report (plots by day) here."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """False-positive rates, power, SRM and CUPED figures (see belong/bench/experiments.py for the model)."""
        import orjson

        from belong.bench.experiments import bench_experiments
        from belong.errors import ValidationError

        if n_tune is not None and n_tune <= 0:
            raise ValidationError("--n-tune", f"must be positive, got {n_tune}")
        out = bench_experiments(runs, days, users, effect=effect, n_tune=n_tune, seed=seed, world_users=world_users)
        if report is not None:
            from belong.bench.experiments_report import write_report

            Console(stderr=True).print(f"report written to {write_report(report, out)}")
        if as_json:
            typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            return
        aa, ab, cu = out["aa"], out["ab"], out["cuped"]
        typer.echo(f"A/A ({runs} runs x {days} days): fixed horizon at end {aa['fixed_horizon_read_once_at_end']:.3f}, "
                   f"always-valid daily {aa['always_valid_read_daily_ever_excludes_0']:.3f}, "
                   f"naive daily {aa['naive_fixed_horizon_read_daily_ever_rejects']:.3f}")
        typer.echo(f"A/B power (+{effect:.0%}): "
                   + ", ".join(f"{k} {v:.3f}" for k, v in ab["power"].items()))
        for row in out["srm"]["by_exposures"]:
            typer.echo(f"SRM at {row['exposures']} exposures: 50/50 not flagged {row['true_50_50_not_flagged']:.3f}, "
                       f"52/48 flagged {row['assigned_52_48_flagged']:.3f}")
        typer.echo(f"CUPED variance reduction {cu['variance_reduction_mean']:.1%}; 95% CI width "
                   f"{cu['ci_width_before_mean']:.2f} -> {cu['ci_width_after_mean']:.2f}")
        if cu["simulated_world"]:
            sw = cu["simulated_world"]
            typer.echo(f"CUPED on belong's simulated world: variance reduction {sw['variance_reduction_mean']:.1%}; "
                       f"95% CI width {sw['ci_width_before_mean']:.3f} -> {sw['ci_width_after_mean']:.3f}")
