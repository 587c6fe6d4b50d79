"""``Service``: everything one API process holds — event log, model versions, the engine, keys, features, metrics —
and what it does besides answering recommendations: build, load and activate versions, write events and fold them
into the live state. No HTTP here (routes: :mod:`belong.serve.routes`)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path

from belong.domain import Event, EventType, Surface
from belong.errors import StoreError, UnknownIdError, ValidationError
from belong.eventlog import EventStore, open_store
from belong.eventlog.base import AppendResult
from belong.serve.auth import KeyChecker
from belong.serve.engine import Engine
from belong.serve.feature_reader import FeatureReader
from belong.serve.metrics import Metrics
from belong.serve.precomputed import PrecomputedLists
from belong.serve.replica import EventStream
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, ModelVersion, build_version, load_version
from belong.training.locate import artifact_versions

log = logging.getLogger("belong.serve")
RECENT_EVENT_IDS = 1_000_000


def settle_heap() -> None:
    """Move the objects of the models loaded so far out of the garbage collector's view (``gc.freeze``): a model
    holds millions of long-lived objects, and a full collection walking them all is a latency spike of tens of
    milliseconds in whichever request triggers it. Collections then scan only what requests allocate."""
    import gc

    gc.collect()
    gc.freeze()


class Service:
    """One API process's state; see the module docstring."""

    def __init__(self, store_spec: str, settings: ServeSettings, surfaces: dict[Surface, str | Path] | None,
                 materialize: bool) -> None:
        self.store_spec = store_spec
        self.settings = settings
        self.surfaces = surfaces
        self.materialize = materialize
        self.metrics = Metrics()
        self.registry = ModelRegistry()
        self.keys = KeyChecker(settings.write_keys, settings.admin_keys, settings.read_keys, settings.token_secret,
                               settings.app_name)
        self.features = FeatureReader.open(settings.redis_url, prefix=settings.features_prefix,
                                           budget_ms=settings.budget_features_ms, breaker_s=settings.breaker_s,
                                           cache_s=settings.feature_cache_s, cache_rows=settings.feature_cache_rows,
                                           tracking=settings.feature_tracking)
        self.metrics.watch_rows(self.features.rows)
        self.engine = Engine(self.registry, self.features, self.metrics, settings)
        self.engine.precomputed = PrecomputedLists.from_env(registry=self.metrics.registry)
        self.stream = EventStream.from_env(settings.app_name, registry=self.metrics.registry)  # replicas
        self._store: EventStore | None = None
        self.recent_ids: OrderedDict[str, None] = OrderedDict()
        self.startup_error: str | None = None

    # ------------------------------------------------------------------------------------------- lifecycle
    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise RuntimeError("the service is not started")
        return self._store

    def open(self) -> None:
        self._store = open_store(self.store_spec, create=False)

    async def start(self, model: ModelVersion | None = None) -> None:
        """Materialise features (when asked) and activate the first version: ``model``, else the newest artifact,
        else one built from the log. A failure is kept for ``/readyz``; the process stays up for diagnosis."""
        try:
            if self.materialize:  # before the first activation: ready means features are there too
                from belong.features import materialize as run_materialize

                await asyncio.to_thread(run_materialize, self.store, self.features.store)
            if model is not None:
                self.registry.add(model)
                settle_heap()
                self.activate(model.version)
            else:
                await self.build(activate=True)
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("startup failed")

    def close(self) -> None:
        self.engine.close()
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------------------------------- versions
    def activate(self, version: str) -> ModelVersion:
        model = self.registry.activate(version)
        self.metrics.set_active(version, [m.version for m in self.registry.versions()])
        return model

    def artifact_path(self, version: str) -> Path:
        """The directory of artifact ``version`` under the models directory (ValidationError when unknown)."""
        if not self.settings.models_dir:
            raise ValidationError("artifact", "no models directory is configured (belong serve --models DIR or "
                                  "BELONG_MODELS_DIR)")
        known = artifact_versions(self.settings.models_dir)
        if version not in known:
            raise UnknownIdError("artifact", version)
        return Path(self.settings.models_dir) / version

    async def build(self, activate: bool, artifact: str | None = None) -> ModelVersion:
        """A new version: from artifact ``artifact`` (a version under the models directory), else at startup
        from the newest artifact there, else built from the current log."""
        path = self.artifact_path(artifact) if artifact else None
        if path is None and self.registry.active is None and (known := artifact_versions(self.settings.models_dir)):
            return await self._start_from_artifacts(known, activate)
        if path is not None and self.registry.has(path.name):
            model = self.registry.get(path.name)
            if activate:
                self.activate(model.version)
            return model
        self.registry.building = True
        try:
            if path is not None:
                model = await asyncio.to_thread(load_version, self.store_spec, path, self.surfaces)
            else:
                model = await asyncio.to_thread(build_version, self.store_spec, self.surfaces)
        finally:
            self.registry.building = False
        self.registry.add(model)
        settle_heap()
        if activate:
            self.activate(model.version)
        return model

    async def _start_from_artifacts(self, known: list[str], activate: bool) -> ModelVersion:
        """At startup: the newest artifact that loads; one that does not (a malformed manifest, a file failing its
        checksum) is logged and the previous one tried; none: a version built from the log."""
        for version in reversed(known):
            try:
                return await self.build(activate, artifact=version)
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - any refusal of this artifact: try the one before
                log.warning("artifact %s cannot be loaded (%s: %s); trying the previous one", version,
                            type(exc).__name__, exc)
        log.warning("no artifact under the models directory could be loaded; building from the event log")
        return await self._build_from_log(activate)

    async def _build_from_log(self, activate: bool) -> ModelVersion:
        self.registry.building = True
        try:
            model = await asyncio.to_thread(build_version, self.store_spec, self.surfaces)
        finally:
            self.registry.building = False
        self.registry.add(model)
        settle_heap()
        if activate:
            self.activate(model.version)
        return model

    # ------------------------------------------------------------------------------------------- events
    async def write(self, events: list[Event]) -> AppendResult:
        """Append ``events`` durably (all or none), then fold the new ones into every loaded version."""
        result = await asyncio.to_thread(self.store.append, events)  # durable when it returns
        self.metrics.events.labels("accepted").inc(result.accepted)
        self.metrics.events.labels("duplicate").inc(result.duplicates)
        fresh = self.fresh_events(events, result.accepted)
        self.fold(fresh)
        if self.stream is not None and fresh:  # the other replicas fold them too (belong.serve.replica)
            await self.stream.send(fresh)
        return result

    def fresh_events(self, events: list[Event], accepted: int) -> list[Event]:
        """The events of a batch to fold into the states: none if all were duplicates, all if none were; else
        those not seen through this API recently (bounded memory)."""
        if accepted == 0:
            return []
        out = events if accepted == len(events) else [e for e in events if e.event_id not in self.recent_ids]
        for e in events:
            self.recent_ids[e.event_id] = None
        while len(self.recent_ids) > RECENT_EVENT_IDS:
            self.recent_ids.popitem(last=False)
        return out

    def fold(self, events: list[Event]) -> None:
        """Apply events to every loaded model's state and invalidate the affected cached lists."""
        events = [e for e in events if e.type is not EventType.IMPRESSION]  # impressions only train the ranker
        if not events:
            return
        self.registry.apply(events)
        active = self.registry.active
        for e in events:
            idx = active.item_index(Surface.COMMUNITIES, e.target) if active and e.type is EventType.JOIN else None
            self.engine.cache.on_event(e, idx, active.version if active else "")
        if self.engine.precomputed is not None and active is not None:  # their next request runs the live path
            self.engine.precomputed.forget(events, active.version)
