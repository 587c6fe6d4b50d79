"""The PostgreSQL log is partitioned by month of ``ts_us``: partitions are made on demand, time-range reads scan
only their months, ids stay unique across partitions, and a store made before partitioning is migrated on open."""

from __future__ import annotations

import psycopg
import pyarrow as pa
import pytest

from belong.eventlog.base import events_query
from belong.eventlog.postgres import PostgresStore, month_of, partition_name
from belong.schema import EVENT_COLUMNS, EVENT_SCHEMA

pytestmark = pytest.mark.postgres

JAN = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
MAR = 1_772_323_200_000_000  # 2026-03-01T00:00:00Z


def _events(rows: list[tuple[str, int]], actor: str = "u1") -> pa.Table:
    return pa.Table.from_pylist(
        [{"event_id": i, "ts_us": ts, "type": "join", "actor": actor, "target": "c1", "target_kind": "community",
          "value": 1.0} for i, ts in rows], schema=EVENT_SCHEMA)


def _schema(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def test_month_partition_names() -> None:
    assert partition_name(int(month_of([JAN])[0])) == "events_p202601"
    assert month_of([MAR - 1, MAR, JAN]).tolist() == [672, 673, 674]  # Jan, Feb, Mar 2026


def test_partitions_are_made_on_demand_and_reads_prune(postgres_schema_url: str, postgres_url: str) -> None:
    with PostgresStore(postgres_schema_url) as st:
        assert st.partitions() == []
        st.append(_events([("a", JAN + 5), ("b", MAR + 7), ("c", MAR - 1)]))  # Jan, Mar, the last µs of Feb
        assert st.partitions() == ["events_p202601", "events_p202602", "events_p202603"]
        st.append(_events([("d", JAN + 9)]))
        assert len(st.partitions()) == 3
        assert st.read_events(JAN, JAN + 10).column("event_id").to_pylist() == ["a", "d"]
        assert st.read_events(MAR - 1, MAR + 8).column("event_id").to_pylist() == ["c", "b"]
    sql, params = events_query(", ".join(EVENT_COLUMNS), JAN, JAN + 10, None, "%s")
    with psycopg.connect(postgres_url) as conn:
        conn.execute(f'SET search_path TO "{_schema(postgres_schema_url)}"')
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))
        assert "events_p202601" in plan and "events_p202602" not in plan and "events_p202603" not in plan, plan
        whole = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT * FROM events"))
        assert all(p in whole for p in ("events_p202601", "events_p202602", "events_p202603"))


def test_an_id_is_unique_across_partitions(postgres_schema_url: str) -> None:
    with PostgresStore(postgres_schema_url) as st:
        assert st.append(_events([("a", JAN)])).accepted == 1
        again = st.append(_events([("a", MAR), ("b", MAR), ("b", JAN)]))  # re-sent in another month; b twice
        assert (again.accepted, again.duplicates, again.inserted) == (1, 2, (1,))
        t = st.read_events()
        assert t.column("event_id").to_pylist() == ["a", "b"]
        assert t.column("ts_us").to_pylist() == [JAN, MAR]  # the first copy of each id


def test_forget_removes_the_ids_of_the_deleted_events(postgres_schema_url: str, postgres_url: str) -> None:
    with PostgresStore(postgres_schema_url) as st:
        st.append(_events([("a", JAN), ("b", MAR)], actor="u9"))
        st.append(_events([("c", MAR)], actor="u2"))
        assert st.forget("u9").events == 2
    with psycopg.connect(postgres_url) as conn:
        ids = conn.execute(f'SELECT event_id FROM "{_schema(postgres_schema_url)}".belong_event_ids').fetchall()
    assert ids == [("c",)]


_OLD_DDL = """
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY NOT NULL, event_id TEXT COLLATE "C" PRIMARY KEY, ts_us BIGINT NOT NULL,
    type TEXT NOT NULL, actor TEXT NOT NULL, target TEXT NOT NULL, target_kind TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL, request_id TEXT, surface TEXT, position INTEGER, propensity DOUBLE PRECISION
);
CREATE INDEX events_ts_seq ON events (ts_us, seq);
"""


def test_a_store_made_before_partitioning_is_migrated_on_open(postgres_schema_url: str, postgres_url: str) -> None:
    schema = _schema(postgres_schema_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(_OLD_DDL)
        for i, ts in enumerate([MAR + 1, JAN + 1, JAN + 2]):
            conn.execute("INSERT INTO events (event_id, ts_us, type, actor, target, target_kind, value) "
                         "VALUES (%s, %s, 'join', 'u1', 'c1', 'community', 1.0)", (f"old{i}", ts))
    with PostgresStore(postgres_schema_url) as st:
        assert st.partitions() == ["events_p202601", "events_p202602", "events_p202603"]
        assert st.position() == 3
        t = st.read_events()
        assert t.column("event_id").to_pylist() == ["old1", "old2", "old0"]
        result = st.append(_events([("old0", JAN), ("new", MAR + 5)]))
        assert (result.accepted, result.duplicates) == (1, 1)
        assert st.position() == 4  # seq goes on after the migrated rows
    with psycopg.connect(postgres_url) as conn:
        kind = conn.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = %s AND c.relname = 'events'", (schema,)).fetchone()
        left = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".belong_events_unpartitioned',)).fetchone()
    assert kind == ("p",) and left == (None,)
    with PostgresStore(postgres_schema_url) as st:  # opening again migrates nothing
        assert st.count() == 4
