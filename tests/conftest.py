"""Shared fixtures. Server-backed tests use the real PostgreSQL/Redis named by BELONG_TEST_POSTGRES_URL /
BELONG_TEST_REDIS_URL (``.ci/run`` exports both); without them those tests are skipped, never mocked."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ.get("BELONG_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not d.is_dir():
        pytest.skip(f"public datasets not found at {d} (set BELONG_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("BELONG_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("BELONG_TEST_POSTGRES_URL not set")
    return url


@pytest.fixture()
def postgres_schema_url(postgres_url: str):
    """A postgresql:// URL pointing at a fresh schema (dropped afterwards), so tests never share state."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("BELONG_TEST_REDIS_URL")
    if not url:
        pytest.skip("BELONG_TEST_REDIS_URL not set")
    return url
