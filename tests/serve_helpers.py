"""Helpers of the API tests: the keys the test servers accept, a free port, a real ``belong serve`` process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

WRITE_KEY = "test-write-key-0123456789"
ADMIN_KEY = "test-admin-key-0123456789"
READ_KEY = "test-read-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def run_server(store: Path, extra_env: dict[str, str] | None = None, *args: str,
               ready_timeout_s: float = 180.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``belong serve`` and wait until /readyz answers 200; yields (base URL, process)."""
    port = free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_API_KEYS_WRITE": WRITE_KEY,
           "BELONG_API_KEYS_ADMIN": ADMIN_KEY, "BELONG_API_KEYS_READ": READ_KEY,
           "BELONG_READ_AUTH": "false",  # reads open unless a test asks (tests/serve/test_access.py covers them)
           **(extra_env or {})}
    if "BELONG_REDIS_URL" not in (extra_env or {}):
        env.pop("BELONG_REDIS_URL", None)  # in-process features unless the test names a Redis
    belong = str(Path(sys.executable).with_name("belong"))
    proc = subprocess.Popen([belong, "serve", "--store", str(store), "--port", str(port), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.3)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen]:
    """A redis-server of the test's own on ``port`` (stopped, paused or restarted at will: never the shared one)."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
