"""Several apps on one server (``belong serve --apps apps.toml``): each app has its own event store (a directory,
or a PostgreSQL database or schema), its own Redis key prefix for online features, its own models directory, its
own model versions, caches and metrics (one :class:`~belong.serve.service.Service` each), and its own API keys and
token secret. The caller's credential picks the app: an API key belongs to exactly one app (a key listed twice is
refused at start-up), a user token names its app and is checked with that app's secret. A request whose credential
no app owns goes to the first app, whose guard refuses it like any bad key; so a key of app A reaches only app A,
whatever ids or paths it names. ``/readyz`` is ready when every app is; ``/healthz``, ``/metrics`` and the OpenAPI
pages answer for the first app (the routes are the same for all).

Format (every key but ``store`` optional)::

    [apps.acme]
    store = "/var/lib/belong/acme"          # or "postgresql://host/db?options=-csearch_path%3Dacme"
    redis_prefix = "belong:acme:features:"  # default "belong:<name>:features:"
    models = "/var/lib/belong/acme/models"  # `belong train` artifacts (default: build from the log)
    read_keys = ["..."]                     # >= 16 characters each, unique across apps
    write_keys = ["..."]
    admin_keys = ["..."]
    token_secret = "..."                    # >= 32 characters: user tokens for this app

Without ``--apps`` the server is one app named ``default`` configured from the environment, as before.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI

from belong.domain import Surface
from belong.errors import ValidationError
from belong.serve import tokens
from belong.serve.auth import AuthError, credential_of, key_digest
from belong.serve.guard import Receive, Scope, Send
from belong.serve.settings import ServeSettings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
FIELDS = {"store", "redis_prefix", "models", "read_keys", "write_keys", "admin_keys", "token_secret"}


@dataclass(frozen=True, slots=True)
class AppConfig:
    name: str
    store: str
    settings: ServeSettings


def _str(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError(field, f"must be a non-empty string, got {raw!r}")
    return raw.strip()


def _keys(raw: Any, field: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(k, str) and k for k in raw):
        raise ValidationError(field, "must be a list of non-empty strings")
    return frozenset(raw)


def parse_apps(doc: Mapping[str, Any], base: ServeSettings) -> list[AppConfig]:
    """The apps of a parsed ``apps.toml`` over ``base`` settings (limits, Redis URL, budgets from the environment).
    Errors name the field (``apps.acme.store``)."""
    apps = doc.get("apps")
    extra = set(doc) - {"apps"}
    if extra:
        raise ValidationError(sorted(extra)[0], "unknown table (expected [apps.NAME] tables only)")
    if not isinstance(apps, dict) or not apps:
        raise ValidationError("apps", "declare at least one app: [apps.NAME] with store = ...")
    out: list[AppConfig] = []
    owner: dict[str, str] = {}
    seen_store: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for name, table in apps.items():
        where = f"apps.{name}"
        if not NAME_RE.match(name):
            raise ValidationError(where, "app names are 1-40 of a-z, 0-9, '_' and '-', starting with a letter or digit")
        if not isinstance(table, dict):
            raise ValidationError(where, "must be a table")
        unknown = set(table) - FIELDS
        if unknown:
            known = ", ".join(sorted(FIELDS))
            raise ValidationError(f"{where}.{sorted(unknown)[0]}", f"unknown field (known: {known})")
        store = _str(table.get("store"), f"{where}.store")
        norm = store if "://" in store else str(Path(store).resolve())
        if norm in seen_store:
            raise ValidationError(f"{where}.store", f"is also app {seen_store[norm]!r}'s store (each app has its own)")
        seen_store[norm] = name
        prefix = _str(table.get("redis_prefix", f"belong:{name}:features:"), f"{where}.redis_prefix")
        for other_name, other in prefixes.items():
            if prefix.startswith(other) or other.startswith(prefix):
                raise ValidationError(f"{where}.redis_prefix", f"overlaps app {other_name!r}'s prefix {other!r}")
        prefixes[name] = prefix
        keys = {role: _keys(table.get(f"{role}_keys"), f"{where}.{role}_keys") for role in ("read", "write", "admin")}
        for role, ks in keys.items():
            for k in ks:
                if k in owner and owner[k] != name:
                    raise ValidationError(f"{where}.{role}_keys", f"a key is also one of app {owner[k]!r}'s "
                                          "(a key belongs to one app)")
                owner[k] = name
        secret = table.get("token_secret")
        models = table.get("models")
        # nothing app-specific is inherited from the environment: unset here means none for this app
        settings = replace(base, app_name=name, features_prefix=prefix, read_keys=keys["read"],
                           write_keys=keys["write"], admin_keys=keys["admin"],
                           token_secret=_str(secret, f"{where}.token_secret") if secret is not None else None,
                           models_dir=_str(models, f"{where}.models") if models is not None else None)
        try:
            settings.validate()
        except ValidationError as exc:
            field = {"BELONG_API_KEYS_READ": "read_keys", "BELONG_API_KEYS_WRITE": "write_keys",
                     "BELONG_API_KEYS_ADMIN": "admin_keys", "BELONG_TOKEN_SECRET": "token_secret"}.get(exc.field)
            raise ValidationError(f"{where}.{field or exc.field}", exc.reason) from None
        out.append(AppConfig(name, store, settings))
    return out


def load_apps(path: str | Path, base: ServeSettings) -> list[AppConfig]:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ValidationError("apps", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError("apps", f"{path} is not valid TOML: {exc}") from None
    return parse_apps(doc, base)


class Dispatcher:
    """The ASGI app of a multi-app server: sends each request to the app its credential belongs to."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.apps = apps
        self.first = next(iter(apps.values()))
        self.owner = {key_digest(k): name for name, app in apps.items()
                      for k in app.state.service.keys.read_keys | app.state.service.keys.write_keys
                      | app.state.service.keys.admin_keys}

    def app_for(self, scope: Scope) -> FastAPI:
        for name, value in scope["headers"]:
            if name == b"authorization":
                try:
                    credential = credential_of(value.decode("latin-1"))
                except AuthError:
                    break
                owner = self.owner.get(key_digest(credential))
                if owner is None and tokens.looks_like_token(credential):
                    owner = tokens.app_of(credential)
                return self.apps.get(owner or "", self.first)
        return self.first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] == "/readyz":
            await self._ready(send)
        else:
            await self.app_for(scope)(scope, receive, send)

    async def _ready(self, send: Send) -> None:
        versions = {name: (app.state.service.registry.active.version if app.state.service.registry.active else None)
                    for name, app in self.apps.items()}
        ready = all(versions.values())
        body = orjson.dumps({"status": "ready" if ready else "not_ready", "apps": versions})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if not ready:
            headers.append((b"retry-after", b"5"))
        await send({"type": "http.response.start", "status": 200 if ready else 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                for app in self.apps.values():
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def create_multi_app(configs: list[AppConfig], *, surfaces: dict[Surface, str | Path] | None = None,
                     materialize: bool = False) -> Dispatcher:
    from belong.serve.app import create_app

    return Dispatcher({c.name: create_app(c.store, settings=c.settings, surfaces=surfaces, materialize=materialize)
                       for c in configs})
