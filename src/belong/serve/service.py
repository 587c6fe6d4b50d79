"""``Service``: everything one API process holds — event log, model versions, the engine, keys, features, metrics —
and what it does besides answering recommendations: build, load and activate versions, write events and fold them
into the live state. No HTTP here (routes: :mod:`belong.serve.routes`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from belong.domain import Event, EventType, Surface
from belong.errors import StoreError, UnknownIdError, ValidationError
from belong.eventlog import EventStore, open_store
from belong.eventlog.base import AppendResult
from belong.experiments.serving import Router
from belong.serve.auth import KeyChecker
from belong.serve.engine import Engine
from belong.serve.feature_reader import FeatureReader
from belong.serve.heap import HeapKeeper, settle_heap
from belong.serve.metrics import Metrics
from belong.serve.precomputed import PrecomputedLists
from belong.serve.replica import EventStream
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, ModelVersion, build_version, load_version
from belong.training.locate import artifact_versions, snapshot_dir

log = logging.getLogger("belong.serve")
FORGET_POLL_S = 2.0  # how often a process looks for users forgotten through another process


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
        self._writes = asyncio.Lock()  # an append and its fold, or a forget: never interleaved
        self.forget_poll_s = FORGET_POLL_S
        self._watcher: asyncio.Task[None] | None = None
        self.heap = HeapKeeper(settings.gc_auto_full, settings.gc_sweep_s)
        self.metrics.watch_heap(self.heap)
        self._keeper: asyncio.Task[None] | None = None
        self.startup_error: str | None = None
        self.experiments: Router | None = None

    # ------------------------------------------------------------------------------------------- lifecycle
    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise RuntimeError("the service is not started")
        return self._store

    def open(self) -> None:
        self._store = open_store(self.store_spec, create=False)
        self.experiments = Router(self.store_spec).open()
        self.engine.experiments = self.experiments

    async def start(self, model: ModelVersion | None = None) -> None:
        """Materialise features (when asked) and activate the first version: ``model``, else the newest artifact,
        else one built from the log. A failure is kept for ``/readyz``; the process stays up for diagnosis."""
        self._watcher = asyncio.create_task(self.watch_forgotten())
        self._keeper = asyncio.create_task(self.heap.run())
        try:
            if self.materialize:  # before the first activation: ready means features are there too
                from belong.features import materialize as run_materialize

                await asyncio.to_thread(run_materialize, self.store, self.features.store)
            if model is not None:
                self.registry.add(model)
                self.settle()
                self.activate(model.version)
            else:
                await self.build(activate=True)
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("startup failed")

    def settle(self) -> None:
        """After a model version loads: freeze it out of the collector's view, then hold automatic full
        collections off (:mod:`belong.serve.heap`)."""
        settle_heap()
        self.heap.hold()

    def close(self) -> None:
        for task in (self._watcher, self._keeper):
            if task is not None:
                task.cancel()
        self.heap.release()
        self.engine.close()
        if self.experiments is not None:
            self.experiments.close()
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
                model = await asyncio.to_thread(load_version, self.store_spec, path, self.surfaces, None,
                                                snapshot_dir(self.settings.models_dir) if self.settings.use_snapshot
                                                else None)
            else:
                model = await asyncio.to_thread(build_version, self.store_spec, self.surfaces)
        finally:
            self.registry.building = False
        self.registry.add(model)
        await self.mask_forgotten()  # forgotten while it was being built from an older read of the log
        self.settle()
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
        self.settle()
        if activate:
            self.activate(model.version)
        return model

    # ------------------------------------------------------------------------------------------- events
    async def write(self, events: list[Event]) -> AppendResult:
        """Append ``events`` durably (all or none), then fold into every loaded version exactly the rows the log
        inserted: a duplicate (stored before, by any process, or earlier in the same batch) changes nothing, so
        the live state never holds what the log does not."""
        async with self._writes:
            result = await asyncio.to_thread(self.store.append, events)  # durable when it returns
            fresh = [events[i] for i in result.inserted]
            self.fold(fresh)
        self.metrics.events.labels("accepted").inc(result.accepted)
        self.metrics.events.labels("duplicate").inc(result.duplicates)
        if self.stream is not None and fresh:  # the other replicas fold them too (belong.serve.replica)
            await self.stream.send(fresh)
        return result

    async def forget(self, user_id: str) -> dict[str, object]:
        """Forget a user everywhere this process reaches: the store (tombstone, events, row), the feature store
        and the in-process feature rows, every loaded version's state (masked: :mod:`belong.state.forget`) and
        popular fallback, and every cached list. Other users stop seeing them with the next request; other
        processes on the same store mask them within ``forget_poll_s`` (:meth:`mask_forgotten`)."""
        async with self._writes:  # no append of theirs folds in after the mask
            out = await asyncio.to_thread(self._forget_stored, user_id)
            self._mask([user_id])
        return out

    async def mask_forgotten(self) -> list[str]:
        """Mask in the loaded versions every user the store has forgotten (by this process or another one);
        returns those masked now."""
        async with self._writes:
            known = {uid for model in self.registry.versions() for uid in model.state.users.index}
            gone = sorted(await asyncio.to_thread(self.store.forgotten, known)) if known else []
            if gone:
                self._mask(gone)
        return gone

    def _mask(self, user_ids: list[str]) -> None:
        from belong.pipeline.types import RankedList
        from belong.state.forget import forget_user

        for model in self.registry.versions():
            masked = set()
            for user_id in user_ids:
                u = model.state.users.index.get(user_id)
                if u is not None and forget_user(model.state, user_id):
                    masked.add(u)
            if self.engine.precomputed is not None:  # their stored lists go; others' lists lose them as a person
                self.engine.precomputed.forget_users(model.version, user_ids, masked)
            if masked:
                people = model.fallback[Surface.PEOPLE]
                model.fallback[Surface.PEOPLE] = RankedList([r for r in people if r[0].item not in masked],
                                                            shared=True)
        self.features.rows.clear()
        self.engine.cache.clear()

    async def watch_forgotten(self) -> None:
        """Every ``forget_poll_s``: when the store's tombstone count changed (or on the first look), mask the
        newly forgotten users (a ``DELETE /v1/users/{id}`` answered by another process on the same store)."""
        seen: int | None = None
        while True:
            await asyncio.sleep(self.forget_poll_s)
            try:
                n = await asyncio.to_thread(self.store.tombstone_count)
                if n != seen and self.registry.active is not None:
                    masked = await self.mask_forgotten()
                    seen = n
                    if masked:
                        log.info("masked %d user(s) forgotten by another process", len(masked))
            except Exception:  # noqa: BLE001 - a store hiccup: look again next time
                log.exception("checking for forgotten users failed")

    def _forget_stored(self, user_id: str) -> dict[str, object]:
        """The stored half of :meth:`forget` (a failure answers 503; forgetting again is safe)."""
        from belong.features.online import open_feature_store
        from belong.training.forget import forget_user_data

        if not self.settings.redis_url:
            return forget_user_data(self.store, self.features.store, user_id, self.settings.models_dir)
        # the serving client times out at the request budget; a delete gets an ordinary client
        with open_feature_store(self.settings.redis_url, prefix=self.settings.features_prefix) as features:
            return forget_user_data(self.store, features, user_id, self.settings.models_dir)

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
        if self.engine.precomputed is not None and active is not None:  # answered stale while refreshed
            self.engine.precomputed.mark_stale(events, active.version)
