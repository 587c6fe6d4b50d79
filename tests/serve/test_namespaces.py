"""Several apps on one server (issue 13, finding 8): ``belong serve --apps`` with app ``a`` (a 300-user world) and
app ``b`` (the 800-user test store). Every route of the OpenAPI — routes added later included — is called with each
of app A's credentials, naming app B's resources (B-only users and communities, B's model version). No answer
carries an id only B has, and B's log, model versions and answers are unchanged afterwards; A's writes land in A."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from belong.errors import ValidationError
from belong.serve import tokens
from belong.serve.apps import parse_apps
from belong.serve.settings import ServeSettings
from serve_helpers import auth, free_port

KEYS = {app: {role: f"{app}-{role}-key-{uuid.uuid4().hex}" for role in ("read", "write", "admin")} for app in "ab"}
SECRETS = {app: f"{app}-token-secret-{uuid.uuid4().hex}" for app in "ab"}
B_USER, B_COMMUNITY = "u700", "c70"  # B's world has 800 users and 80 communities, A's 300 and 30
ID_RE = re.compile(r"\b[ucx]\d+\b")


@pytest.fixture(scope="module")
def store_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    path = tmp_path_factory.mktemp("app-a-store")
    with open_store(path) as st:
        for part in simulate(300, 30, seed=5):
            write_world(st, part, progress=False)
    return path


def _ids(store: Path) -> set[str]:
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        return {str(i) for t in (st.users(), st.communities(), st.content()) for i in t.column("id").to_pylist()}


def _count(store: Path) -> int:
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        return st.count()


def _apps_toml(a: Path, b: Path) -> str:
    def table(app: str, store: Path) -> str:
        keys = KEYS[app]
        return (f'[apps.{app}]\nstore = "{store}"\nread_keys = ["{keys["read"]}"]\nwrite_keys = ["{keys["write"]}"]\n'
                f'admin_keys = ["{keys["admin"]}"]\ntoken_secret = "{SECRETS[app]}"\n')

    return table("a", a) + "\n" + table("b", b)


@pytest.fixture(scope="module")
def two_apps(store_a: Path, small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    conf = tmp_path_factory.mktemp("apps") / "apps.toml"
    conf.write_text(_apps_toml(store_a, small_store))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELONG_API_KEYS", "BELONG_REDIS"))}
    env.update({"OPENBLAS_NUM_THREADS": "1", "BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_RATE_USER": "0"})
    belong = str(Path(sys.executable).with_name("belong"))
    proc = subprocess.Popen([belong, "serve", "--apps", str(conf), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the two apps did not become ready"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _b_view(c: httpx.Client) -> dict[str, Any]:
    """What app B holds, read with B's admin key."""
    h = auth(KEYS["b"]["admin"])
    models = c.get("/v1/models", headers=h).json()
    recs = c.get("/v1/recommendations/communities", params={"user_id": B_USER, "k": 10}, headers=h).json()
    sim = c.get(f"/v1/users/{B_USER}/similar", headers=h).json()
    return {"versions": [v["version"] for v in models["versions"]], "active": models["active"],
            "recs": [it["id"] for it in recs["items"]], "similar": [it["id"] for it in sim["items"]]}


def _requests(spec: dict[str, Any], b_version: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """One or more requests per route of the OpenAPI, naming B's resources."""
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = [p for p in op.get("parameters", []) if isinstance(p, dict)]
            variants: list[dict[str, str]] = [{}]
            for p in params:
                if p.get("in") != "path":
                    continue
                name = p["name"]
                enum = p.get("schema", {}).get("enum") or spec["components"]["schemas"].get(
                    p.get("schema", {}).get("$ref", "/").rsplit("/", 1)[-1], {}).get("enum")
                values = enum or [b_version if name == "version" else
                                  B_COMMUNITY if "community" in name else B_USER]
                variants = [{**v, name: str(x)} for v in variants for x in values]
            query = {p["name"]: B_USER for p in params if p.get("in") == "query" and p.get("required")}
            if "{surface}" in path or any(p.get("name") == "user_id" and p.get("in") == "query" for p in params):
                query["user_id"] = B_USER
            for v in variants:
                url = path
                for name, value in v.items():
                    url = url.replace("{" + name + "}", value)
                yield method.upper(), url, {"params": query, "json": _body(path) if method != "get" else None}


def _body(path: str) -> Any:
    eid = uuid.uuid4().hex
    if path == "/v1/events":
        return {"events": [{"event_id": f"ns-{eid}", "ts": "2026-11-02T10:00:00Z", "type": "join",
                            "actor": B_USER, "target": B_COMMUNITY}]}
    if path == "/v1/impressions":
        return {"request_id": f"ns-{eid}", "user_id": B_USER, "surface": "communities",
                "items": [{"item_id": B_COMMUNITY, "position": 0, "propensity": 0.5}]}
    return {}


def test_a_key_of_app_a_never_reaches_app_b_on_any_route(two_apps: str, store_a: Path, small_store: Path) -> None:
    b_only = _ids(small_store) - _ids(store_a)
    assert B_USER in b_only and B_COMMUNITY in b_only
    with httpx.Client(base_url=two_apps, timeout=120) as c:
        ready = c.get("/readyz").json()
        assert set(ready["apps"]) == {"a", "b"} and all(ready["apps"].values())
        before = _b_view(c)
        assert set(before["similar"]) & b_only  # B's own key does see B's people: the check below can fail
        b_events, a_events = _count(small_store), _count(store_a)
        spec = c.get("/openapi.json").json()
        a_creds = [*KEYS["a"].values(), tokens.mint(SECRETS["a"], "a", B_USER, int(time.time()) + 600)]
        calls = 0
        accepted = 0
        for method, url, kw in _requests(spec, before["active"]):
            for cred in a_creds:
                r = c.request(method, url, headers=auth(cred), **{k: v for k, v in kw.items() if v is not None})
                calls += 1
                assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
                leaked = set(ID_RE.findall(r.text)) & b_only - {B_USER, B_COMMUNITY}
                assert not leaked, (method, url, sorted(leaked)[:10])
                if r.status_code == 202:
                    accepted += r.json().get("accepted", 0)
        assert calls >= 4 * len(spec["paths"]) and accepted >= 2  # events and impressions went somewhere ...
        assert _count(store_a) == a_events + accepted  # ... to app A
        assert _count(small_store) == b_events  # B's log is untouched
        assert _b_view(c) == before  # and so are its versions and answers
        # a token naming app B but signed with A's secret is refused like any bad credential
        forged = tokens.mint(SECRETS["a"], "b", B_USER, int(time.time()) + 600)
        r = c.get("/v1/recommendations/communities", params={"user_id": B_USER}, headers=auth(forged))
        assert r.status_code == 401
        own = tokens.mint(SECRETS["b"], "b", B_USER, int(time.time()) + 600)
        r = c.get(f"/v1/users/{B_USER}/similar", headers=auth(own))
        assert r.status_code == 200 and [it["id"] for it in r.json()["items"]] == before["similar"]


def test_apps_config_errors_name_the_field(tmp_path: Path) -> None:
    base = ServeSettings()
    good = {"store": str(tmp_path / "a"), "write_keys": ["w" * 20]}
    assert [a.name for a in parse_apps({"apps": {"a": good}}, base)] == ["a"]
    assert parse_apps({"apps": {"a": good}}, base)[0].settings.features_prefix == "belong:a:features:"
    cases = [
        ({}, "apps"),
        ({"apps": {"A B": good}}, "apps.A B"),
        ({"apps": {"a": {**good, "colour": 1}}}, "apps.a.colour"),
        ({"apps": {"a": {"write_keys": []}}}, "apps.a.store"),
        ({"apps": {"a": good, "b": {**good, "write_keys": ["v" * 20]}}}, "apps.b.store"),
        ({"apps": {"a": good, "b": {"store": str(tmp_path / "b"), "write_keys": ["w" * 20]}}}, "apps.b.write_keys"),
        ({"apps": {"a": {**good, "admin_keys": ["short"]}}}, "apps.a.admin_keys"),
        ({"apps": {"a": {**good, "redis_prefix": "p:"}, "b": {"store": "x", "redis_prefix": "p:b:"}}},
         "apps.b.redis_prefix"),
    ]
    for doc, field in cases:
        with pytest.raises(ValidationError) as err:
            parse_apps(doc, base)
        assert err.value.field == field, (doc, err.value)
