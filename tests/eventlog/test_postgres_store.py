"""PostgreSQL-only behaviour of the event log: connection errors, recovery, durability settings, schema placement."""

from __future__ import annotations

import time

import psycopg
import pyarrow as pa
import pytest

from belong.errors import StoreError
from belong.eventlog import open_store
from belong.eventlog.postgres import PostgresStore, redact
from belong.schema import EVENT_SCHEMA

pytestmark = pytest.mark.postgres


def _events(ids: list[str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"event_id": i, "ts_us": 1_700_000_000_000_000, "type": "join", "actor": "u1", "target": "c1",
          "target_kind": "community", "value": 1.0} for i in ids],
        schema=EVENT_SCHEMA,
    )


def test_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as exc:
        open_store("postgresql://belong:s3cret@127.0.0.1:1/nope")
    msg = str(exc.value)
    assert "cannot connect" in msg and "s3cret" not in msg and "belong:***@127.0.0.1:1" in msg


def test_redact() -> None:
    assert redact("postgresql://u:p@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


def test_tables_are_created_in_the_search_path_schema(postgres_schema_url: str, postgres_url: str) -> None:
    with open_store(postgres_schema_url) as st:
        st.append(_events(["a"]))
    schema = postgres_schema_url.rsplit("%3D", 1)[1]
    with psycopg.connect(postgres_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )}
        assert {"events", "users", "communities", "content"} <= tables
        assert conn.execute(f'SELECT event_id FROM "{schema}".events').fetchall() == [("a",)]


def test_synchronous_commit_is_forced_on(postgres_schema_url: str) -> None:
    """Even when the URL asks for asynchronous commit, an acknowledged append is a flushed commit."""
    with PostgresStore(postgres_schema_url + "%20-csynchronous_commit%3Doff") as st:
        assert st.synchronous_commit() == "on"


def test_lost_connection_fails_the_call_then_recovers(postgres_schema_url: str, postgres_url: str) -> None:
    with PostgresStore(postgres_schema_url) as st:
        st.append(_events(["a"]))
        pid = st._conn.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the backend did not exit"
                time.sleep(0.02)
        with pytest.raises(StoreError, match="lost the connection"):
            st.append(_events(["b"]))  # not acknowledged: the caller must retry
        assert st.append(_events(["b", "a"])).accepted == 1  # reconnected
        assert st.count() == 2


def test_server_side_errors_are_store_errors(postgres_schema_url: str, postgres_url: str) -> None:
    with PostgresStore(postgres_schema_url) as st:
        schema = postgres_schema_url.rsplit("%3D", 1)[1]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP TABLE "{schema}".events')
        with pytest.raises(StoreError, match="events"):
            st.count()
