"""Non-blocking Redis GETs for the cold path: one connection, reads pipelined, replies parsed by hiredis.

A stored candidate list (:mod:`belong.serve.precomputed`) was read with a synchronous redis-py ``GET`` on the event
loop: 82 us of CPU and 142 us of wall a read at 1M people, the loop (every other request with it) blocked ~60 us
waiting for Redis. redis-py's asyncio client does not block but costs 133 us of CPU a read. This connection costs
47 us of CPU and does not block (same 2,000 stored lists, same process: docs/SCALING.md).

Only what the cold path needs: ``GET`` on a ``redis://`` URL (its db, user and password); anything else (TLS, a unix
socket) keeps the synchronous client (:func:`supports`). Replies come back in the order the reads were sent (Redis
pipelining), so each waiting future is resolved in turn. A read not answered within ``timeout_s`` fails with
``TimeoutError`` and its late reply is skipped; a lost connection fails every read in flight, and the next read
connects again (a connection belongs to the event loop that made it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis


def supports(url: str) -> bool:
    """Whether ``url`` is one this reader connects to (plain TCP ``redis://``)."""
    return urlparse(url).scheme == "redis"


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """The connection: writes commands, resolves the oldest waiting read with each parsed reply."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future, asyncio.TimerHandle | None]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection: a Transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while (reply := self.reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step, drop the connection
                self._fail(ConnectionError("redis: an unexpected reply"))
                return
            fut, timer = waiting.popleft()
            if timer is not None:
                timer.cancel()
            if fut.done():  # timed out: its reply is skipped
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("redis: the connection closed"))

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        while self.waiting:
            fut, timer = self.waiting.popleft()
            if timer is not None:
                timer.cancel()
            if not fut.done():
                fut.set_exception(ConnectionError(f"redis: {exc}"))
        if self.transport is not None:
            self.transport.close()

    def send(self, command: bytes, timeout_s: float | None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        timer = loop.call_later(timeout_s, _expire, fut) if timeout_s else None
        self.waiting.append((fut, timer))
        assert self.transport is not None
        self.transport.write(command)
        return fut


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("redis: no reply within the read's budget"))


class AsyncGetter:
    """``await getter.get(key)``: the value (bytes) or None; see the module docstring."""

    def __init__(self, url: str, timeout_s: float = 0.05, connect_timeout_s: float = 1.0) -> None:
        if not supports(url):
            raise ValueError(f"redis_get: only redis:// URLs, got {url!r}")
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.db = int(unquote(u.path).strip("/") or 0)
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._proto: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future | None = None

    async def get(self, key: str) -> Any:
        proto = self._proto
        if proto is None or proto.lost is not None or self._loop is not asyncio.get_running_loop():
            proto = await self._connect()
        k = key.encode()
        return await proto.send(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k), self.timeout_s)

    async def _connect(self) -> _Protocol:
        """One connection at a time: reads arriving meanwhile wait for it."""
        loop = asyncio.get_running_loop()
        if self._connecting is not None and self._loop is loop and not self._connecting.done():
            return await asyncio.shield(self._connecting)
        self.close()
        self._loop = loop
        self._connecting = loop.create_future()
        try:
            _, proto = await asyncio.wait_for(loop.create_connection(_Protocol, self.host, self.port),
                                              self.connect_timeout_s)
            setup = []
            if self.password is not None:
                auth = (b"AUTH", *([self.username.encode()] if self.username else []), self.password.encode())
                setup.append(proto.send(_command(*auth), self.connect_timeout_s))
            if self.db:
                setup.append(proto.send(_command(b"SELECT", str(self.db).encode()), self.connect_timeout_s))
            for fut in setup:
                await fut
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: the waiters (if any) get it through the shield
            raise
        self._proto = proto
        self._connecting.set_result(proto)
        return proto

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                proto.transport.close()
