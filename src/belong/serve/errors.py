"""How the API answers failures: one JSON shape (``error``, ``message``, ``field``, ``reason``), bad input 4xx
naming the field, a missing model or event log 503 with ``Retry-After``, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from belong.errors import StoreError, UnknownIdError, ValidationError
from belong.serve.auth import AuthError
from belong.serve.engine import NotReady
from belong.serve.schemas import Error
from belong.serve.service import Service

log = logging.getLogger("belong.serve")
JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def error(status: int, kind: str, message: str, field: str | None = None, reason: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": kind, "message": message, "field": field, "reason": reason}, status, headers)


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer these error codes."""
    text = {400: "malformed body (not JSON)", 401: "missing or invalid API key", 403: "API key not allowed here",
            404: "unknown id", 409: "conflict", 422: "invalid input (field and reason)",
            503: "not ready or a dependency is unavailable"}
    return {c: {"model": Error, "description": text[c]} for c in codes}


def allowed_methods(app: FastAPI, path: str) -> str:
    """The ``Allow`` header of ``path``: the methods of every route whose path matches it."""
    methods: set[str] = set()
    for route in app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install(app: FastAPI, svc: Service) -> None:
    """Map every exception the API may meet to its answer."""

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":  # not JSON at all: 400 (as OpenAPI says), the field is the body
            at = next((p for p in first.get("loc", ()) if isinstance(p, int)), None)
            why = str((first.get("ctx") or {}).get("error") or first.get("msg") or "invalid JSON")
            where = f" at byte {at}" if at is not None else ""
            return error(400, "bad_request", f"body: not valid JSON ({why}{where})", "body", f"not valid JSON: {why}")
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        field = ".".join(loc) or "body"
        return error(422, "validation", f"{field}: {first.get('msg', 'invalid')}", field, str(first.get("msg")))

    @app.exception_handler(ValidationError)
    @app.exception_handler(UnknownIdError)
    @app.exception_handler(AuthError)
    @app.exception_handler(NotReady)
    @app.exception_handler(StoreError)
    async def _known(_: Request, exc: Exception) -> Response:
        out = answer(exc, svc)
        assert out is not None  # registered for exactly the exceptions answer() maps
        return out

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kinds = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # every method of the path (routes are added one per method)
            headers = (headers or {}) | {"Allow": allowed_methods(app, request.url.path)}
        return error(exc.status_code, kinds.get(exc.status_code, "http"), str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        return unexpected(exc, svc)


def answer(exc: BaseException, svc: Service) -> Response | None:
    """The answer to an exception a route may raise on purpose (bad input, unknown id, keys, not ready, event log
    down), or None for any other: one mapping for the app's handlers and the hot route's fast path
    (:mod:`belong.serve.fastpath`)."""
    if isinstance(exc, ValidationError):
        return error(422, "validation", str(exc), exc.field, exc.reason)
    if isinstance(exc, UnknownIdError):
        return error(404, "not_found", str(exc), exc.kind, "is not known to the active model")
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        kind = "unauthorized" if exc.status == 401 else "forbidden"
        return error(exc.status, kind, exc.message, headers=headers)
    if isinstance(exc, NotReady):
        msg = svc.startup_error or "the first model version is still being built; retry shortly"
        return error(503, "not_ready", msg, headers={"Retry-After": "5"})
    if isinstance(exc, StoreError):
        svc.metrics.errors.labels("event_log").inc()
        return error(503, "unavailable", f"the event log is unavailable: {exc}", headers={"Retry-After": "1"})
    return None


def unexpected(exc: BaseException, svc: Service) -> Response:
    """An exception nothing expected: counted, logged with its traceback, answered 500 without one."""
    svc.metrics.errors.labels(f"unexpected:{type(exc).__name__}").inc()
    log.exception("unexpected error", exc_info=exc)
    return error(500, "internal", "unexpected server error (logged)")
