"""The dashboard without a browser: sessions and CSRF (signing, expiry, revoked keys, forged tokens), the Secure
flag behind TLS, live figures from real Prometheus metrics, and — over the real test server — refusals, the
session's cookie, and a what-if that leaves the live state alone. The browser walk is test_dashboard_browser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.requests import Request

from belong.serve.dashboard.live import between, quantile, take
from belong.serve.dashboard.session import COOKIE, Sessions, is_tls
from belong.serve.metrics import _BUCKETS, Metrics
from serve_helpers import ADMIN_KEY, WRITE_KEY

KEYS = frozenset({"admin-1", "admin-2"})


# ----------------------------------------------------------------------------------------------- sessions
def test_a_session_reads_back_and_forgeries_do_not() -> None:
    s = Sessions(b"secret-one")
    cookie, session = s.issue("admin-1", now=1_000.0)
    assert s.read(cookie, KEYS, now=1_001.0) == session
    assert "admin-1" not in cookie
    payload, sig = cookie.split(".")
    assert s.read(f"{payload}x.{sig}", KEYS, now=1_001.0) is None  # payload changed
    assert s.read(f"{payload}.{sig[:-2]}AA", KEYS, now=1_001.0) is None  # signature changed
    assert Sessions(b"secret-two").read(cookie, KEYS, now=1_001.0) is None  # another server's secret
    assert s.read(cookie, KEYS, now=1_000.0 + s.ttl_s + 1) is None  # expired
    assert s.read(cookie, frozenset({"admin-2"}), now=1_001.0) is None  # its key was revoked
    for junk in (None, "", "abc", "a.b.c", "%%.%%"):
        assert s.read(junk, KEYS) is None


def test_the_login_form_token_is_signed_and_ages() -> None:
    s = Sessions(b"k")
    token = s.login_token(now=5_000.0)
    assert s.check_login_token(token, now=5_010.0)
    assert not s.check_login_token(token, now=5_000.0 + 3_601)
    assert not s.check_login_token(token.replace(".", ".x", 1), now=5_010.0)
    assert not s.check_login_token("5000.forged", now=5_010.0)


def _request(scheme: str, headers: dict[str, str]) -> Request:
    return Request({"type": "http", "scheme": scheme, "method": "GET", "path": "/", "query_string": b"",
                    "server": ("x", 80), "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_tls_is_the_scheme_or_a_trusted_proxys_header() -> None:
    assert is_tls(_request("https", {}), trust_proxy=False)
    assert not is_tls(_request("http", {}), trust_proxy=True)
    assert not is_tls(_request("http", {"X-Forwarded-Proto": "https"}), trust_proxy=False)
    assert is_tls(_request("http", {"X-Forwarded-Proto": "https"}), trust_proxy=True)


# ----------------------------------------------------------------------------------------------- live figures
def test_latency_percentiles_fall_in_the_bucket_of_the_exact_percentile() -> None:
    """The histogram estimate against numpy's exact percentile of the same observations: same bucket."""
    rng = np.random.default_rng(7)
    m = Metrics()
    before = take(m, now=0.0)
    seconds = rng.lognormal(np.log(0.004), 0.8, 5_000)
    for x in seconds:
        m.observe_request("communities", float(x))
    after = take(m, now=10.0)
    edges = np.array((0.0, *_BUCKETS, np.inf))
    for q in (0.5, 0.9, 0.99):
        est = quantile(q, before.requests["communities"][2], after.requests["communities"][2])
        exact = float(np.quantile(seconds, q))
        assert est is not None
        bucket = np.searchsorted(edges, exact)
        assert edges[bucket - 1] <= est <= edges[bucket], (q, est, exact)
    fig = between(before, after)
    assert fig["surfaces"]["communities"]["requests"] == 5_000 and fig["rps"] == pytest.approx(500.0)


def test_shares_and_hit_rates_come_from_counter_differences() -> None:
    from belong.domain import Surface

    m = Metrics()
    for _ in range(3):
        m.cache_lookup(Surface.COMMUNITIES, "hit")
    m.cache_lookup(Surface.COMMUNITIES, "miss")
    a = take(m, now=0.0)
    for _ in range(6):
        m.cache_lookup(Surface.COMMUNITIES, "hit")
    for _ in range(2):
        m.cache_lookup(Surface.COMMUNITIES, "stale")
    for _ in range(8):
        m.observe_request("communities", 0.002)
    m.fallbacks.labels("sources_timeout").inc(2)
    m.observe_stages("communities", {"sources": 4.0, "rules": 1.0})
    m.observe_stages("communities", {"sources": 2.0, "rules": 1.0})
    b = take(m, now=4.0)
    fig = between(a, b)
    c = fig["surfaces"]["communities"]
    assert c["cache_hit_rate"] == pytest.approx(6 / 8)
    assert fig["degraded_share"] == pytest.approx(2 / 8)
    assert c["rps"] == pytest.approx(2.0)
    assert c["stages_ms"]["sources"] == pytest.approx(3.0) and c["stages_ms"]["rules"] == pytest.approx(1.0)
    assert c["stages_ms"]["select"] is None  # nothing observed


# ----------------------------------------------------------------------------------------------- the app
def _secure_flag(store: Path, base_url: str, headers: dict[str, str], trust_proxy: bool) -> str:
    from belong.serve.app import create_app
    from belong.serve.settings import ServeSettings

    app = create_app(store, settings=ServeSettings(admin_keys=frozenset({ADMIN_KEY}), proxy_headers=trust_proxy))

    async def go() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as c:
            page = (await c.get("/dashboard/login")).text
            token = re.search(r'name="token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            r = await c.post("/dashboard/login", data={"token": token, "key": ADMIN_KEY}, headers=headers)
            assert r.status_code == 303
            return r.headers["set-cookie"]

    return asyncio.run(go())


def test_the_cookie_is_secure_behind_tls_only(small_store: Path) -> None:
    fwd = {"X-Forwarded-Proto": "https"}
    plain = _secure_flag(small_store, "http://test", {}, trust_proxy=False)
    assert "httponly" in plain.lower() and "samesite=strict" in plain.lower() and "path=/dashboard" in plain.lower()
    assert "secure" not in plain.lower()
    assert "secure" in _secure_flag(small_store, "https://test", {}, trust_proxy=False).lower()
    assert "secure" in _secure_flag(small_store, "http://test", fwd, trust_proxy=True).lower()
    assert "secure" not in _secure_flag(small_store, "http://test", fwd, trust_proxy=False).lower()


@pytest.fixture()
def admin(server: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client logged in to the test server's dashboard, and its CSRF token."""
    with httpx.Client(base_url=server, timeout=60) as c:
        page = c.get("/dashboard/login").text
        token = re.search(r'name="token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = c.post("/dashboard/login", data={"token": token, "key": ADMIN_KEY, "next": "/dashboard/models"})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/models"
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/dashboard/models").text).group(1)  # type: ignore[union-attr]
        yield c, csrf


def test_pages_need_a_session(client: httpx.Client) -> None:
    r = client.get("/dashboard/users?user_id=u1")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fusers%3Fuser_id%3Du1"
    assert client.get("/dashboard/live.json").status_code == 401
    r = client.post("/dashboard/models", data={"do": "rollback", "csrf": "x"})
    assert r.status_code == 303 and "/dashboard/login" in r.headers["location"]
    with httpx.Client(base_url=str(client.base_url), cookies={COOKIE: "eyJleHAiOjk5OTk5OTk5OTl9.AAAA"}) as forged:
        assert forged.get("/dashboard/overview").status_code == 303


def test_login_refuses_write_keys_unknown_keys_and_stale_forms(client: httpx.Client) -> None:
    token = re.search(r'name="token" value="([^"]+)"', client.get("/dashboard/login").text).group(1)  # type: ignore[union-attr]
    for key, status, text in ((WRITE_KEY, 401, "admin key needed"), ("nope", 401, "unknown key"),
                              ("", 401, "enter the admin key")):
        r = client.post("/dashboard/login", data={"token": token, "key": key})
        assert r.status_code == status and text in r.text and COOKIE not in r.headers.get("set-cookie", "")
    r = client.post("/dashboard/login", data={"token": "1.forged", "key": ADMIN_KEY})
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")
    r = client.post("/dashboard/login", content=b'{"key": "x"}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "content-type" in r.text


def test_login_never_redirects_off_the_dashboard(client: httpx.Client) -> None:
    token = re.search(r'name="token" value="([^"]+)"', client.get("/dashboard/login").text).group(1)  # type: ignore[union-attr]
    for evil in ("https://evil.example/", "//evil.example/dashboard/", "/dashboard/..//evil", "/v1/models"):
        r = client.post("/dashboard/login", data={"token": token, "key": ADMIN_KEY, "next": evil})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/overview", evil
    client.cookies.clear()


def test_actions_need_the_csrf_token(admin: tuple[httpx.Client, str]) -> None:
    c, csrf = admin
    active = c.get("/v1/models").json()["active"]
    for data in ({"do": "build"}, {"do": "build", "csrf": ""}, {"do": "build", "csrf": csrf[:-1] + "x"}):
        r = c.post("/dashboard/models", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    r = c.post("/dashboard/users/what-if", data={"user_id": "u1", "event_type": "join", "target": "c1"})
    assert r.status_code == 403
    assert c.get("/v1/models").json()["active"] == active and len(c.get("/v1/models").json()["versions"]) == 1
    r = c.post("/dashboard/models", data={"do": "activate", "version": "nope", "csrf": csrf})
    assert r.status_code == 422 and "nope" in r.text
    r = c.post("/dashboard/models", data={"do": "dance", "csrf": csrf})
    assert r.status_code == 422 and "do" in r.text
    r = c.post("/dashboard/logout", data={"csrf": csrf})
    assert r.status_code == 303 and c.get("/dashboard/overview").status_code == 303


def _state_version(c: httpx.Client) -> int:
    html = c.get("/dashboard/overview").text
    return int(re.search(r"state version</th><td class=\"n\">([\d,]+)<", html).group(1).replace(",", ""))  # type: ignore[union-attr]


def _list(c: httpx.Client, user: str) -> list[str]:
    body = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 10}).json()
    return [it["id"] for it in body["items"]]


def test_what_if_changes_the_sandbox_list_and_nothing_live(admin: tuple[httpx.Client, str]) -> None:
    c, csrf = admin
    version, before = _state_version(c), _list(c, "u2")
    top = before[0]
    r = c.post("/dashboard/users/what-if", data={"csrf": csrf, "user_id": "u2", "k": "10", "event_type": "join",
                                                  "target": top})
    assert r.status_code == 200
    section = r.text[r.text.index('id="whatif-communities"'):]
    section = section[:section.index("</table>")]
    assert re.search(rf'class="change-gone"><td class="n">–</td><td><code>{top}</code>', section)
    assert _state_version(c) == version and _list(c, "u2") == before
    r = c.post("/dashboard/users/what-if", data={"csrf": csrf, "user_id": "u2", "event_type": "join",
                                                  "target": "no-such-community"})
    assert r.status_code == 422 and "no-such-community" in r.text
    r = c.post("/dashboard/users/what-if", data={"csrf": csrf, "user_id": "u2", "event_type": "explode",
                                                  "target": top})
    assert r.status_code == 422 and "event_type" in r.text


def test_bad_input_is_named(admin: tuple[httpx.Client, str]) -> None:
    c, _ = admin
    r = c.get("/dashboard/users", params={"user_id": "u1", "k": "0"})
    assert r.status_code == 422 and "k: must be an integer between 1 and 100" in r.text
    r = c.get("/dashboard/users", params={"user_id": "u1", "why_surface": "communities", "why_not": "c-none"})
    assert r.status_code == 200 and "unknown community id: &#39;c-none&#39;" in r.text
    r = c.get("/dashboard/users", params={"user_id": "u1", "show": "everything"})
    assert r.status_code == 422 and "show: must be one of communities, people, content, all" in r.text
    r = c.get("/dashboard/users", params={"user_id": "u1", "show": "all"})
    assert r.status_code == 200 and all(f'id="list-{s}"' in r.text for s in ("communities", "people", "content"))
    r = c.get("/dashboard/users", params={"user_id": "u1"})  # one surface unless asked: each is a pipeline run
    assert 'id="list-communities"' in r.text and 'id="list-people"' not in r.text
    r = c.get("/dashboard/users", params={"user_id": "U7"})  # not an id: the ids that start so, any case
    assert r.status_code == 200 and "did you mean" in r.text
    assert '<a href="/dashboard/users?user_id=u7">u7</a>' in r.text
    r = c.get("/dashboard/users", params={"user_id": "<script>x</script>"})
    assert r.status_code == 404 and "<script>x" not in r.text and "&lt;script&gt;" in r.text
    assert c.get("/dashboard/static/../app.py").status_code == 404
    assert c.get("/dashboard/static/nope.js").status_code == 404
    r = c.get("/dashboard/static/dash.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in c.get("/dashboard/overview").headers["content-security-policy"]


# ----------------------------------------------------------------------------------------------- the sandbox
def _same(a: object, b: object) -> bool:
    """Equal values, arrays and sparse matrices compared by content, containers element by element."""
    import scipy.sparse as sp

    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and bool(np.array_equal(a, b))
    if sp.issparse(a):
        return sp.issparse(b) and a.shape == b.shape and (a != b).nnz == 0  # type: ignore[union-attr,operator]
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset, int, float, str, bytes, bool, type(None))):
        return bool(a == b)
    import dataclasses

    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if hasattr(a, "__dict__"):
        return _same(vars(a), vars(b))
    return bool(a == b)


def test_the_sandbox_takes_every_what_if_event_and_the_live_state_stays_as_it_was() -> None:
    """Each event type the what-if offers, applied to a sandbox of a state that has live edits already: the
    sandbox changes, the live state equals a deep copy taken before — every attribute apply() may write."""
    import copy

    from belong.datasets import World
    from belong.domain import parse_event
    from belong.serve.dashboard.views import WHAT_IF_TYPES, sandbox_state
    from belong.state import from_world
    from belong.testing.toy_world import NOW, toy_world

    world: World = toy_world()
    state = from_world(world)
    live = [("join", "alice", "gaming", "community"), ("friend_request", "alice", "carol", "user"),
            ("block", "bob", "erin", "user"), ("leave", "bob", "club", "community")]
    for i, (t, a, b, kind) in enumerate(live):
        state.apply(parse_event({"event_id": f"live{i}", "ts": NOW / 1e6, "type": t, "actor": a, "target": b,
                                 "target_kind": kind}))
    state.membership_csr()  # a derived value in the cache
    targets = {"community": "zig", "user": "carol"}
    for i, (etype, kind) in enumerate(WHAT_IF_TYPES.items()):
        actor = "alice" if etype != "friend_accept" else "carol"
        target = targets[kind] if etype != "friend_accept" else "alice"
        before = copy.deepcopy(state)
        touched = (state.users.index[actor],) + ((state.users.index[target],) if kind == "user" else ())
        sand = sandbox_state(state, touched)
        sand.apply(parse_event({"event_id": f"w{i}", "ts": NOW / 1e6 + 1, "type": etype, "actor": actor,
                                "target": target, "target_kind": kind}))
        sand.membership_csr(), sand.friend_csr()
        assert sand.version == state.version + 1, etype
        for name, value in vars(before).items():
            assert _same(value, getattr(state, name)), (etype, name)
    u, c = state.users.index["alice"], state.communities.index["zig"]
    sand = sandbox_state(state, (u,))
    sand.apply(parse_event({"event_id": "x", "ts": NOW / 1e6 + 1, "type": "leave", "actor": "alice",
                            "target": "zig", "target_kind": "community"}))
    assert state.members.has(u, c) and not sand.members.has(u, c)


def test_the_guard_leaves_the_dashboard_to_its_own_checks_and_nothing_else() -> None:
    from belong.serve.auth import Role
    from belong.serve.guard import required_role

    for method, path in (("GET", "/dashboard"), ("GET", "/dashboard/users"), ("POST", "/dashboard/models"),
                         ("POST", "/dashboard/login")):
        assert required_role(method, path, True) is None, path
    assert required_role("GET", "/dashboardx", True) is Role.READ
    assert required_role("POST", "/dashboard-api/models", True) is Role.WRITE


def test_the_session_secret_is_a_setting_of_at_least_32_characters(small_store: Path) -> None:
    from belong.errors import ValidationError
    from belong.serve.app import create_app
    from belong.serve.settings import ServeSettings

    assert ServeSettings.from_env({"BELONG_DASHBOARD_SECRET": "s" * 40}).dashboard_secret == "s" * 40
    with pytest.raises(ValidationError, match="BELONG_DASHBOARD_SECRET: must be at least 32 characters"):
        ServeSettings.from_env({"BELONG_DASHBOARD_SECRET": "short"}).validate()
    settings = ServeSettings(admin_keys=frozenset({ADMIN_KEY}), dashboard_secret="k" * 40)
    one, two = (create_app(small_store, settings=settings) for _ in range(2))
    cookie, _ = one.state.dashboard.sessions.issue(ADMIN_KEY)
    assert two.state.dashboard.sessions.read(cookie, settings.admin_keys) is not None  # survives a restart
    other = create_app(small_store, settings=ServeSettings(admin_keys=frozenset({ADMIN_KEY})))
    assert other.state.dashboard.sessions.read(cookie, settings.admin_keys) is None
