"""Fixtures of the experiments suite: ``store_spec`` runs a test against both backends (SQLite in a temporary
directory, PostgreSQL in a fresh schema of the real server, skipped without BELONG_TEST_POSTGRES_URL)."""

from __future__ import annotations

import pytest

from belong.eventlog import open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path) -> str:
    spec = str(tmp_path / "store") if request.param == "sqlite" else request.getfixturevalue("postgres_schema_url")
    open_store(spec).close()
    return spec
