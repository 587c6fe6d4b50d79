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
