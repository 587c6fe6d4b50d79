"""Real servers for the API tests: ``belong serve`` as a subprocess on a free loopback port over a small
simulated world (embedded store), called over HTTP with httpx. No mocks."""

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
import pytest

WRITE_KEY = "test-write-key"
ADMIN_KEY = "test-admin-key"
N_USERS, N_COMMUNITIES = 800, 80


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store holding a simulated world of 800 users x 80 communities."""
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    path = tmp_path_factory.mktemp("serve-store")
    with open_store(path) as st:
        for part in simulate(N_USERS, N_COMMUNITIES, seed=3):
            write_world(st, part, progress=False)
    return path


@contextlib.contextmanager
def run_server(store: Path, extra_env: dict[str, str] | None = None, *args: str,
               ready_timeout_s: float = 180.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``belong serve`` and wait until /readyz answers 200; yields (base URL, process)."""
    port = free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_API_KEYS_WRITE": WRITE_KEY,
           "BELONG_API_KEYS_ADMIN": ADMIN_KEY, **(extra_env or {})}
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


@pytest.fixture(scope="session")
def server(small_store: Path) -> Iterator[str]:
    """The shared API server (in-process online features, materialised at startup). Its sources budget is
    generous so that answers do not depend on how busy the test machine is (test_degrade covers overruns)."""
    with run_server(small_store, {"BELONG_BUDGET_SOURCES_MS": "30000"}, "--materialize") as (base, _):
        yield base


@pytest.fixture()
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def store_users(store: Path) -> list[str]:
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        return st.users().column("id").to_pylist()
