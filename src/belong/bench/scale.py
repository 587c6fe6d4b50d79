"""``belong bench scale``: the whole life of one world on this machine — simulate, train, snapshot, start the API —
each step a ``belong`` process of this installation, timed (wall) and measured (peak resident memory, from the
kernel's accounting of the finished process: ``wait4``), with memory per million people. The ``snapshot`` step
writes the state alone (``belong snapshot``) and loads it as the API does (``belong snapshot --load``).

The API start is measured twice in the same run: from the state snapshot ``belong train`` wrote (plus the log's
tail) and, as the baseline, from the whole log (``BELONG_SNAPSHOT=false``). For each: seconds until ``/readyz``
answers 200, resident memory then (``psutil``) and the process's peak, and the latency of the first request of a
few people (their first: nothing cached).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psutil

#: (step, message): progress of a step
SayFn = Callable[[str, str], None]
STEPS = ("simulate", "train", "snapshot", "serve")


def _belong() -> str:
    return str(Path(sys.executable).with_name("belong"))


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_READ_AUTH": "false", **(extra or {})}
    env.pop("BELONG_REDIS_URL", None)  # the in-process feature store: what is measured is this process
    return env


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, float, float]:
    """Wait for ``proc``; its exit status, peak resident memory in MB (10^6 bytes; ``ru_maxrss``: the process
    and the children it waited for) and CPU seconds (user + system, the same)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            # kB (Linux) -> MB, as psutil's RSS below
            return proc.returncode, usage.ru_maxrss * 1024 / 1e6, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)


def run_step(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``belong`` command: wall seconds, CPU seconds, peak RSS (MB), exit code, the load average before and
    after (a shared machine's wall time is only as good as its load), its JSON output when it printed one."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([_belong(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(env))
    assert proc.stdout is not None and proc.stderr is not None
    # drain the pipes while it runs (a full pipe would block the child)
    import threading

    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda k=k, f=f: chunks[k].extend(iter(lambda: f.read(65536), b"")),
                                daemon=True) for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    code, peak, cpu = _wait(proc, timeout_s)
    for r in readers:
        r.join()
    out = b"".join(chunks["out"])
    result: dict[str, Any] = {"command": "belong " + " ".join(args), "exit_code": code,
                              "seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(cpu, 2),
                              "peak_rss_mb": round(peak, 1),
                              "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if code != 0:
        result["stderr"] = b"".join(chunks["err"]).decode(errors="replace")[-2000:]
    with contextlib.suppress(orjson.JSONDecodeError):
        result["output"] = orjson.loads(out)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_start(store: Path, models: Path, snapshot: bool, people: list[str], timeout_s: float) -> dict[str, Any]:
    """Start ``belong serve --models``; seconds to ready, RSS at ready, first-request latencies, peak RSS."""
    port = _free_port()
    args = ["serve", "--store", str(store), "--models", str(models), "--port", str(port)]
    env = _env({"BELONG_SNAPSHOT": "true" if snapshot else "false", "BELONG_BUDGET_SOURCES_MS": "1000"})
    t0 = time.perf_counter()
    proc = subprocess.Popen([_belong(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"command": "belong " + " ".join(args), "BELONG_SNAPSHOT": snapshot}
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    return {**out, "exit_code": proc.returncode, "stderr": err[-2000:]}
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/readyz").status_code == 200:
                        break
                if time.perf_counter() - t0 > timeout_s:
                    return {**out, "error": f"not ready after {timeout_s:.0f} s"}
                time.sleep(0.2)
            out["ready_seconds"] = round(time.perf_counter() - t0, 2)
            out["rss_at_ready_mb"] = round(psutil.Process(proc.pid).memory_info().rss / 1e6, 1)
            models_info = client.get("/v1/models").json()
            active: dict[str, Any] = next((v for v in models_info.get("versions", []) if v.get("active")), {})
            out["state_from"] = active.get("state_from")
            out["state_seconds"] = active.get("state_seconds")
            lat: dict[str, list[float]] = {}
            status: dict[str, int] = {}
            for surface in ("communities", "people", "content"):
                for uid in people:
                    t = time.perf_counter()
                    r = client.get(f"/v1/recommendations/{surface}", params={"user_id": uid, "k": 20})
                    lat.setdefault(surface, []).append((time.perf_counter() - t) * 1e3)
                    status[str(r.status_code)] = status.get(str(r.status_code), 0) + 1
            out["first_requests"] = {s: {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 2),
                                         "p99_ms": round(float(np.percentile(v, 99)), 2)} for s, v in lat.items()}
            out["status_codes"] = status
            out["rss_after_requests_mb"] = round(psutil.Process(proc.pid).memory_info().rss / 1e6, 1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code, peak, _ = _wait(proc, 60)
        out["peak_rss_mb"] = round(peak, 1)
    return out


def bench_scale(users: int, communities: int, directory: Path, steps: list[str], seed: int = 0,
                people: int = 30, timeout_s: float = 3600.0, say: SayFn | None = None,
                surfaces: list[str] | None = None, serve_baseline: bool = True) -> dict[str, Any]:
    """Run ``steps`` (of :data:`STEPS`) on one world kept in ``directory`` (a simulated store already there, of
    the same size and seed, is reused: its step is reported as reused). ``surfaces``: what ``belong train``
    trains (default: its own default); ``serve_baseline``: also start the API from the whole log."""
    report = say or (lambda _step, _msg: None)
    directory.mkdir(parents=True, exist_ok=True)
    store, models = directory / "store", directory / "models"
    tag = directory / "world.json"
    world = {"users": users, "communities": communities, "seed": seed}
    machine = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
               "python": sys.version.split()[0]}
    out: dict[str, Any] = {"world": world, "directory": str(directory), "steps": {}, "machine": machine}
    if "simulate" in steps:
        if store.exists() and tag.is_file() and orjson.loads(tag.read_bytes()) == world:
            out["steps"]["simulate"] = {"reused": str(store)}
        else:
            if store.exists():
                shutil.rmtree(store)
            report("simulate", f"{users:,} people, {communities:,} communities")
            res = run_step(["simulate", "--users", str(users), "--communities", str(communities), "--seed", str(seed),
                            "--store", str(store), "--json"], timeout_s)
            out["steps"]["simulate"] = res
            if res["exit_code"] == 0:
                tag.write_bytes(orjson.dumps(world))
    if "train" in steps:
        if models.exists():
            shutil.rmtree(models)
        report("train", "belong train")
        chosen = [a for s in (surfaces or []) for a in ("--surface", s)]
        res = run_step(["train", "--store", str(store), "--out", str(models), *chosen, "--json"], timeout_s)
        if "output" in res:  # keep the figures, not the whole manifest
            m = res.pop("output")
            res["timing"] = m.get("timing")
            res["snapshot"] = m.get("snapshot")
            res["counts"] = m.get("counts")
            res["fit_seconds"] = {k: v.get("fit_seconds") for k, v in m.get("surfaces", {}).items()}
        out["steps"]["train"] = res
    if "snapshot" in steps:  # the state alone: write it from the log, then load it as the API does
        snap_dir = models / "snapshot"
        report("snapshot", "belong snapshot, then belong snapshot --load")
        res = run_step(["snapshot", "--store", str(store), "--out", str(snap_dir), "--json"], timeout_s)
        out["steps"]["snapshot_write"] = res
        res = run_step(["snapshot", "--store", str(store), "--out", str(snap_dir), "--load"], timeout_s)
        out["steps"]["snapshot_load"] = res
    if "serve" in steps:
        ids = _some_people(store, people, seed)
        for snap in (True, False) if serve_baseline else (True,):
            name = "serve_snapshot" if snap else "serve_log"
            report(name, "belong serve --models (" + ("snapshot + tail" if snap else "whole log") + ")")
            out["steps"][name] = serve_start(store, models, snap, ids, timeout_s)
    out["per_million_people"] = _per_million(out["steps"], users, import_baseline_mb())
    snap, log = out["steps"].get("serve_snapshot", {}), out["steps"].get("serve_log", {})
    if "ready_seconds" in snap and "ready_seconds" in log:
        out["serve_start_ratio"] = {"ready_seconds": round(snap["ready_seconds"] / log["ready_seconds"], 3),
                                    "rss_at_ready": round(snap["rss_at_ready_mb"] / log["rss_at_ready_mb"], 3)}
    return out


def _some_people(store: Path, n: int, seed: int) -> list[str]:
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        ids = st.users().column("id").to_pylist()
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False).tolist()] if ids else []


def import_baseline_mb() -> float:
    """Peak RSS (MB) of an interpreter that imports the serving and training stack and holds no data: the fixed
    part of every step's memory, left out of the per-million-people figures."""
    code = "import belong.serve.app, belong.training.train, belong.surfaces, belong.sources, belong.ranking"
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env())
    return _wait(proc, 300)[1]


def _per_million(steps: dict[str, Any], users: int, base_mb: float) -> dict[str, Any]:
    """Memory of each step above the data-free baseline (peak; and resident at ready for the API), in GB per
    million people (linear in people: the figure to multiply for a larger world)."""
    f = 1e6 / max(users, 1)
    out: dict[str, Any] = {"baseline_mb": round(base_mb, 1)}
    for name, res in steps.items():
        if isinstance(res, dict) and "peak_rss_mb" in res:
            out[f"{name}_peak_gb"] = round(max(res["peak_rss_mb"] - base_mb, 0.0) * f / 1e3, 3)
        if isinstance(res, dict) and "rss_at_ready_mb" in res:
            out[f"{name}_ready_rss_gb"] = round(max(res["rss_at_ready_mb"] - base_mb, 0.0) * f / 1e3, 3)
    return out
