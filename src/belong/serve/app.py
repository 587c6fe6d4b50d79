"""The ASGI app: :func:`create_app` (lifecycle, routes, error mapping, OpenAPI) and :func:`serve` (uvicorn).

Events: the batch is validated whole (:func:`belong.domain.parse_event`; the first bad row answers 422 naming
``events[i].<field>``), written durably to the event log, and only then answered 202; the new events are then
folded into the live state of every loaded model and the affected cached lists are invalidated, so the user's next
request reflects them. Re-sending an event id is a no-op (``duplicates``). Dependency failures never answer 500:
recommendations degrade (200, ``degraded: true``), a failing event log answers 503. Routes:
:mod:`belong.serve.routes`; errors: :mod:`belong.serve.errors`; the process's state: :mod:`belong.serve.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from belong.domain import Surface
from belong.serve import dashboard, errors, experiment_routes, replica, routes
from belong.serve.fastpath import FastRecommendations
from belong.serve.guard import Guard, document_guard
from belong.serve.openapi_links import add_links
from belong.serve.service import Service
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelVersion


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
    into the feature store at startup (for an in-process store, or a fresh Redis). ``surfaces`` replaces a
    surface's declaration (a catalogue name or a TOML file, per kind).
    """
    svc = Service(str(store), (settings or ServeSettings.from_env()).validate(), surfaces, materialize)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.open()
        follower = await replica.attach(svc)  # the stream's position before the log is read (replicas)
        task = asyncio.create_task(svc.start(model))
        try:
            yield
        finally:
            task.cancel()
            if follower is not None:
                follower.cancel()
                await svc.stream.close()  # type: ignore[union-attr]
            svc.close()

    app = FastAPI(
        title="belong", version="1", lifespan=lifespan,
        description="Recommendations for community platforms: communities to join, people you may know, content.",
    )
    app.state.service = svc
    errors.install(app, svc)
    routes.install(app)
    experiment_routes.install(app)
    dashboard.install(app)  # /dashboard: docs/DASHBOARD.md
    if svc.settings.fast_route:  # the hot route without the framework's layers, inside the guard
        app.add_middleware(FastRecommendations, svc=svc)
    app.add_middleware(Guard, keys=svc.keys, settings=svc.settings)  # keys and limits before any body is read

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = {
                "type": "http", "scheme": "bearer", "description": "API key or user token: `Authorization: Bearer "
                "<key or token>` (docs/SECURITY_ACCESS.md)"}
            document_guard(schema, svc.settings.read_auth)
            app.openapi_schema = add_links(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(store: str | Path, host: str = "127.0.0.1", port: int = 8000, *, settings: ServeSettings | None = None,
          surfaces: dict[Surface, str | Path] | None = None, materialize: bool = False,
          log_level: str = "warning") -> None:
    """Run the API with uvicorn (uvloop + httptools, one worker, no access log) until interrupted."""
    sys.setswitchinterval(0.001)  # background source runs yield the GIL to the event loop often
    settings = settings or ServeSettings.from_env()
    app = create_app(store, settings=settings, surfaces=surfaces, materialize=materialize)
    run_uvicorn(app, host, port, settings, log_level)


def run_uvicorn(app: Any, host: str, port: int, settings: ServeSettings, log_level: str = "warning") -> None:
    """uvicorn with the limits of :mod:`belong.serve.protocol` and the settings' keep-alive and concurrency."""
    import uvicorn

    from belong.serve.protocol import limited_protocol

    http = limited_protocol(settings.max_header_bytes, settings.body_timeout_s)
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http=http, log_level=log_level,
                            access_log=False, lifespan="on", proxy_headers=settings.proxy_headers,
                            timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
                            limit_concurrency=settings.max_connections)
    # one of the replicas of belong serve --workers N: the port is shared (belong.serve.replica)
    sockets = [replica.reuseport_socket(host, port)] if os.environ.get("BELONG_REUSEPORT") else None
    uvicorn.Server(config).run(sockets=sockets)
