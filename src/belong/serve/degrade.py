"""Online features under a time budget, with a circuit breaker: a dependency failure degrades, never fails.

:class:`FeatureReader` reads the user and the chosen candidates from the online feature store in one round trip
(:func:`belong.features.hydrate`: one pipeline of ``HMGET``s on Redis), decoded and assembled into model inputs by
the same code as everywhere else. The read is synchronous: on loopback it costs well under a millisecond, less
than handing it to a thread or to the asyncio Redis client did when measured (those also timed out under
concurrency). The Redis socket timeout is the stage's budget and retries are off, so a slow or dead Redis costs at
most one budget. After a connection failure (or three reads in a row over budget) the breaker stays open for
``breaker_s``: requests skip Redis (answering without online features, marked degraded) and the first request
after that tries again, so service recovers by itself when Redis returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from belong.domain import Surface
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


TIMEOUTS_TO_OPEN = 3  # consecutive reads over budget that open the breaker


class FeatureReader:
    """Reads online features for one request; see the module docstring."""

    def __init__(self, store: OnlineFeatureStore, breaker_s: float) -> None:
        self.store = store
        self.breaker_s = breaker_s
        self._open_until = 0.0
        self._timeouts = 0  # consecutive reads over budget

    @classmethod
    def open(cls, redis_url: str | None, *, prefix: str, budget_ms: float, breaker_s: float) -> FeatureReader:
        if redis_url:
            return cls(BudgetRedisFeatureStore(redis_url, prefix=prefix, timeout_s=budget_ms / 1e3), breaker_s)
        return cls(open_feature_store(None), breaker_s)

    def read(
        self, surface: Surface, user_id: str, item_ids: Sequence[str]
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """(features per item, None) or (None, the reason they are missing)."""
        if time.monotonic() < self._open_until:
            return None, "features_unavailable"
        try:
            rows = hydrate(self.store, surface, user_id, list(item_ids))
        except (TimeoutError, RedisTimeoutError):  # one slow read degrades this request; 3 in a row open the breaker
            self._timeouts += 1
            if self._timeouts >= TIMEOUTS_TO_OPEN:
                self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"
        except Exception:  # refused, reset, a broken connection: the store is unavailable, stop asking a while
            self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"
        self._timeouts = 0
        return rows, None

    def ping(self) -> bool:
        """Whether the feature store answers now (for /readyz)."""
        try:
            self.store.read_many([("user", "__ping__")], ["user_locale"])
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.store.close()
