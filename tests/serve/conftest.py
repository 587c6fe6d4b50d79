"""Real servers for the API tests: ``belong serve`` as a subprocess on a free loopback port over a small
simulated world (embedded store), called over HTTP with httpx. No mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_helpers import run_server

N_USERS, N_COMMUNITIES = 800, 80


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


@pytest.fixture(scope="session")
def trust_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world where blocks, teens and hidden or restricted communities are common (trust tests)."""
    from trust_world import build_store

    return build_store(tmp_path_factory.mktemp("trust-store"))


@pytest.fixture(scope="session")
def trust_app(trust_store: Path) -> Iterator[object]:
    """The real app over ``trust_store`` in process (FastAPI TestClient), ready, with the test keys."""
    import time

    from fastapi.testclient import TestClient
    from trust_world import settings

    from belong.serve.app import create_app

    app = create_app(trust_store, settings=settings(budget_sources_ms=30000.0), materialize=True)
    with TestClient(app) as c:
        deadline = time.monotonic() + 120
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, c.get("/readyz").text
            time.sleep(0.1)
        yield c
