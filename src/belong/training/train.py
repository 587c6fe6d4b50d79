"""``belong train``: fit every model a store's surfaces need and write one versioned artifact.

For each surface (default: ``communities_ranked`` — the shipped communities sources with the learned ranker —,
``people`` and ``content``), the surface's components are prepared on a :class:`WorldState` built from the store
(sources' models, indexes, the ranker on a validation cut of the memberships), then written with
:mod:`belong.training.artifact`. Surfaces without data (no communities, no friendships, no content) are skipped
and say so in the manifest.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pyarrow.compute as pc

from belong import surfaces
from belong.domain import Surface
from belong.errors import ValidationError
from belong.schema import STATE_COLUMNS
from belong.state import WorldState, from_world
from belong.state.build import encode_events
from belong.training import artifact
from belong.training.publish import publish, staging_dir, sweep

DEFAULT_SURFACES = ("communities_ranked", "people", "content")
#: ``(surface, step, done, total)``: called as each component is prepared (and per 100 training lists).
TrainProgress = Callable[[str, str, int, int], None]


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat()


def load_state(store: str) -> tuple[WorldState, dict[str, Any]]:
    """The store's world state (with pending friend requests indexed) and its data window (with the log
    ``position`` and the store's ``entity_counts`` it was read at)."""
    from belong.datasets import World
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        position, counts = st.position(), st.entity_counts()
        world = World(users=st.users(), communities=st.communities(), content=st.content(),
                      events=encode_events(st.read_columns(STATE_COLUMNS, upto_seq=position)))
    state = from_world(world)
    ts = world.events.column("ts_us")
    window: dict[str, Any] = {"events": world.events.num_rows, "position": position, "entity_counts": counts}
    if world.events.num_rows:
        lo, hi = int(pc.min(ts).as_py()), int(pc.max(ts).as_py())
        window.update({"first_ts_us": lo, "last_ts_us": hi, "first": _iso(lo), "last": _iso(hi)})
    return state, window


def _skip_reason(surface: Surface, state: WorldState) -> str | None:
    if surface is Surface.COMMUNITIES and state.membership_csr().nnz == 0:
        return "no memberships"
    if surface is Surface.PEOPLE and state.friend_csr().nnz == 0 and state.membership_csr().nnz == 0:
        return "no friendships or memberships"
    if surface is Surface.CONTENT and state.n_content == 0:
        return "no content"
    return None


def _lists_progress(progress: TrainProgress | None, name: str) -> Callable[[int, int], None] | None:
    """The pipeline's ``(done, total)`` progress of the training lists, reported as ``name``'s step."""
    if progress is None:
        return None
    report = progress

    def on_lists(done: int, total: int) -> None:
        report(name, "training lists", done, total)

    return on_lists


def _tuning_plan(state: WorldState, out: Path, budget: float | None, retune: bool,
                 pipelines: dict[str, Any]) -> dict[str, Any] | None:
    """What ``--tune-budget`` does here: tune (with a shared :class:`~belong.training.tune.Budget`) or reuse the
    newest tuned artifact's values (fingerprint within the drift threshold)."""
    if budget is None:
        return None
    from belong.training import tune

    fp = tune.fingerprint(state)
    record: dict[str, Any] = {"budget_seconds": budget, "fingerprint": fp, "drift_threshold": tune.DRIFT_THRESHOLD,
                              "surfaces": {}}
    prev = None if retune else tune.previous_tuning(out)
    if prev is not None:
        version, old = prev
        d = tune.drift(fp, old.get("fingerprint", {}))
        record.update({"previous": version, "drift": round(d, 4)})
        if d <= tune.DRIFT_THRESHOLD and all(p.name in old["surfaces"] for p in pipelines.values()):
            record.update({"mode": "reused", "reused_from": version, "surfaces": old["surfaces"], "seconds": 0.0})
            return {"record": record, "budget": None}
    record["mode"] = "tuned"
    record["reason"] = ("--retune" if retune else "no tuned artifact before" if prev is None else
                        f"data drifted {record['drift']:.0%} > {tune.DRIFT_THRESHOLD:.0%}" if record["drift"] >
                        tune.DRIFT_THRESHOLD else "a surface was not tuned before")
    record["seconds"] = 0.0
    tasks = sum(tune.count_tasks(p) for p in pipelines.values())
    return {"record": record, "budget": tune.Budget(budget, tasks)}


def _tune_or_reuse(name: str, pipeline: Any, state: WorldState, tuning: dict[str, Any],
                   progress: TrainProgress | None) -> None:
    """Fit ``pipeline`` with tuned values: recorded ones (reuse), or found now within the shared budget."""
    from belong.training import tune

    record = tuning["record"]
    if tuning["budget"] is None:
        tune.apply(pipeline, record["surfaces"][pipeline.name])
        pipeline.fit(state, _lists_progress(progress, name))
        return
    budget = tuning["budget"]
    t0 = time.perf_counter()

    def on_trial(what: str, n: int) -> None:
        if progress:
            progress(name, f"tuning {what}: trial {n}", n, n)

    surface: dict[str, Any] = {"sources": tune.tune_sources(pipeline, state, budget, on_trial=on_trial)}
    if pipeline.scorer.type_name == "lgbm_ranker":
        surface["ranker"] = tune.tune_ranker(pipeline, state, budget, on_trial=on_trial,
                                             progress=_lists_progress(progress, name))
    else:
        pipeline.fit(state, _lists_progress(progress, name))
    trial_s = sum(float(r.get("seconds", 0.0)) for r in [*surface["sources"].values(), surface.get("ranker", {})])
    surface["seconds"] = round(time.perf_counter() - t0, 3)
    record["surfaces"][pipeline.name] = surface  # the catalogue name or the TOML file's stem
    record["seconds"] = round(record["seconds"] + trial_s, 3)


def train(store: str, out: Path, names: Sequence[str] = DEFAULT_SURFACES,
          progress: TrainProgress | None = None, *, tune_budget: float | None = None,
          retune: bool = False, snapshot: bool = True) -> dict[str, Any]:
    """Train and write ``out/<version>/``; returns the manifest (with ``path`` and ``seconds`` added).

    ``tune_budget`` (seconds): tune the sources and the ranker on the store's own data first, or reuse the newest
    tuned artifact's values in ``out`` while the data has not drifted (:mod:`belong.training.tune`; ``retune``:
    search again anyway); the manifest's ``tuning`` records what was chosen and why. With ``snapshot``, the state
    trained on is also written to ``out/snapshot/`` (:mod:`belong.state.snapshot`), where ``belong serve --models
    out`` starts from instead of reading the whole log."""
    if tune_budget is not None and tune_budget < 0:
        raise ValidationError("tune_budget", f"must be >= 0 seconds, got {tune_budget}")
    t0 = time.perf_counter()
    created = datetime.now(UTC)
    pipelines = {name: surfaces.load(name) for name in names}  # bad names fail before any work
    state, window = load_state(store)
    load_s = time.perf_counter() - t0
    tuning = _tuning_plan(state, Path(out), tune_budget, retune, pipelines)
    version = artifact.new_version(created, f"{store}|{window}|{created.isoformat()}")
    final = Path(out) / version
    if final.exists():
        raise FileExistsError(final)
    sweep(Path(out))
    directory = staging_dir(Path(out), version)  # published by one rename once complete (belong.training.publish)
    directory.mkdir(parents=True, exist_ok=False)
    entries: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, pipeline in pipelines.items():
        why = _skip_reason(pipeline.surface, state)
        if why:
            skipped[name] = why
            continue
        ts = time.perf_counter()
        if progress:
            progress(name, "fitting sources", 0, 1)
        if tuning is not None:
            _tune_or_reuse(name, pipeline, state, tuning, progress)
        else:
            pipeline.fit(state, _lists_progress(progress, name))
        if progress:
            progress(name, "writing", 1, 1)
        entry = artifact.write_surface(directory, pipeline)
        entry["surface_toml"] = name  # as asked: a catalogue name or a TOML path
        entry["name"] = pipeline.name  # the catalogue name, or the TOML file's stem
        entry["fit_seconds"] = round(time.perf_counter() - ts, 3)
        entries[pipeline.surface.value] = entry
    snap: dict[str, Any] = {}
    if snapshot:
        from belong.state.snapshot import write_snapshot
        from belong.training.locate import SNAPSHOT

        t_snap = time.perf_counter()
        if progress:
            progress("state", "writing the snapshot", 0, 1)
        info = write_snapshot(state, Path(out) / SNAPSHOT, window["position"], window["entity_counts"], store)
        snap = {"path": str(info.path), "position": info.position, "seconds": round(time.perf_counter() - t_snap, 3)}
        if progress:
            progress("state", "writing the snapshot", 1, 1)
    seconds = time.perf_counter() - t0
    manifest = {
        "version": version, "created_at": created.isoformat(), "store": str(store), "data_window": window,
        "counts": {"users": state.n_users, "communities": state.n_communities, "content": state.n_content,
                   "memberships": int(state.membership_csr().nnz), "friendships": int(state.friend_csr().nnz // 2)},
        "surfaces": entries, "skipped": skipped,
        **({"tuning": tuning["record"]} if tuning is not None else {}),
        "timing": {"load_seconds": round(load_s, 3), "total_seconds": round(seconds, 3)},
        "environment": {"python": platform.python_version(), "lightgbm": lightgbm.__version__,
                        "numpy": np.__version__},
    }
    artifact.write_manifest(directory, manifest)
    publish(directory, final)
    return {**manifest, "path": str(final), "snapshot": snap, "seconds": round(time.perf_counter() - t0, 3)}
