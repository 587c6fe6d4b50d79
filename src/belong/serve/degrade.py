"""Online features under a time budget, with a circuit breaker: a dependency failure degrades, never fails.

:class:`FeatureReader` reads the user and the chosen candidates from the online feature store in one round trip
(:func:`belong.features.hydrate`: one pipelined ``HMGET`` batch on Redis), on a few I/O threads so that the event
loop keeps serving while it waits. The Redis socket timeout is the stage's budget and retries are off, so a slow or dead Redis costs at most one budget. After a failure the breaker stays
open for ``breaker_s``: requests skip Redis (answering without online features, marked degraded) and the first
request after that tries again, so service recovers by itself when Redis returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from belong.domain import Surface
from belong.errors import BelongError
from belong.features import OnlineFeatureStore, RedisFeatureStore, hydrate, open_feature_store


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


class FeatureReader:
    """Reads online features for one request; see the module docstring."""

    def __init__(self, store: OnlineFeatureStore, breaker_s: float, io_threads: int = 4) -> None:
        self.store = store
        self.breaker_s = breaker_s
        self._open_until = 0.0
        self._errors = dependency_errors()
        remote = isinstance(store, RedisFeatureStore)
        self._pool = ThreadPoolExecutor(io_threads, thread_name_prefix="belong-features") if remote else None

    @classmethod
    def open(cls, redis_url: str | None, *, prefix: str, budget_ms: float, breaker_s: float) -> FeatureReader:
        if redis_url:
            store: OnlineFeatureStore = BudgetRedisFeatureStore(redis_url, prefix=prefix, timeout_s=budget_ms / 1e3)
        else:
            store = open_feature_store(None)
        return cls(store, breaker_s)

    @property
    def backend(self) -> str:
        return "redis" if isinstance(self.store, RedisFeatureStore) else "in-process"

    async def read(
        self, surface: Surface, user_id: str, item_ids: Sequence[str]
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """(features per item, None) or (None, the reason they are missing).

        A Redis read runs on a small thread pool so that the event loop serves other requests while it waits on
        the network (the sockets' timeout is the stage budget); the in-process store is read inline."""
        if time.monotonic() < self._open_until:
            return None, "features_unavailable"
        try:
            if self._pool is None:
                return hydrate(self.store, surface, user_id, list(item_ids)), None
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(self._pool, hydrate, self.store, surface, user_id, list(item_ids))
            return rows, None
        except self._errors:
            self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"

    def ping(self) -> bool:
        """Whether the feature store answers now (for /readyz)."""
        try:
            self.store.read_many([("user", "__ping__")], ["user_locale"])
            return True
        except self._errors:
            return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
