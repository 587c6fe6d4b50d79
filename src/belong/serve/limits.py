"""Per-credential token buckets: ``rate`` requests per second on average, ``burst`` at once; over it the caller
waits ``retry_after`` seconds (429 with ``Retry-After``). Only authenticated requests draw from a bucket, so nobody
can drain (lock out) a key or a user they do not hold."""

from __future__ import annotations

import math
import time

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, bucket: str, now: float | None = None) -> float:
        """0 when a request of ``bucket`` may go ahead now; else the seconds until it may (nothing is taken)."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(bucket, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[bucket] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if bucket not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
            self._buckets.pop(next(iter(self._buckets)))  # oldest bucket: a full one, in effect
        self._buckets[bucket] = (tokens - 1.0, now)
        return 0.0


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
