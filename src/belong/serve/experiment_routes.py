"""The experiments API (declarations, results). Errors follow :mod:`belong.serve.errors`: a bad declaration answers
422 naming the field, an unknown experiment 404.

================================================  =======  ==========================================
route                                             auth     what
================================================  =======  ==========================================
GET  /v1/experiments                              —        every experiment: declaration, status, version
GET  /v1/experiments/{name}                       —        one experiment and its version history
GET  /v1/experiments/{name}/results               —        the analysis (belong experiment analyze --json)
POST /v1/experiments                              admin    create from a JSON declaration (docs/EXPERIMENTS.md)
POST /v1/experiments/{name}/stop                  admin    stop now
POST /v1/experiments/{name}/force                 admin    {"user_id", "arm"}: a forced arm for QA
================================================  =======  ==========================================
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import Response

from belong.errors import ValidationError
from belong.experiments.declaration import parse
from belong.experiments.serving import Router
from belong.serve.errors import documented, json_response
from belong.serve.routes import SECURED, admin, service
from belong.training.locate import artifact_versions


def _router(request: Request) -> Router:
    router = service(request).experiments
    if router is None:
        raise RuntimeError("the service is not started")
    return router


async def list_experiments(request: Request) -> Response:
    """Every experiment of the store: declaration, status, version, layer range."""
    store = _router(request).store
    exps = await asyncio.to_thread(store.experiments)
    return json_response({"experiments": [e.describe() for e in exps]})


async def show_experiment(name: str, request: Request) -> Response:
    """One experiment and every version of it."""
    store = _router(request).store
    exp = await asyncio.to_thread(store.get, name)
    return json_response({**exp.describe(), "history": await asyncio.to_thread(store.history, name)})


async def results(name: str, request: Request) -> Response:
    """The experiment's analysis: per arm exposures, each metric's effect with fixed-horizon and always-valid
    intervals, CUPED, SRM, and the same per day (``belong experiment analyze NAME --json``)."""
    from belong.experiments.analyze import analyze

    router = _router(request)
    await asyncio.to_thread(router.flush)  # what this process served so far counts
    out = await asyncio.to_thread(analyze, router.store_spec, name)
    return json_response(out)


async def create_experiment(request: Request, body: dict[str, Any] = Body()) -> Response:
    """Create an experiment from a declaration (the fields of the TOML format, docs/EXPERIMENTS.md)."""
    router = _router(request)
    decl = await asyncio.to_thread(parse, body)
    svc = service(request)
    known = {m.version for m in svc.registry.versions()} | set(artifact_versions(svc.settings.models_dir))
    for i, arm in enumerate(decl.arms):
        if arm.model is not None and arm.model not in known:
            raise ValidationError(f"arms[{i}].model", f"unknown model version {arm.model!r}; loaded or in the models "
                                  f"directory: {', '.join(sorted(known)) or 'none'}")
    exp = await asyncio.to_thread(router.store.create, decl)
    await asyncio.to_thread(router.refresh)
    return json_response(exp.describe(), 201)


async def stop_experiment(name: str, request: Request) -> Response:
    """Stop the experiment now (its layer range is freed; the analysis stays available)."""
    router = _router(request)
    exp = await asyncio.to_thread(router.store.stop, name)
    await asyncio.to_thread(router.refresh)
    return json_response(exp.describe())


async def force_arm(name: str, request: Request, body: dict[str, Any] = Body()) -> Response:
    """Put one user in one arm whatever its bucket (QA)."""
    router = _router(request)
    user, arm = body.get("user_id"), body.get("arm")
    for field, value in (("user_id", user), ("arm", arm)):
        if not isinstance(value, str) or not value:
            raise ValidationError(field, "is required (a string)")
    await asyncio.to_thread(router.store.force, name, str(user), str(arm))
    await asyncio.to_thread(router.refresh)
    return json_response({"name": name, "user_id": user, "arm": arm})


def install(app: FastAPI) -> None:
    tags: list[Any] = ["experiments"]
    app.add_api_route("/v1/experiments", list_experiments, methods=["GET"], tags=tags)
    app.add_api_route("/v1/experiments/{name}", show_experiment, methods=["GET"], tags=tags,
                      responses=documented(404))
    app.add_api_route("/v1/experiments/{name}/results", results, methods=["GET"], tags=tags,
                      responses=documented(404))
    secured: dict[str, Any] = {"dependencies": [Depends(admin)], "openapi_extra": SECURED}
    app.add_api_route("/v1/experiments", create_experiment, methods=["POST"], status_code=201, tags=tags,
                      responses=documented(400, 401, 403, 422), **secured)
    app.add_api_route("/v1/experiments/{name}/stop", stop_experiment, methods=["POST"], tags=tags,
                      responses=documented(401, 403, 404, 422), **secured)
    app.add_api_route("/v1/experiments/{name}/force", force_arm, methods=["POST"], tags=tags,
                      responses=documented(400, 401, 403, 404, 422), **secured)
