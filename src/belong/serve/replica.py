"""Replicas: ``belong serve --workers N`` runs N API processes behind one port (``SO_REUSEPORT``: the kernel spreads
connections over them), each a stateless replica of the event log fed by an event stream on Redis Streams.

* A replica that accepts events appends them to the log (the source of truth) and then publishes them on the stream
  (``XADD BELONG_EVENT_STREAM_KEY``, the events as msgpack, with the replica's id).
* Every replica follows the stream (``XREAD BLOCK``) and folds the events other replicas accepted into its state
  and caches, exactly as its own (:meth:`Service.fold`); an event id already folded is skipped. The lag of each
  entry (now minus the entry's time) is ``belong_stream_lag_seconds`` in ``/metrics`` and, with the entries folded,
  ``replica`` in ``/readyz``.
* A replica that starts (or restarts) notes the stream's last entry *before* it reads the log, builds its state
  from the log, then folds the entries after that point: nothing accepted while it started is missed. (An event
  published while it read the log may be folded twice: memberships and friendships are sets, so only activity
  counts move.)

Why Redis Streams rather than NATS JetStream: both run here; ``belong bench replicas`` measures publish-to-fold
propagation on each (see docs/SCALING.md for the figures); Redis is already the feature store of every API process.

Environment: ``BELONG_EVENT_STREAM`` (a ``redis://`` URL; unset: no stream, one process),
``BELONG_EVENT_STREAM_KEY`` (default ``belong:events:<app>``), ``BELONG_REUSEPORT`` (set by ``--workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import Counter, Histogram

from belong.domain import Event
from belong.errors import ValidationError

if TYPE_CHECKING:
    from belong.serve.service import Service

log = logging.getLogger("belong.serve.replica")
_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Event]).decode
MAXLEN = 1_000_000  # entries kept on the stream (approximately); the log keeps everything


def entry_ms(entry_id: bytes | str) -> int:
    """The Redis time (ms) at which a stream entry was added."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0])


class EventStream:
    """One app's event stream on Redis Streams: publish (sync, after the durable append) and follow (async)."""

    def __init__(self, url: str, key: str, origin: str, registry: Any = None) -> None:
        import redis

        self.url, self.key, self.origin = url, key, origin
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
        self.folded = self.skipped = self.published = 0
        self.last_id: str | None = None
        self.lags: list[float] = []
        self._lag = Histogram("belong_stream_lag_seconds", "From an event's entry on the stream to its fold here",
                              buckets=_LAG_BUCKETS, registry=registry)
        self._entries = Counter("belong_stream_entries", "Stream entries read, by result", ["result"],
                                registry=registry)

    @classmethod
    def from_env(cls, app_name: str, registry: Any = None, env: dict[str, str] | None = None) -> EventStream | None:
        env = dict(os.environ if env is None else env)
        url = env.get("BELONG_EVENT_STREAM") or ""
        if not url:
            return None
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValidationError("BELONG_EVENT_STREAM", f"must be a redis:// URL, got {url.split('://')[0]}://…")
        key = env.get("BELONG_EVENT_STREAM_KEY") or f"belong:events:{app_name}"
        return cls(url, key, f"{socket.gethostname()}:{os.getpid()}", registry)

    def position(self) -> str:
        """The id of the stream's last entry ("0-0" when empty): what a starting replica follows from."""
        last: Any = self.client.xrevrange(self.key, count=1)
        return last[0][0].decode() if last else "0-0"

    def publish(self, events: list[Event]) -> None:
        """Publish events this replica accepted (already durable in the log)."""
        if events:
            self.client.xadd(self.key, {"o": self.origin, "e": _encode(events)}, maxlen=MAXLEN, approximate=True)
            self.published += len(events)

    async def follow(self, svc: Service, after: str) -> None:
        """Fold other replicas' events into ``svc`` from entry ``after`` on, forever (cancelled at shutdown)."""
        import redis.asyncio as aioredis

        while svc.registry.active is None:  # the state is built from the log first
            await asyncio.sleep(0.05)
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2.0)
        last = after
        try:
            while True:
                try:
                    got: Any = await client.xread({self.key: last}, block=1000, count=500)
                except (OSError, ConnectionError, TimeoutError) as exc:  # redis down: retry, the log keeps all
                    log.warning("event stream read failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)
                    continue
                for _key, entries in got or []:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        self._fold(svc, entry_id, fields)
                    self.last_id = last
        finally:
            await client.aclose()

    def _fold(self, svc: Service, entry_id: Any, fields: Any) -> None:
        if fields.get(b"o", b"").decode() == self.origin:
            self._entries.labels("own").inc()
            return
        events = [e for e in _decode(fields[b"e"]) if e.event_id not in svc.recent_ids]
        for e in events:
            svc.recent_ids[e.event_id] = None
        svc.fold(events)
        lag = max(0.0, time.time() - entry_ms(entry_id) / 1e3)
        self._lag.observe(lag)
        self.lags.append(lag)
        if len(self.lags) > 10_000:
            del self.lags[:5_000]
        self.folded += len(events)
        self._entries.labels("folded").inc()

    def report(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        pct = (lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1e3, 2)) if lags else (lambda q: None)
        return {"id": self.origin, "stream": self.key, "published": self.published, "folded": self.folded,
                "last_id": self.last_id, "lag_ms_p50": pct(0.5), "lag_ms_p99": pct(0.99)}


def attach(svc: Service) -> asyncio.Task | None:
    """Called at startup before the first version is built: note the stream's position, then follow it."""
    stream = svc.stream
    if stream is None:
        return None
    after = stream.position()
    return asyncio.create_task(stream.follow(svc, after))


# ----------------------------------------------------------------------------------------------- processes
def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind too (the kernel balances connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def without_workers(argv: list[str]) -> list[str]:
    """``argv`` minus its ``--workers N`` / ``--workers=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out


def run_workers(n: int, argv: list[str] | None = None) -> int:
    """Start ``n`` replicas (this command again, one worker each, sharing the port) and wait; a signal stops all,
    and one replica exiting stops the others. Returns the first non-zero exit code (0 when stopped cleanly)."""
    if not os.environ.get("BELONG_EVENT_STREAM"):
        raise ValidationError("workers", "more than one worker needs an event stream: set BELONG_EVENT_STREAM="
                              "redis://… (or pass --stream) so that every replica sees every event")
    cmd = [sys.argv[0], *without_workers(list(sys.argv[1:] if argv is None else argv))]
    env = {**os.environ, "BELONG_REUSEPORT": "1"}
    procs = [subprocess.Popen(cmd, env={**env, "BELONG_REPLICA": str(i)}) for i in range(n)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while any(p.poll() is None for p in procs):
        for p in procs:
            rc = p.poll()
            if rc is not None and not stopping:
                code = code or rc
                stop()
        time.sleep(0.2)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=20)
    return code
