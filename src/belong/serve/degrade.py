"""Online features under a time budget, with a circuit breaker: a dependency failure degrades, never fails.

:class:`FeatureReader` reads the user and the chosen candidates from the online feature store in one round trip:
one pipeline of ``HMGET``s (the keys and fields :class:`~belong.features.RedisFeatureStore` writes), sent with the
asyncio Redis client so that the event loop serves other requests while it waits, then decoded and assembled into
model inputs by :func:`belong.features.hydrate` itself (through :class:`Prefetched`), so online values are computed
by the same code as everywhere else. The round trip is bounded by the stage's budget and retries are off, so a slow
or dead Redis costs at most one budget. After a connection failure (or three reads in a row over budget) the
breaker stays open for ``breaker_s``: requests skip Redis (answering without online features, marked degraded) and the first
request after that tries again, so service recovers by itself when Redis returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from belong.domain import Surface
from belong.errors import BelongError
from belong.features import OnlineFeatureStore, RedisFeatureStore, hydrate, open_feature_store, specs_for
from belong.features.assemble import CANDIDATE_ENTITY


class BudgetRedisFeatureStore(RedisFeatureStore):
    """:class:`RedisFeatureStore` with the stage budget as socket timeout, no retries, and no ping at start
    (the server must start, degraded, while Redis is down)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.write_chunk = 2000
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )


def dependency_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the feature store is unavailable" (not a bug of ours)."""
    import redis

    return (redis.RedisError, OSError, TimeoutError, BelongError)


TIMEOUTS_TO_OPEN = 3  # consecutive reads over budget that open the breaker
TS_FIELD = "_ts"  # the materialisation time RedisFeatureStore keeps in each row
#: the fields read per stored entity, in the order OnlineFeatureStore.read_many asks for them
FIELDS = {e: [s.name for s in specs_for(e)] for e in ("user", "community", "content")}


class Prefetched(OnlineFeatureStore):
    """Answers one ``read_many`` with Redis replies fetched beforehand (asynchronously): the decoding and the
    defaults stay those of :class:`~belong.features.OnlineFeatureStore`."""

    url = "prefetched://"

    def __init__(self, replies: list[list[bytes | None]]) -> None:
        self._replies = replies

    def _read(self, requests: list[tuple[str, str]], fields: dict[str, list[str]]
              ) -> list[tuple[list[bytes | None], bytes | None]]:
        if len(requests) != len(self._replies) or any(fields[e] != FIELDS[e] for e, _ in requests):
            raise RuntimeError("prefetched replies do not match the read")
        return [(vals[:-1], vals[-1]) for vals in self._replies]

    def _write(self, entity: str, rows: dict[str, dict[str, bytes]], ts_us: int) -> None:
        raise NotImplementedError("a prefetched read is read-only")

    def clear(self) -> int:
        return 0


class FeatureReader:
    """Reads online features for one request; see the module docstring."""

    def __init__(self, store: OnlineFeatureStore, breaker_s: float, *, redis_url: str | None = None,
                 prefix: str = "", budget_ms: float = 20.0) -> None:
        self.store = store
        self.breaker_s = breaker_s
        self.prefix = prefix
        self.budget_s = budget_ms / 1e3
        self._open_until = 0.0
        self._timeouts = 0  # consecutive reads over budget
        self._errors = dependency_errors()
        self._client = None
        if redis_url:
            import redis.asyncio as aredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = aredis.Redis.from_url(
                redis_url, socket_timeout=self.budget_s, socket_connect_timeout=self.budget_s,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False)

    @classmethod
    def open(cls, redis_url: str | None, *, prefix: str, budget_ms: float, breaker_s: float) -> FeatureReader:
        if redis_url:
            store: OnlineFeatureStore = BudgetRedisFeatureStore(redis_url, prefix=prefix, timeout_s=budget_ms / 1e3)
            return cls(store, breaker_s, redis_url=redis_url, prefix=prefix, budget_ms=budget_ms)
        return cls(open_feature_store(None), breaker_s)

    async def _fetch(self, requests: list[tuple[str, str]]) -> list[list[bytes | None]]:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for entity, key in requests:
            pipe.hmget(f"{self.prefix}{entity}:{key}", [*FIELDS[entity], TS_FIELD])
        return await asyncio.wait_for(pipe.execute(), self.budget_s)

    async def read(
        self, surface: Surface, user_id: str, item_ids: Sequence[str]
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """(features per item, None) or (None, the reason they are missing)."""
        if time.monotonic() < self._open_until:
            return None, "features_unavailable"
        ids = list(item_ids)
        try:
            if self._client is None:
                rows = hydrate(self.store, surface, user_id, ids)
            else:
                requests = [("user", user_id)] + [(CANDIDATE_ENTITY[surface], i) for i in ids]
                rows = hydrate(Prefetched(await self._fetch(requests)), surface, user_id, ids)
        except (TimeoutError, RedisTimeoutError):  # one slow read degrades this request; several in a row open the breaker
            self._timeouts += 1
            if self._timeouts >= TIMEOUTS_TO_OPEN:
                self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"
        except self._errors:  # refused, reset, unknown host: Redis is down, stop asking for a while
            self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"
        self._timeouts = 0
        return rows, None

    def ping(self) -> bool:
        """Whether the feature store answers now (for /readyz)."""
        try:
            self.store.read_many([("user", "__ping__")], ["user_locale"])
            return True
        except self._errors:
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self.store.close()
