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


def _ids(store: Path | str) -> set[str]:
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        return {str(i) for t in (st.users(), st.communities(), st.content()) for i in t.column("id").to_pylist()}


def _count(store: Path | str) -> int:
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        return st.count()


def _apps_toml(a: Path | str, b: Path | str, prefixes: dict[str, str] | None = None) -> str:
    def table(app: str, store: Path | str) -> str:
        keys = KEYS[app]
        prefix = f'redis_prefix = "{prefixes[app]}"\n' if prefixes else ""
        return (f'[apps.{app}]\nstore = "{store}"\nread_keys = ["{keys["read"]}"]\nwrite_keys = ["{keys["write"]}"]\n'
                f'admin_keys = ["{keys["admin"]}"]\ntoken_secret = "{SECRETS[app]}"\n{prefix}')

    return table("a", a) + "\n" + table("b", b)


@contextlib.contextmanager
def _serve_apps(conf: Path, extra_env: dict[str, str] | None = None, *args: str) -> Iterator[str]:
    """``belong serve --apps CONF`` on a free port until every app is ready; yields the base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELONG_API_KEYS", "BELONG_REDIS"))}
    env.update({"OPENBLAS_NUM_THREADS": "1", "BELONG_BUDGET_SOURCES_MS": "30000", "BELONG_RATE_USER": "0",
                **(extra_env or {})})
    belong = str(Path(sys.executable).with_name("belong"))
    proc = subprocess.Popen([belong, "serve", "--apps", str(conf), "--port", str(port), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                raise RuntimeError(f"server exited {proc.returncode}: {err}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the apps did not become ready"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def two_apps(store_a: Path, small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    conf = tmp_path_factory.mktemp("apps") / "apps.toml"
    conf.write_text(_apps_toml(store_a, small_store))
    with _serve_apps(conf) as base:
        yield base


def _b_view(c: httpx.Client, b_user: str = B_USER) -> dict[str, Any]:
    """What app B holds, read with B's admin key."""
    h = auth(KEYS["b"]["admin"])
    models = c.get("/v1/models", headers=h).json()
    recs = c.get("/v1/recommendations/communities", params={"user_id": b_user, "k": 10}, headers=h).json()
    sim = c.get(f"/v1/users/{b_user}/similar", headers=h).json()
    return {"versions": [v["version"] for v in models["versions"]], "active": models["active"],
            "recs": [it["id"] for it in recs["items"]], "similar": [it["id"] for it in sim["items"]]}


def _requests(spec: dict[str, Any], b_version: str, b_user: str, b_community: str
              ) -> Iterator[tuple[str, str, dict[str, Any]]]:
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
                                  b_community if "community" in name else b_user]
                variants = [{**v, name: str(x)} for v in variants for x in values]
            query = {p["name"]: b_user for p in params if p.get("in") == "query" and p.get("required")}
            if "{surface}" in path or any(p.get("name") == "user_id" and p.get("in") == "query" for p in params):
                query["user_id"] = b_user
            for v in variants:
                url = path
                for name, value in v.items():
                    url = url.replace("{" + name + "}", value)
                body = _body(path, b_user, b_community) if method != "get" else None
                yield method.upper(), url, {"params": query, "json": body}


def _body(path: str, b_user: str, b_community: str) -> Any:
    eid = uuid.uuid4().hex
    if path == "/v1/events":
        return {"events": [{"event_id": f"ns-{eid}", "ts": "2026-11-02T10:00:00Z", "type": "join",
                            "actor": b_user, "target": b_community}]}
    if path == "/v1/impressions":
        return {"request_id": f"ns-{eid}", "user_id": b_user, "surface": "communities",
                "items": [{"item_id": b_community, "position": 0, "propensity": 0.5}]}
    if path == "/v1/impressions/batch":
        return {"lists": [{"request_id": f"ns-{eid}", "user_id": b_user, "surface": "communities",
                           "items": [{"item_id": b_community, "position": 0, "propensity": 0.5}]}]}
    return {}


def _cross_check(base: str, store_a: Path | str, store_b: Path | str, b_user: str, b_community: str) -> None:
    """Every OpenAPI route with each of app A's credentials, naming B's resources: nothing of B comes back or
    changes, A's writes land in A."""
    b_only = _ids(store_b) - _ids(store_a)
    assert b_user in b_only and b_community in b_only
    with httpx.Client(base_url=base, timeout=120) as c:
        ready = c.get("/readyz").json()
        assert set(ready["apps"]) == {"a", "b"} and all(ready["apps"].values())
        before = _b_view(c, b_user)
        assert set(before["similar"]) & b_only  # B's own key does see B's people: the check below can fail
        b_events, a_events = _count(store_b), _count(store_a)
        spec = c.get("/openapi.json").json()
        a_creds = [*KEYS["a"].values(), tokens.mint(SECRETS["a"], "a", b_user, int(time.time()) + 600)]
        calls = accepted = 0
        requests = list(_requests(spec, before["active"], b_user, b_community))
        # deletes last: forgetting B's user id inside app A also removes the A events that named it
        deletes = [r for r in requests if r[0] == "DELETE"]
        for method, url, kw in [r for r in requests if r[0] != "DELETE"] + [("COUNT", "", {})] + deletes:
            if method == "COUNT":
                assert calls >= 4 and accepted >= 2  # events and impressions went somewhere ...
                assert _count(store_a) == a_events + accepted  # ... to app A
                assert _count(store_b) == b_events  # B's log is untouched
                continue
            for cred in a_creds:
                r = c.request(method, url, headers=auth(cred), **{k: v for k, v in kw.items() if v is not None})
                calls += 1
                assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
                leaked = set(ID_RE.findall(r.text)) & b_only - {b_user, b_community}
                assert not leaked, (method, url, sorted(leaked)[:10])
                if r.status_code == 202:
                    accepted += r.json().get("accepted", 0)
        assert calls >= 4 * len(spec["paths"])
        assert _count(store_b) == b_events  # B's log is untouched, deletes included
        assert _b_view(c, b_user) == before  # and so are its versions and answers
        # a token naming app B but signed with A's secret is refused like any bad credential
        forged = tokens.mint(SECRETS["a"], "b", b_user, int(time.time()) + 600)
        r = c.get("/v1/recommendations/communities", params={"user_id": b_user}, headers=auth(forged))
        assert r.status_code == 401
        own = tokens.mint(SECRETS["b"], "b", b_user, int(time.time()) + 600)
        r = c.get(f"/v1/users/{b_user}/similar", headers=auth(own))
        assert r.status_code == 200 and [it["id"] for it in r.json()["items"]] == before["similar"]


def test_a_key_of_app_a_never_reaches_app_b_on_any_route(two_apps: str, store_a: Path, small_store: Path) -> None:
    _cross_check(two_apps, store_a, small_store, B_USER, B_COMMUNITY)


@contextlib.contextmanager
def _pg_schema(postgres_url: str, n_users: int, n_communities: int, seed: int) -> Iterator[str]:
    import psycopg

    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    schema = f"ns_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-csearch_path%3D{schema}"
    try:
        with open_store(url) as st:
            for part in simulate(n_users, n_communities, seed=seed):
                write_world(st, part, progress=False)
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _redis_rows(client: Any, prefix: str) -> dict[str, dict[bytes, bytes]]:
    return {k.decode(): client.hgetall(k) for k in client.scan_iter(match=f"{prefix}*", count=1000)}


def test_apps_on_postgres_schemas_and_redis_prefixes(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    """The same crossing check with each app's log in its own PostgreSQL schema and its online features under its
    own Redis prefix (materialised at start-up): B's feature rows are untouched, A's hold none of B's ids."""
    import redis

    run = uuid.uuid4().hex[:8]
    prefixes = {"a": f"belong:ns-{run}-a:", "b": f"belong:ns-{run}-b:"}
    client = redis.Redis.from_url(redis_url)
    try:
        with _pg_schema(postgres_url, 150, 15, 2) as url_a, _pg_schema(postgres_url, 300, 30, 4) as url_b:
            conf = tmp_path / "apps.toml"
            conf.write_text(_apps_toml(url_a, url_b, prefixes))
            with _serve_apps(conf, {"BELONG_REDIS_URL": redis_url}, "--materialize") as base:
                rows_a, rows_b = _redis_rows(client, prefixes["a"]), _redis_rows(client, prefixes["b"])
                assert rows_a and rows_b
                b_only = _ids(url_b) - _ids(url_a)
                assert not {k.rsplit(":", 1)[-1] for k in rows_a} & b_only  # A's rows: A's entities only
                _cross_check(base, url_a, url_b, "u250", "c25")
                assert _redis_rows(client, prefixes["b"]) == rows_b
    finally:
        for prefix in prefixes.values():
            for k in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(k)


def test_apps_config_errors_name_the_field(tmp_path: Path) -> None:
    base = ServeSettings()
    good = {"store": str(tmp_path / "a"), "write_keys": ["w" * 20]}
    assert [a.name for a in parse_apps({"apps": {"a": good}}, base)] == ["a"]
    assert parse_apps({"apps": {"a": good}}, base)[0].settings.features_prefix == "belong:a:features:"
    env = ServeSettings.from_env({"BELONG_MODELS_DIR": "/elsewhere", "BELONG_TOKEN_SECRET": "t" * 40,
                                  "BELONG_API_KEYS_READ": "r" * 20})
    alone = parse_apps({"apps": {"a": good}}, env)[0].settings  # nothing app-specific comes from the environment
    assert (alone.models_dir, alone.token_secret, alone.read_keys) == (None, None, frozenset())
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


def test_serve_cli_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from cli_runner import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "serve")
    assert code == 2 and "--store or --apps" in err
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--apps", str(tmp_path / "nope.toml"))
    assert code == 2 and "apps" in err and "nope.toml" in err
    conf = tmp_path / "apps.toml"
    conf.write_text(f'[apps.a]\nstore = "{tmp_path / "missing-store"}"\nwrite_keys = ["{"w" * 20}"]\n')
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--apps", str(conf))
    assert code == 2 and "missing-store" in " ".join(err.split())
