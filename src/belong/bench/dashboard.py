"""``belong bench dashboard``: each dashboard page's answer time on a simulated world (default 100,000 users),
next to the same server's ``/healthz`` (the baseline: what any request costs over loopback), in the same run.

Steps: the world in an embedded store and its trained ranked communities surface (both kept between runs, shared
with ``belong bench serve`` when given the same store), ``belong serve --models`` started as its own process, an
admin session opened through the login form, then each page requested ``repeats`` times (the user explorer and
why-not over ``users`` distinct users: each is a full run of every surface's pipeline). The first request of a
page is reported apart (``first_ms``: a cold cache, e.g. the log's counts on the overview).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from belong.bench.serve import _belong, _ensure_models, _ensure_store, free_port, wait_ready

TARGET_MS = 300.0
ADMIN_KEY = "bench-dashboard-admin"


def _figures(ms: list[float]) -> dict[str, Any]:
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "max_ms": round(float(a.max()), 2)}


def _timed(client: httpx.Client, method: str, url: str, **kw: Any) -> float:
    t0 = time.perf_counter()
    r = client.request(method, url, **kw)
    ms = (time.perf_counter() - t0) * 1e3
    if r.status_code not in (200, 303):
        raise RuntimeError(f"{method} {url} answered {r.status_code}: {r.text[:300]}")
    return ms


def bench_dashboard(users: int, communities: int, store: Path, repeats: int, sample_users: int, seed: int,
                    console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    world = _ensure_store(store, users, communities, seed, console)
    models_dir, version, trained = _ensure_models(store, console)
    port = free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_API_KEYS_ADMIN": ADMIN_KEY,
           "BELONG_BUDGET_SOURCES_MS": "5000"}
    env.pop("BELONG_REDIS_URL", None)
    server = subprocess.Popen([_belong(), "serve", "--store", str(store), "--port", str(port), "--models",
                               str(models_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    pages: dict[str, dict[str, Any]] = {}
    try:
        t0 = time.perf_counter()
        with console.status("server: loading the artifact and fitting the other surfaces"):
            wait_ready(f"{base}/readyz", server, 1800)
        ready_s = time.perf_counter() - t0
        with httpx.Client(base_url=base, timeout=120.0) as c:
            token = re.search(r'name="token" value="([^"]+)"', c.get("/dashboard/login").text)
            assert token is not None
            c.post("/dashboard/login", data={"token": token.group(1), "key": ADMIN_KEY})
            csrf_m = re.search(r'name="csrf" value="([^"]+)"', c.get("/dashboard/experiments").text)
            assert csrf_m is not None
            csrf = csrf_m.group(1)
            rng = np.random.default_rng(seed)
            chosen = [f"u{i}" for i in rng.choice(users, sample_users, replace=False)]
            listing = c.get("/v1/recommendations/communities", params={"user_id": chosen[0], "k": 10},
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
            target = listing["items"][0]["id"] if listing["items"] else "c0"
            plan: list[tuple[str, list[tuple[str, str, dict[str, Any]]]]] = [
                ("baseline /healthz", [("GET", "/healthz", {})] * repeats),
                ("login form", [("GET", "/dashboard/login", {})] * repeats),
                ("overview", [("GET", "/dashboard/overview", {})] * repeats),
                ("live", [("GET", "/dashboard/live", {})] * repeats),
                ("live.json", [("GET", "/dashboard/live.json", {})] * repeats),
                ("users: find (prefix)", [("GET", "/dashboard/users", {"params": {"user_id": "U99"}})] * repeats),
                ("users: one user (communities)", [("GET", "/dashboard/users", {"params": {"user_id": u}})
                                                   for u in chosen]),
                ("users: one user, all 3 surfaces", [("GET", "/dashboard/users", {"params": {
                    "user_id": u, "show": "all"}}) for u in chosen]),
                ("users: why not X", [("GET", "/dashboard/users", {"params": {
                    "user_id": u, "why_surface": "communities", "why_not": target}}) for u in chosen]),
                ("users: what-if (sandbox)", [("POST", "/dashboard/users/what-if", {"data": {
                    "csrf": csrf, "user_id": u, "event_type": "join", "target": target}})
                    for u in chosen[: max(3, repeats // 4)]]),
                ("models", [("GET", "/dashboard/models", {})] * repeats),
                ("experiments", [("GET", "/dashboard/experiments", {})] * repeats),
            ]
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                for name, calls in plan:
                    task = bar.add_task(name, total=len(calls))
                    ms = []
                    for method, url, kw in calls:
                        ms.append(_timed(c, method, url, **kw))
                        bar.advance(task)
                    first, rest = ms[0], ms[1:] or ms
                    pages[name] = {"first_ms": round(first, 2), **_figures(rest)}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    page_rows = {k: v for k, v in pages.items() if not k.startswith("baseline")}
    return {
        "bench": "dashboard", "world": world, "model_version": version, "model": trained,
        "server_ready_s": round(ready_s, 1), "repeats": repeats, "sample_users": sample_users,
        "target_ms": TARGET_MS, "pages": pages,
        "within_target_p95": {k: v["p95_ms"] <= TARGET_MS for k, v in page_rows.items()},
        "note": "milliseconds per request over loopback (client side), one request at a time; first_ms is the "
                "first request of each page, the other figures exclude it",
    }
