"""The cold path's non-blocking GETs (belong.serve.redis_get) against real Redis servers: values and nils, many reads
in flight on one connection answered in order, db and password from the URL, a read over its budget (its late
reply skipped), a server that goes away and comes back. The pauses and restarts use a private redis-server."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time

import pytest
import redis

from belong.serve.redis_get import AsyncGetter, supports
from serve_helpers import free_port, private_redis

REDIS_URL = os.environ.get("BELONG_TEST_REDIS_URL")
needs_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def test_only_plain_redis_urls() -> None:
    assert supports("redis://127.0.0.1:6379/3") and not supports("rediss://h:6380/0")
    assert not supports("unix:///tmp/redis.sock")
    with pytest.raises(ValueError, match="only redis://"):
        AsyncGetter("unix:///tmp/redis.sock")


@pytest.mark.skipif(not REDIS_URL, reason="needs BELONG_TEST_REDIS_URL")
def test_values_nils_and_many_reads_in_flight() -> None:
    assert REDIS_URL is not None
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"belong:test:get:{secrets.token_hex(4)}:"
    values = {f"{prefix}{i}": secrets.token_bytes(int(i) * 997 % 40_000) for i in range(200)}
    client.mset(values)
    getter = AsyncGetter(REDIS_URL, timeout_s=5.0)  # the URL's db is selected

    async def run() -> None:
        keys = list(values) + [f"{prefix}missing"]
        got = await asyncio.gather(*(getter.get(k) for k in keys))  # 201 reads on one connection at once
        assert got[:-1] == list(values.values()) and got[-1] is None
        assert await getter.get(f"{prefix}7") == values[f"{prefix}7"]

    try:
        asyncio.run(run())
        asyncio.run(run())  # another event loop: the getter connects again there
    finally:
        getter.close()
        client.delete(*values)


@needs_server
def test_password_budget_and_a_server_that_comes_back() -> None:
    port = free_port()
    with private_redis(port) as proc:
        admin = redis.Redis(port=port)
        admin.config_set("requirepass", "s3cret")
        admin = redis.Redis(port=port, password="s3cret", db=2)
        admin.set("k", b"v2")
        getter = AsyncGetter(f"redis://:s3cret@127.0.0.1:{port}/2", timeout_s=0.05)

        async def run() -> None:
            assert await getter.get("k") == b"v2"
            # the server stops answering for 300 ms: the read fails at its budget, its late reply is skipped
            admin.execute_command("CLIENT", "PAUSE", "300", "ALL")
            t0 = time.perf_counter()
            with pytest.raises(TimeoutError):
                await getter.get("k")
            assert time.perf_counter() - t0 < 0.25
            await asyncio.sleep(0.4)
            admin.set("k", b"after")
            assert await getter.get("k") == b"after"  # the stream is still in step

        asyncio.run(run())
        proc.terminate()
        proc.wait(timeout=10)

        async def gone() -> None:
            with pytest.raises((ConnectionError, OSError)):
                await getter.get("k")

        asyncio.run(gone())
    with private_redis(port):  # a new server on the same port: the same getter's next read connects again
        redis.Redis(port=port).config_set("requirepass", "s3cret")
        redis.Redis(port=port, password="s3cret", db=2).set("k", b"back")

        async def back() -> None:
            assert await getter.get("k") == b"back"

        asyncio.run(back())
        getter.close()
