"""Experiments stored beside the event log: the same SQLite file or PostgreSQL database, their own tables.

==========================  ==================================================================================
table                       rows
==========================  ==================================================================================
``experiments``             one per experiment: its current version, status, layer range, declaration (JSON)
``experiment_versions``     every change (create, stop, ...) as a new version: the version history
``experiment_forced``       forced arms for QA: (experiment, user) -> arm
``experiment_clusters``     a cluster experiment's saved friend-graph clusters: (experiment, user) -> cluster
``experiment_exposures``    one per served answer of a user in an experiment: request id, arm, unit, surface, time
==========================  ==================================================================================

One interface (:class:`ExperimentStore`) over both backends, one conformance suite
(``tests/experiments/test_store.py``). Every write is one transaction, durable when it returns (SQLite WAL with
``synchronous=FULL``; PostgreSQL ``synchronous_commit = on``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from belong.errors import StoreError, UnknownIdError, ValidationError
from belong.experiments.assign import free_range
from belong.experiments.declaration import BUCKETS, Declaration, from_stored

_DDL = [
    """CREATE TABLE IF NOT EXISTS experiments (
        name TEXT PRIMARY KEY, version INTEGER NOT NULL, status TEXT NOT NULL, layer TEXT NOT NULL,
        lo INTEGER NOT NULL, hi INTEGER NOT NULL, body TEXT NOT NULL, meta TEXT NOT NULL,
        created_us BIGINT NOT NULL, updated_us BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS experiment_versions (
        name TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL, change TEXT NOT NULL,
        lo INTEGER NOT NULL, hi INTEGER NOT NULL, body TEXT NOT NULL, meta TEXT NOT NULL, ts_us BIGINT NOT NULL,
        PRIMARY KEY (name, version))""",
    """CREATE TABLE IF NOT EXISTS experiment_forced (
        name TEXT NOT NULL, user_id TEXT NOT NULL, arm TEXT NOT NULL, ts_us BIGINT NOT NULL,
        PRIMARY KEY (name, user_id))""",
    """CREATE TABLE IF NOT EXISTS experiment_clusters (
        name TEXT NOT NULL, user_id TEXT NOT NULL, cluster TEXT NOT NULL, PRIMARY KEY (name, user_id))""",
    """CREATE TABLE IF NOT EXISTS experiment_exposures (
        name TEXT NOT NULL, request_id TEXT NOT NULL, user_id TEXT NOT NULL, unit TEXT NOT NULL, arm TEXT NOT NULL,
        surface TEXT NOT NULL, ts_us BIGINT NOT NULL, PRIMARY KEY (name, request_id))""",
    "CREATE INDEX IF NOT EXISTS experiment_exposures_ts ON experiment_exposures (name, ts_us)",
]


class Experiment(msgspec.Struct, frozen=True, kw_only=True):
    """A stored experiment: its declaration and what the store keeps about it."""

    declaration: Declaration
    version: int
    status: str  # running | stopped
    layer_range: tuple[int, int]
    created_us: int
    updated_us: int
    meta: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.declaration.name

    def running(self, now_us: int) -> bool:
        d = self.declaration
        return self.status == "running" and d.start_us <= now_us and (d.stop_us is None or now_us < d.stop_us)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "status": self.status,
                "layer_range": list(self.layer_range), "created_us": self.created_us, "updated_us": self.updated_us,
                "meta": self.meta, "declaration": self.declaration.to_dict()}


class Exposure(msgspec.Struct, frozen=True):
    name: str
    request_id: str
    user_id: str
    unit: str
    arm: str
    surface: str
    ts_us: int


class ExperimentStore:
    """Experiments of one store; see the module docstring. Open with :func:`open_experiments`."""

    def __init__(self, conn: Any, mark: str, url: str) -> None:
        self._conn = conn
        self._mark = mark
        self.url = url
        self._lock = threading.Lock()
        self._tx(lambda run: [run(ddl) for ddl in _DDL], ddl=True)

    # ------------------------------------------------------------------------------------------- plumbing
    def _sql(self, sql: str) -> str:
        return sql if self._mark == "?" else sql.replace("?", "%s")

    def _tx(self, fn, *, ddl: bool = False) -> Any:
        """Run ``fn(run)`` in one transaction; ``run(sql, params)`` executes and returns the rows."""
        with self._lock:
            conn = self._conn
            try:
                if self._mark == "?":
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        out = fn(lambda sql, params=(): conn.execute(sql, params).fetchall())
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    return out
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('belong.experiments:' || current_schema()))")

                    def run(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
                        cur = conn.execute(self._sql(sql), params)
                        return cur.fetchall() if cur.description is not None else []

                    return fn(run)
            except (sqlite3.Error, _pg_error()) as exc:
                raise StoreError(f"experiments: the store {self.url} failed: {str(exc).strip()}") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read: one statement, no write lock (SQLite in autocommit mode, PostgreSQL autocommit)."""
        with self._lock:
            try:
                cur = self._conn.execute(self._sql(sql), params)
                return list(cur.fetchall())
            except (sqlite3.Error, _pg_error()) as exc:
                raise StoreError(f"experiments: the store {self.url} failed: {str(exc).strip()}") from None

    @staticmethod
    def _experiment(row: tuple) -> Experiment:
        name, version, status, lo, hi, body, meta, created, updated = row
        return Experiment(declaration=from_stored(json.loads(body)), version=int(version), status=status,
                          layer_range=(int(lo), int(hi)), created_us=int(created), updated_us=int(updated),
                          meta=json.loads(meta))

    _COLS = "name, version, status, lo, hi, body, meta, created_us, updated_us"

    def _get(self, run, name: str) -> Experiment:
        rows = run(f"SELECT {self._COLS} FROM experiments WHERE name = ?", (name,))
        if not rows:
            raise UnknownIdError("experiment", name)
        return self._experiment(rows[0])

    def _write(self, run, exp: Experiment, change: str) -> None:
        body = json.dumps(exp.declaration.to_dict(), sort_keys=True)
        meta = json.dumps(exp.meta, sort_keys=True)
        lo, hi = exp.layer_range
        run("INSERT INTO experiments (name, version, status, layer, lo, hi, body, meta, created_us, updated_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
            "status = excluded.status, layer = excluded.layer, lo = excluded.lo, hi = excluded.hi, "
            "body = excluded.body, meta = excluded.meta, updated_us = excluded.updated_us",
            (exp.name, exp.version, exp.status, exp.declaration.layer, lo, hi, body, meta, exp.created_us,
             exp.updated_us))
        run("INSERT INTO experiment_versions (name, version, status, change, lo, hi, body, meta, ts_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (exp.name, exp.version, exp.status, change, lo, hi, body, meta, exp.updated_us))

    # ------------------------------------------------------------------------------------------- experiments
    def create(self, decl: Declaration, *, now_us: int | None = None) -> Experiment:
        """Store a new experiment (version 1, running) with the first free range of its layer; refused when the
        name exists or the layer has no room for its traffic."""
        now = now_us if now_us is not None else time.time_ns() // 1000

        def fn(run) -> Experiment:
            if run("SELECT 1 FROM experiments WHERE name = ?", (decl.name,)):
                raise ValidationError("name", f"an experiment named {decl.name!r} already exists")
            taken = [(int(lo), int(hi)) for lo, hi in run(
                "SELECT lo, hi FROM experiments WHERE layer = ? AND status = 'running'", (decl.layer,))]
            width = max(1, round(decl.traffic * BUCKETS))
            rng = free_range(width, taken)
            if rng is None:
                free = BUCKETS - sum(b - a for a, b in taken)
                raise ValidationError("traffic", f"layer {decl.layer!r} has {free / BUCKETS:g} of its traffic free "
                                      f"(in one range at most), {decl.traffic:g} asked")
            exp = Experiment(declaration=decl, version=1, status="running", layer_range=rng, created_us=now,
                             updated_us=now)
            self._write(run, exp, "create")
            return exp

        out: Experiment = self._tx(fn)
        return out

    def get(self, name: str) -> Experiment:
        return self._get(self._rows, name)

    def experiments(self) -> list[Experiment]:
        return [self._experiment(r) for r in self._rows(f"SELECT {self._COLS} FROM experiments ORDER BY name")]

    def running(self, now_us: int | None = None) -> list[Experiment]:
        now = now_us if now_us is not None else time.time_ns() // 1000
        return [e for e in self.experiments() if e.running(now)]

    def stop(self, name: str, *, now_us: int | None = None) -> Experiment:
        """Stop ``name`` now (a new version; its layer range is freed for new experiments)."""
        now = now_us if now_us is not None else time.time_ns() // 1000

        def fn(run) -> Experiment:
            old = self._get(run, name)
            if old.status == "stopped":
                raise ValidationError("name", f"experiment {name!r} is already stopped")
            stop_us = now if old.declaration.stop_us is None else min(now, old.declaration.stop_us)
            decl = msgspec.structs.replace(old.declaration, stop_us=max(stop_us, old.declaration.start_us + 1))
            exp = msgspec.structs.replace(old, declaration=decl, version=old.version + 1, status="stopped",
                                          updated_us=now)
            self._write(run, exp, "stop")
            return exp

        out: Experiment = self._tx(fn)
        return out

    def set_meta(self, name: str, change: str, **meta: Any) -> Experiment:
        """Merge ``meta`` into the experiment's (a new version named ``change``)."""
        now = time.time_ns() // 1000

        def fn(run) -> Experiment:
            old = self._get(run, name)
            exp = msgspec.structs.replace(old, meta={**old.meta, **meta}, version=old.version + 1, updated_us=now)
            self._write(run, exp, change)
            return exp

        out: Experiment = self._tx(fn)
        return out

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first."""
        rows = self._rows("SELECT version, status, change, lo, hi, body, meta, ts_us FROM experiment_versions "
                          "WHERE name = ? ORDER BY version", (name,))
        if not rows:
            raise UnknownIdError("experiment", name)
        return [{"version": int(v), "status": s, "change": c, "layer_range": [int(lo), int(hi)],
                 "declaration": json.loads(b), "meta": json.loads(m), "ts_us": int(ts)}
                for v, s, c, lo, hi, b, m, ts in rows]

    # ------------------------------------------------------------------------------------------- forced arms
    def force(self, name: str, user_id: str, arm: str) -> None:
        """Put ``user_id`` in ``arm`` of ``name`` whatever its bucket (QA)."""
        now = time.time_ns() // 1000

        def fn(run) -> None:
            self._get(run, name).declaration.arm(arm)  # unknown experiment or arm: refused
            run("INSERT INTO experiment_forced (name, user_id, arm, ts_us) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, user_id) DO UPDATE SET arm = excluded.arm, ts_us = excluded.ts_us",
                (name, user_id, arm, now))

        self._tx(fn)

    def forced(self, name: str) -> dict[str, str]:
        return {u: a for u, a in self._rows("SELECT user_id, arm FROM experiment_forced WHERE name = ?", (name,))}

    # ------------------------------------------------------------------------------------------- clusters
    def save_clusters(self, name: str, clusters: dict[str, str], meta: dict[str, Any]) -> Experiment:
        def fn(run) -> None:
            self._get(run, name)
            run("DELETE FROM experiment_clusters WHERE name = ?", (name,))
            for u, c in clusters.items():
                run("INSERT INTO experiment_clusters (name, user_id, cluster) VALUES (?, ?, ?)", (name, u, c))

        self._tx(fn)
        return self.set_meta(name, "clusters", clustering=meta)

    def clusters(self, name: str) -> dict[str, str]:
        return {u: c for u, c in self._rows("SELECT user_id, cluster FROM experiment_clusters WHERE name = ?",
                                            (name,))}

    # ------------------------------------------------------------------------------------------- exposures
    def log_exposures(self, rows: Iterable[Exposure]) -> int:
        """Store exposures (idempotent per (experiment, request id)) in one transaction; the number new."""
        params = [msgspec.structs.astuple(x) for x in rows]
        if not params:
            return 0
        sql = ("INSERT INTO experiment_exposures (name, request_id, user_id, unit, arm, surface, ts_us) "
               "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, request_id) DO NOTHING")
        with self._lock:
            conn = self._conn
            try:
                if self._mark == "?":
                    before = conn.total_changes
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany(sql, params)
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    return int(conn.total_changes - before)
                n = 0
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(self._sql(sql) + " RETURNING 1", params, returning=True)
                    while True:
                        n += len(cur.fetchall())
                        if not cur.nextset():
                            break
                return n
            except (sqlite3.Error, _pg_error()) as exc:
                raise StoreError(f"experiments: the store {self.url} failed: {str(exc).strip()}") from None

    def exposures(self, name: str) -> list[Exposure]:
        """Every exposure of ``name`` in time order."""
        rows = self._rows("SELECT name, request_id, user_id, unit, arm, surface, ts_us FROM experiment_exposures "
                          "WHERE name = ? ORDER BY ts_us, request_id", (name,))
        return [Exposure(n, r, u, un, a, s, int(t)) for n, r, u, un, a, s, t in rows]

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pg_error() -> type[Exception]:
    import psycopg

    return psycopg.Error


def open_experiments(spec: str | Path) -> ExperimentStore:
    """The experiments of the store ``spec`` (a directory or ``postgresql://`` URL; the event log must exist)."""
    from belong.eventlog import open_store

    with open_store(spec, create=False) as events:  # creates the log's own tables; refuses a missing store
        url = events.url
        path = getattr(events, "path", None)
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            conn = psycopg.connect(text, autocommit=True, connect_timeout=10)
            conn.execute("SET synchronous_commit = on")
        except (psycopg.Error, ValueError) as exc:
            raise StoreError(f"experiments: cannot connect to {url}: {str(exc).strip()}") from None
        return ExperimentStore(conn, "%s", url)
    try:
        lite = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as exc:
        raise StoreError(f"experiments: cannot open {path}: {exc}") from None
    return ExperimentStore(lite, "?", url)
