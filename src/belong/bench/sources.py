"""``belong bench sources`` and ``belong bench ann``: figures measured on a simulated world, with a baseline
measured in the same run (most-popular candidates for sources; exact search for ANN)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from belong import surfaces
from belong.domain import Surface
from belong.pipeline.types import Request
from belong.state import DAY_US, from_interactions, from_world

RECALL_K = 200


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _split_world(n_users: int, n_communities: int, holdout_days: float, seed: int, console: Console):
    """Simulate, then hold out the joins of the last ``holdout_days`` (the state sees everything before)."""
    from belong.datasets import World
    from belong.simulate import simulate_world

    with console.status(f"simulating {n_users:,} users x {n_communities:,} communities"):
        world = simulate_world(n_users, n_communities, seed=seed)
    ts = world.events.column("ts_us")
    cut = int(pc.max(ts).as_py()) - int(holdout_days * DAY_US)
    before = world.events.filter(pc.less(ts, cut))
    later = world.events.filter(pc.and_(pc.greater_equal(ts, cut), pc.equal(world.events.column("type"), "join")))
    train = World(users=world.users, communities=world.communities, content=world.content, events=before)
    with console.status("building the state"):
        state = from_world(train)
    return world, state, later, cut


def _ms_stats(times: list[float]) -> dict[str, float]:
    a = np.asarray(times) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def _dataset_split(spec: str, console: Console):
    """A dataset through the evaluation loaders and its default protocol: (state of train, truth per user)."""
    from belong.evaluation import splitters
    from belong.evaluation.data import load_interactions

    with console.status(f"loading {spec}"):
        data = load_interactions(spec)
        split = splitters.make_split(splitters.default_protocol(data), data)
        state = from_interactions(split.train)
    T = split.test.csr()
    truth = {u: set(T.indices[T.indptr[u]:T.indptr[u + 1]].tolist()) - set(state.communities_of(u).tolist())
             for u in np.flatnonzero(np.diff(T.indptr) > 0).tolist()}
    info = {"dataset": spec, "protocol": split.protocol, "train_memberships": int(state.membership_csr().nnz)}
    return state, {u: t for u, t in truth.items() if t and state.communities_of(u).size}, info


def _simulated_split(n_users: int, n_communities: int, holdout_days: float, seed: int, console: Console):
    world, state, later, _ = _split_world(n_users, n_communities, holdout_days, seed, console)
    truth: dict[int, set[int]] = {}
    for a, t in zip(later.column("actor").to_pylist(), later.column("target").to_pylist(), strict=True):
        u, c = state.users.index.get(a), state.communities.index.get(t)
        if u is not None and c is not None and state.communities_of(u).size and not state.is_member(u, c):
            truth.setdefault(u, set()).add(c)
    info = {"users": n_users, "communities": n_communities, "seed": seed, "events": world.events.num_rows,
            "holdout_days": holdout_days, "train_memberships": int(state.membership_csr().nnz)}
    return state, truth, info


def bench_sources(n_users: int, n_communities: int, *, requests: int = 300, holdout_days: float = 14.0,
                  seed: int = 0, dataset: str | None = None, console: Console | None = None) -> dict[str, Any]:
    """Per communities source: latency per request and candidate recall@200 of held-out joins, plus the union
    of all sources, the blend, and a most-popular baseline, all measured on the same requests.

    Default world: simulated, joins of the last ``holdout_days`` held out. ``dataset``: a dataset spec
    (``lightgcn:DIR``...), split by its default protocol (its own split when it has one)."""
    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    if dataset:
        state, truth, info = _dataset_split(dataset, console)
    else:
        state, truth, info = _simulated_split(n_users, n_communities, holdout_days, seed, console)
    rng = np.random.default_rng(seed)
    users = sorted(truth)
    users = sorted(rng.choice(users, min(requests, len(users)), replace=False).tolist()) if users else []
    pipeline = surfaces.load("communities")
    prep: dict[str, float] = {}
    with _progress(console) as bar:
        task = bar.add_task("preparing sources", total=len(pipeline.components()))
        for comp in pipeline.components():
            t0 = time.perf_counter()
            comp.prepare(state)
            prep[comp.name] = round(time.perf_counter() - t0, 3)
            bar.advance(task)
    pipeline.state = state
    # baseline: the 200 largest communities (most popular), excluding the user's own
    size = np.diff(state.membership_csr().tocsc().indptr)
    popular = np.argsort(-size, kind="stable")
    found: dict[str, dict[int, set[int]]] = {s.name: {} for s in pipeline.sources}
    times: dict[str, list[float]] = {s.name: [] for s in pipeline.sources}
    base_found: dict[int, set[int]] = {}
    base_times: list[float] = []
    blend_found: dict[int, set[int]] = {}
    blend_times: list[float] = []
    with _progress(console) as bar:
        task = bar.add_task("requests", total=len(users))
        for u in users:
            req = Request(state.users.ids[u], Surface.COMMUNITIES, k=RECALL_K, seed=seed)
            state.profile(req)
            for src in pipeline.sources:
                t0 = time.perf_counter()
                cands = src.generate(req, state)
                times[src.name].append(time.perf_counter() - t0)
                found[src.name][u] = {c.item for c in sorted(cands, key=lambda c: -c.score)[:RECALL_K]}
            t0 = time.perf_counter()
            mine = set(state.communities_of(u).tolist())
            base_found[u] = {int(c) for c in popular[: RECALL_K + len(mine)] if int(c) not in mine}
            base_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            blend_found[u] = {it.index for it in pipeline.run(req).items}
            blend_times.append(time.perf_counter() - t0)
            bar.advance(task)

    def recall(per_user: dict[int, set[int]]) -> float:
        return round(float(np.mean([len(per_user[u] & truth[u]) / len(truth[u]) for u in users])), 4) if users else 0.0

    def mean_size(per_user: dict[int, set[int]]) -> float:
        return round(float(np.mean([len(per_user[u]) for u in users])), 1) if users else 0.0

    union = {u: set().union(*(found[s][u] for s in found)) for u in users}
    sources = {s: {**_ms_stats(times[s]), f"recall@{RECALL_K}": recall(found[s]),
                   "mean_candidates": mean_size(found[s]),
                   "prepare_s": prep[s]} for s in found}
    extras: dict[str, Any] = {}
    for src in pipeline.sources:
        if src.type_name == "ials_ann" and getattr(src, "index", None) is not None:
            extras["ann"] = src.index.meta  # type: ignore[attr-defined]
        if src.type_name == "co_membership":
            extras["co_membership_choice"] = getattr(src, "choice", None)
    return {
        "world": {**info, "test_users": len(users), "held_out": int(sum(len(truth[u]) for u in users))},
        "sources": sources,
        "union": {f"recall@{RECALL_K}": recall(union), "mean_candidates": mean_size(union)},
        "blend": {**_ms_stats(blend_times), f"recall@{RECALL_K}": recall(blend_found)},
        "baseline_most_popular": {**_ms_stats(base_times), f"recall@{RECALL_K}": recall(base_found)},
        **extras,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def bench_ann(n_users: int, n_communities: int, sizes: list[int], *, seed: int = 0,
              console: Console | None = None) -> dict[str, Any]:
    """Recall@100 / latency of every backend on real iALS factors of a simulated world, at several sizes.

    Catalogues up to the number of communities are subsets of the community factors (queries: user factors);
    larger ones are user factors (queries: community factors) — real vectors either way."""
    from belong.ann import choose_backend
    from belong.models import registry

    console = console or Console(stderr=True)
    _, state, _, _ = _split_world(n_users, n_communities, 0.0, seed, console)
    with console.status("training iALS"):
        model = registry.create("ials", {"factors": 64, "random_state": seed}).fit(state.membership_csr())
    rng = np.random.default_rng(seed)
    items, users = model.item_factors, model.user_factors  # type: ignore[attr-defined]
    out = []
    with _progress(console) as bar:
        task = bar.add_task("measuring backends", total=len(sizes))
        for n in sizes:
            pool, queries = (items, users) if n <= items.shape[0] else (users, items)
            n_eff = min(n, pool.shape[0])
            catalogue = pool[rng.choice(pool.shape[0], n_eff, replace=False)]
            chosen, report = choose_backend(catalogue, queries, k=100, seed=seed)
            out.append({"size": n_eff, "chosen": chosen, "results": report["results"]})
            bar.advance(task)
    return {"vectors": "iALS factors (64-d) of a simulated world", "k": 100, "min_recall": 0.95,
            "baseline": "exact", "sizes": out}
