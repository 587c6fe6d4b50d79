"""The API's routes. Each one reads its input, asks the :class:`~belong.serve.service.Service` (reached through the
app: ``request.app.state.service``) and shapes the answer; the work happens there and in the engine.

====================================================  =======  ==========================================
route                                                 auth     what
====================================================  =======  ==========================================
GET  /v1/recommendations/{surface}?user_id&k&debug    read (1) ranked items (see :mod:`belong.serve.engine`)
POST /v1/events                                       write    batch of events: all valid or none stored
POST /v1/impressions                                  write    what was shown (request id, position, propensity)
POST /v1/impressions/batch                            write    several shown lists in one call (all or none)
GET  /v1/communities/{id}/similar, /v1/users/{id}/similar  read  co-membership neighbours
GET  /v1/models                                       read     loaded versions, active, previous
POST /v1/models                                       admin    build a new version from the current log
POST /v1/models/{version}/activate                    admin    atomic hot swap (and rollback)
DELETE /v1/users/{id}                                 admin    forget a user everywhere (account deletion)
GET  /healthz, /readyz, /metrics                      —        liveness, readiness, Prometheus
====================================================  =======  ==========================================

``read``: a read, write or admin key, or (recommendations and similar users of its own user only) a user token;
checked with every limit by :mod:`belong.serve.guard` before the route runs (docs/SECURITY_ACCESS.md).
(1) ``debug=true`` and the feature rows need an admin key (:mod:`belong.serve.access`); every route that returns
people or communities applies the surface's safety policy (:mod:`belong.serve.policy`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from belong.domain import Event, Surface, parse_id
from belong.errors import ValidationError
from belong.serve import similar
from belong.serve.access import check_debug
from belong.serve.auth import Role
from belong.serve.batches import event_batch, impression_events, impression_lists
from belong.serve.errors import JSON, documented, error, json_response
from belong.serve.params import K_SIMILAR, OPENAPI_PARAMETERS, SIMILAR_PARAMETERS, parse_k, parse_recommendation_query
from belong.serve.schemas import (
    Accepted,
    EventBatch,
    Health,
    ImpressionBatch,
    ImpressionLists,
    Models,
    Recommendations,
    Similar,
)
from belong.serve.service import Service
from belong.training.locate import artifact_versions

SECURED: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

_ROUTES: list[tuple[str, str, dict[str, Any], Callable[..., Any]]] = []


def _route(method: str, path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a route (added to the app by :func:`install`)."""

    def deco(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        _ROUTES.append((method, path, options, endpoint))
        return endpoint

    return deco


def install(app: FastAPI) -> None:
    """Add every route to the app itself (an included ``APIRouter`` costs a routing layer per request)."""
    for method, path, options, endpoint in _ROUTES:
        app.add_api_route(path, endpoint, methods=[method], **options)


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def writer(request: Request) -> None:
    service(request).keys.check(request.headers.get("authorization"), Role.WRITE)


def admin(request: Request) -> None:
    service(request).keys.check(request.headers.get("authorization"), Role.ADMIN)


# ----------------------------------------------------------------------------------------------- reads
@_route("GET", "/v1/recommendations/{surface}", response_model=Recommendations, tags=["recommendations"],
            responses=documented(403, 404, 422, 503), openapi_extra={"parameters": OPENAPI_PARAMETERS})
async def recommendations(surface: Surface, request: Request) -> Response:
    """Ranked items for a user: score, rank, source and explanation of each; ``degraded`` when a dependency
    failed or overran its budget (the answer then comes from cached candidates or popular items). A user id
    the model does not know is a new user, described by ``locale``, ``age_group`` and ``interests``."""
    q = parse_recommendation_query(request.query_params)  # by hand: see belong.serve.params
    private = check_debug(request, q.debug, q.arm)  # debug and arm need an admin key; so do feature rows
    body = await service(request).engine.recommend(surface, q.user_id, q.k, debug=q.debug, new_user=q.new_user,
                                                   private=private, arm=q.arm)
    return Response(body, media_type=JSON)


@_route("GET", "/v1/communities/{community_id}/similar", response_model=Similar, tags=["similar"],
            responses=documented(404, 422, 503), openapi_extra={"parameters": SIMILAR_PARAMETERS})
async def similar_communities(community_id: str, request: Request) -> Response:
    """Communities whose member sets overlap most with this one's (Jaccard), among those anyone may see; a
    community the caller may not see answers as an unknown one (404)."""
    k = parse_k(request.query_params.get("k"), K_SIMILAR)
    model = service(request).engine.model()
    items = similar.similar_communities(model, parse_id(community_id, "community_id"), k)
    return json_response({"id": community_id, "model_version": model.version, "items": items})


@_route("GET", "/v1/users/{user_id}/similar", response_model=Similar, tags=["similar"],
            responses=documented(404, 422, 503), openapi_extra={"parameters": SIMILAR_PARAMETERS})
async def similar_users(user_id: str, request: Request) -> Response:
    """People whose communities overlap most with this user's (Jaccard), under the user's own people-surface
    rules (no block either way, no teen/adult strangers, ...)."""
    k = parse_k(request.query_params.get("k"), K_SIMILAR)
    model = service(request).engine.model()
    items = similar.similar_users(model, parse_id(user_id, "user_id"), k)
    return json_response({"id": user_id, "model_version": model.version, "items": items})


# ----------------------------------------------------------------------------------------------- writes
async def _write(svc: Service, events: list[Event]) -> Response:
    result = await svc.write(events)
    body = {"accepted": result.accepted, "duplicates": result.duplicates}
    if result.forgotten:
        body["forgotten"] = result.forgotten
    return json_response(body, 202)


@_route("POST", "/v1/events", status_code=202, response_model=Accepted, tags=["events"],
             responses=documented(400, 401, 403, 422, 503), dependencies=[Depends(writer)], openapi_extra=SECURED)
async def post_events(request: Request, batch: EventBatch = Body()) -> Response:
    """Store a batch of events durably (all or none), then fold them into the live state."""
    svc = service(request)
    try:
        events = event_batch(batch.events)
    except ValidationError:
        svc.metrics.events.labels("rejected").inc(len(batch.events))
        raise
    return await _write(svc, events)


@_route("POST", "/v1/impressions", status_code=202, response_model=Accepted, tags=["events"],
             responses=documented(400, 401, 403, 422, 503), dependencies=[Depends(writer)], openapi_extra=SECURED)
async def post_impressions(request: Request, batch: ImpressionBatch = Body()) -> Response:
    """Record what a recommendation response showed: one impression event per item (request id, position,
    propensity) — the feedback the ranker will learn from. Idempotent per (user, request, position, item)."""
    events = impression_events(batch)
    return await _write(service(request), events)


@_route("POST", "/v1/impressions/batch", status_code=202, response_model=Accepted, tags=["events"],
             responses=documented(400, 401, 403, 422, 503), dependencies=[Depends(writer)], openapi_extra=SECURED)
async def post_impression_lists(request: Request, body: ImpressionLists = Body()) -> Response:
    """Several shown lists in one call (a client that buffers its impressions): each list as
    ``POST /v1/impressions`` takes it, stored all or none; a bad list is named ``lists[i]``."""
    return await _write(service(request), impression_lists(body))


# ----------------------------------------------------------------------------------------------- models
def _models(svc: Service) -> dict[str, Any]:
    return {**svc.registry.describe(), "building": svc.registry.building,
            "artifacts": artifact_versions(svc.settings.models_dir)}


@_route("GET", "/v1/models", response_model=Models, tags=["models"])
async def list_models(request: Request) -> Response:
    """Loaded model versions, the active one, the one a rollback would return to, and the ``belong train``
    artifacts available in the models directory."""
    return json_response(_models(service(request)))


@_route("POST", "/v1/models", status_code=201, response_model=Models, tags=["models"],
             responses=documented(401, 403, 404, 409, 422), dependencies=[Depends(admin)], openapi_extra=SECURED)
async def build_model(request: Request, activate: bool = Query(False),
                      artifact: str | None = Query(None, min_length=1, max_length=200,
                                                   description="load this `belong train` artifact version "
                                                   "from the models directory instead of building from the log"),
                      ) -> Response:
    """Build a new version from the current event log, or load a trained artifact (serving goes on
    meanwhile); optionally activate it."""
    svc = service(request)
    if svc.registry.building:
        return error(409, "conflict", "a model version is already being built")
    await svc.build(activate=activate, artifact=artifact)
    return json_response(_models(svc), 201)


@_route("POST", "/v1/models/{version}/activate", response_model=Models, tags=["models"],
             responses=documented(401, 403, 404), dependencies=[Depends(admin)], openapi_extra=SECURED)
async def activate_model(version: str, request: Request) -> Response:
    """Atomically switch new requests to ``version`` (requests in flight finish on the old one).
    Rollback: activate the ``previous`` version."""
    svc = service(request)
    try:
        svc.activate(version)
    except ValidationError as exc:
        return error(404, "not_found", str(exc), "version", exc.reason)
    return json_response(_models(svc))


@_route("DELETE", "/v1/users/{user_id}", tags=["users"], responses=documented(401, 403, 422, 503),
        dependencies=[Depends(admin)], openapi_extra=SECURED)
async def forget_user(user_id: str, request: Request) -> Response:
    """Forget a user (the platform's account-deletion hook): a durable tombstone, their events and profile out
    of the log, their feature rows out of the feature store, masked in every loaded model at once; later events
    naming them are dropped. ``artifacts_to_retrain``: trained artifact versions that still hold them."""
    out = await service(request).forget(parse_id(user_id, "user_id"))
    return json_response(out)


# ----------------------------------------------------------------------------------------------- operations
@_route("GET", "/healthz", response_model=Health, tags=["operations"])
async def healthz() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@_route("GET", "/readyz", response_model=Health, tags=["operations"], responses=documented(503))
async def readyz(request: Request) -> Response:
    """Readiness: a model version is active. ``features`` tells whether the feature store answers (the
    service stays ready without it, answering degraded); ``feature_rows`` how rows are kept in process
    (``exact``: invalidated by Redis; ``time-bounded``; ``off``)."""
    svc = service(request)
    active = svc.registry.active
    if active is None:
        msg = svc.startup_error or "building the first model version"
        return error(503, "not_ready", msg, headers={"Retry-After": "5"})
    features = "ok" if await asyncio.to_thread(svc.features.ping) else "unavailable"
    body: dict[str, Any] = {"status": "ready", "model_version": active.version, "features": features,
                            "feature_rows": svc.features.row_cache_mode}
    if svc.engine.precomputed is not None:  # freshness of the stored candidate lists (belong.serve.precomputed)
        body["precomputed"] = await asyncio.to_thread(svc.engine.precomputed.report, active.version)
    if svc.stream is not None:  # this replica's event stream: entries folded, propagation lag (belong.serve.replica)
        body["replica"] = svc.stream.report()
    return json_response(body)


@_route("GET", "/metrics", tags=["operations"], response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (see :mod:`belong.serve.metrics`)."""
    return Response(service(request).metrics.render(), media_type="text/plain; version=0.0.4")
