"""The EventStore contract (belong.testing.eventlog), run against SQLite and PostgreSQL (``store_spec`` in conftest)."""

from __future__ import annotations

from belong.testing import EventStoreContract


class TestEventStores(EventStoreContract):
    """Every test of the contract, once per backend."""
