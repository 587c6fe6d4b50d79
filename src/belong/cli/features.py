"""``belong features ...``: list declared features, materialise the online store, build training sets;
``belong bench features``: one-round-trip reads against a per-entity baseline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from belong.errors import ValidationError

_err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_err, transient=False,
    )


def _redis_url(redis: str | None) -> str | None:
    if redis is not None:
        return redis
    from belong.settings import get_settings

    return get_settings().redis_url


def list_features(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List every declared feature: entity, type, default, freshness."""
    from belong.features.registry import DECLARED

    rows = [
        {"name": s.name, "entity": s.entity, "dtype": s.dtype, "default": s.default, "freshness_s": s.freshness_s,
         "model_input": s.model_input, "request_time": s.request_time, "description": s.description}
        for s in DECLARED
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        flag = " (request time)" if r["request_time"] else "" if r["model_input"] else " (support)"
        typer.echo(f"{r['entity']:15} {r['name']:34} {r['dtype']:6} {r['description']}{flag}")


def materialize_cmd(
    store: str = typer.Option(None, "--store", help="event store: directory or postgresql:// URL (BELONG_STORE)"),
    redis: str = typer.Option(None, "--redis", help="Redis URL of the online store (BELONG_REDIS_URL); "
                              "when neither is set, an in-process store: a dry run that measures the work"),
    as_of: str = typer.Option(None, "--as-of", help="ISO time or epoch seconds (default: end of the log)"),
    prefix: str = typer.Option("belong:features:", "--prefix", help="Redis key prefix"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Fold the event log up to --as-of and write every user, community and content row to the online store."""
    from belong.domain import parse_ts
    from belong.eventlog import open_store
    from belong.features.materialize import default_as_of, materialize
    from belong.features.online import open_feature_store

    as_of_us = None if as_of is None else parse_ts(as_of, "as_of")
    with open_store(store, create=False) as events, open_feature_store(_redis_url(redis), prefix=prefix) as fs:
        total = events.count() if as_of_us is None else None  # the whole log, or an unknown part of it
        as_of_us = default_as_of(events) if as_of_us is None else as_of_us
        with _progress() as bar:
            tasks = {"events": bar.add_task("fold events", total=total)}

            def progress(stage: str, n: int, total: int | None) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"write {stage} rows", total=total)
                bar.advance(tasks[stage], n)

            report = materialize(events, fs, as_of_us, progress=progress)
        out = {**report.to_dict(), "store": events.url, "feature_store": fs.url}
    if as_json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(
            f"materialised {out['users']} users, {out['communities']} communities, {out['content']} items "
            f"from {out['events']} events as of {out['as_of']} into {out['feature_store']} "
            f"(fold {out['fold_seconds']} s, write {out['write_seconds']} s)"
        )


def build_cmd(
    surface: str = typer.Option(..., "--surface", help="communities, people or content"),
    out: Path = typer.Option(..., "--out", help="Parquet file to write"),
    store: str = typer.Option(None, "--store", help="event store: directory or postgresql:// URL (BELONG_STORE)"),
    candidates: Path = typer.Option(None, "--candidates", help="Parquet candidates table (user_id, item_id, "
                                    "ts_us, src_<source>_score, ...) instead of the log's impressions"),
    window_days: float = typer.Option(7.0, "--window-days", help="label window after each row, days"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Build a point-in-time training set (features as of each row, labels after it) as Parquet."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from belong.eventlog import open_store
    from belong.features.training import build_training_set

    if window_days <= 0:
        raise ValidationError("window_days", f"must be positive, got {window_days}")
    rows = None
    if candidates is not None:
        if not candidates.is_file():
            raise ValidationError("candidates", f"no such file: {candidates}")
        try:
            rows = pq.read_table(candidates)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValidationError("candidates", f"cannot read Parquet: {exc}") from None
    t0 = time.perf_counter()
    with open_store(store, create=False) as events, _progress() as bar:
        task = bar.add_task("training rows", total=None if rows is None else rows.num_rows)
        table = build_training_set(
            events, surface, rows, window_s=round(window_days * 86_400),
            progress=lambda n: bar.update(task, completed=n),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    summary = {
        "out": str(out), "rows": table.num_rows, "columns": table.num_columns,
        "positives": int(pc.sum(pc.equal(table["label"], 1)).as_py() or 0),
        "strong_negatives": int(pc.sum(pc.equal(table["label"], -1)).as_py() or 0),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    typer.echo(json.dumps(summary) if as_json else
               f"wrote {summary['rows']} rows x {summary['columns']} columns to {out} "
               f"({summary['positives']} positive, {summary['strong_negatives']} strong negative)")


def bench_features(
    redis: str = typer.Option(None, "--redis", help="Redis URL (BELONG_REDIS_URL); in-process when unset"),
    entities: int = typer.Option(2000, "--entities", help="community rows to write"),
    candidates: int = typer.Option(100, "--candidates", help="candidates per request"),
    requests: int = typer.Option(200, "--requests", help="requests to time"),
) -> None:
    """Request hydration: one pipelined read of user + candidates vs one read per entity (baseline). JSON."""
    import random

    from belong.features.online import open_feature_store
    from belong.features.registry import defaults

    if entities < 1 or candidates < 1 or requests < 1 or candidates > entities:
        raise ValidationError("entities", "need entities >= candidates >= 1 and requests >= 1")
    prefix = f"belong:bench:{time.time_ns()}:"
    rng = random.Random(0)
    with open_feature_store(_redis_url(redis), prefix=prefix) as fs:
        try:
            row = defaults("community") | {"community_size": 10, "community_tags": ["a", "b"],
                                           "community_neighbors": {f"c{i}": 0.1 for i in range(50)}}
            fs.write("community", {f"c{i}": row for i in range(entities)}, 1)
            fs.write("user", {"u": defaults("user")}, 1)
            reqs = [[("user", "u")] + [("community", f"c{j}") for j in rng.sample(range(entities), candidates)]
                    for _ in range(requests)]

            def timed(fn) -> list[float]:
                lat = []
                for r in reqs:
                    t = time.perf_counter()
                    fn(r)
                    lat.append((time.perf_counter() - t) * 1000)
                return sorted(lat)

            batched = timed(fs.read_many)
            baseline = timed(lambda r: [fs.read(e, k) for e, k in r])
        finally:
            fs.clear()
        url = fs.url

    def summary(lat: list[float]) -> dict[str, float]:
        return {"p50_ms": round(lat[len(lat) // 2], 3), "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 3),
                "mean_ms": round(sum(lat) / len(lat), 3)}

    b, s = summary(batched), summary(baseline)
    typer.echo(json.dumps({
        "bench": "features.read_many", "feature_store": url, "candidates": candidates, "requests": requests,
        "read_many": b, "baseline_one_read_per_entity": s,
        "speedup_p50": round(s["p50_ms"] / max(b["p50_ms"], 1e-9), 2),
    }))


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``belong features`` (list, materialize, build) and ``belong bench features``."""
    features = typer.Typer(help="Declared features, online store materialisation, training sets.",
                           no_args_is_help=True)
    features.command("list")(list_features)
    features.command("materialize")(materialize_cmd)
    features.command("build")(build_cmd)
    app.add_typer(features, name="features")
    bench.command("features")(bench_features)
