"""``belong bench replicas``: (1) the event stream's propagation on each broker — Redis Streams and NATS JetStream —
publish to receive in another process, at a steady rate; (2) ``belong serve --workers 2`` against ``--workers 1`` on
the same world, artifact and load in the same run (held request rate at the p99 budget), with events posted during
the load and each replica's publish-to-fold lag (its ``/readyz``).

``python -m belong.bench.replicas consume BROKER URL SUBJECT N`` is the receiving process of (1): it prints the
latencies (ms) of the first N messages as JSON.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from rich.console import Console


def _pct(ms: list[float]) -> dict[str, float | int | None]:
    if not ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(ms)
    return {"n": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3)}


# ----------------------------------------------------------------------------------------------- brokers
async def _consume_redis(url: str, key: str, n: int, ready: Path) -> list[float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    last: Any = "$"
    out: list[float] = []
    ready.touch()
    while len(out) < n:
        got: Any = await client.xread({key: last}, block=5000, count=500)
        if not got:
            break
        for _k, entries in got:
            for entry_id, fields in entries:
                last = entry_id
                out.append((time.time() - float(fields[b"t"])) * 1e3)
    await client.aclose()
    return out


async def _consume_nats(url: str, subject: str, n: int, ready: Path) -> list[float]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    out: list[float] = []
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        out.append((time.time() - float(orjson.loads(msg.data)["t"])) * 1e3)
        await msg.ack()
        if len(out) >= n:
            done.set()

    await js.subscribe(subject, cb=on_msg, deliver_policy=nats.js.api.DeliverPolicy.NEW)
    ready.touch()
    try:
        await asyncio.wait_for(done.wait(), timeout=n / 10 + 30)
    except TimeoutError:
        pass
    await nc.close()
    return out


async def _publish_redis(url: str, key: str, n: int, rate: float) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.xadd(key, {"t": repr(time.time()), "e": b"x" * 120}, maxlen=100_000, approximate=True)
    await client.delete(key)
    await client.aclose()


async def _publish_nats(url: str, subject: str, n: int, rate: float) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await js.publish(subject, orjson.dumps({"t": time.time(), "e": "x" * 120}))  # acknowledged: durable
    await nc.close()


async def _nats_stream(url: str, name: str, subject: str, delete: bool = False) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    if delete:
        await js.delete_stream(name)
    else:
        await js.add_stream(name=name, subjects=[subject])
    await nc.close()


def broker_propagation(broker: str, url: str, n: int, rate: float) -> dict[str, Any]:
    """Publish ``n`` small messages at ``rate``/s here; another process receives them; latencies publish -> receive."""
    tag = secrets.token_hex(4)
    subject = f"belong.bench.{tag}" if broker == "nats" else f"belong:bench:stream:{tag}"
    if broker == "nats":
        asyncio.run(_nats_stream(url, f"BELONG_BENCH_{tag}", subject))
    ready = Path(tempfile.mkdtemp(prefix="belong-bench-rep-")) / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "belong.bench.replicas", "consume", broker, url, subject, str(n),
                             str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)
        publish = _publish_nats if broker == "nats" else _publish_redis
        asyncio.run(publish(url, subject, n, rate))
        out, err = proc.communicate(timeout=n / rate + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"{broker} consumer failed: {err.decode()[-1500:]}")
        lat = orjson.loads(out)
    finally:
        if proc.poll() is None:
            proc.kill()
        if broker == "nats":
            asyncio.run(_nats_stream(url, f"BELONG_BENCH_{tag}", subject, delete=True))
    return {"broker": broker, "rate": rate, "sent": n, **_pct(lat)}


# ----------------------------------------------------------------------------------------------- replicas
def _replica_reports(base: str, n: int, tries: int = 400) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(tries):
        with httpx.Client(base_url=base, timeout=10) as c:
            rep = c.get("/readyz").json().get("replica")
        if rep:
            seen[rep["id"]] = rep
        if len(seen) >= n:
            break
    return list(seen.values())


def _serve_workers(workers: int, store: Path, models_dir: Path, redis_url: str, stream_key: str, env: dict[str, str],
                   rates: list[float], seconds: float, paths_file: str, p99_ms: float, users: list[str],
                   communities: list[str], events_per_s: float, console: Console) -> dict[str, Any]:
    from belong.bench.serve import BENCH_WRITE_KEY, _belong, _best, _sweep, free_port, wait_ready
    from belong.bench.traffic import EventPoster

    port = free_port()
    server = subprocess.Popen([_belong(), "serve", "--store", str(store), "--port", str(port), "--redis", redis_url,
                               "--models", str(models_dir), "--workers", str(workers), "--stream", redis_url],
                              env={**env, "BELONG_EVENT_STREAM_KEY": stream_key}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        with console.status(f"{workers} worker(s): loading the artifact"):
            wait_ready(f"{base}/readyz", server, 1800)
            while len(_replica_reports(base, workers, 50)) < workers:  # every replica ready
                time.sleep(0.5)
        ready_s = time.perf_counter() - t0
        for _ in range(2 * workers):  # every replica makes the working set's lists (new connections spread)
            for path in Path(paths_file).read_text().split():
                httpx.get(f"{base}{path}", timeout=60)
        with EventPoster(base, BENCH_WRITE_KEY, users, communities, events_per_s, workers,
                         f"w{workers}-{secrets.token_hex(3)}") as poster:
            runs = _sweep(port, rates, seconds, paths_file, p99_ms, f"{workers} worker(s)", console, None)
        reports = _replica_reports(base, workers)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    best = _best(runs, p99_ms)
    return {"workers": workers, "rps": best["rate"], "p50_ms": best["p50_ms"], "p99_ms": best["p99_ms"],
            "ready_seconds": round(ready_s, 1), "events": poster.report(), "replicas": reports, "runs": runs}


def bench_replicas(users: int, communities: int, store: Path, redis_url: str, nats_url: str, rates: list[float],
                   seconds: float, working_set: int, p99_ms: float, seed: int, messages: int, message_rate: float,
                   events_per_s: float, k: int = 20, console: Console | None = None,
                   models: Path | None = None) -> dict[str, Any]:
    from belong.bench.serve import (
        BENCH_ADMIN_KEY,
        BENCH_WRITE_KEY,
        _ensure_features,
        _ensure_models,
        _ensure_store,
        given_models,
    )
    from belong.eventlog import open_store

    console = console or Console(stderr=True)
    if models is not None:
        given_models(models)  # a wrong --models fails before any work
    t_start = time.perf_counter()
    brokers = []
    for broker, url in (("redis_streams", redis_url), ("nats_jetstream", nats_url)):
        with console.status(f"{broker}: {messages} messages at {message_rate:.0f}/s"):
            try:
                brokers.append(broker_propagation("nats" if broker.startswith("nats") else "redis", url, messages,
                                                  message_rate))
            except Exception as exc:  # noqa: BLE001 - a broker not reachable is reported, the bench goes on
                brokers.append({"broker": broker, "error": f"{type(exc).__name__}: {exc}"})
        console.print(brokers[-1])
    world = _ensure_store(store, users, communities, seed, console)
    with open_store(store) as st:
        all_users = st.users().column("id").to_pylist()
        all_communities = st.communities().column("id").to_pylist()
    prefix = f"belong:bench:{users}x{communities}s{seed}:"
    _ensure_features(store, redis_url, prefix, all_users[0], console)
    models_dir, version, _trained = _ensure_models(store, console, models)
    rng = np.random.default_rng(seed)
    chosen = [all_users[i] for i in rng.choice(len(all_users), min(working_set, len(all_users)), replace=False)]
    tmp = Path(tempfile.mkdtemp(prefix="belong-bench-replicas-"))
    paths_file = tmp / "paths.txt"
    paths_file.write_text("".join(f"/v1/recommendations/communities?user_id={u}&k={k}\n" for u in chosen))
    cand = f"belong:bench:cand:{users}x{communities}s{seed}:"  # lists of bench serve --traffic zipf, when there
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_FEATURES_PREFIX": prefix,
           "BELONG_PRECOMPUTED_REDIS": redis_url, "BELONG_PRECOMPUTED_PREFIX": cand,
           "BELONG_CANDIDATE_TTL_S": "86400", "BELONG_BUDGET_SOURCES_MS": "5000", "BELONG_API_KEYS_ADMIN":
           BENCH_ADMIN_KEY, "BELONG_API_KEYS_WRITE": BENCH_WRITE_KEY, "BELONG_READ_AUTH": "false"}
    key = f"belong:bench:events:{secrets.token_hex(4)}"
    results = [_serve_workers(w, store, models_dir, redis_url, f"{key}:{w}", env, rates, seconds, str(paths_file),
                              p99_ms, chosen, all_communities, events_per_s, console) for w in (1, 2)]
    import redis

    redis.Redis.from_url(redis_url).delete(f"{key}:1", f"{key}:2")
    one, two = results
    chosen_broker = min((b for b in brokers if b.get("p99_ms") is not None), key=lambda b: b["p99_ms"], default=None)
    return {
        "brokers": brokers, "faster_broker_p99": chosen_broker["broker"] if chosen_broker else None,
        "one_worker": one, "two_workers": two,
        "rps_two_over_one": round(two["rps"] / one["rps"], 3) if one["rps"] else None,
        "propagation_lag_ms_p99": max((r["lag_ms_p99"] or 0.0) for r in two["replicas"]) if two["replicas"] else None,
        "p99_budget_ms": p99_ms, "world": {**world, "seed": seed}, "model": version, "working_set_users": len(chosen),
        "cpus": os.cpu_count(), "seconds_per_rate": seconds, "seconds": round(time.perf_counter() - t_start, 1),
    }


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "consume":
    _, _, broker, url, subject, n, ready = sys.argv
    consume = _consume_nats if broker == "nats" else _consume_redis
    sys.stdout.write(orjson.dumps(asyncio.run(consume(url, subject, int(n), Path(ready)))).decode())
