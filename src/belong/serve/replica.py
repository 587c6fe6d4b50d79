"""Replicas: ``belong serve --workers N`` runs N API processes behind one port (``SO_REUSEPORT``: the kernel spreads
connections over them), each a stateless replica of the event log fed by an event stream (JetStream or Redis Streams).

* A replica that accepts events appends them to the log (the source of truth) and then publishes them on the stream
  (the events as msgpack, with the replica's id): Redis Streams (``XADD``) or NATS JetStream (acknowledged publish),
  by the URL's scheme.
* Every replica follows the stream (``XREAD BLOCK``; a JetStream ordered consumer) and folds the events other
  replicas accepted into its state and caches, exactly as its own (:meth:`Service.fold`); an event id already
  folded is skipped. The lag of each entry (now minus the time it was published) is ``belong_stream_lag_seconds``
  in ``/metrics`` and, with the entries folded, ``replica`` in ``/readyz``.
* A replica that starts (or restarts) notes the stream's last entry *before* it reads the log, builds its state
  from the log, then folds the entries after that point: nothing accepted while it started is missed. (An event
  published while it read the log may be folded twice: memberships and friendships are sets, so only activity
  counts move.)

Both brokers run here; ``belong bench replicas`` measures publish-to-receive propagation on each (another process
receiving, at a steady rate) and the replicas' lag end to end. On this 2-core machine, shared with other work
(load average ~20), 1,000 messages at 500/s gave NATS JetStream p50 0.24 / p99 25 ms against Redis Streams
p50 4.7-7.1 / p99 37-42 ms in a quieter minute, and NATS p50 2.3 / p99 170 ms against Redis p50 6.8 / p99 47 ms
in a busier one: NATS has the lower median every time, the tail follows the machine's load. Either is a URL away;
NATS is the default recommendation (its own process, not sharing Redis with the feature store's bulk writes).

Environment: ``BELONG_EVENT_STREAM`` (a ``nats://`` or ``redis://`` URL; unset: no stream, one process),
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
from collections import OrderedDict
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
MAXLEN = 1_000_000
SEEN_IDS = 1_000_000  # entries kept on the stream (approximately); the log keeps everything


def entry_ms(entry_id: Any) -> int:
    """The Redis time (ms) at which a stream entry was added."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0])


class EventStream:
    """One app's event stream: publish (after the durable append) and follow; the broker is a subclass's."""

    broker = ""

    def __init__(self, url: str, key: str, origin: str, registry: Any = None) -> None:
        self.url, self.key, self.origin = url, key, origin
        self.folded = self.published = 0
        self.seen: OrderedDict[str, None] = OrderedDict()  # event ids folded from the stream (the last SEEN_IDS)
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
        key = env.get("BELONG_EVENT_STREAM_KEY") or f"belong:events:{app_name}"
        origin = f"{socket.gethostname()}:{os.getpid()}"
        if url.startswith(("redis://", "rediss://", "unix://")):
            return RedisStream(url, key, origin, registry)
        if url.startswith(("nats://", "tls://")):
            return NatsStream(url, key, origin, registry)
        raise ValidationError("BELONG_EVENT_STREAM", f"must be a redis:// or nats:// URL, got "
                              f"{url.split('://')[0]}://…")

    async def position(self) -> str:  # pragma: no cover - per broker
        raise NotImplementedError

    async def publish(self, events: list[Event]) -> None:  # pragma: no cover - per broker
        raise NotImplementedError

    async def follow(self, svc: Service, after: str) -> None:  # pragma: no cover - per broker
        raise NotImplementedError

    async def close(self) -> None:
        return None

    async def send(self, events: list[Event]) -> None:
        """Publish events this replica accepted (already durable in the log); a broker failure is logged and
        counted, never the request's failure (the others see the events when they next read the log)."""
        try:
            await self.publish(events)
        except Exception as exc:  # noqa: BLE001 - the log holds the events
            self._entries.labels("publish_error").inc()
            log.warning("events not published on the stream: %s: %s", type(exc).__name__, exc)

    def _fold(self, svc: Service, origin: str, payload: bytes, added_s: float) -> None:
        """Fold one entry's events (another replica's), unless already folded here."""
        if origin == self.origin:
            self._entries.labels("own").inc()
            return
        events = [e for e in _decode(payload) if e.event_id not in self.seen]
        for e in events:
            self.seen[e.event_id] = None
        while len(self.seen) > SEEN_IDS:
            self.seen.popitem(last=False)
        svc.fold(events)
        lag = max(0.0, time.time() - added_s)
        self._lag.observe(lag)
        self.lags.append(lag)
        if len(self.lags) > 10_000:
            del self.lags[:5_000]
        self.folded += len(events)
        self._entries.labels("folded").inc()

    def report(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        pct = (lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1e3, 2)) if lags else (lambda q: None)
        return {"id": self.origin, "broker": self.broker, "stream": self.key, "published": self.published,
                "folded": self.folded, "last_id": self.last_id, "lag_ms_p50": pct(0.5), "lag_ms_p99": pct(0.99)}


class RedisStream(EventStream):
    """Redis Streams: ``XADD`` (msgpack events, origin) and ``XREAD BLOCK`` from the last entry read."""

    broker = "redis_streams"

    def __init__(self, url: str, key: str, origin: str, registry: Any = None) -> None:
        import redis.asyncio as aioredis

        super().__init__(url, key, origin, registry)
        self.client = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)

    async def position(self) -> str:
        last: Any = await self.client.xrevrange(self.key, count=1)
        return last[0][0].decode() if last else "0-0"

    async def publish(self, events: list[Event]) -> None:
        await self.client.xadd(self.key, {"o": self.origin, "e": _encode(events)}, maxlen=MAXLEN, approximate=True)
        self.published += len(events)

    async def follow(self, svc: Service, after: str) -> None:
        import redis.asyncio as aioredis

        while svc.registry.active is None:  # the state is built from the log first
            await asyncio.sleep(0.05)
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2.0)  # its own connection: it blocks
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
                        self._fold(svc, fields.get(b"o", b"").decode(), fields[b"e"], entry_ms(entry_id) / 1e3)
                    self.last_id = last
        finally:
            await client.aclose()

    async def close(self) -> None:
        await self.client.aclose()


class NatsStream(EventStream):
    """NATS JetStream: a stream named after the key holding subject ``<key>`` (created when absent); publish waits
    for JetStream's acknowledgement; follow is an ordered push consumer from the sequence after ``after``."""

    broker = "nats_jetstream"

    def __init__(self, url: str, key: str, origin: str, registry: Any = None) -> None:
        super().__init__(url, key, origin, registry)
        self.subject = key.replace(":", ".")
        self.name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key)
        self._nc: Any = None
        self._js: Any = None

    async def _connect(self) -> Any:
        if self._js is None:
            import nats

            self._nc = await nats.connect(self.url, connect_timeout=2)
            self._js = self._nc.jetstream()
            try:
                await self._js.stream_info(self.name)
            except Exception:  # noqa: BLE001 - not found: create it
                await self._js.add_stream(name=self.name, subjects=[self.subject], max_msgs=MAXLEN)
        return self._js

    async def position(self) -> str:
        js = await self._connect()
        return str((await js.stream_info(self.name)).state.last_seq)

    async def publish(self, events: list[Event]) -> None:
        js = await self._connect()
        await js.publish(self.subject, _encode(events), headers={"o": self.origin, "t": repr(time.time())})
        self.published += len(events)

    async def follow(self, svc: Service, after: str) -> None:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        while svc.registry.active is None:
            await asyncio.sleep(0.05)
        js = await self._connect()

        async def on_msg(msg: Any) -> None:
            headers = msg.headers or {}
            self._fold(svc, headers.get("o", ""), msg.data, float(headers.get("t", time.time())))
            self.last_id = str(msg.metadata.sequence.stream)

        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=int(after) + 1)
        sub = await js.subscribe(self.subject, cb=on_msg, ordered_consumer=True, stream=self.name, config=config)
        try:
            await asyncio.Event().wait()
        finally:
            await sub.unsubscribe()

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


async def attach(svc: Service) -> asyncio.Task | None:
    """Awaited at startup before the first version is built: the stream's position, then a task following it."""
    stream = svc.stream
    if stream is None:
        return None
    after = await stream.position()
    task = asyncio.create_task(stream.follow(svc, after))

    def done(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("the event stream follower stopped: %r", t.exception())

    task.add_done_callback(done)
    return task


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
                              "nats://… or redis://… (or pass --stream) so that every replica sees every event")
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
