"""Fixtures of the event-log suite: every test that takes ``store_spec`` runs against both backends (SQLite in a
temporary directory, PostgreSQL in a fresh schema of the real server, skipped without BELONG_TEST_POSTGRES_URL)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path) -> str:
    """The spec (directory or URL) of an empty store; open it as often as needed with ``open_store``."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("postgres_schema_url")
