"""Offline evaluation commands: ``belong evaluate`` and ``belong bench evaluate``.

``belong evaluate --dataset SPEC --model NAME [--model NAME ...] [--protocol P] [--k 10,20,50] [--json]``
loads ``SPEC`` (``lightgcn:DIR``, ``ml-100k``, ``hetrec-lastfm``, ``edges:FILE.csv`` or a store), splits it by the
protocol (default: ``hide-edges`` for friendship graphs, ``given`` when the data carries its own split, else
``temporal``), fits every model and prints the metrics (JSON shape: :mod:`belong.evaluation.harness`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from belong.errors import ValidationError
from belong.evaluation.modelspec import (
    model_params,
    parse_model_params,
    parse_value,
    resolve_models,
    tuned_keys,
)

_PROTO_PARAM_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_ks(raw: str) -> list[int]:
    """``"10,20,50"`` -> ``[10, 20, 50]`` (sorted, distinct, each >= 1)."""
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValidationError("k", f"must be a comma-separated list of positive integers, got {raw!r}")
        out.append(int(part))
    if not out:
        raise ValidationError("k", "must name at least one cut-off")
    return sorted(set(out))






def parse_protocol_params(raw: list[str]) -> dict[str, Any]:
    """``["fraction=0.3", "seed=1"]`` -> ``{"fraction": 0.3, "seed": 1}``."""
    out: dict[str, Any] = {}
    for item in raw:
        m = _PROTO_PARAM_RE.match(item.strip())
        if not m:
            raise ValidationError("protocol-param", f"must look like NAME=VALUE (e.g. fraction=0.3), got {item!r}")
        out[m.group(1)] = parse_value(m.group(2))
    return out








def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _print_table(result: dict[str, Any]) -> None:
    """A compact human summary at the headline K (every metric, CIs and segments are in ``--json``)."""
    rows = result.get("results") or [result]
    k = result["primary_k"]
    names = [f"recall@{k}", f"ndcg@{k}", f"hr@{k}", f"coverage@{k}"]
    table = Table(title=f"{result['dataset']}: {result['protocol']['name']}")
    for col in ("model", *names, "fit s", "score s"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for r in rows:
        cells = [f"{r['metrics'][n]:.4f}" if r["metrics"].get(n) is not None else "-" for n in names]
        table.add_row(r["model"], *cells, f"{r['fit_seconds']:.2f}", f"{r['score_seconds']:.2f}")
    Console(width=120).print(table)
    for pair, p in result.get("paired", {}).items():
        typer.echo(f"{pair}: {p['metric']} diff {p['mean_diff']:+.4f}, paired t p={p['t_pvalue']:.3g}, "
                   f"Wilcoxon p={p['wilcoxon_pvalue']:.3g}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``evaluate`` to the main app and ``evaluate`` to the bench sub-app."""
    err = Console(stderr=True)

    @app.command("evaluate")
    def evaluate_cmd(
        dataset: str = typer.Option(..., "--dataset", "-d",
                                    help="lightgcn:DIR | ml-100k | hetrec-lastfm | edges:FILE.csv | a store"),
        model: list[str] = typer.Option(..., "--model", "-m",
                                        help="Model name(s); repeat or comma-separate; 'all' = every baseline."),
        protocol: str = typer.Option(None, "--protocol", "-p",
                                     help="given | random-holdout | temporal | loo-sampled | hide-edges"),
        k: str = typer.Option(None, "--k", help="Cut-offs, e.g. 10,20,50 (default; 5,10 for loo-sampled)."),
        param: list[str] = typer.Option([], "--param", help="Model parameter MODEL.NAME=VALUE (repeatable)."),
        protocol_param: list[str] = typer.Option([], "--protocol-param",
                                                 help="Protocol parameter NAME=VALUE, e.g. fraction=0.3."),
        events: str = typer.Option(None, "--events", help="Event types that are interactions (default: join)."),
        tune: int = typer.Option(0, "--tune", min=0, help="Tune each model with N trials on a validation "
                                 "split carved from the training part."),
        seed: int = typer.Option(0, "--seed", help="Seed of bootstrap CIs and of tuning."),
        report: Path = typer.Option(None, "--report", help="Write a self-contained HTML report here."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """Evaluate one or more models offline on a dataset under a protocol."""
        from belong.evaluation import harness, splitters
        from belong.evaluation.data import load_interactions

        overrides = parse_model_params(param)
        proto_params = parse_protocol_params(protocol_param)
        event_types = [e.strip() for e in events.split(",") if e.strip()] if events else None
        with err.status(f"loading {dataset}"):
            data = load_interactions(dataset, event_types)
        names = resolve_models(model, bool(data.meta.get("square")))
        proto = protocol or splitters.default_protocol(data)
        ks = parse_ks(k) if k else list(harness.SAMPLED_KS if proto in splitters.SAMPLED else harness.DEFAULT_KS)
        models = model_params(names, overrides, tuned_keys(str(data.meta.get("dataset", dataset)), proto))
        with err.status(f"splitting ({proto})"):
            split = splitters.make_split(proto, data, **proto_params)
        with _progress(err) as bar:
            tasks: dict[str, Any] = {}

            def on_progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"{name}: fit, rank users", total=total)
                bar.update(tasks[name], completed=done)

            def on_trial(name: str) -> None:
                key = f"tune:{name}"
                if key not in tasks:
                    tasks[key] = bar.add_task(f"{name}: tuning", total=tune)
                bar.advance(tasks[key])

            run = harness.run(data, split, models, ks, tune_trials=tune, seed=seed, progress=on_progress,
                              on_trial=on_trial)
        result = run.to_dict()
        if report is not None:
            from belong.evaluation.report import write_report

            write_report(report, result)
            err.print(f"report written to {report}")
        if as_json:
            typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
        else:
            _print_table(result)

    @bench.command("evaluate")
    def bench_evaluate_cmd(
        dataset: str = typer.Option("lightgcn:ml-1m-lcfn-split", "--dataset", "-d",
                                    help="A dataset with its own split (default: the ML-1M LCFN split)."),
        models: str = typer.Option("ease,itemknn,rp3beta,ials,most-popular", "--models",
                                   help="Comma-separated models to time."),
        k: int = typer.Option(20, "--k", min=1, help="Cut-off of the timed top-K and recall."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
        pipeline: str = typer.Option("", "--pipeline",
                                     help="Instead of --models: time pipeline:SURFACE's batched evaluation against "
                                          "one request per user (same fit, same users; belong.bench."
                                          "evaluate_pipeline)."),
        users: int = typer.Option(500, "--users", help="With --pipeline: test users timed (a seeded sample; 0: all)."),
        batch_size: int = typer.Option(256, "--batch-size", help="With --pipeline: users per batch."),
    ) -> None:
        """Time the harness (fit + batched fused top-K + metrics) against a plain numpy reference, same run."""
        from belong.bench.evaluate import bench_evaluate

        if pipeline:
            from belong.bench.evaluate_pipeline import bench_pipeline

            with err.status(f"pipeline:{pipeline}: fit, then per request and batched"):
                out = bench_pipeline(dataset, pipeline, users=users, k=k, batch_size=batch_size)
            if as_json:
                typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            else:
                typer.echo(f"pipeline:{pipeline}: {out['batch_ms_per_user']:.2f} ms/user batched vs "
                           f"{out['per_request_ms_per_user']:.2f} per request (x{out['speedup']:.1f}), "
                           f"identical={out['identical_lists']}, max metric diff {out['max_abs_metric_diff']:.3g}")
            return
        names = resolve_models([models], square=False)
        with _progress(err) as bar:
            task = bar.add_task("benchmarking", total=len(names))
            result = bench_evaluate(dataset, names, k, on_model=lambda name: bar.advance(task))
        if as_json:
            typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        else:
            for name, r in result["models"].items():
                typer.echo(f"{name}: {r['seconds']:.2f} s vs reference {r['reference_seconds']:.2f} s "
                           f"(x{r['speedup']:.1f}), recall@{k} {r['recall']:.4f} identical={r['identical_recall']}")
