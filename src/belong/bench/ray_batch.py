"""``belong bench ray``: wall time of each batch job in process and on Ray with 1, 2, … workers, in one run.

On one world (simulated here, or a store given): ``train`` (the ranked communities surface: training lists and
the order model; the sources' fit is the same work on every engine), ``score`` (top-20 of every person, or the
first ``limit``) and ``precompute`` (candidate lists into Redis, when a Redis URL is given). Every Ray figure is
given against the in-process one of the same run (``ratio_vs_inprocess``), with the cluster's start time apart,
and checked: the scored rows of every engine against the in-process file, the trained ranker's validation NDCG
against the in-process one. Per-million figures scale the per-person time linearly (the jobs are per person)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from belong.batch.engine import Engine, parse_engine

JOBS = ("train", "score", "precompute")


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress:
        progress(msg)


def simulate_store(path: Path, users: int, communities: int, seed: int) -> None:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    with open_store(path) as st:
        for part in simulate(users, communities, seed=seed):
            write_world(st, part, progress=False)


def _engines(workers: list[int]) -> list[Engine]:
    return [parse_engine("inprocess")] + [parse_engine("ray", w) for w in workers]


def _key(engine: Engine) -> str:
    return f"ray_{engine.workers}" if engine.is_ray else "inprocess"


def _ndcg(result: dict[str, Any]) -> float | None:
    for entry in result.get("surfaces", {}).values():
        ranker = entry.get("ranker", {}).get("metrics", {}).get("ranker", {})
        if "ndcg@20" in ranker:
            return float(ranker["ndcg@20"])
    return None


def bench_ray(users: int, workers: list[int], directory: Path, *, store: str | None = None,
              communities: int | None = None, surface: str = "communities_ranked", limit: int | None = None,
              redis_url: str | None = None, jobs: tuple[str, ...] = JOBS, seed: int = 0,
              models: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the jobs on every engine; returns the JSON report (see the module docstring). ``models``: an existing
    artifact directory for ``score`` and ``precompute`` (default: the in-process run's of ``train``)."""
    from belong.batch.score import score
    from belong.batch.train import train

    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "ray", "workers": workers, "cpus": os.cpu_count(),
                           "load_average_start": [round(x, 2) for x in os.getloadavg()], "jobs": {}}
    if store is None:
        store = str(directory / "store")
        n_comm = communities or max(40, users // 50)
        t0 = time.perf_counter()
        _say(progress, f"simulating {users:,} people, {n_comm:,} communities")
        simulate_store(Path(store), users, n_comm, seed)
        out["world"] = {"users": users, "communities": n_comm, "seed": seed,
                        "simulate_seconds": round(time.perf_counter() - t0, 3)}
    else:
        out["world"] = {"store": store}
    trained = {e: directory / f"models_{_key(e)}" for e in _engines(workers)}
    base = models or trained[_engines(workers)[0]]  # score and precompute use the in-process artifact
    if "train" in jobs or not base.is_dir():
        rows: dict[str, Any] = {}
        for engine in _engines(workers):
            _say(progress, f"train on {_key(engine)}")
            shutil.rmtree(trained[engine], ignore_errors=True)
            t0 = time.perf_counter()
            res = train(store, trained[engine], [surface], engine, snapshot=not engine.is_ray,
                        scratch=str(directory))
            wall = time.perf_counter() - t0 - float(res.get("snapshot", {}).get("seconds", 0.0) or 0.0)
            start = float(res.get("engine", {}).get("cluster_start_seconds", 0.0))
            rows[_key(engine)] = {"seconds": round(wall, 3), "cluster_start_seconds": start,
                                  "seconds_without_start": round(wall - start, 3), "validation_ndcg@20": _ndcg(res),
                                  "order_runs": res.get("engine", {}).get("order_runs", [])}
        out["jobs"]["train"] = rows
    score_users = None
    if "score" in jobs:
        rows = {}
        files: dict[str, Path] = {}
        for engine in _engines(workers):
            _say(progress, f"score on {_key(engine)}")
            files[_key(engine)] = directory / f"scores_{_key(engine)}.parquet"
            t0 = time.perf_counter()
            res = score(store, files[_key(engine)], engine, models_dir=base, limit=limit)
            wall = time.perf_counter() - t0
            score_users = res["users"]
            rows[_key(engine)] = {"seconds": round(wall, 3), "cluster_start_seconds": res["cluster_start_seconds"],
                                  "seconds_without_start": round(wall - res["cluster_start_seconds"], 3),
                                  "rows": res["rows"]}
        ref = pq.read_table(files["inprocess"])
        for key, path in files.items():
            rows[key]["same_rows_as_inprocess"] = bool(pq.read_table(path).equals(ref))
        out["jobs"]["score"] = rows
    if "precompute" in jobs and redis_url:
        import redis

        from belong.batch.precompute import precompute as on_ray
        from belong.domain import Surface
        from belong.serve.precomputed import precompute as here

        rows = {}
        client = redis.Redis.from_url(redis_url)
        for engine in _engines(workers):
            _say(progress, f"precompute on {_key(engine)}")
            prefix = f"belong:bench:ray:{_key(engine)}:"
            t0 = time.perf_counter()
            if engine.is_ray:
                meta = on_ray(store, redis_url, engine, models_dir=base, prefix=prefix, surfaces=[Surface.COMMUNITIES],
                              limit=limit)
            else:
                meta = here(store, redis_url, models_dir=base, prefix=prefix, surfaces=[Surface.COMMUNITIES],
                            limit=limit)
            wall = time.perf_counter() - t0
            start = float(meta.get("cluster_start_seconds", 0.0))
            rows[_key(engine)] = {"seconds": round(wall, 3), "cluster_start_seconds": start,
                                  "seconds_without_start": round(wall - start, 3), "lists": meta["lists"]}
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)
        out["jobs"]["precompute"] = rows
    elif "precompute" in jobs:
        out["jobs"]["precompute"] = {"skipped": "no Redis URL (--redis or BELONG_REDIS_URL)"}
    n_people = {"train": users, "score": score_users or users, "precompute": score_users or users}
    for name, rows in out["jobs"].items():
        if "skipped" in rows:
            continue
        ref_s = rows["inprocess"]["seconds"]
        for row in rows.values():
            row["ratio_vs_inprocess"] = round(row["seconds"] / ref_s, 3) if ref_s else None
            row["ratio_without_start"] = (round(row["seconds_without_start"] / ref_s, 3) if ref_s else None)
            if name != "train":  # per person: linear in the people scored
                row["seconds_per_million_people"] = round(row["seconds_without_start"] / n_people[name] * 1e6, 1)
        if name == "train":
            ref_ndcg = rows["inprocess"].get("validation_ndcg@20")
            for row in rows.values():
                if ref_ndcg is not None and row.get("validation_ndcg@20") is not None:
                    row["ndcg_minus_inprocess"] = round(row["validation_ndcg@20"] - ref_ndcg, 9)
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out
