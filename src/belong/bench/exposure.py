"""``belong bench exposure``: what experiments cost the recommendation hot path, in one process, same run.

One API service (in-process features) over a simulated world; the communities answer of a working set of users,
their candidate lists cached (so the measured path is the hot one: cache hit, finish, respond), is timed under
three conditions, interleaved round by round so that machine noise falls on all three alike:

* ``baseline``: no experiment router at all (the engine as it was before experiments);
* ``idle``: a router whose store holds no running experiment (what every deployment pays);
* ``running``: a 50/50 experiment on the surface, its treatment overriding the scorer (assignment, the arm's
  pipeline, the ``experiments`` entry, the exposure queued and written by the background thread).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from belong.domain import Surface

EXPERIMENT = {
    "name": "bench_exposure", "surface": "communities", "layer": "bench", "start": "2000-01-01T00:00:00Z",
    "arms": [{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5,
                                                   "override": {"scorer.c": 10.0}}],
}


def _world(store: Path, users: int, communities: int, seed: int) -> None:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    if (store / "events.sqlite3").exists():
        return
    with open_store(store) as st:
        for part in simulate(users, communities, seed=seed):
            write_world(st, part, progress=False)


def _summary(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {"median_us": round(1e6 * lat[len(lat) // 2], 1), "mean_us": round(1e6 * statistics.fmean(lat), 1),
            "p99_us": round(1e6 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1), "requests": len(lat)}


async def _run(store: Path, working_set: int, rounds: int, k: int) -> dict[str, Any]:
    from belong.eventlog import open_store
    from belong.experiments.declaration import parse
    from belong.experiments.serving import Router
    from belong.experiments.store import open_experiments
    from belong.serve.cache import CandidateCache
    from belong.serve.service import Service
    from belong.serve.settings import ServeSettings

    empty = Path(tempfile.mkdtemp(prefix="belong-bench-exposure-"))
    try:
        open_store(empty).close()
        with open_experiments(store) as ex:
            if not any(e.name == EXPERIMENT["name"] for e in ex.running()):
                ex.create(parse(EXPERIMENT))
        svc = Service(str(store), ServeSettings(budget_sources_ms=60_000), None, False)
        svc.open()
        running = svc.experiments
        assert running is not None and running.active
        idle = Router(str(empty)).open()
        await svc.start()
        with open_store(store) as st:
            users = st.users().column("id").to_pylist()[:working_set]
        eng = svc.engine
        conditions: dict[str, Router | None] = {"baseline": None, "idle": idle, "running": running}
        # each condition its own candidate cache (a treatment user's list is cached under its arm's tag: one
        # shared cache would be emptied by every switch of condition, which no real process does)
        caches = {c: CandidateCache(eng.settings.candidate_ttl_s, eng.settings.cache_users) for c in conditions}
        for name, router in conditions.items():  # warm every condition's cached lists and arm pipelines
            eng.experiments, eng.cache = router, caches[name]
            for _ in range(2):
                for u in users:
                    await eng.recommend(Surface.COMMUNITIES, u, k)
        lat: dict[str, list[float]] = {c: [] for c in conditions}
        for _ in range(rounds):
            for name, router in conditions.items():
                eng.experiments, eng.cache = router, caches[name]
                for u in users:
                    t0 = time.perf_counter()
                    await eng.recommend(Surface.COMMUNITIES, u, k)
                    lat[name].append(time.perf_counter() - t0)
        running.flush()
        exposures = running.written
        eng.experiments = running
        idle.close()
        svc.close()
    finally:
        shutil.rmtree(empty, ignore_errors=True)
    out: dict[str, Any] = {c: _summary(v) for c, v in lat.items()}
    base = out["baseline"]["median_us"]
    for c in ("idle", "running"):
        out[c]["median_overhead_us"] = round(out[c]["median_us"] - base, 1)
    out["exposures_written"] = exposures
    return out


def run(store: Path, *, users: int = 5_000, communities: int = 500, seed: int = 0, working_set: int = 500,
        rounds: int = 10, k: int = 20) -> dict[str, Any]:
    _world(store, users, communities, seed)
    result = asyncio.run(_run(store, working_set, rounds, k))
    return {"bench": "exposure", "users": users, "communities": communities, "working_set": working_set,
            "rounds": rounds, "k": k, **result}
