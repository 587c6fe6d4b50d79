"""The hot route without the framework's per-request layers: ``GET /v1/recommendations/{surface}``.

FastAPI's routing, dependency solving and exception middleware cost about 130 us of CPU a request on this machine
(the bare endpoint: 250 us through a FastAPI route against 120 us for the same bytes from a plain ASGI callable,
uvicorn with uvloop and httptools on one core), about a sixth of a cold request at 1,000,000 people
(docs/SCALING.md). :class:`FastRecommendations` sits inside :class:`~belong.serve.guard.Guard` (keys, the
caller's scope and rate limits are checked first, as for every route) and answers exactly that route with the
route's own steps: :func:`~belong.serve.params.parse_recommendation_query`, :func:`~belong.serve.access.check_debug`,
:meth:`Engine.recommend <belong.serve.engine.Engine.recommend>`, and the app's answers to failures
(:func:`belong.serve.errors.answer`, :func:`~belong.serve.errors.unexpected`). Anything else (another method, an
unknown surface name, a longer path) goes on to the app, whose FastAPI route
(:func:`belong.serve.routes.recommendations`) stays what OpenAPI documents and what answers without this layer."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from belong.domain import Surface
from belong.serve.access import check_debug
from belong.serve.errors import JSON, answer, unexpected
from belong.serve.params import parse_recommendation_query
from belong.serve.service import Service

PREFIX = "/v1/recommendations/"
#: the surfaces by the name in the path (the route's ``{surface}``)
BY_NAME: dict[str, Surface] = {s.value: s for s in Surface}


class FastRecommendations:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, svc: Service) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX) and (surface := BY_NAME.get(path[len(PREFIX):])) is not None:
                response = await self.recommend(scope, surface)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def recommend(self, scope: Scope, surface: Surface) -> Response:
        """The route's answer (:func:`belong.serve.routes.recommendations`), failures answered as the app does."""
        svc = self.svc
        try:
            q = parse_recommendation_query(QueryParams(scope["query_string"]))
            private = check_debug(Request(scope), q.debug, q.arm)  # debug and arm need an admin key
            body = await svc.engine.recommend(surface, q.user_id, q.k, debug=q.debug, new_user=q.new_user,
                                              private=private, arm=q.arm)
        except Exception as exc:  # noqa: BLE001 - every failure answered as the app's handlers answer it
            return answer(exc, svc) or unexpected(exc, svc)
        return Response(body, media_type=JSON)
