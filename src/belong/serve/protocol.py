"""uvicorn's httptools protocol with the limits a public server needs before any ASGI code runs: the request line
and headers may hold at most ``max_header_bytes`` (else 431 and the connection closes, nothing more is buffered),
and they must arrive within ``header_timeout_s`` of the connection opening or of the request's first byte (a
slow-loris client trickling headers is cut off with 408). Body limits are the guard's (:mod:`belong.serve.guard`)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderLimits(Exception):
    """Raised inside the parser callback to stop parsing (the protocol then answers 431)."""


def _answer(status: bytes, msg: bytes) -> bytes:
    """A whole HTTP answer in the API's error shape (``{"error", "message", "field", "reason"}``), then close."""
    body = orjson.dumps({"error": "too_large" if status.startswith(b"431") else "timeout",
                         "message": msg.decode("utf-8", "replace").strip(), "field": None, "reason": None})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class LimitedHttpTools(HttpToolsProtocol):
    max_header_bytes = 16_384
    header_timeout_s = 10.0

    def connection_made(self, transport: Any) -> None:
        self._header_bytes = 0
        self._too_large = False
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_answer(b"408 Request Timeout", b"request headers not received in time"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self._too_large = True
            raise HeaderLimits

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        self._disarm()
        self.transport.write(_answer(b"431 Request Header Fields Too Large",
                                     f"request line and headers exceed {self.max_header_bytes} bytes".encode()))
        self.transport.close()


def limited_protocol(max_header_bytes: int, header_timeout_s: float) -> type[LimitedHttpTools]:
    """The protocol class with these limits (uvicorn takes a class as ``http``)."""
    return type("LimitedHttpTools", (LimitedHttpTools,),
                {"max_header_bytes": max_header_bytes, "header_timeout_s": header_timeout_s})
