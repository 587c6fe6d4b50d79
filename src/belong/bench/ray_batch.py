"""``belong bench ray``: each batch job in process and on Ray with 1, 2, … workers, in one run.

On one world (simulated here, or an existing store with ``--store``, and its artifact with ``--models``):
``train`` (the ranked communities surface: training lists and the order model; the sources' fit is the same work
on every engine), ``score`` (top-20 of every person, or of a **sample**: the first ``limit`` active people) and
``precompute`` (communities candidate lists into Redis, same sample, when a Redis URL is given).

Every row gives the wall time (with the cluster's start apart) and the CPU seconds and peak memory of the whole
process tree (this process, the Ray cluster's processes, forks; :mod:`belong.bench.meter`), the load average, and
its ratio to the in-process row of the same run. Each output is checked against the in-process one: the scored
Parquet rows, the stored lists (every list's rows), the trained ranker's validation NDCG. The per-person jobs give
their cost per list and extrapolate it to a million people (linear after the one artifact load)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
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


def _error(exc: BaseException) -> dict[str, Any]:
    text = f"{type(exc).__name__}: {exc}"
    return {"error": text if len(text) <= 600 else text[:600] + " …"}


def _digests(client: Any, prefix: str) -> dict[str, bytes]:
    """``{key without prefix: digest of the stored list's rows}`` for every list under ``prefix`` (the meta and the
    time each list was made left out)."""
    import hashlib

    import orjson

    from belong.serve.precomputed import decode

    keys = [k for k in client.scan_iter(f"{prefix}*", count=1000) if not k.endswith(b":meta")]
    out: dict[str, bytes] = {}
    for i in range(0, len(keys), 1000):
        part = keys[i:i + 1000]
        for key, raw in zip(part, client.mget(part), strict=True):
            if raw is not None:
                rows = decode(raw)[1]
                out[key.decode()[len(prefix):]] = hashlib.blake2b(orjson.dumps(rows), digest_size=16).digest()
    return out


def _per_list(row: dict[str, Any], lists: int, load_s: float) -> None:
    """Per-list cost of a sampled job, and its extrapolation to a million people (one list each): the time after
    the artifact load (``load_s``: the in-process load, which each Ray worker repeats in parallel) scales with the
    people; the load does not."""
    run = row["seconds_without_start"]
    row["lists"] = lists
    row["ms_per_list"] = round(run / max(lists, 1) * 1e3, 3)
    row["cpu_ms_per_list"] = round(row["cpu_seconds"] / max(lists, 1) * 1e3, 3)
    after = run - load_s
    if after <= 0:  # the load measured in process (at another moment's load average) exceeds this whole run
        row["ms_per_list_after_load"] = row["seconds_per_million_people"] = None
        return
    row["ms_per_list_after_load"] = round(after / max(lists, 1) * 1e3, 3)
    row["seconds_per_million_people"] = round(after / max(lists, 1) * 1e6 + load_s, 1)


def bench_ray(users: int, workers: list[int], directory: Path, *, store: str | None = None,
              communities: int | None = None, surface: str = "communities_ranked", limit: int | None = None,
              redis_url: str | None = None, jobs: tuple[str, ...] = JOBS, seed: int = 0,
              models: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the jobs on every engine; returns the JSON report (see the module docstring). ``models``: an existing
    artifact directory for ``score`` and ``precompute`` (default: the in-process run's of ``train``). A failing
    Ray run (out of memory, say) is reported as its row's ``error`` and the next one runs; a failing in-process
    baseline fails the job."""
    from belong.batch.score import active_users, score
    from belong.batch.train import train
    from belong.bench.meter import TreeMeter

    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "ray", "workers": workers, "cpus": os.cpu_count(),
                           "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "limit": limit,
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
    out["world"]["active_people"] = len(active_users(store))
    engines = _engines(workers)

    def measured(name: str, engine: Engine, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        _say(progress, f"{name} on {_key(engine)}")
        meter = TreeMeter()
        try:
            with meter:
                row = run()
        except Exception as exc:
            if not engine.is_ray:
                raise
            _say(progress, f"{name} on {_key(engine)} failed: {exc}")
            return _error(exc)
        row.update(meter.figures())
        start = float(row.get("cluster_start_seconds", 0.0))
        row["seconds_without_start"] = round(row["seconds"] - start, 3)
        if progress:  # each row as soon as it is measured: a long run stopped early keeps its figures
            import orjson

            _say(progress, f"{name} on {_key(engine)}: " + orjson.dumps(row).decode())
        return row

    trained = {e: directory / f"models_{_key(e)}" for e in engines}
    base = models or trained[engines[0]]  # score and precompute use the in-process artifact
    if "train" in jobs or not base.is_dir():
        rows: dict[str, Any] = {}
        # a snapshot beside the in-process artifact only when score / precompute will load it
        snap = models is None and bool({"score", "precompute"} & set(jobs))
        for engine in engines:
            shutil.rmtree(trained[engine], ignore_errors=True)

            def run_train(engine: Engine = engine) -> dict[str, Any]:
                t0 = time.perf_counter()
                res = train(store, trained[engine], [surface], engine, snapshot=snap and not engine.is_ray,
                            scratch=str(directory))
                wall = time.perf_counter() - t0 - float(res.get("snapshot", {}).get("seconds", 0.0) or 0.0)
                return {"seconds": round(wall, 3),
                        "cluster_start_seconds": float(res.get("engine", {}).get("cluster_start_seconds", 0.0)),
                        "validation_ndcg@20": _ndcg(res), "order_runs": res.get("engine", {}).get("order_runs", [])}

            rows[_key(engine)] = measured("train", engine, run_train)
        out["jobs"]["train"] = rows
    if "score" in jobs:
        rows = {}
        files: dict[str, Path] = {}
        for engine in engines:
            files[_key(engine)] = directory / f"scores_{_key(engine)}.parquet"

            def run_score(engine: Engine = engine) -> dict[str, Any]:
                t0 = time.perf_counter()
                res = score(store, files[_key(engine)], engine, models_dir=base, limit=limit)
                return {"seconds": round(time.perf_counter() - t0, 3), "people": res["users"], "rows": res["rows"],
                        "cluster_start_seconds": res["cluster_start_seconds"], "load_seconds": res["load_seconds"]}

            rows[_key(engine)] = measured("score", engine, run_score)
        ref = pq.read_table(files["inprocess"])
        load_s = float(rows["inprocess"]["load_seconds"])
        for key, row in rows.items():
            if "error" not in row:
                row["same_rows_as_inprocess"] = bool(pq.read_table(files[key]).equals(ref))
                _per_list(row, row["people"], load_s)
        out["jobs"]["score"] = rows
    if "precompute" in jobs and redis_url:
        import redis

        from belong.batch.precompute import precompute as on_ray
        from belong.domain import Surface
        from belong.serve.precomputed import precompute as here

        rows = {}
        client = redis.Redis.from_url(redis_url)
        reference: dict[str, bytes] = {}
        for engine in engines:
            prefix = f"belong:bench:ray:{_key(engine)}:"
            for key in client.scan_iter(f"{prefix}*", count=1000):  # a killed earlier run's lists
                client.delete(key)

            def run_precompute(engine: Engine = engine, prefix: str = prefix) -> dict[str, Any]:
                t0 = time.perf_counter()
                if engine.is_ray:
                    meta = on_ray(store, redis_url, engine, models_dir=base, prefix=prefix,
                                  surfaces=[Surface.COMMUNITIES], limit=limit)
                else:
                    meta = here(store, redis_url, models_dir=base, prefix=prefix, surfaces=[Surface.COMMUNITIES],
                                limit=limit)
                return {"seconds": round(time.perf_counter() - t0, 3), "people": meta["users"],
                        "lists_stored": meta["lists"], "load_seconds": meta.get("load_seconds"),
                        "cluster_start_seconds": float(meta.get("cluster_start_seconds", 0.0))}

            try:
                row = measured("precompute", engine, run_precompute)
                if "error" not in row:
                    got = _digests(client, prefix)
                    if not engine.is_ray:
                        reference = got
                    row["lists_compared"] = len(got)
                    row["same_lists_as_inprocess"] = got == reference
                    row["lists_differing"] = sum(reference.get(k) != v for k, v in got.items()) + len(
                        reference.keys() - got.keys())
                rows[_key(engine)] = row
            finally:
                for key in client.scan_iter(f"{prefix}*", count=1000):
                    client.delete(key)
        load_s = float(rows["inprocess"]["load_seconds"] or 0.0)
        for row in rows.values():
            if "error" not in row:
                _per_list(row, row["lists_stored"], load_s)
        out["jobs"]["precompute"] = rows
    elif "precompute" in jobs:
        out["jobs"]["precompute"] = {"skipped": "no Redis URL (--redis or BELONG_REDIS_URL)"}
    for name, rows in out["jobs"].items():
        if "skipped" in rows:
            continue
        ref = rows["inprocess"]
        for row in rows.values():
            if "error" in row:
                continue
            row["ratio_vs_inprocess"] = round(row["seconds"] / ref["seconds"], 3) if ref["seconds"] else None
            row["ratio_without_start"] = (round(row["seconds_without_start"] / ref["seconds"], 3)
                                          if ref["seconds"] else None)
            row["cpu_ratio_vs_inprocess"] = (round(row["cpu_seconds"] / ref["cpu_seconds"], 3)
                                             if ref["cpu_seconds"] else None)
        if name == "train":
            ref_ndcg = ref.get("validation_ndcg@20")
            for row in rows.values():
                if ref_ndcg is not None and row.get("validation_ndcg@20") is not None:
                    row["ndcg_minus_inprocess"] = round(row["validation_ndcg@20"] - ref_ndcg, 9)
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out
