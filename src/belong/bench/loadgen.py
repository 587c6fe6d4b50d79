"""Open-loop HTTP/1.1 load generator (a separate process from the server): fixed request rate, keep-alive
connections, latency measured from each request's *scheduled* time (no coordinated omission).

``python -m belong.bench.loadgen --host H --port P --rate R --seconds S --paths FILE [--connections N]`` reads one
request path per line (cycled) and prints one JSON object: sent, ok, non_200, errors, degraded, achieved rate, and
p50/p90/p99/max latency in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import orjson


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def get(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body


async def run(host: str, port: int, rate: float, seconds: float, paths: list[str], connections: int,
              timeout_s: float) -> dict:
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Conn(*await asyncio.open_connection(host, port)))
    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    counts = {"ok": 0, "non_200": 0, "errors": 0, "degraded": 0}

    async def one(i: int, due: float) -> None:
        conn = await idle.get()
        try:
            status, body = await asyncio.wait_for(conn.get(requests[i % len(requests)]), timeout_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            counts["errors"] += 1
            conn.writer.close()
            try:
                conn = _Conn(*await asyncio.open_connection(host, port))
            except OSError:
                return
        else:
            lat[i] = time.perf_counter() - due
            if status == 200:
                counts["ok"] += 1
                if b'"degraded":true' in body:
                    counts["degraded"] += 1
            else:
                counts["non_200"] += 1
        idle.put_nowait(conn)

    tasks = []
    start = time.perf_counter() + 0.05  # perf_counter: the event loop's clock has millisecond resolution
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    done = lat[~np.isnan(lat)] * 1e3
    pct = (lambda q: round(float(np.percentile(done, q)), 3)) if done.size else (lambda q: None)
    return {"rate": rate, "seconds": seconds, "sent": n, **counts, "achieved_rps": round(counts["ok"] / elapsed, 1),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(float(done.max()), 3) if done.size else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--paths", required=True, help="file with one request path per line")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args(argv)
    with open(args.paths, encoding="utf-8") as fh:
        paths = [line.strip() for line in fh if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        pass
    out = asyncio.run(run(args.host, args.port, args.rate, args.seconds, paths, args.connections, args.timeout))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
