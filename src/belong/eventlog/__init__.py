"""Durable, idempotent event log with an embedded (SQLite WAL) and a PostgreSQL backend."""

from __future__ import annotations

from pathlib import Path

from belong.errors import StoreError
from belong.eventlog.base import AppendResult, EventStore

__all__ = ["AppendResult", "EventStore", "open_store"]


def open_store(spec: str | Path | None = None, *, create: bool = True) -> EventStore:
    """Open a store: a directory path (embedded SQLite) or a ``postgresql://`` URL.

    ``None`` means the ``BELONG_STORE`` setting.
    """
    if spec is None:
        from belong.settings import get_settings

        spec = get_settings().store
    spec = str(spec)
    if spec.startswith(("postgresql://", "postgres://")):
        from belong.eventlog.postgres import PostgresStore

        return PostgresStore(spec)
    if "://" in spec:
        raise StoreError(f"store: unsupported URL scheme in {spec!r}; use a directory path or postgresql://")
    from belong.eventlog.sqlite import SqliteStore

    return SqliteStore(Path(spec), create=create)
