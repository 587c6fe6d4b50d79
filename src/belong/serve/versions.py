"""Versioned models and the atomic hot swap.

A model version is a fitted pipeline for each surface over one :class:`~belong.state.WorldState` snapshot
of the event log, plus fallback lists (most popular items) used when the pipeline cannot answer in time. It is
either built from the log at once (:func:`build_version`; id ``<UTC time>-<hash>``, the hash covering the log's
size and span and the surface declarations) or loaded from a ``belong train`` artifact (:func:`load_version`; the
artifact's id, its fitted sources and learned ranker, the state from the current log).

:class:`ModelRegistry` holds the loaded versions and one reference to the active one. Activation replaces that
reference in a single assignment: a request reads it once at its start and keeps using that object, so requests in
flight finish on the old version and none is dropped. Rollback is activating the previous version again.
Events received through the API are folded into the state of every loaded version, so a rollback does not lose
them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from belong import surfaces as catalogue
from belong.domain import Event, Surface
from belong.errors import ValidationError
from belong.pipeline import Pipeline
from belong.pipeline.types import Candidate, Merged, RankedList, Reason
from belong.state import WorldState, from_store

FALLBACK_SOURCE = "fallback_popular"
FALLBACK_DEPTH = 500


@dataclass(eq=False)
class ModelVersion:
    """One fitted set of pipelines (every surface) over one state snapshot."""

    version: str
    state: WorldState
    pipelines: dict[Surface, Pipeline]
    fallback: dict[Surface, RankedList]
    meta: dict[str, Any] = field(default_factory=dict)

    def item_index(self, surface: Surface, item_id: str) -> int | None:
        st = self.state
        ids = {Surface.COMMUNITIES: st.communities, Surface.PEOPLE: st.users, Surface.CONTENT: st.content}[surface]
        return ids.index.get(item_id)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, **self.meta}


def surface_overrides(specs: Iterable[str | Path]) -> dict[Surface, str | Path]:
    """Catalogue names or TOML paths, each replacing the shipped declaration of its surface kind."""
    out: dict[Surface, str | Path] = {}
    for spec in specs:
        kind = catalogue.load(spec).surface
        if kind in out:
            raise ValidationError("surface", f"two declarations for {kind.value}: {out[kind]} and {spec}")
        out[kind] = spec
    return out


def _fallback_lists(state: WorldState) -> dict[Surface, RankedList]:
    """Most popular items per surface, by decayed activity (people: most friends), best first (shared by every
    request: marked so, they are never written to)."""
    out: dict[Surface, RankedList] = {}
    heat = {Surface.COMMUNITIES: state.community_heat.get("all", np.zeros(0)),
            Surface.CONTENT: state.content_heat.get("all", np.zeros(0)),
            Surface.PEOPLE: np.diff(state.friend_csr().indptr).astype(np.float64)}
    texts = {Surface.COMMUNITIES: "popular this week", Surface.CONTENT: "popular this week",
             Surface.PEOPLE: "popular in the community"}
    for surface, h in heat.items():
        order = np.argsort(-h, kind="stable")[:FALLBACK_DEPTH]
        rows = []
        for rank, j in enumerate(order.tolist()):
            cand = Candidate(int(j), FALLBACK_SOURCE, float(h[j]), Reason(texts[surface]))
            m = Merged(int(j))
            m.hits[FALLBACK_SOURCE] = (rank, cand)
            rows.append((m, 1.0 / (60.0 + rank + 1)))
        out[surface] = RankedList(rows, shared=True)
    return out


def _fit_all(store: str | Path, say: Callable[[str], None],
             pipeline_of: Callable[[Surface, WorldState], Pipeline],
             snapshot: Path | None = None) -> tuple[WorldState, dict[Surface, Pipeline], dict[str, Any]]:
    """The store's state and every surface's fitted pipeline (``pipeline_of``), with the timing/count meta. With a
    ``snapshot`` (:mod:`belong.state.snapshot`) the state is the snapshot plus the log's tail, else the whole log."""
    t0 = time.perf_counter()
    started: dict[str, Any] = {}
    if snapshot is not None:
        from belong.state import snapshot as snap

        say(f"reading the state snapshot {snapshot} and the log after it")
        state, started = snap.load(store, snapshot)
    else:
        say("reading the event log")
        state = from_store(store)
    t_state = time.perf_counter() - t0
    pipelines: dict[Surface, Pipeline] = {}
    fit_s: dict[str, float] = {}
    for surface in Surface:
        t1 = time.perf_counter()
        pipelines[surface] = pipeline_of(surface, state)
        fit_s[surface.value] = round(time.perf_counter() - t1, 3)
    state.release_source()  # serving keeps no event table: events arrive through apply()
    meta = {
        "users": state.n_users, "communities": state.n_communities, "content": state.n_content,
        "memberships": int(state.membership_csr().nnz),
        "state_seconds": round(t_state, 3), "fit_seconds": fit_s, "state_from": started or "log",
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    return state, pipelines, meta


def build_version(
    store: str | Path,
    surfaces: dict[Surface, str | Path] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ModelVersion:
    """Build a version from the store's current log: state, every surface's pipeline fitted, fallbacks."""
    say = progress or (lambda _msg: None)

    def fit(surface: Surface, state: WorldState) -> Pipeline:
        say(f"fitting {surface.value}")
        return catalogue.load((surfaces or {}).get(surface, surface.value)).fit(state)

    state, pipelines, counts = _fit_all(store, say, fit)
    now = datetime.now(UTC)
    digest = hashlib.sha256()
    digest.update(f"{store}|{state.version}|{state.n_users}|{state.n_communities}|{state.now_us}".encode())
    for surface in Surface:
        digest.update(pipelines[surface].to_toml().encode())
    digest.update(str(time.time_ns()).encode())  # two builds of one log are two versions
    version = f"{now.strftime('%Y%m%dT%H%M%S')}-{digest.hexdigest()[:8]}"
    meta = {"created_at": now.isoformat().replace("+00:00", "Z"), "source": "log", **counts}
    return ModelVersion(version, state, pipelines, _fallback_lists(state), meta)


def load_version(
    store: str | Path,
    artifact: str | Path,
    surfaces: dict[Surface, str | Path] | None = None,
    progress: Callable[[str], None] | None = None,
    snapshot: str | Path | None = None,
) -> ModelVersion:
    """A version from a ``belong train`` artifact: the state from the store's current log, each surface the
    artifact holds loaded from it (fitted sources, the learned ranker), any other surface fitted from its
    declaration as :func:`build_version` does. The version id is the artifact's.

    ``snapshot``: a state snapshot of this store (:mod:`belong.state.snapshot`): the state is read from it plus
    the log after its position instead of the whole log — used when every surface loads from the artifact (a
    surface fitted here needs the log's history for its point-in-time cuts) and the snapshot is of this store."""
    from belong.training.artifact import load_pipeline, read_manifest

    say = progress or (lambda _msg: None)
    directory = Path(artifact)
    manifest = read_manifest(directory)  # a missing or foreign directory fails before the log is read
    loaded: list[str] = []

    def load_or_fit(surface: Surface, state: WorldState) -> Pipeline:
        if surface.value in manifest.get("surfaces", {}) and surface not in (surfaces or {}):
            say(f"loading {surface.value} from {directory.name}")
            loaded.append(surface.value)
            return load_pipeline(directory, surface.value, state)
        say(f"fitting {surface.value}")
        return catalogue.load((surfaces or {}).get(surface, surface.value)).fit(state)

    wanted = {s.value for s in Surface}
    fits_here = any(s not in manifest.get("surfaces", {}) or Surface(s) in (surfaces or {}) for s in wanted)
    use = Path(snapshot) if snapshot is not None and not fits_here and _snapshot_of(snapshot, store) else None
    state, pipelines, counts = _fit_all(store, say, load_or_fit, use)
    rankers = {name: {"features": len(e["ranker"]["features"]),
                      "validation": e["ranker"].get("metrics", {}).get("ranker", {})}
               for name, e in manifest.get("surfaces", {}).items() if "ranker" in e}
    meta = {
        "created_at": manifest.get("created_at"), "source": "artifact", "artifact": directory.name,  # never a path
        "data_window": manifest.get("data_window", {}), "loaded_surfaces": loaded, "rankers": rankers, **counts,
    }
    return ModelVersion(str(manifest["version"]), state, pipelines, _fallback_lists(state), meta)


def _snapshot_of(snapshot: str | Path, store: str | Path) -> bool:
    """Whether ``snapshot`` was taken of ``store`` (the same directory, or the same URL)."""
    from belong.state.snapshot import same_store

    return same_store(snapshot, store)


class ModelRegistry:
    """Loaded versions, the active one, and the activation history (for rollback)."""

    def __init__(self) -> None:
        self._versions: dict[str, ModelVersion] = {}
        self.active: ModelVersion | None = None
        self.history: list[str] = []  # activated versions, oldest first
        self._lock = threading.Lock()  # guards add/activate against each other, never the read of ``active``
        self.building = False

    def add(self, model: ModelVersion, *, activate: bool = False) -> ModelVersion:
        with self._lock:
            self._versions[model.version] = model
        if activate:
            self.activate(model.version)
        return model

    def has(self, version: str) -> bool:
        return version in self._versions

    def find(self, version: str) -> ModelVersion | None:
        """The loaded ``version``, or None."""
        return self._versions.get(version)

    def get(self, version: str) -> ModelVersion:
        model = self._versions.get(version)
        if model is None:
            known = ", ".join(self._versions) or "none"
            raise ValidationError("version", f"unknown model version {version!r}; loaded: {known}")
        return model

    def activate(self, version: str) -> ModelVersion:
        """Make ``version`` the one new requests use: a single reference assignment (atomic)."""
        with self._lock:
            model = self.get(version)
            self.active = model
            self.history.append(version)
        return model

    def versions(self) -> list[ModelVersion]:
        return list(self._versions.values())

    def apply(self, events: Iterable[Event]) -> None:
        """Fold events into the state of every loaded version (the active one and rollback targets)
        (:func:`fold`)."""
        events = list(events)
        for model in self.versions():
            fold(model.state, events)

    def describe(self) -> dict[str, Any]:
        active = self.active.version if self.active else None
        return {
            "active": active,
            "previous": next((v for v in reversed(self.history) if v != active), None),
            "versions": [{**m.describe(), "active": m.version == active} for m in self.versions()],
        }


def fold(state: WorldState, events: list[Event]) -> None:
    """Fold ``events`` (a batch, in order) into a live state. Its clock is event time: it first moves forward to
    the batch's latest event (never past the wall clock: a client's clock running ahead does not age the
    catalogue), heat decayed to it, so "now" for freshness rules, community ages and the request seed is the
    latest thing the state has seen (docs/LOOP.md). ``belong loop run --mode inprocess`` folds with this too."""
    from belong.state.snapshot import advance

    if events:
        advance(state, min(max(e.ts_us for e in events), time.time_ns() // 1000))
    for event in events:
        state.apply(event)
