"""Who may call what (issue 13, findings 4 and 5), against a real ``belong serve`` with read auth on (the default),
user tokens and small limits: reads need a read key or the user's own token, unknown and forbidden ids answer
alike, keys are checked before a body is read, bodies, headers and their read times are bounded, and per-credential
token buckets answer 429 with ``Retry-After``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from belong.errors import ValidationError
from belong.serve import tokens
from belong.serve.auth import AuthError, KeyChecker, Role
from belong.serve.guard import required_role
from belong.serve.limits import RateLimiter
from belong.serve.settings import ServeSettings
from serve_helpers import ADMIN_KEY, READ_KEY, WRITE_KEY, auth, run_server

SECRET = "access-test-secret-0123456789abcdef"
LIMITS = {"BELONG_READ_AUTH": "true", "BELONG_TOKEN_SECRET": SECRET, "BELONG_MAX_BODY_BYTES": "65536",
          "BELONG_BODY_TIMEOUT_S": "1.5", "BELONG_MAX_HEADER_BYTES": "4096", "BELONG_RATE_USER": "2/3",
          "BELONG_BUDGET_SOURCES_MS": "30000"}


def _token(user: str, ttl: int = 600, secret: str = SECRET, app: str = "default") -> str:
    return tokens.mint(secret, app, user, int(time.time()) + ttl)


@pytest.fixture(scope="module")
def guarded(small_store: Path) -> Iterator[tuple[str, int]]:
    with run_server(small_store, LIMITS) as (base, proc):
        yield base, proc.pid


@pytest.fixture()
def c(guarded: tuple[str, int]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded[0], timeout=60) as client:
        yield client


# ----------------------------------------------------------------------------------------------- pieces
def test_token_format_matches_an_independent_hmac() -> None:
    """The documented format, rebuilt here with hmac/base64 alone (docs/SECURITY_ACCESS.md test vector)."""
    secret, app, user, exp = "belong-test-vector-secret-0123456789", "default", "u42", 1_900_000_000
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    body = f"bt1.{b64(app.encode())}.{b64(user.encode())}.{exp}"
    sig = b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    token = tokens.mint(secret, app, user, exp)
    assert token == f"{body}.{sig}"
    assert token == ("bt1.ZGVmYXVsdA.dTQy.1900000000.38BjNuJdzvkMakvEr43eIYDtaH-feNACJ8q7wZ8EUo8")
    assert tokens.verify(secret, app, token, now=1_899_999_999) == "u42"
    # second vector (computed with openssl dgst -sha256 -hmac): a non-ASCII user id, another app
    assert tokens.mint(secret, "acme", "user:\u00fc 7", exp) == (
        "bt1.YWNtZQ.dXNlcjrDvCA3.1900000000.Of7FGCAzGTEsLdQDibahIWj_J8m9n6KMJFAAEd1VfIM")
    assert tokens.verify(secret, app, token, now=1_900_000_000) is None  # expired from that second on
    assert tokens.verify(secret, "other-app", token, now=0) is None
    assert tokens.verify(secret + "x", app, token, now=0) is None
    forged = tokens.mint(secret, app, "u43", exp).rsplit(".", 1)[0] + "." + token.rsplit(".", 1)[1]
    assert tokens.verify(secret, app, forged, now=0) is None
    assert tokens.verify(secret, app, "bt1.....", now=0) is None


def test_roles_and_one_message_for_every_bad_credential() -> None:
    keys = KeyChecker(frozenset({"w" * 16}), frozenset({"a" * 16}), frozenset({"r" * 16}), SECRET)
    assert keys.check("Bearer " + "r" * 16, Role.READ) is Role.READ
    assert keys.check("Bearer " + "w" * 16, Role.READ) is Role.WRITE  # write implies read
    assert keys.check("Bearer " + "a" * 16, Role.WRITE) is Role.ADMIN
    assert keys.authorize("Bearer " + _token("u1"), Role.READ).user_id == "u1"
    for header in ("Bearer " + "x" * 16, "Bearer " + "r" * 15, "Bearer " + _token("u1", ttl=-1),
                   "Bearer " + _token("u1", secret="s" * 32), "Bearer " + _token("u1", app="b")):
        with pytest.raises(AuthError) as err:
            keys.check(header, Role.READ)
        assert (err.value.status, err.value.message) == (401, "invalid API key or token")
    for header, role in (("Bearer " + "r" * 16, Role.WRITE), ("Bearer " + _token("u1"), Role.WRITE),
                         ("Bearer " + "w" * 16, Role.ADMIN)):
        with pytest.raises(AuthError) as err:
            keys.check(header, role)
        assert err.value.status == 403


def test_route_roles() -> None:
    assert required_role("GET", "/healthz", True) is None
    assert required_role("GET", "/v1/recommendations/people", True) is Role.READ
    assert required_role("GET", "/v1/recommendations/people", False) is None
    assert required_role("POST", "/v1/events", False) is Role.WRITE
    assert required_role("POST", "/v1/models/v1/activate", False) is Role.ADMIN
    assert required_role("POST", "/v1/experiments", False) is Role.ADMIN
    assert required_role("POST", "/v1/experiments/e1/stop", False) is Role.ADMIN
    assert required_role("GET", "/v1/experiments/e1/results", True) is Role.READ
    assert required_role("DELETE", "/v1/users/u1", False) is Role.ADMIN
    assert required_role("PUT", "/v1/anything-added-later", False) is Role.WRITE


def test_short_keys_and_secret_refused_at_startup() -> None:
    with pytest.raises(ValidationError) as err:
        ServeSettings.from_env({"BELONG_API_KEYS_WRITE": "short-key"}).validate()
    assert err.value.field == "BELONG_API_KEYS_WRITE" and "16" in err.value.reason
    assert "short-key" not in str(err.value)  # the error never shows a key
    with pytest.raises(ValidationError) as err:
        ServeSettings.from_env({"BELONG_TOKEN_SECRET": "tiny"}).validate()
    assert err.value.field == "BELONG_TOKEN_SECRET"
    with pytest.raises(ValidationError) as err:
        ServeSettings.from_env({"BELONG_RATE_KEY": "fast"})
    assert err.value.field == "BELONG_RATE_KEY"
    assert ServeSettings.from_env({"BELONG_RATE_KEY": "0"}).rate_key == (0.0, 0.0)


def test_token_bucket() -> None:
    rl = RateLimiter(rate=2.0, burst=3.0)
    assert [rl.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.take("k", now=0.0) == pytest.approx(0.5)  # one token comes back in 1/rate s
    assert rl.take("other", now=0.0) == 0.0  # buckets are per credential
    assert rl.take("k", now=0.5) == 0.0 and rl.take("k", now=0.5) > 0
    assert RateLimiter(0.0, 0.0).take("k") == 0.0  # off


def test_key_rate_limit_in_the_guard() -> None:
    """The guard itself (in process, a plain ASGI app behind it): a key's bucket empties, the 429 names when to
    retry, another key and failed attempts with a wrong key do not touch it."""
    import asyncio

    from belong.serve.guard import Guard

    settings = ServeSettings().with_(read_keys=frozenset({"r" * 16, "s" * 16}), rate_key=(1.0, 2.0))
    reached: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["path"])

    async def call(key: str) -> int:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "GET", "path": "/v1/models", "query_string": b"",
                 "headers": [(b"authorization", f"Bearer {key}".encode())]}
        await guard(scope, receive, send)
        if not sent:
            return 200
        if sent[0]["status"] == 429:
            assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
        return int(sent[0]["status"])

    guard = Guard(app, KeyChecker(frozenset(), frozenset(), settings.read_keys), settings)
    codes = [asyncio.run(call(k)) for k in ("x" * 16, "x" * 16, "r" * 16, "r" * 16, "r" * 16, "s" * 16)]
    assert codes == [401, 401, 200, 200, 429, 200] and len(reached) == 3


def test_belong_serve_refuses_a_short_key(small_store: Path) -> None:
    with pytest.raises(RuntimeError, match="BELONG_API_KEYS_ADMIN.*16"):
        with run_server(small_store, {"BELONG_API_KEYS_ADMIN": "abc"}):
            pass


# ----------------------------------------------------------------------------------------------- reads
def test_reads_need_a_key_or_the_users_own_token(c: httpx.Client) -> None:
    path = "/v1/recommendations/communities"
    r = c.get(path, params={"user_id": "u5", "k": 3})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    for key in (READ_KEY, WRITE_KEY, ADMIN_KEY):
        assert c.get(path, params={"user_id": "u5", "k": 3}, headers=auth(key)).status_code == 200
    own = auth(_token("u5"))
    assert c.get(path, params={"user_id": "u5", "k": 3}, headers=own).status_code == 200
    assert c.get(path, params={"user_id": " u5 ", "k": 3}, headers=own).status_code == 200
    assert c.get("/v1/users/u5/similar", headers=own).status_code == 200
    # another user's id, known or not, and every other route: the same refusal, no oracle
    answers = {(r.status_code, r.content) for r in (
        c.get(path, params={"user_id": "u6"}, headers=own),
        c.get(path, params={"user_id": "no-such-user-123"}, headers=own),
        c.get(path, params=[("user_id", "u5"), ("user_id", "u6")], headers=own),
        c.get("/v1/users/u6/similar", headers=own),
        c.get("/v1/users/no-such-user-123/similar", headers=own),
        c.get("/v1/communities/c1/similar", headers=own),
        c.get("/v1/models", headers=own))}
    assert len(answers) == 1 and next(iter(answers))[0] == 403
    assert c.post("/v1/events", json={"events": []}, headers=own).status_code == 403
    # without rights, a known and an unknown id look the same
    known = c.get("/v1/users/u6/similar")
    unknown = c.get("/v1/users/no-such-user-123/similar")
    assert known.status_code == unknown.status_code == 401 and known.content == unknown.content
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_no_lockout_and_identical_failures(c: httpx.Client) -> None:
    answers = set()
    for bad in ("x" * 24, READ_KEY[:-1] + "?", _token("u7", ttl=-5), _token("u7", secret="z" * 40)):
        for _ in range(5):
            r = c.get("/v1/recommendations/people", params={"user_id": "u7"}, headers=auth(bad))
            answers.add((r.status_code, r.content))
    assert len(answers) == 1 and next(iter(answers))[0] == 401
    # many failures against a key's neighbourhood did not lock the key (nor the user) out
    assert c.get("/v1/recommendations/people", params={"user_id": "u7"}, headers=auth(READ_KEY)).status_code == 200
    assert c.get("/v1/recommendations/people", params={"user_id": "u7"},
                 headers=auth(_token("u7"))).status_code == 200


def test_user_token_rate_limit(c: httpx.Client) -> None:
    headers = auth(_token("u9"))
    codes = [c.get("/v1/users/u9/similar", headers=headers) for _ in range(6)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and 1 <= int(limited[0].headers["retry-after"]) <= 2
    assert limited[0].json()["error"] == "rate_limited"
    # another user's bucket is untouched
    assert c.get("/v1/users/u10/similar", headers=auth(_token("u10"))).status_code == 200


# ----------------------------------------------------------------------------------------------- limits
def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _raw(base: str, head: bytes, body_chunks: Iterator[bytes] | None = None, *, wait_s: float = 10.0
         ) -> tuple[bytes, int]:
    """Send ``head`` then body chunks until the server answers or closes; (answer, body bytes it took)."""
    host, port = base.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(head)
        s.setblocking(False)
        answer = b""
        for chunk in body_chunks or iter(()):
            try:
                answer += s.recv(65536)
                break
            except BlockingIOError:
                pass
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        s.settimeout(wait_s)
        try:
            while b"\r\n\r\n" not in answer:
                more = s.recv(65536)
                if not more:
                    break
                answer += more
        except OSError:
            pass
    return answer, sent


def _chunks(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    block = b"x" * size
    for _ in range(total // size):
        yield block


def test_unauthenticated_large_bodies_refused_unread(guarded: tuple[str, int]) -> None:
    """Finding 5: three 100 MB bodies without a key: 401 before reading, the server's memory barely moves."""
    base, pid = guarded
    before = _rss(pid)
    head = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n")
    for _ in range(3):
        answer, sent = _raw(base, head, _chunks(100_000_000))
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert sent < 20_000_000  # the server stopped taking the body long before its end
    assert _rss(pid) - before < 30_000_000


def test_body_limits(guarded: tuple[str, int], c: httpx.Client) -> None:
    base, _ = guarded
    key = f"Authorization: Bearer {WRITE_KEY}\r\n".encode()
    head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + key
    answer, sent = _raw(base, head + b"Content-Length: 100000000\r\n\r\n", _chunks(100_000_000))
    assert answer.startswith(b"HTTP/1.1 413") and sent < 20_000_000  # refused by its declared length
    answer, _ = _raw(base, head + b"Transfer-Encoding: chunked\r\n\r\n",
                     (b"10000\r\n" + b"x" * 0x10000 + b"\r\n" for _ in range(100)))
    assert answer.startswith(b"HTTP/1.1 413")  # a streamed body, refused once it passes the limit
    t0 = time.monotonic()
    answer, _ = _raw(base, head + b"Content-Length: 1000\r\n\r\n" + b'{"events": [')  # then silence
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 10
    events = [{"event_id": f"big-{i}", "ts": 1_700_000_000, "type": "view", "actor": "u1", "target": "x1"}
              for i in range(1001)]
    r = c.post("/v1/events", json={"events": events[:1000]}, headers=auth(WRITE_KEY))
    assert r.status_code == 413  # ~90 KB: over the 64 KB test limit
    r = httpx.post(f"{base}/v1/events", json={"events": [{"event_id": "x"}] * 1001}, headers=auth(WRITE_KEY))
    assert r.status_code == 422 and r.json()["field"] == "events"  # at most 1000 events a batch


def test_header_limits(guarded: tuple[str, int]) -> None:
    base, _ = guarded
    answer, _ = _raw(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 8000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431")
    t0 = time.monotonic()
    answer, _ = _raw(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers never finish
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 10
    answer, _ = _raw(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
