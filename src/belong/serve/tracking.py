"""Server-assisted invalidation of the in-process feature rows (Redis client-side caching, ``CLIENT TRACKING``).

A background thread holds two connections to the feature store's Redis: a listener subscribed to
``__redis__:invalidate`` and a tracking connection that turned ``CLIENT TRACKING ON REDIRECT <listener> BCAST
PREFIX <prefix>`` on. From then on Redis sends the listener the name of every key under the prefix that changes
(a materialisation, a manual write, a delete, a flush), whoever changed it. The thread only parses those
messages and appends the keys to :attr:`InvalidationListener.events`; the serving thread drains that queue
before every row-cache lookup (:class:`belong.serve.rowcache.RowCache`), so the cache itself stays
single-threaded and a changed row is never served after its invalidation has reached this process.

While the listener is connected the row cache is *exact*: a row is kept until Redis says it changed (within the
cache's own time cap), so even the requesting user's row can be reused. When either connection fails (Redis
restarted, the connection killed), the thread queues :data:`RESET` and reconnects with backoff; the cache then
drops everything and, until :data:`LIVE` is queued again, serves only what its time-bounded mode allows
(candidate rows for at most their freshness, never a user's row). The tracking connection is pinged every
``check_s`` seconds: Redis does not tell the listener when the *tracking* client goes away, so a dead one
must be noticed by asking.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

log = logging.getLogger("belong.serve.tracking")

#: markers queued among the invalidated keys (bytes): the listener lost Redis / is tracking again
RESET = "reset"
LIVE = "live"
CHANNEL = b"__redis__:invalidate"


class InvalidationListener:
    """Invalidation messages for keys under ``prefix`` from the Redis at ``url``; see the module docstring.

    ``events`` is a deque of ``bytes`` keys and the markers :data:`RESET` / :data:`LIVE` (a ``None`` key from
    Redis, sent on ``FLUSHALL`` / ``FLUSHDB``, is queued as :data:`RESET` followed by :data:`LIVE`: everything
    changed, and tracking goes on)."""

    def __init__(self, url: str, prefix: str, *, check_s: float = 1.0, timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.check_s = check_s
        self.timeout_s = timeout_s
        self.events: collections.deque[Any] = collections.deque()
        self.connected = False  # whether tracking is on now (for /readyz and tests; the cache follows ``events``)
        self.resets = 0  # connections lost so far
        self.client_ids: tuple[int, int] | None = None  # (listener, tracker) ids in Redis while connected
        self._stop = threading.Event()
        self._conns: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="belong-feature-tracking", daemon=True)

    def start(self) -> InvalidationListener:
        self._thread.start()
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until tracking is on (tests, startup); False when ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while not self.connected and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.connected

    def close(self) -> None:
        self._stop.set()
        self._drop()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------------- thread
    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.05
            except Exception as exc:  # noqa: BLE001 - any failure: drop the cache's trust, reconnect
                if not self._stop.is_set():
                    log.warning("feature tracking lost: %s: %s", type(exc).__name__, exc)
            finally:
                if self.connected:
                    self.connected = False
                    self.resets += 1
                    self.events.append(RESET)
                self._drop()
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)

    def _session(self) -> None:
        import hiredis
        import redis

        # RESP2 on both: the redirected invalidations then arrive as plain pubsub messages (RESP3 would make them
        # push frames, which redis-py's own parser hands to push handlers instead of returning them)
        pool = redis.ConnectionPool.from_url(self.url, protocol=2, socket_timeout=self.timeout_s,
                                             socket_connect_timeout=self.timeout_s)
        listener = pool.make_connection()
        tracker = pool.make_connection()
        self._conns = [listener, tracker]
        listener.connect()
        listener.send_command("CLIENT", "ID")
        client_id = int(listener.read_response())
        sock = listener._sock  # type: ignore[attr-defined]  # noqa: SLF001 - the subscribed socket is read raw (hiredis), see _read
        reader = hiredis.Reader()
        sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$20\r\n__redis__:invalidate\r\n")
        self._expect(sock, reader, lambda r: isinstance(r, list) and r[:1] == [b"subscribe"])
        tracker.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self.prefix)
        if tracker.read_response() not in (b"OK", "OK"):
            raise ConnectionError("CLIENT TRACKING was refused")
        tracker.send_command("CLIENT", "ID")
        self.client_ids = (client_id, int(tracker.read_response()))
        self.connected = True  # before LIVE is queued (a cache that skips a long backlog reads this flag instead)
        self.events.append(LIVE)
        next_check = time.monotonic() + self.check_s
        sock.settimeout(min(self.check_s, 0.5))
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                raise ConnectionError("Redis closed the invalidation connection")
            if data:
                reader.feed(data)
                while (msg := reader.gets()) is not False:
                    self._message(msg)
            if time.monotonic() >= next_check:  # the tracking client may have gone without the listener knowing
                tracker.send_command("PING")
                tracker.read_response()
                next_check = time.monotonic() + self.check_s

    def _message(self, msg: Any) -> None:
        if isinstance(msg, Exception):
            raise ConnectionError(f"invalidation connection: {msg}")
        if not (isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message" and msg[1] == CHANNEL):
            return
        keys = msg[2]
        if keys is None:  # the whole keyspace was flushed
            self.events.append(RESET)
            self.events.append(LIVE)
            return
        self.events.extend(keys)

    def _expect(self, sock: Any, reader: Any, ok) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            msg = reader.gets()
            if msg is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("Redis closed the invalidation connection")
                reader.feed(data)
                continue
            if ok(msg):
                return
        raise TimeoutError("no SUBSCRIBE confirmation from Redis")

    def _drop(self) -> None:
        for conn in self._conns:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self._conns = []
