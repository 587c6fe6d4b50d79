"""Serving settings, read once from environment variables (documented defaults below).

* ``BELONG_API_KEYS_WRITE`` (default (none)): comma list of keys allowed on write routes (``POST /v1/events``,
  ``/v1/impressions``)
* ``BELONG_API_KEYS_ADMIN`` (default (none)): comma list of keys allowed on admin routes (models); admin keys may also
  write
* ``BELONG_REDIS_URL`` (default (none)): online feature store; in-process when unset (see :mod:`belong.settings`)
* ``BELONG_FEATURES_PREFIX`` (default belong:features:): key prefix of the online feature rows in Redis
* ``BELONG_BUDGET_SOURCES_MS`` (default 60): time budget of the candidate sources of one request (cache miss)
* ``BELONG_BUDGET_FEATURES_MS`` (default 20): time budget of the online feature read (the Redis socket timeout)
* ``BELONG_FEATURE_CACHE_S`` (default 60): how long a candidate's online feature row is kept in process (capped by its
  freshness)
* ``BELONG_FEATURE_CACHE_ROWS`` (default 200000): feature rows kept in process (oldest reads are evicted)
* ``BELONG_FEATURE_TRACKING`` (default true): keep those rows exact with Redis invalidation messages (``CLIENT
  TRACKING``): a row, the requesting user's too, is reused until Redis reports it changed; false: candidate rows
  only, for their freshness
* ``BELONG_BREAKER_S`` (default 1.0): after a feature-store failure, skip it this long before trying again
* ``BELONG_CANDIDATE_TTL_S`` (default 300): how long a user's cached candidate list is fresh
* ``BELONG_CACHE_USERS`` (default 200000): candidate lists kept (least recently used are evicted)
* ``BELONG_CACHE_DEPTH`` (default 200): ranked candidates kept per cached list (the rules then pick k from them)
* ``BELONG_PROXY_HEADERS`` (default false): trust ``X-Forwarded-For`` / ``-Proto`` (set true behind a reverse proxy)
* ``BELONG_MODELS_DIR`` (default (none)): ``belong train`` artifacts; the newest is loaded at startup (else a version
  is built from the log)

With no keys configured, write and admin routes refuse every request (401): a server is never open by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from belong.errors import ValidationError


def _keys(raw: str | None) -> frozenset[str]:
    return frozenset(k.strip() for k in (raw or "").split(",") if k.strip())


def _flag(env: dict[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or ("true" if default else "false")).strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValidationError(name, f"must be true or false, got {raw!r}")


def _num(env: dict[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(name, f"must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValidationError(name, f"must be >= {minimum:g}, got {value:g}")
    return value


@dataclass(frozen=True, slots=True)
class ServeSettings:
    write_keys: frozenset[str] = field(default_factory=frozenset)
    admin_keys: frozenset[str] = field(default_factory=frozenset)
    redis_url: str | None = None
    features_prefix: str = "belong:features:"
    budget_sources_ms: float = 60.0
    budget_features_ms: float = 20.0
    feature_cache_s: float = 60.0
    feature_cache_rows: int = 200_000
    feature_tracking: bool = True
    breaker_s: float = 1.0
    candidate_ttl_s: float = 300.0
    cache_users: int = 200_000
    cache_depth: int = 200
    models_dir: str | None = None
    proxy_headers: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServeSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            write_keys=_keys(env.get("BELONG_API_KEYS_WRITE")),
            admin_keys=_keys(env.get("BELONG_API_KEYS_ADMIN")),
            redis_url=env.get("BELONG_REDIS_URL") or None,
            features_prefix=env.get("BELONG_FEATURES_PREFIX") or "belong:features:",
            budget_sources_ms=_num(env, "BELONG_BUDGET_SOURCES_MS", 60.0),
            budget_features_ms=_num(env, "BELONG_BUDGET_FEATURES_MS", 20.0, minimum=0.1),
            feature_cache_s=_num(env, "BELONG_FEATURE_CACHE_S", 60.0),
            feature_cache_rows=int(_num(env, "BELONG_FEATURE_CACHE_ROWS", 200_000, minimum=1)),
            feature_tracking=_flag(env, "BELONG_FEATURE_TRACKING", default=True),
            breaker_s=_num(env, "BELONG_BREAKER_S", 1.0),
            candidate_ttl_s=_num(env, "BELONG_CANDIDATE_TTL_S", 300.0),
            cache_users=int(_num(env, "BELONG_CACHE_USERS", 200_000, minimum=1)),
            cache_depth=int(_num(env, "BELONG_CACHE_DEPTH", 200, minimum=1)),
            models_dir=env.get("BELONG_MODELS_DIR") or None,
            proxy_headers=_flag(env, "BELONG_PROXY_HEADERS"),
        )

    def with_(self, **changes: Any) -> ServeSettings:
        """A copy with some settings replaced (CLI flags over environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
