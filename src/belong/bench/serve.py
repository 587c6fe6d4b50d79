"""``belong bench serve``: the highest request rate the communities endpoint holds at p99 <= budget, next to a
bare endpoint of the same framework (FastAPI on uvicorn, same settings) returning a static payload of the same
size, measured in the same run.

Steps: a simulated world in an embedded store (kept between runs), its online features materialised into Redis
(kept too, under a key prefix naming the world), the ranked communities surface trained with ``belong train`` (kept
under ``STORE/models``), the API server started on that artifact as its own process (one uvicorn worker, pinned to
one core), the candidate lists of a working set of users warmed (each a full pipeline run: the cold
latency is reported), then for each fixed rate an open-loop load generator (:mod:`belong.bench.loadgen`, another
process pinned to the other core) drives ``GET /v1/recommendations/communities`` over loopback; then the same
rates against the bare server. ``--traffic zipf`` (:mod:`belong.bench.traffic`) first measures the realistic load —
every person, heavy-tailed visits, nothing warmed, events posted during the load, the cold path reading the lists of
``belong candidates precompute`` — against the bare server on the same request files, then the warm case above on
the same server. A rate is *held* when every request answered 200, at most 1% were degraded, and
p99 <= budget.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from belong.domain import Surface
from belong.errors import ValidationError
from belong.serve.params import OPENAPI_PARAMETERS, parse_recommendation_query

BENCH_ADMIN_KEY = secrets.token_urlsafe(24)  # the stage breakdown reads debug traces (admin only)
BENCH_WRITE_KEY = secrets.token_urlsafe(24)  # --traffic zipf posts events during the load
BENCH_TTL_S = 86_400  # the warmed working set stays fresh for the whole run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int):
    """preexec_fn pinning a child to one core (when the machine has more than one)."""
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {cpu})
    return pin


def _off_server_core() -> None:
    """Keep this process (the bench itself: its JSON, its garbage collections) off the servers' core 0 while it
    measures: a collection of ~90 ms landing on the server's core showed up as a p99 spike of the server."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})


def _belong() -> str:
    return str(Path(sys.executable).with_name("belong"))


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Poll ``url`` until 200; raise if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")


def _ensure_store(store: Path, users: int, communities: int, seed: int, console: Console) -> dict[str, int]:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    with open_store(store) as st:
        counts = st.entity_counts()
        if counts.get("users") == users and counts.get("communities") == communities:
            return {**counts, "events": st.count()}
        if st.count():
            raise RuntimeError(f"{store} holds another world; remove it or pass --store")
        with console.status(f"simulating {users:,} users x {communities:,} communities into {store}"):
            for part in simulate(users, communities, seed):
                write_world(st, part, progress=False)
        return {**st.entity_counts(), "events": st.count()}


def _ensure_features(store: Path, redis_url: str, prefix: str, probe_user: str, console: Console) -> str:
    from belong.eventlog import open_store
    from belong.features import MATERIALIZED_AT, materialize, open_feature_store

    with open_feature_store(redis_url, prefix=prefix) as fs:
        if fs.read("user", probe_user, ["user_locale"])[MATERIALIZED_AT] is not None:
            return "reused"
        with console.status(f"materialising online features into {redis_url} ({prefix}*)"), open_store(store) as st:
            materialize(st, fs)
    return "materialised"


def _current_features(directory: Path) -> bool:
    """Whether the artifact's communities ranker was trained on this version's feature set (else: retrain)."""
    from belong.ranking.ranker import feature_set_change
    from belong.training.artifact import read_manifest

    try:
        return feature_set_change(read_manifest(directory)["surfaces"]["communities"]["ranker"]) is None
    except (KeyError, OSError, ValueError):
        return False


def given_models(models: Path) -> tuple[Path, str]:
    """``--models``: a ``belong train --out`` directory (its newest artifact is served) or one artifact directory in
    it (accepted when it is that newest one: the server serves the newest). Checked before any other work."""
    from belong.training.locate import MANIFEST, artifact_versions

    models = Path(models)
    if (models / MANIFEST).is_file():
        newest = artifact_versions(models.parent)
        if newest and newest[-1] == models.name:
            return models.parent, models.name
        raise ValidationError("models", f"{models} is an artifact but not the newest under {models.parent} (the "
                                        "server serves the newest): give the directory holding the artifacts")
    given = artifact_versions(models)
    if not given:
        raise ValidationError("models", f"no belong train artifact under {models} (give a belong train --out "
                                        "directory or the artifact directory itself)")
    return models, given[-1]


def _ensure_models(store: Path, console: Console, models: Path | None = None) -> tuple[Path, str, str]:
    """The trained communities ranker of the bench world (``belong train``, kept under ``store/models``), or the
    newest artifact of ``models`` (a ``belong train --out`` directory: served as it is, never retrained here)."""
    from belong.training.locate import artifact_versions

    if models is not None:
        models_dir, version = given_models(models)
        return models_dir, version, "given"
    out = store / "models"
    known = artifact_versions(out)
    if known and _current_features(out / known[-1]):
        return out, known[-1], "reused"
    with console.status(f"training the ranked communities surface (belong train --store {store})"):
        done = subprocess.run([_belong(), "train", "--store", str(store), "--out", str(out), "--surface",
                               "communities_ranked", "--json"], capture_output=True, text=True,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"belong train failed: {done.stderr[-2000:]}")
    return out, str(orjson.loads(done.stdout)["version"]), "trained"


def _load(port: int, rate: float, seconds: float, paths_file: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "belong.bench.loadgen", "--port", str(port), "--rate", str(rate),
           "--seconds", str(seconds), "--paths", paths_file]
    out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_pin(1), timeout=seconds * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return orjson.loads(out.stdout)


def _held(run: dict[str, Any], p99_ms: float) -> bool:
    """Every request answered 200, at most 1% of them degraded (a degraded answer is not the full surface),
    and p99 within the budget."""
    return (run["errors"] == 0 and run["non_200"] == 0 and run["degraded"] <= 0.01 * run["sent"]
            and run["p99_ms"] is not None and run["p99_ms"] <= p99_ms)


def _best(runs: list[dict[str, Any]], p99_ms: float) -> dict[str, Any]:
    held = [r for r in runs if _held(r, p99_ms)]
    return max(held, key=lambda r: r["rate"]) if held else {"rate": 0.0, "p50_ms": None, "p99_ms": None}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None where it cannot be read)."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except Exception:  # noqa: BLE001 - a diagnostic: absent rather than failing the bench
        return None


def _stage_sums(base: str) -> dict[str, tuple[float, float]]:
    """Per stage of the communities surface: (sum of seconds, count) from the server's Prometheus metrics."""
    out: dict[str, list[float]] = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(("belong_stage_seconds_sum{", "belong_stage_seconds_count{")) and \
                'surface="communities"' in line:
            stage = line.split('stage="')[1].split('"')[0]
            pair = out.setdefault(stage, [0.0, 0.0])
            pair[0 if "_sum{" in line else 1] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def _sweep(port: int, rates: list[float], seconds: float, paths_file: str | Callable[[float], str], p99_ms: float,
           label: str, console: Console, pid: int | None = None) -> list[dict[str, Any]]:
    """Each rate in turn (``paths_file``: one file, or the file of each rate)."""
    runs = []
    for rate in rates:
        cpu0 = _cpu_seconds(pid) if pid else None
        with console.status(f"{label}: {rate:,.0f} requests/s for {seconds:.0f} s"):
            run = _load(port, rate, seconds, paths_file if isinstance(paths_file, str) else paths_file(rate))
        cpu1 = _cpu_seconds(pid) if pid else None
        if cpu0 is not None and cpu1 is not None and run["sent"]:
            run["server_cpu_ms_per_request"] = round((cpu1 - cpu0) / run["sent"] * 1e3, 3)
        runs.append(run)
        console.print(f"{label} {rate:>7,.0f}/s  p50 {run['p50_ms']} ms  p99 {run['p99_ms']} ms  "
                      f"ok {run['ok']}/{run['sent']}  degraded {run['degraded']}")
        if not _held(run, p99_ms) and len(runs) >= 2 and not _held(runs[-2], p99_ms):
            break  # two rates in a row over budget: higher ones will not hold either
    return runs


def _refresh_stale(store: Path, models_dir: Path, redis_url: str, prefix: str, console: Console) -> dict[str, Any]:
    """``belong candidates precompute --stale`` after the load: the lists the load's events marked, refreshed (the
    API's ``BELONG_PRECOMPUTED_REFRESH=job``); its figures and wall seconds (the freshness bound at this size)."""
    cmd = [_belong(), "candidates", "precompute", "--store", str(store), "--models", str(models_dir), "--redis",
           redis_url, "--prefix", prefix, "--surface", "communities", "--stale", "--json"]
    t0 = time.perf_counter()
    with console.status("refreshing the stale lists (belong candidates precompute --stale)"):
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"belong candidates precompute --stale failed: {done.stderr[-2000:]}")
    meta = orjson.loads(done.stdout)
    return {"lists": meta["lists"], "people": meta["users"], "job_seconds": round(time.perf_counter() - t0, 1),
            "load_seconds": meta["load_seconds"], "seconds": meta["seconds"], "ms_per_list": meta["ms_per_list"]}


def _precompute(store: Path, models_dir: Path, version: str, redis_url: str, prefix: str,
                console: Console, visitors: list[str] | None = None, tmp: Path | None = None) -> dict[str, Any]:
    """The stored candidate lists (``belong candidates precompute``; kept between runs) of every active person, or
    with ``visitors`` of the day's active people: those the load will visit (the ones without a stored list yet)."""
    import redis

    from belong.serve.precomputed import PrecomputedLists

    client = redis.Redis.from_url(redis_url)
    cmd = [_belong(), "candidates", "precompute", "--store", str(store), "--models", str(models_dir), "--redis",
           redis_url, "--prefix", prefix, "--surface", "communities", "--json"]
    if visitors is None:
        raw = client.get(f"{prefix}{version}:meta")
        if raw:
            return {**orjson.loads(raw), "reused": True}
        what = "every person's"
    else:
        people = list(dict.fromkeys(visitors))
        lists = PrecomputedLists(client, prefix, registry=None)
        pipe = client.pipeline(transaction=False)
        for u in people:
            pipe.exists(lists.key(version, Surface.COMMUNITIES, u))
        missing = [u for u, there in zip(people, pipe.execute(), strict=True) if not there]
        scope = {"scope": "the day's active people: every person the load visits", "visitors": len(people),
                 "stored_before": len(people) - len(missing)}
        if not missing:
            return {**scope, "reused": True}
        users_file = (tmp or Path(tempfile.mkdtemp(prefix="belong-bench-pre-"))) / "visitors.txt"
        users_file.write_text("".join(f"{u}\n" for u in missing))
        cmd += ["--users-file", str(users_file)]
        what = f"{len(missing):,} visitors'"
    with console.status(f"precomputing {what} communities candidates into {redis_url} ({prefix}*)"):
        done = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", *cmd] if Path("/usr/bin/time").exists()
                              else cmd, capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"belong candidates precompute failed: {done.stderr[-2000:]}")
    out = {**orjson.loads(done.stdout), "reused": False}
    if visitors is not None:
        out |= scope
    if Path("/usr/bin/time").exists():  # the job's own process: wall, user, system seconds, peak RSS
        wall, user, system, rss_kb = done.stderr.strip().splitlines()[-1].split()
        out["process"] = {"wall_s": float(wall), "cpu_s": round(float(user) + float(system), 1),
                          "peak_rss_mb": round(int(rss_kb) / 1024)}
    return out


def bench_serve(users: int, communities: int, store: Path, redis_url: str, rates: list[float], seconds: float,
                working_set: int, p99_ms: float, seed: int, k: int = 20,
                console: Console | None = None, traffic: str = "warm", zipf_s: float = 1.0,
                events_per_s: float = 20.0, precompute: bool = True, models: Path | None = None,
                precompute_scope: str = "visitors") -> dict[str, Any]:
    """``traffic="warm"``: the load draws from ``working_set`` users whose lists were warmed first (the cache-hit
    case). ``"zipf"``: every person eligible, heavy-tailed visits, no pre-warming, events posted during the load
    (:mod:`belong.bench.traffic`); the cold path reads precomputed lists when ``precompute``; the warm figure is
    measured after it on the same server and reported beside. ``models``: serve that ``belong train`` output (its
    newest artifact, with the snapshot beside it) instead of the store's own ``models`` (trained when missing).
    ``precompute_scope``: ``visitors`` (the day's active people: the people the load will visit, drawn before the
    server starts) or ``all`` (every active person: about 14 ms per list, hours at 1,000,000 people)."""
    from belong.bench.traffic import EventPoster, write_paths, zipf_visits

    console = console or Console(stderr=True)
    if models is not None:
        given_models(models)  # a wrong --models fails before the world and features are built, not after
    t_start = time.perf_counter()
    world = _ensure_store(store, users, communities, seed, console)
    from belong.eventlog import open_store

    with open_store(store) as st:
        all_users = st.users().column("id").to_pylist()
        all_communities = st.communities().column("id").to_pylist()
    prefix = f"belong:bench:{users}x{communities}s{seed}:"
    features = _ensure_features(store, redis_url, prefix, all_users[0], console)
    t_train = time.perf_counter()
    models_dir, model_version, trained = _ensure_models(store, console, models)
    train_s = time.perf_counter() - t_train
    rng = np.random.default_rng(seed)
    chosen = [all_users[i] for i in rng.choice(len(all_users), min(working_set, len(all_users)), replace=False)]
    tmp = Path(tempfile.mkdtemp(prefix="belong-bench-serve-"))
    paths_file = tmp / "paths.txt"
    order = rng.permutation(len(chosen))
    paths_file.write_text("".join(f"/v1/recommendations/communities?user_id={chosen[i]}&k={k}\n" for i in order))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_FEATURES_PREFIX": prefix,
           "BELONG_CANDIDATE_TTL_S": str(BENCH_TTL_S), "BELONG_BUDGET_SOURCES_MS": "5000",
           "BELONG_CACHE_USERS": str(max(working_set * 2, 1000)), "BELONG_API_KEYS_ADMIN": BENCH_ADMIN_KEY,
           "BELONG_READ_AUTH": "false"}  # the load sends no key (the bare baseline checks none either)
    stored: dict[str, Any] | None = None
    files: dict[float, str] = {}
    visited: list[str] = []
    if traffic == "zipf":  # as served: default TTL, budget and cache size; events written with a write key
        for name in ("BELONG_CANDIDATE_TTL_S", "BELONG_BUDGET_SOURCES_MS", "BELONG_CACHE_USERS"):
            env.pop(name)
        env["BELONG_API_KEYS_WRITE"] = BENCH_WRITE_KEY
        for rate in rates:  # every rate's visits drawn now (the same files for the api and the bare server)
            visits = zipf_visits(all_users, int(rate * seconds), zipf_s, rng)
            files[rate] = str(write_paths(tmp / f"zipf-{rate:.0f}.txt", visits, k))
            visited.extend(visits)
        if precompute:
            cand_prefix = f"belong:bench:cand:{users}x{communities}s{seed}:"
            stored = _precompute(store, models_dir, model_version, redis_url, cand_prefix, console,
                                 visited if precompute_scope == "visitors" else None, tmp)
            # stale lists are refreshed by the job after the load (below), not by live runs sharing the server's
            # core: one such run (37 ms median, 146 ms at worst at 1M) holds up every request behind it
            env |= {"BELONG_PRECOMPUTED_REDIS": redis_url, "BELONG_PRECOMPUTED_PREFIX": cand_prefix,
                    "BELONG_PRECOMPUTED_REFRESH": "job"}
    port, bare_port = free_port(), free_port()
    server = subprocess.Popen([_belong(), "serve", "--store", str(store), "--port", str(port), "--redis", redis_url,
                               "--models", str(models_dir)],
                              env=env, preexec_fn=_pin(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bare = None
    zipf: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        with console.status("server: building the model (state, iALS, ANN, item-to-item, walks, text)"):
            wait_ready(f"http://127.0.0.1:{port}/readyz", server, 1800)
        build_s = time.perf_counter() - t0
        base = f"http://127.0.0.1:{port}"
        payload_file = tmp / "payload.json"
        if traffic == "zipf":
            payload_file.write_bytes(_undegraded(httpx.get(f"{base}/v1/recommendations/communities",
                                                           params={"user_id": all_users[0], "k": k},
                                                           timeout=60).content))
            bare = subprocess.Popen([sys.executable, "-m", "belong.bench.serve", str(payload_file), str(bare_port)],
                                    env=env, preexec_fn=_pin(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_ready(f"http://127.0.0.1:{bare_port}/healthz", bare, 60)

            def zipf_paths(rate: float) -> str:  # a fresh draw per rate, the same for the api and the bare server
                return files[rate]

            (tmp / "healthz.txt").write_text("/healthz\n")
            _load(port, 200, 2, str(tmp / "healthz.txt"))  # settle connections, no list made
            before_text = httpx.get(f"{base}/metrics", timeout=10).text
            before_cache, before_gc = _cache_counts(before_text), _gc_counts(before_text)
            _off_server_core()
            visitors = zipf_visits(all_users, 100_000, zipf_s, rng)
            with EventPoster(base, BENCH_WRITE_KEY, visitors, all_communities, events_per_s, seed,
                             secrets.token_hex(4)) as poster:
                zipf_runs = _sweep(port, rates, seconds, zipf_paths, p99_ms, "api zipf", console, server.pid)
            after_text = httpx.get(f"{base}/metrics", timeout=10).text
            after_cache, after_gc = _cache_counts(after_text), _gc_counts(after_text)
            zipf_bare = _sweep(bare_port, rates, seconds, zipf_paths, p99_ms, "bare", console, bare.pid)
            best_z, best_zb = _best(zipf_runs, p99_ms), _best(zipf_bare, p99_ms)
            ready = httpx.get(f"{base}/readyz", timeout=10).json()
            refreshed = _refresh_stale(store, models_dir, redis_url, cand_prefix, console) if stored is not None \
                else None
            zipf = {
                "rps": best_z["rate"], "p50_ms": best_z["p50_ms"], "p99_ms": best_z["p99_ms"],
                "bare_rps": best_zb["rate"], "bare_p99_ms": best_zb["p99_ms"],
                "rps_over_bare": round(best_z["rate"] / best_zb["rate"], 3) if best_zb["rate"] else None,
                "zipf_s": zipf_s, "distinct_users_per_rate": {str(r["rate"]): len(set(Path(files[r["rate"]])
                                                                                     .read_text().split()))
                                                              for r in zipf_runs},
                "events": poster.report(), "precomputed": stored, "precomputed_reads": ready.get("precomputed"),
                "stale_refresh": refreshed,
                "cache_lookups": {key: after_cache.get(key, 0.0) - before_cache.get(key, 0.0) for key in after_cache},
                # collections during the zipf sweep (BELONG_GC_AUTO_FULL=true in the environment: CPython's own)
                "gc": {key: (after_gc[key] - before_gc.get(key, 0.0)) if key.startswith("generation_")
                       else after_gc[key] for key in after_gc},
                "runs": zipf_runs, "bare_runs": zipf_bare,
                "server_settings": "defaults (candidate TTL 300 s, sources budget 60 ms, 200,000 cached lists)",
            }
            if stored is not None:
                stored.pop("reused", None)
        cold: list[float] = []
        payload = b""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with httpx.Client(base_url=base, timeout=60.0) as client, Progress(*columns, console=console) as bar:
            task = bar.add_task("warming candidate lists (full pipeline per user)", total=len(chosen))
            for u in chosen:
                t1 = time.perf_counter()
                r = client.get("/v1/recommendations/communities", params={"user_id": u, "k": k})
                cold.append(time.perf_counter() - t1)
                if r.status_code != 200:
                    raise RuntimeError(f"warm-up request failed: {r.status_code} {r.text[:300]}")
                payload = payload or r.content
                bar.advance(task)
        if bare is None:
            payload_file.write_bytes(_undegraded(payload))
            bare = subprocess.Popen([sys.executable, "-m", "belong.bench.serve", str(payload_file), str(bare_port)],
                                    env=env, preexec_fn=_pin(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_ready(f"http://127.0.0.1:{bare_port}/healthz", bare, 60)
        # steady state: every user of the working set served once from its cached list (a list's first answer
        # also builds the memoised parts: response fields, rules answer, assembled feature rows), then settle
        with httpx.Client(base_url=base, timeout=60.0) as client:
            for u in chosen:
                client.get("/v1/recommendations/communities", params={"user_id": u, "k": k})
        _load(port, 200, 2, str(paths_file))  # settle connections and allocators before measuring
        before = _stage_sums(base)
        _off_server_core()
        runs = _sweep(port, rates, seconds, str(paths_file), p99_ms, "api warm", console, server.pid)
        after = _stage_sums(base)
        under_load = {st: round((after[st][0] - before.get(st, (0.0, 0.0))[0]) * 1e3
                                / (after[st][1] - before.get(st, (0.0, 0.0))[1]), 4)
                      for st in after if after[st][1] > before.get(st, (0.0, 0.0))[1]}
        bare_runs = _sweep(bare_port, rates, seconds, str(paths_file), p99_ms, "bare", console, bare.pid)
        stages = _stage_breakdown(base, chosen[:200], k)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        readyz = httpx.get(f"{base}/readyz", timeout=10).json()
    finally:
        for proc in (server, bare):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    best, best_bare = _best(runs, p99_ms), _best(bare_runs, p99_ms)
    cold_ms = np.asarray(cold) * 1e3
    warm = {
        "rps": best["rate"], "p50_ms": best["p50_ms"], "p99_ms": best["p99_ms"],
        "bare_rps": best_bare["rate"], "bare_p99_ms": best_bare["p99_ms"], "bare_p50_ms": best_bare["p50_ms"],
        "rps_over_bare": round(best["rate"] / best_bare["rate"], 3) if best_bare["rate"] else None,
        "p99_budget_ms": p99_ms, "payload_bytes": len(payload),
        "endpoint": f"GET /v1/recommendations/communities?user_id=…&k={k}",
        "runs": runs, "bare_runs": bare_runs,
        "stage_ms_mean_under_load": under_load,  # every request of the api sweep (Prometheus sums / counts)
        "stage_ms_mean_debug": stages,  # warm requests with debug=true (their rules stage reads the whole list)
        "cold_full_pipeline_ms": {"p50": round(float(np.percentile(cold_ms, 50)), 1),
                                  "p99": round(float(np.percentile(cold_ms, 99)), 1), "requests": len(cold)},
        "cache_lookups": _cache_counts(metrics),
        "feature_row_lookups": _row_counts(metrics),  # in-process feature rows over the whole run (hit / miss)
        "feature_rows": readyz.get("feature_rows"),  # exact (Redis invalidation) | time-bounded | off
        "working_set_users": len(chosen),
    }
    common = {
        "traffic": traffic, "world": {**world, "seed": seed}, "features": features,
        "model": {"version": model_version, "surface": "communities_ranked (sources + LightGBM ranker)",
                  "artifact": trained, "train_seconds": round(train_s, 1) if trained == "trained" else None},
        "server": {"workers": 1, "loop": "uvloop", "http": "httptools", "build_seconds": round(build_s, 1),
                   "cpu_pinning": (os.cpu_count() or 1) > 1},
        "seconds_per_rate": seconds, "seconds": round(time.perf_counter() - t_start, 1),
    }
    if traffic == "zipf":
        return {**zipf, "p99_budget_ms": p99_ms, "warm": warm, **common}
    return {**warm, **common}


def _undegraded(payload: bytes) -> bytes:
    """The bare server's static answer: a real answer of the API, with ``degraded`` false (a first answer on a
    loaded machine can run out of its sources budget; the load generator would count every static copy of it as
    degraded, and the baseline would hold no rate at all)."""
    body = orjson.loads(payload)
    if isinstance(body, dict) and body.get("degraded"):
        body["degraded"] = False
        return orjson.dumps(body)
    return payload


def _stage_breakdown(base: str, users: list[str], k: int) -> dict[str, float]:
    """Mean per-stage milliseconds of warm requests, from the ``debug`` trace."""
    sums: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for u in users:
            trace = client.get("/v1/recommendations/communities", params={"user_id": u, "k": k, "debug": "true"},
                               headers={"Authorization": f"Bearer {BENCH_ADMIN_KEY}"})  # debug needs an admin key
            for stage, ms in trace.json()["debug"]["stage_ms"].items():
                sums[stage] = sums.get(stage, 0.0) + ms
    return {s: round(v / max(len(users), 1), 3) for s, v in sums.items()}


def _cache_counts(metrics_text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("belong_candidate_cache_total{") and 'surface="communities"' in line:
            result = line.split('result="')[1].split('"')[0]
            out[result] = float(line.rsplit(" ", 1)[1])
    return out


def _gc_counts(metrics_text: str) -> dict[str, float]:
    """The server's garbage collections by generation, and whether full collections are held off."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("belong_gc_collections_total{"):
            out["generation_" + line.split('generation="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("belong_heap_held "):
            out["full_collections_held"] = float(line.rsplit(" ", 1)[1])
    return out


def _row_counts(metrics_text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in metrics_text.splitlines():
        if line.startswith("belong_feature_rows_total{"):
            entity = line.split('entity="')[1].split('"')[0]
            result = line.split('result="')[1].split('"')[0]
            out.setdefault(entity, {})[result] = float(line.rsplit(" ", 1)[1])
    return out


def bare_app(payload: bytes) -> FastAPI:
    """The baseline: the same framework and route shape, answering a static payload (no work)."""
    app = FastAPI(title="belong-bare")

    @app.get("/v1/recommendations/{surface}", openapi_extra={"parameters": OPENAPI_PARAMETERS})
    async def static(surface: Surface, request: Request) -> Response:
        parse_recommendation_query(request.query_params)  # the API's own parsing, then no work
        return Response(payload, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


if __name__ == "__main__":  # python -m belong.bench.serve PAYLOAD_FILE PORT: the bare server
    import uvicorn

    uvicorn.run(bare_app(Path(sys.argv[1]).read_bytes()), host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop",
                http="httptools", log_level="warning", access_log=False, proxy_headers=False)  # as belong serve
