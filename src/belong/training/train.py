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
from belong.state import WorldState, from_world
from belong.training import artifact

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
                      events=st.read_events(upto_seq=position))
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


def train(store: str, out: Path, names: Sequence[str] = DEFAULT_SURFACES,
          progress: TrainProgress | None = None, snapshot: bool = True) -> dict[str, Any]:
    """Train and write ``out/<version>/``; returns the manifest (with ``path`` and ``seconds`` added). With
    ``snapshot``, the state trained on is also written to ``out/snapshot/`` (:mod:`belong.state.snapshot`), where
    ``belong serve --models out`` starts from instead of reading the whole log."""
    t0 = time.perf_counter()
    created = datetime.now(UTC)
    pipelines = {name: surfaces.load(name) for name in names}  # bad names fail before any work
    state, window = load_state(store)
    load_s = time.perf_counter() - t0
    version = artifact.new_version(created, f"{store}|{window}|{created.isoformat()}")
    directory = Path(out) / version
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
        "timing": {"load_seconds": round(load_s, 3), "total_seconds": round(seconds, 3)},
        "environment": {"python": platform.python_version(), "lightgbm": lightgbm.__version__,
                        "numpy": np.__version__},
    }
    artifact.write_manifest(directory, manifest)
    return {**manifest, "path": str(directory), "snapshot": snap, "seconds": round(time.perf_counter() - t0, 3)}
