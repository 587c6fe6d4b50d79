"""Serving settings, read once from environment variables (documented defaults below).

* ``BELONG_API_KEYS_WRITE`` (default (none)): comma list of keys allowed on write routes (``POST /v1/events``,
  ``/v1/impressions``)
* ``BELONG_API_KEYS_ADMIN`` (default (none)): comma list of keys allowed on admin routes (models); admin keys may also
  write
* ``BELONG_API_KEYS_READ`` (default (none)): comma list of keys allowed on read routes (recommendations, similar,
  models); write and admin keys may also read. Every key must be at least 16 characters (refused at start-up)
* ``BELONG_TOKEN_SECRET`` (default (none)): secret (at least 32 characters) signing user tokens
* ``BELONG_DASHBOARD_SECRET`` (default (none)): secret (at least 32 characters) signing dashboard sessions; unset: a
  random one per process (sessions end with the process)
  (:mod:`belong.serve.tokens`, ``belong token mint``); unset: no user tokens are accepted
* ``BELONG_APP`` (default default): this server's app name (user tokens name it; ``belong serve --apps`` sets it
  per app)
* ``BELONG_READ_AUTH`` (default true): read routes need a read key or a user token; false: reads are open (a private
  network behind the platform's backend)
* ``BELONG_MAX_BODY_BYTES`` (default 1048576): larger request bodies are refused 413 (by Content-Length before
  reading, or as soon as a streamed body passes it)
* ``BELONG_BODY_TIMEOUT_S`` (default 10): a body not fully received in this time is refused 408
* ``BELONG_MAX_HEADER_BYTES`` (default 16384): request headers larger than this are refused 431
* ``BELONG_KEEP_ALIVE_S`` (default 5): idle keep-alive connections are closed after this many seconds
* ``BELONG_MAX_CONNECTIONS`` (default 2048): concurrent connections and requests; more answer 503
* ``BELONG_RATE_KEY`` (default 2000/4000): per API key token bucket, ``rate/burst`` requests (per second / at once);
  ``0`` turns it off; over it: 429 with ``Retry-After``
* ``BELONG_RATE_USER`` (default 20/40): the same per user token (per app and user)
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
* ``BELONG_CANDIDATE_TTL_S`` (default 300): how long a user's cached candidate list is fresh; ``0``: no candidate
  cache (every request runs the sources: answers then depend only on the state, e.g. ``belong loop run``)
* ``BELONG_BATCH_MAX`` (default 32): cold-path candidate runs of one pipeline that arrive while one is being made go
  together, at most this many, as one batch (vectorised sources, one ranker prediction; each answer is the one it
  gets alone); ``1``: every run alone
* ``BELONG_REQUEST_SEED`` (default 0): the seed of a request's randomised parts (walks, an exploration slot): an
  integer (fixed: a state gives every user one answer, as ``belong candidates precompute`` stores it), or ``day``:
  the live state's day (its clock, event time, in days since the epoch), so the walks and the exploration slot vary
  day by day (``belong loop run`` serves so, in both modes)
* ``BELONG_CACHE_USERS`` (default 200000): candidate lists kept (least recently used are evicted)
* ``BELONG_CACHE_DEPTH`` (default 200): ranked candidates kept per cached list (the rules then pick k from them)
* ``BELONG_GC_AUTO_FULL`` (default false): CPython's automatic full garbage collections; false: once the models are
  loaded, only the young collections run, so no request waits for a pass over the caches (:mod:`belong.serve.heap`)
* ``BELONG_GC_SWEEP_S`` (default 0): every this many seconds, one full collection (reclaims reference cycles that
  became garbage after surviving the young collections; a pause as long as the caches are large); ``0``: never
* ``BELONG_PROXY_HEADERS`` (default false): trust ``X-Forwarded-For`` / ``-Proto`` (set true behind a reverse proxy)
* ``BELONG_MODELS_DIR`` (default (none)): ``belong train`` artifacts; the newest is loaded at startup (else a version
  is built from the log)
* ``BELONG_SNAPSHOT`` (default true): start from the state snapshot beside the artifacts (``MODELS_DIR/snapshot``,
  written by ``belong train`` / ``belong snapshot``) plus the log after it; false: read the whole log

With no keys configured, write and admin routes refuse every request (401), and so do read routes unless
``BELONG_READ_AUTH=false``: a server is never open by accident. Access rules: docs/SECURITY_ACCESS.md.
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


MIN_KEY_LEN = 16


def _rate(env: dict[str, str], name: str, default: tuple[float, float]) -> tuple[float, float]:
    """``rate/burst`` (``rate`` alone: burst = 2 x rate; ``0``: off)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    rate_s, _, burst_s = raw.partition("/")
    try:
        rate = float(rate_s)
        burst = float(burst_s) if burst_s else 2 * rate
    except ValueError:
        raise ValidationError(name, f"must be 'rate/burst' in requests per second, e.g. 100/200, got {raw!r}") from None
    if rate < 0 or burst < 0 or (rate > 0 and burst < 1):
        raise ValidationError(name, f"rate must be >= 0 and burst >= 1, got {raw!r}")
    return rate, burst


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


def _seed(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return 0
    if raw.strip().lower() == "day":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError("BELONG_REQUEST_SEED", f"must be an integer or 'day', got {raw!r}") from None


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
    batch_max: int = 32
    request_seed: int | None = 0  # None: the state's day
    models_dir: str | None = None
    proxy_headers: bool = False
    read_keys: frozenset[str] = field(default_factory=frozenset)
    token_secret: str | None = None
    dashboard_secret: str | None = None
    app_name: str = "default"
    read_auth: bool = True
    max_body_bytes: int = 1_048_576
    body_timeout_s: float = 10.0
    max_header_bytes: int = 16_384
    keep_alive_s: float = 5.0
    max_connections: int = 2048
    rate_key: tuple[float, float] = (2000.0, 4000.0)
    rate_user: tuple[float, float] = (20.0, 40.0)
    use_snapshot: bool = True
    gc_auto_full: bool = False
    gc_sweep_s: float = 0.0
    fast_route: bool = True  # GET /v1/recommendations/{surface} answered below the framework (serve/fastpath.py)

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
            batch_max=int(_num(env, "BELONG_BATCH_MAX", 32, minimum=1)),
            request_seed=_seed(env.get("BELONG_REQUEST_SEED")),
            models_dir=env.get("BELONG_MODELS_DIR") or None,
            use_snapshot=_flag(env, "BELONG_SNAPSHOT", True),
            gc_auto_full=_flag(env, "BELONG_GC_AUTO_FULL"),
            gc_sweep_s=_num(env, "BELONG_GC_SWEEP_S", 0.0),
            fast_route=_flag(env, "BELONG_FAST_ROUTE", default=True),
            proxy_headers=_flag(env, "BELONG_PROXY_HEADERS"),
            read_keys=_keys(env.get("BELONG_API_KEYS_READ")),
            token_secret=env.get("BELONG_TOKEN_SECRET") or None,
            dashboard_secret=env.get("BELONG_DASHBOARD_SECRET") or None,
            app_name=env.get("BELONG_APP") or "default",
            read_auth=_flag(env, "BELONG_READ_AUTH", default=True),
            max_body_bytes=int(_num(env, "BELONG_MAX_BODY_BYTES", 1_048_576, minimum=1)),
            body_timeout_s=_num(env, "BELONG_BODY_TIMEOUT_S", 10.0, minimum=0.1),
            max_header_bytes=int(_num(env, "BELONG_MAX_HEADER_BYTES", 16_384, minimum=1024)),
            keep_alive_s=_num(env, "BELONG_KEEP_ALIVE_S", 5.0, minimum=0.1),
            max_connections=int(_num(env, "BELONG_MAX_CONNECTIONS", 2048, minimum=1)),
            rate_key=_rate(env, "BELONG_RATE_KEY", (2000.0, 4000.0)),
            rate_user=_rate(env, "BELONG_RATE_USER", (20.0, 40.0)),
        )

    def validate(self) -> ServeSettings:
        """Refuse, at start-up, keys too short to resist guessing and a short token secret (the error names the
        setting and the key's position, never the key)."""
        for name, keys in (("BELONG_API_KEYS_READ", self.read_keys), ("BELONG_API_KEYS_WRITE", self.write_keys),
                           ("BELONG_API_KEYS_ADMIN", self.admin_keys)):
            for key in keys:
                if len(key) < MIN_KEY_LEN:
                    raise ValidationError(name, f"every API key must be at least {MIN_KEY_LEN} characters; one has "
                                          f"{len(key)} (make one with: python -c 'import secrets; "
                                          "print(secrets.token_urlsafe(24))')")
        from belong.serve.tokens import MIN_SECRET_LEN

        if self.token_secret is not None and len(self.token_secret) < MIN_SECRET_LEN:
            raise ValidationError("BELONG_TOKEN_SECRET", f"must be at least {MIN_SECRET_LEN} characters, got "
                                  f"{len(self.token_secret)}")
        if self.dashboard_secret is not None and len(self.dashboard_secret) < MIN_SECRET_LEN:
            raise ValidationError("BELONG_DASHBOARD_SECRET", f"must be at least {MIN_SECRET_LEN} characters, got "
                                  f"{len(self.dashboard_secret)}")
        return self

    def with_(self, **changes: Any) -> ServeSettings:
        """A copy with some settings replaced (CLI flags over environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
