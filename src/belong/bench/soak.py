"""``belong bench soak``: the API held at a steady request rate for a long time with events flowing, watched for
what only time shows — memory that grows, errors that appear, latency that drifts.

A simulated world in an embedded store (kept between runs), the API server as its own process (one uvicorn worker,
pinned to one core, online features in Redis when ``--redis`` is given, else in process), the candidate lists of a
working set warmed; then, window after window, the open-loop load generator (:mod:`belong.bench.loadgen`, its own
process on the other core) drives ``GET /v1/recommendations/communities`` at the soak rate while a writer thread
posts event batches (joins, leaves, views, messages of working-set users: each one invalidates or edits cached
lists) at ``event_rate`` batches per second. After each window the server's resident memory is sampled.

The rate is ``--rate``, else half of ``--held-rate`` (the highest rate ``belong bench serve`` held), else half the
highest rate a short sweep on this server holds at the p99 budget (measured in the same run, reported).

Reported: per window p50/p99, answers, errors, degraded, RSS; the RSS slope in MB per hour (least squares over the
windows after the first, which still holds warm-up growth) and the total growth; p99 drift (last window against the
first); request and event errors.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from belong.bench.serve import _belong, _best, _ensure_store, _load, _pin, _sweep, free_port, wait_ready

SWEEP_RATES = [100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0]
WRITE_KEY = "bench-soak-write-key-0123456789"


def _rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 2)


class _Writer(threading.Thread):
    """Posts one batch of ``batch`` events every ``1 / rate`` seconds until stopped; counts answers."""

    def __init__(self, base: str, users: list[str], communities: list[str], rate: float, batch: int) -> None:
        super().__init__(name="belong-soak-writer", daemon=True)
        self.base, self.users, self.communities = base, users, communities
        self.rate, self.batch = rate, batch
        self.stop = threading.Event()
        self.counts = {"batches": 0, "accepted": 0, "errors": 0, "non_202": 0}
        self._n = 0

    def _events(self, rng: random.Random) -> list[dict[str, Any]]:
        out = []
        for _ in range(self.batch):
            self._n += 1
            out.append({"event_id": f"soak-{os.getpid()}-{time.time_ns()}-{self._n}", "ts": time.time(),
                        "type": rng.choice(("join", "leave", "message")), "actor": rng.choice(self.users),
                        "target": rng.choice(self.communities), "value": 1.0})
        return out

    def run(self) -> None:
        rng = random.Random(7)
        period = 1.0 / self.rate if self.rate > 0 else None
        with httpx.Client(base_url=self.base, timeout=10.0,
                          headers={"Authorization": f"Bearer {WRITE_KEY}"}) as client:
            due = time.monotonic()
            while period is not None and not self.stop.is_set():
                try:
                    r = client.post("/v1/events", json={"events": self._events(rng)})
                    self.counts["batches"] += 1
                    if r.status_code == 202:
                        self.counts["accepted"] += int(r.json()["accepted"])
                    else:
                        self.counts["non_202"] += 1
                except httpx.HTTPError:
                    self.counts["errors"] += 1
                due += period
                self.stop.wait(max(0.0, due - time.monotonic()))


def _slope_per_hour(t_s: list[float], values: list[float]) -> float | None:
    if len(t_s) < 2:
        return None
    slope = np.polyfit(np.asarray(t_s) / 3600.0, np.asarray(values), 1)[0]
    return round(float(slope), 2)


def bench_soak(store: Path, users: int, communities: int, seed: int, seconds: float, rate: float | None,
               held_rate: float | None, windows: int, event_rate: float, event_batch: int, working_set: int,
               p99_ms: float, redis_url: str | None, k: int = 20,
               console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    world = _ensure_store(store, users, communities, seed, console)
    from belong.eventlog import open_store

    with open_store(store) as st:
        all_users = st.users().column("id").to_pylist()
        all_communities = st.communities().column("id").to_pylist()
    rng = np.random.default_rng(seed)
    chosen = [all_users[i] for i in rng.choice(len(all_users), min(working_set, len(all_users)), replace=False)]
    tmp = Path(tempfile.mkdtemp(prefix="belong-bench-soak-"))
    paths_file = tmp / "paths.txt"
    paths_file.write_text("".join(f"/v1/recommendations/communities?user_id={u}&k={k}\n" for u in chosen))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_API_KEYS_WRITE": WRITE_KEY,
           "BELONG_BUDGET_SOURCES_MS": "5000", "BELONG_CACHE_USERS": str(max(working_set * 2, 1000)),
           "BELONG_READ_AUTH": "false"}  # the read load sends no key (as in bench serve)
    env.pop("BELONG_REDIS_URL", None)
    args = [_belong(), "serve", "--store", str(store), "--port", str(port := free_port()), "--materialize"]
    if redis_url:
        args += ["--redis", redis_url]
    server = subprocess.Popen(args, env=env, preexec_fn=_pin(0), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    writer: _Writer | None = None
    sweep: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    try:
        with console.status("server: building the model"):
            wait_ready(f"{base}/readyz", server, 1800)
        with httpx.Client(base_url=base, timeout=60.0) as client, console.status("warming candidate lists"):
            for u in chosen:
                client.get("/v1/recommendations/communities", params={"user_id": u, "k": k})
        _load(port, 50, 2, str(paths_file))  # settle connections and allocators
        if rate is None and held_rate is not None:
            rate, rate_from = held_rate / 2, "half the given held rate"
        elif rate is None:
            sweep = _sweep(port, SWEEP_RATES, 5.0, str(paths_file), p99_ms, "sweep", console, server.pid)
            held = _best(sweep, p99_ms)["rate"]
            if not held:
                raise RuntimeError(f"no rate held p99 <= {p99_ms} ms; pass --rate")
            rate, rate_from = held / 2, f"half the highest rate held in this run's sweep ({held:g}/s)"
        else:
            rate_from = "given"
        rss0 = _rss_mb(server.pid)
        writer = _Writer(base, chosen, all_communities, event_rate, event_batch)
        writer.start()
        window_s = seconds / windows
        t0 = time.perf_counter()
        for w in range(windows):
            with console.status(f"soak window {w + 1}/{windows}: {rate:,.0f} requests/s for {window_s:.0f} s, "
                                f"{event_rate:g} event batches/s"):
                run = _load(port, rate, window_s, str(paths_file))
            row = {"window": w + 1, "t_s": round(time.perf_counter() - t0, 1), "rss_mb": _rss_mb(server.pid),
                   **{key: run[key] for key in ("sent", "ok", "non_200", "errors", "degraded", "p50_ms",
                                                "p99_ms", "achieved_rps")}}
            rows.append(row)
            console.print(f"window {w + 1:>3}  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                          f"rss {row['rss_mb']} MB  errors {row['errors'] + row['non_200']}")
        writer.stop.set()
        writer.join(timeout=30)
        alive = server.poll() is None
    finally:
        if writer is not None:
            writer.stop.set()
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    steady = rows[1:] if len(rows) > 2 else rows
    first, last = rows[0], rows[-1]
    drift = (round(last["p99_ms"] - first["p99_ms"], 3)
             if last["p99_ms"] is not None and first["p99_ms"] is not None else None)
    return {
        "rate": rate, "rate_from": rate_from, "p99_budget_ms": p99_ms, "seconds": seconds, "windows": rows,
        "rss_mb": {"before_load": rss0, "first_window": first["rss_mb"], "last_window": last["rss_mb"],
                   "growth": round(last["rss_mb"] - rss0, 2)},
        "rss_slope_mb_per_hour": _slope_per_hour([r["t_s"] for r in steady], [r["rss_mb"] for r in steady]),
        "p99_ms": {"first_window": first["p99_ms"], "last_window": last["p99_ms"], "drift": drift,
                   "max_window": max((r["p99_ms"] or 0.0) for r in rows)},
        "requests": {"sent": sum(r["sent"] for r in rows), "ok": sum(r["ok"] for r in rows),
                     "errors": sum(r["errors"] for r in rows), "non_200": sum(r["non_200"] for r in rows),
                     "degraded": sum(r["degraded"] for r in rows)},
        "events": {"batch": event_batch, "batches_per_s": event_rate, **(writer.counts if writer else {})},
        "server_alive_at_end": alive, "sweep": sweep,
        "world": {**world, "seed": seed}, "working_set_users": len(chosen),
        "features": "redis" if redis_url else "in-process",
        "server": {"workers": 1, "cpu_pinning": (os.cpu_count() or 1) > 1},
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
