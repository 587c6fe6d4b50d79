"""The ASGI app: :func:`create_app` (routes, errors, lifecycle) and :func:`serve` (uvicorn, one worker).

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

====================================================  =======  ==========================================
route                                                 auth     what
====================================================  =======  ==========================================
GET  /v1/recommendations/{surface}?user_id&k&debug    —        ranked items (see :mod:`belong.serve.engine`)
POST /v1/events                                       write    batch of events: all valid or none stored
POST /v1/impressions                                  write    what was shown (request id, position, propensity)
GET  /v1/communities/{id}/similar, /v1/users/{id}/similar  —   co-membership neighbours
GET  /v1/models                                       —        loaded versions, active, previous
POST /v1/models                                       admin    build a new version from the current log
POST /v1/models/{version}/activate                    admin    atomic hot swap (and rollback)
GET  /healthz, /readyz, /metrics                      —        liveness, readiness, Prometheus
====================================================  =======  ==========================================

Events: the batch is validated whole (:func:`belong.domain.parse_event`; the first bad row answers 422 naming
``events[i].<field>``), written durably to the event log (``store.append``), and only then answered 202; the
new events are then folded into the live state of every loaded model and the affected cached lists are
invalidated, so the user's next request reflects them. Re-sending an event id is a no-op (``duplicates``).
Dependency failures never answer 500: recommendations degrade (200, ``degraded: true``), a failing event log
answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from belong.domain import (
    Event,
    EventType,
    Surface,
    parse_enum,
    parse_event,
    parse_id,
    parse_ts,
)
from belong.errors import StoreError, UnknownIdError, ValidationError
from belong.eventlog import EventStore, open_store
from belong.serve import similar
from belong.serve.auth import AuthError, KeyChecker, Role
from belong.serve.engine import Engine, NotReady
from belong.serve.feature_reader import FeatureReader
from belong.serve.metrics import Metrics
from belong.serve.params import OPENAPI_PARAMETERS, parse_recommendation_query
from belong.serve.schemas import (
    Accepted,
    Error,
    EventBatch,
    Health,
    ImpressionBatch,
    Models,
    Recommendations,
    Similar,
)
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, ModelVersion, artifact_versions, build_version, load_version

log = logging.getLogger("belong.serve")
JSON = "application/json"
RECENT_EVENT_IDS = 1_000_000
_TARGET_KIND = {Surface.COMMUNITIES: "community", Surface.PEOPLE: "user", Surface.CONTENT: "content"}
#: event fields of an impression that come from the batch, not from one item
_IMPRESSION_FIELDS = {"actor": "user_id", "request_id": "request_id", "ts": "ts", "target": "item_id"}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def _error(status: int, kind: str, message: str, field: str | None = None, reason: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    return _json({"error": kind, "message": message, "field": field, "reason": reason}, status, headers)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "malformed body (not JSON)", 401: "missing or invalid API key", 403: "API key not allowed here",
            404: "unknown id", 409: "conflict", 422: "invalid input (field and reason)",
            503: "not ready or a dependency is unavailable"}
    return {c: {"model": Error, "description": text[c]} for c in codes}


def _settle_heap() -> None:
    """Move the objects of the models loaded so far out of the garbage collector's view (``gc.freeze``): a model
    holds millions of long-lived objects, and a full collection walking them all is a latency spike of tens of
    milliseconds in whichever request triggers it. Collections then scan only what requests allocate."""
    import gc

    gc.collect()
    gc.freeze()


class ServeState:
    """Everything one app holds: store, models, engine, auth, metrics."""

    def __init__(self, store_spec: str, settings: ServeSettings, surfaces: dict[Surface, str | Path] | None,
                 materialize: bool) -> None:
        self.store_spec = store_spec
        self.settings = settings
        self.surfaces = surfaces
        self.materialize = materialize
        self.metrics = Metrics()
        self.registry = ModelRegistry()
        self.keys = KeyChecker(settings.write_keys, settings.admin_keys)
        self.features = FeatureReader.open(settings.redis_url, prefix=settings.features_prefix,
                                           budget_ms=settings.budget_features_ms, breaker_s=settings.breaker_s,
                                           cache_s=settings.feature_cache_s, cache_rows=settings.feature_cache_rows,
                                           tracking=settings.feature_tracking)
        self.metrics.watch_rows(self.features.rows)
        self.engine = Engine(self.registry, self.features, self.metrics, settings)
        self.store: EventStore | None = None
        self.recent_ids: OrderedDict[str, None] = OrderedDict()
        self.startup_error: str | None = None

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
            path = Path(self.settings.models_dir) / known[-1]  # type: ignore[arg-type]
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
        _settle_heap()
        if activate:
            self.activate(model.version)
        return model

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


def create_app(
    store: str | Path,
    *,
    settings: ServeSettings | None = None,
    surfaces: dict[Surface, str | Path] | None = None,
    model: ModelVersion | None = None,
    materialize: bool = False,
) -> FastAPI:
    """The API over ``store`` (a directory or ``postgresql://`` URL).

    The first model version is built from the store in the background at startup (``/readyz`` answers 503
    until it is active) unless ``model`` is given. ``materialize`` writes the online features of the whole log
    into the feature store at startup (for an in-process store, or a fresh Redis). ``surfaces`` overrides a
    surface's declaration with a TOML file.
    """
    settings = settings or ServeSettings.from_env()
    st = ServeState(str(store), settings, surfaces, materialize)

    async def startup() -> None:
        try:
            if st.materialize:  # before the first activation: ready means features are there too
                from belong.features import materialize as run_materialize

                await asyncio.to_thread(run_materialize, st.store, st.features.store)
            if model is not None:
                st.registry.add(model)
                _settle_heap()
                st.activate(model.version)
            else:
                await st.build(activate=True)
        except Exception as exc:  # reported by /readyz; the process stays up for diagnosis
            st.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("startup failed")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        st.store = open_store(st.store_spec, create=False)
        task = asyncio.create_task(startup())
        try:
            yield
        finally:
            task.cancel()
            st.engine.close()
            st.store.close()

    app = FastAPI(
        title="belong", version="1", lifespan=lifespan,
        description="Recommendations for community platforms: communities to join, people you may know, content.",
    )
    app.state.serve = st

    # ------------------------------------------------------------------------------------------- errors
    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        field = ".".join(loc) or "body"
        return _error(422, "validation", f"{field}: {first.get('msg', 'invalid')}", field, str(first.get("msg")))

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> Response:
        return _error(422, "validation", str(exc), exc.field, exc.reason)

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> Response:
        return _error(404, "not_found", str(exc), exc.kind, "is not known to the active model")

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        kind = "unauthorized" if exc.status == 401 else "forbidden"
        return _error(exc.status, kind, exc.message, headers=headers)

    @app.exception_handler(NotReady)
    async def _not_ready(_: Request, exc: NotReady) -> Response:
        msg = st.startup_error or "the first model version is still being built; retry shortly"
        return _error(503, "not_ready", msg, headers={"Retry-After": "5"})

    @app.exception_handler(StoreError)
    async def _store_down(_: Request, exc: StoreError) -> Response:
        st.metrics.errors.labels("event_log").inc()
        return _error(503, "unavailable", f"the event log is unavailable: {exc}", headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        kinds = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, kinds.get(exc.status_code, "http"), str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        st.metrics.errors.labels(f"unexpected:{type(exc).__name__}").inc()
        log.exception("unexpected error")
        return _error(500, "internal", "unexpected server error (logged)")

    def writer(request: Request) -> None:
        st.keys.check(request.headers.get("authorization"), Role.WRITE)

    def admin(request: Request) -> None:
        st.keys.check(request.headers.get("authorization"), Role.ADMIN)

    secured = {"security": [{"HTTPBearer": []}]}

    # ------------------------------------------------------------------------------------------- reads
    @app.get("/v1/recommendations/{surface}", response_model=Recommendations, tags=["recommendations"],
             responses=_errors(404, 422, 503), openapi_extra={"parameters": OPENAPI_PARAMETERS})
    async def recommendations(surface: Surface, request: Request) -> Response:
        """Ranked items for a user: score, rank, source and explanation of each; ``degraded`` when a dependency
        failed or overran its budget (the answer then comes from cached candidates or popular items). A user id
        the model does not know is a new user, described by ``locale``, ``age_group`` and ``interests``."""
        q = parse_recommendation_query(request.query_params)  # by hand: see belong.serve.params
        body = await st.engine.recommend(surface, q.user_id, q.k, debug=q.debug, new_user=q.new_user)
        return Response(body, media_type=JSON)

    @app.get("/v1/communities/{community_id}/similar", response_model=Similar, tags=["similar"],
             responses=_errors(404, 422, 503))
    async def similar_communities(community_id: str, k: int = Query(10, ge=1, le=100)) -> Response:
        """Communities whose member sets overlap most with this one's (Jaccard)."""
        model = st.engine.model()
        items = similar.similar_communities(model, parse_id(community_id, "community_id"), k)
        return _json({"id": community_id, "model_version": model.version, "items": items})

    @app.get("/v1/users/{user_id}/similar", response_model=Similar, tags=["similar"],
             responses=_errors(404, 422, 503))
    async def similar_users(user_id: str, k: int = Query(10, ge=1, le=100)) -> Response:
        """People whose communities overlap most with this user's (Jaccard)."""
        model = st.engine.model()
        items = similar.similar_users(model, parse_id(user_id, "user_id"), k)
        return _json({"id": user_id, "model_version": model.version, "items": items})

    # ------------------------------------------------------------------------------------------- writes
    async def write(events: list[Event]) -> Response:
        assert st.store is not None
        result = await asyncio.to_thread(st.store.append, events)  # durable when it returns
        st.metrics.events.labels("accepted").inc(result.accepted)
        st.metrics.events.labels("duplicate").inc(result.duplicates)
        st.fold(st.fresh_events(events, result.accepted))
        return _json({"accepted": result.accepted, "duplicates": result.duplicates}, 202)

    @app.post("/v1/events", status_code=202, response_model=Accepted, tags=["events"],
              responses=_errors(400, 401, 403, 422, 503), dependencies=[Depends(writer)], openapi_extra=secured)
    async def post_events(batch: EventBatch = Body()) -> Response:
        """Store a batch of events durably (all or none), then fold them into the live state."""
        events = []
        for i, row in enumerate(batch.events):
            try:
                events.append(parse_event(row))
            except ValidationError as exc:
                st.metrics.events.labels("rejected").inc(len(batch.events))
                raise ValidationError(f"events[{i}].{exc.field}", exc.reason) from None
        return await write(events)

    @app.post("/v1/impressions", status_code=202, response_model=Accepted, tags=["events"],
              responses=_errors(400, 401, 403, 422, 503), dependencies=[Depends(writer)], openapi_extra=secured)
    async def post_impressions(batch: ImpressionBatch = Body()) -> Response:
        """Record what a recommendation response showed: one impression event per item (request id, position,
        propensity) — the feedback the ranker will learn from. Idempotent per (request, position, item)."""
        surface = parse_enum(batch.surface, Surface, "surface")
        ts_us = time.time_ns() // 1000 if batch.ts in (None, "") else parse_ts(batch.ts, "ts")
        events = []
        for i, it in enumerate(batch.items):
            digest = hashlib.sha256(f"{batch.request_id}\x00{it.position}\x00{it.item_id}".encode()).hexdigest()
            row = {"event_id": f"imp-{digest[:32]}", "ts": ts_us / 1e6, "type": "impression",
                   "actor": batch.user_id, "target": it.item_id, "target_kind": _TARGET_KIND[surface],
                   "request_id": batch.request_id, "surface": surface.value, "position": it.position,
                   "propensity": it.propensity}
            try:
                events.append(parse_event(row))
            except ValidationError as exc:
                raise ValidationError(_IMPRESSION_FIELDS.get(exc.field, f"items[{i}].{exc.field}"), exc.reason) from None
        return await write(events)

    # ------------------------------------------------------------------------------------------- models
    @app.get("/v1/models", response_model=Models, tags=["models"])
    async def list_models() -> Response:
        """Loaded model versions, the active one, the one a rollback would return to, and the ``belong train``
        artifacts available in the models directory."""
        return _json(models_body())

    def models_body() -> dict[str, Any]:
        return {**st.registry.describe(), "building": st.registry.building,
                "artifacts": artifact_versions(st.settings.models_dir)}

    @app.post("/v1/models", status_code=201, response_model=Models, tags=["models"],
              responses=_errors(401, 403, 404, 409, 422), dependencies=[Depends(admin)], openapi_extra=secured)
    async def build_model(activate: bool = Query(False),
                          artifact: str | None = Query(None, min_length=1, max_length=200,
                                                       description="load this `belong train` artifact version "
                                                       "from the models directory instead of building from the log"),
                          ) -> Response:
        """Build a new version from the current event log, or load a trained artifact (serving goes on
        meanwhile); optionally activate it."""
        if st.registry.building:
            return _error(409, "conflict", "a model version is already being built")
        await st.build(activate=activate, artifact=artifact)
        return _json(models_body(), 201)

    @app.post("/v1/models/{version}/activate", response_model=Models, tags=["models"],
              responses=_errors(401, 403, 404), dependencies=[Depends(admin)], openapi_extra=secured)
    async def activate_model(version: str) -> Response:
        """Atomically switch new requests to ``version`` (requests in flight finish on the old one).
        Rollback: activate the ``previous`` version."""
        try:
            st.activate(version)
        except ValidationError as exc:
            return _error(404, "not_found", str(exc), "version", exc.reason)
        return _json(models_body())

    # ------------------------------------------------------------------------------------------- operations
    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=Health, tags=["operations"], responses=_errors(503))
    async def readyz() -> Response:
        """Readiness: a model version is active. ``features`` tells whether the feature store answers (the
        service stays ready without it, answering degraded); ``feature_rows`` how rows are kept in process
        (``exact``: invalidated by Redis; ``time-bounded``; ``off``)."""
        active = st.registry.active
        if active is None:
            msg = st.startup_error or "building the first model version"
            return _error(503, "not_ready", msg, headers={"Retry-After": "5"})
        features = "ok" if await asyncio.to_thread(st.features.ping) else "unavailable"
        return _json({"status": "ready", "model_version": active.version, "features": features,
                      "feature_rows": st.features.row_cache_mode})

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> Response:
        """Prometheus metrics (see :mod:`belong.serve.metrics`)."""
        return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = {
                "type": "http", "scheme": "bearer", "description": "API key: `Authorization: Bearer <key>`"}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(store: str | Path, host: str = "127.0.0.1", port: int = 8000, *, settings: ServeSettings | None = None,
          surfaces: dict[Surface, str | Path] | None = None, materialize: bool = False,
          log_level: str = "warning") -> None:
    """Run the API with uvicorn (uvloop + httptools, one worker, no access log) until interrupted."""
    import uvicorn

    sys.setswitchinterval(0.001)  # background source runs yield the GIL to the event loop often
    settings = settings or ServeSettings.from_env()
    app = create_app(store, settings=settings, surfaces=surfaces, materialize=materialize)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level=log_level,
                access_log=False, lifespan="on", proxy_headers=settings.proxy_headers)
