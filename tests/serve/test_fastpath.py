"""``GET /v1/recommendations/{surface}`` answered by the fast path (:mod:`belong.serve.fastpath`) gives what the
FastAPI route gives: the same status, headers that matter and body (less the request id), for answers and for
every failure (bad input, unknown user, debug without an admin key, missing and bad keys, an unknown surface, a
method the route does not take), and requests that are not that route still reach the app. Two real apps over the
same store, one with ``fast_route`` off; read keys on, so the guard's refusals are compared too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from trust_world import settings

from belong.serve.app import create_app
from belong.serve.fastpath import FastRecommendations
from belong.serve.versions import build_version
from serve_helpers import ADMIN_KEY, READ_KEY, WRITE_KEY


def _ready(c: TestClient) -> TestClient:
    deadline = time.monotonic() + 120
    while c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, c.get("/readyz").text
        time.sleep(0.1)
    return c


@pytest.fixture(scope="module")
def pair(trust_store: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """(fast route on, fast route off) over the same store and the same model version (built once: answers cannot
    differ by a fit), read keys required."""
    common = {"budget_sources_ms": 30000.0, "read_auth": True, "read_keys": frozenset({READ_KEY})}
    model = build_version(str(trust_store))
    fast = create_app(trust_store, settings=settings(**common), model=model, materialize=True)
    slow = create_app(trust_store, settings=settings(**common, fast_route=False), model=model, materialize=True)
    assert any(m.cls is FastRecommendations for m in fast.user_middleware)
    assert not any(m.cls is FastRecommendations for m in slow.user_middleware)
    with TestClient(fast) as a, TestClient(slow) as b:
        yield _ready(a), _ready(b)


def _same(a: TestClient, b: TestClient, method: str, url: str, key: str | None = READ_KEY) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    ra, rb = a.request(method, url, headers=headers), b.request(method, url, headers=headers)
    assert ra.status_code == rb.status_code, (url, ra.text, rb.text)
    for h in ("content-type", "retry-after", "www-authenticate", "allow"):
        assert ra.headers.get(h) == rb.headers.get(h), (url, h)
    ja, jb = orjson.loads(ra.content), orjson.loads(rb.content)
    if isinstance(ja, dict):
        for j in (ja, jb):  # each answer's own id
            j.pop("request_id", None)
        if "debug" in ja:  # stage timings differ run to run; what was removed and why does not
            for d in (ja["debug"], jb["debug"]):
                d.pop("stage_ms")
                d.pop("source_ms")
    assert ja == jb, url
    return ra.status_code


@pytest.mark.parametrize("surface", ["communities", "people", "content"])
def test_answers_are_the_routes_answers(pair: tuple[TestClient, TestClient], surface: str) -> None:
    a, b = pair
    for user in ("u1", "u7", "u12"):
        for _ in range(2):  # a cold answer, then the cached list's
            assert _same(a, b, "GET", f"/v1/recommendations/{surface}?user_id={user}&k=5") == 200
    assert _same(a, b, "GET", f"/v1/recommendations/{surface}?user_id=u3&k=7", ADMIN_KEY) == 200  # feature rows
    assert _same(a, b, "GET", f"/v1/recommendations/{surface}?user_id=u3&k=7&debug=true", ADMIN_KEY) == 200
    new_user = f"/v1/recommendations/{surface}?user_id=newbie&k=4&locale=en-US&age_group=adult&interests=music"
    assert _same(a, b, "GET", new_user) == 200


def test_failures_are_the_apps_failures(pair: tuple[TestClient, TestClient]) -> None:
    a, b = pair
    cases = {
        "/v1/recommendations/communities?k=5": 422,  # user_id missing
        "/v1/recommendations/communities?user_id=u1&k=0": 422,  # k out of range
        "/v1/recommendations/communities?user_id=u1&k=abc": 422,
        "/v1/recommendations/people?user_id=u1&debug=maybe": 422,
        "/v1/recommendations/communities?user_id=nobody-at-all": 404,  # unknown user, no new-user fields
        "/v1/recommendations/communities?user_id=u1&debug=true": 403,  # debug needs an admin key
        "/v1/recommendations/communities?user_id=u1&arm=b": 403,  # so does another arm
        "/v1/recommendations/groups?user_id=u1": 422,  # not a surface: the app's own validation answers
        "/v1/recommendations/communities/extra?user_id=u1": 404,  # not the route: the app's 404
    }
    for url, status in cases.items():
        assert _same(a, b, "GET", url) == status, url
    assert _same(a, b, "GET", "/v1/recommendations/communities?user_id=u1", key=None) == 401  # the guard, first
    assert _same(a, b, "GET", "/v1/recommendations/communities?user_id=u1", key="x" * 24) == 401
    assert _same(a, b, "POST", "/v1/recommendations/communities?user_id=u1", key=WRITE_KEY) == 405
    assert a.get("/v1/models", headers={"authorization": f"Bearer {READ_KEY}"}).status_code == 200  # other routes


def test_a_failure_nothing_expected_is_a_500_without_a_traceback(
        pair: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = pair
    svc = a.app.state.service  # type: ignore[attr-defined]

    async def broken(*_args: object, **_kw: object) -> bytes:
        raise RuntimeError("secret internals")

    before = svc.metrics.errors.labels("unexpected:RuntimeError")._value.get()
    monkeypatch.setattr(svc.engine, "recommend", broken)
    r = a.get("/v1/recommendations/communities?user_id=u1", headers={"authorization": f"Bearer {READ_KEY}"})
    assert r.status_code == 500 and r.json()["error"] == "internal" and "secret" not in r.text
    assert svc.metrics.errors.labels("unexpected:RuntimeError")._value.get() == before + 1
