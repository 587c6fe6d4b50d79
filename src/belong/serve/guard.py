"""The guard: an ASGI layer in front of every route that decides, from the method, path and headers alone, whether
a request may go on — before any body is read or parsed.

1. the route's role (:func:`required_role`): open operational routes; reads need a read key or a user token (unless
   ``BELONG_READ_AUTH=false``); ``DELETE``, ``/v1/models`` and ``/v1/experiments`` need an admin key; other writes
   a write key. A user token reaches only its own user's recommendations and similar users (403 otherwise, the same
   answer whether or not the other id exists).
2. the caller's token bucket (429 with ``Retry-After``).
3. the body: a ``Content-Length`` over ``max_body_bytes`` is refused 413 unread; a body is then read whole (a
   streamed body refused 413 as soon as it passes the limit; 408 when it does not arrive within
   ``body_timeout_s``) and handed to the route.

Header size and header read time are limited below ASGI, in :mod:`belong.serve.protocol`. The route's own key check
(``Depends(writer)`` etc.) stays as a second line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from belong.serve.auth import AuthError, KeyChecker, Principal, Role
from belong.serve.limits import RateLimiter, retry_after
from belong.serve.settings import ServeSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
USER_SCOPE = "a user token may read only its own user's recommendations and similar users"
#: paths that check their callers themselves: the dashboard (an admin key at its login form, then a signed session
#: cookie and CSRF tokens: belong.serve.dashboard.session); body limits still apply
OWN_AUTH = "/dashboard"


def required_role(method: str, path: str, read_auth: bool) -> Role | None:
    """The least role a request needs (``None``: open). Routes added later fall under the same rules."""
    if path in OPEN or path == OWN_AUTH or path.startswith(OWN_AUTH + "/"):
        return None
    if method in ("GET", "HEAD"):
        return Role.READ if read_auth else None
    if method == "DELETE" or path in ("/v1/models", "/v1/experiments") \
            or path.startswith(("/v1/models/", "/v1/experiments/")):  # managing models and experiments
        return Role.ADMIN
    return Role.WRITE


def user_may(who: Principal, method: str, path: str, query: bytes) -> bool:
    """Whether a user token's user may make this request: only reads of their own id (no lookup: unknown ids and
    other users' ids are refused alike)."""
    if method not in ("GET", "HEAD"):
        return False
    if path.startswith("/v1/recommendations/") and path.count("/") == 3:
        ids = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "user_id"]
        return bool(ids) and all(v.strip() == who.user_id for v in ids)
    parts = path.split("/")  # /v1/users/{id}/similar
    return (len(parts) == 5 and parts[1] == "v1" and parts[2] == "users" and parts[4] == "similar"
            and parts[3].strip() == who.user_id)


def document_guard(schema: dict[str, Any], read_auth: bool) -> None:
    """Add to an OpenAPI schema what the guard may answer on each operation (security, 401, 403, 429, 408, 413), and
    the 431 the HTTP protocol answers to a request line and headers over their limit (:mod:`belong.serve.protocol`)."""
    ref = {"$ref": "#/components/schemas/Error"}
    text = {"401": "missing or invalid API key or token", "403": "credential not allowed here",
            "429": "rate limit of this credential (see Retry-After)", "408": "body not received in time",
            "413": "body over the size limit", "431": "request line and headers over the size limit"}
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            role = required_role(method.upper(), path, read_auth)
            codes = (["401", "403", "429"] if role is not None else []) + ["431"]
            if method.upper() in BODY_METHODS:
                codes += ["408", "413"]
            if role is not None:
                op.setdefault("security", [{"HTTPBearer": []}])
            for code in codes:
                op.setdefault("responses", {}).setdefault(
                    code, {"description": text[code], "content": {"application/json": {"schema": ref}}})


async def refuse(send: Send, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = orjson.dumps({"error": kind, "message": message, "field": None, "reason": None})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware; see the module docstring. ``keys`` and ``settings`` are read per request (hot swap safe)."""

    def __init__(self, app: ASGIApp, keys: KeyChecker, settings: ServeSettings) -> None:
        self.app = app
        self.keys = keys
        self.settings = settings
        self.key_rate = RateLimiter(*settings.rate_key)
        self.user_rate = RateLimiter(*settings.rate_user)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        role = required_role(method, path, self.settings.read_auth)
        if role is not None:
            header = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            try:
                who = self.keys.authorize(header, role)
            except AuthError as exc:
                await refuse(send, exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.message,
                             {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)
                return
            if who.user_id is not None and not user_may(who, method, path, scope.get("query_string", b"")):
                await refuse(send, 403, "forbidden", USER_SCOPE)
                return
            wait = (self.user_rate if who.user_id is not None else self.key_rate).take(who.bucket)
            if wait > 0:
                await refuse(send, 429, "rate_limited", "too many requests for this credential; retry later",
                             {"Retry-After": retry_after(wait)})
                return
            scope.setdefault("state", {})["principal"] = who
        if method in BODY_METHODS:
            body = await self._body(scope, receive, send)
            if body is None:
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body within the limits, or ``None`` after answering 413 / 408 / 400 (or on disconnect)."""
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await refuse(send, 400, "bad_request", "Content-Length must be an integer")
                    return None
                if declared > limit:
                    await refuse(send, 413, "too_large", f"request body over {limit} bytes (BELONG_MAX_BODY_BYTES)")
                    return None
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.settings.body_timeout_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                await refuse(send, 408, "timeout", f"request body not received within "
                             f"{self.settings.body_timeout_s:g} s (BELONG_BODY_TIMEOUT_S)")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await refuse(send, 413, "too_large", f"request body over {limit} bytes (BELONG_MAX_BODY_BYTES)")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
