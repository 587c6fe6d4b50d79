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
from belong.training.publish import publish, staging_dir, sweep

DEFAULT_SURFACES = ("communities_ranked", "people", "content")
#: ``(surface, step, done, total)``: called as each component is prepared (and per 100 training lists).
TrainProgress = Callable[[str, str, int, int], None]


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat()


def load_state(store: str) -> tuple[WorldState, dict[str, Any]]:
    """The store's world state (with pending friend requests indexed) and its data window."""
    from belong.datasets import World
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        world = World(users=st.users(), communities=st.communities(), content=st.content(), events=st.read_events())
    state = from_world(world)
    ts = world.events.column("ts_us")
    window: dict[str, Any] = {"events": world.events.num_rows}
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
          progress: TrainProgress | None = None) -> dict[str, Any]:
    """Train and write ``out/<version>/``; returns the manifest (with ``path`` and ``seconds`` added)."""
    t0 = time.perf_counter()
    created = datetime.now(UTC)
    pipelines = {name: surfaces.load(name) for name in names}  # bad names fail before any work
    state, window = load_state(store)
    load_s = time.perf_counter() - t0
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
        pipeline.fit(state, _lists_progress(progress, name))
        if progress:
            progress(name, "writing", 1, 1)
        entry = artifact.write_surface(directory, pipeline)
        entry["surface_toml"] = name  # as asked: a catalogue name or a TOML path
        entry["name"] = pipeline.name  # the catalogue name, or the TOML file's stem
        entry["fit_seconds"] = round(time.perf_counter() - ts, 3)
        entries[pipeline.surface.value] = entry
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
    publish(directory, final)
    return {**manifest, "path": str(final), "seconds": round(time.perf_counter() - t0, 3)}
