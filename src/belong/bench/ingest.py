"""``belong bench ingest``: sustained durable ingest rate of each event-log backend next to a same-run baseline.

For each backend the same synthetic events (uuid-like ids, mixed event types, impressions with their logging
fields) go through :meth:`EventStore.append` in batches, durability on (SQLite ``synchronous=FULL``; PostgreSQL
``synchronous_commit=on``): every batch is validated, deduplicated against the unique ``event_id`` index and
committed before the next one starts. The baseline is the same engine's raw bulk insert of the same rows, prepared
before the clock starts, in one transaction into a plain table without constraints or indexes: SQLite
``executemany``, PostgreSQL ``COPY``. ``ratio`` = events_per_s / baseline_events_per_s.

``preload`` first fills the store with that many other events (not timed), to see the cost of a large
idempotency index.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa

from belong.domain import TARGET_KINDS, EventType, TargetKind
from belong.eventlog.base import EventStore
from belong.eventlog.postgres import PostgresStore, events_csv, redact
from belong.eventlog.sqlite import SqliteStore, table_rows
from belong.schema import EVENT_COLUMNS, EVENT_SCHEMA

#: event type mix of a busy community platform (shares sum to 1)
TYPE_MIX: dict[EventType, float] = {
    EventType.VIEW: 0.30, EventType.IMPRESSION: 0.18, EventType.REACTION: 0.15, EventType.MESSAGE: 0.15,
    EventType.CLICK: 0.05, EventType.JOIN: 0.04, EventType.VOICE_MINUTES: 0.04, EventType.LEAVE: 0.02,
    EventType.FRIEND_REQUEST: 0.03, EventType.FRIEND_ACCEPT: 0.02, EventType.BLOCK: 0.01, EventType.REPORT: 0.01,
}
_PREFIX = {TargetKind.USER: "u", TargetKind.COMMUNITY: "c", TargetKind.CONTENT: "x"}
#: a phase callback: (name, done, total) for progress bars
PhaseFn = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Workload:
    """What is measured: ``events`` timed appends of ``batch_size`` after ``preload`` untimed ones.

    ``ordered_ids``: event ids that start with their millisecond timestamp (UUIDv7 / snowflake style), so a batch
    lands on a few pages of the idempotency index; otherwise uuid4-like random ids, the worst case.
    """

    events: int = 200_000
    batch_size: int = 10_000
    preload: int = 0
    seed: int = 0
    ordered_ids: bool = False


def _hex_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` random 32-hex-digit ids (uuid4-like)."""
    h = rng.bytes(16 * n).hex()
    return [h[i : i + 32] for i in range(0, 32 * n, 32)]


def _ordered_ids(rng: np.random.Generator, ts_us: np.ndarray) -> list[str]:
    """UUIDv7-like ids: 12 hex digits of the millisecond timestamp, then 20 random hex digits."""
    h = rng.bytes(10 * len(ts_us)).hex()
    return [f"{ms:012x}{h[i * 20 : i * 20 + 20]}" for i, ms in enumerate((ts_us // 1000).tolist())]


def synthetic_events(n: int, *, seed: int = 0, ordered_ids: bool = False, n_users: int = 50_000,
                     n_communities: int = 2_000, n_content: int = 200_000,
                     start_us: int = 1_735_689_600_000_000) -> pa.Table:
    """``n`` valid events in :data:`EVENT_SCHEMA`, time-ordered over 30 days, Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    types = list(TYPE_MIX)
    type_idx = rng.choice(len(types), size=n, p=np.array([TYPE_MIX[t] for t in types]))
    type_col = np.array([t.value for t in types], dtype=object)[type_idx]
    kind_col = np.array([TARGET_KINDS[t][0].value for t in types], dtype=object)[type_idx]
    sizes = {TargetKind.USER: n_users, TargetKind.COMMUNITY: n_communities, TargetKind.CONTENT: n_content}

    def zipf_ids(size: int, count: int) -> np.ndarray:
        return np.minimum(rng.zipf(1.3, count) - 1, size - 1)

    actors = zipf_ids(n_users, n)
    target_num = np.zeros(n, np.int64)
    for kind, size in sizes.items():
        m = kind_col == kind.value
        target_num[m] = zipf_ids(size, int(m.sum()))
    user_target = kind_col == TargetKind.USER.value
    clash = user_target & (target_num == actors)
    target_num[clash] = (target_num[clash] + 1) % n_users
    prefixes = np.array([_PREFIX[TargetKind(k)] for k in kind_col], dtype=object)
    value = np.ones(n)
    msg = type_col == EventType.MESSAGE.value
    value[msg] = rng.integers(1, 6, int(msg.sum()))
    voice = type_col == EventType.VOICE_MINUTES.value
    value[voice] = np.round(rng.exponential(20.0, int(voice.sum())) + 0.5, 2)
    imp = type_col == EventType.IMPRESSION.value
    n_imp = int(imp.sum())
    request_id = np.full(n, None, dtype=object)
    request_id[imp] = _hex_ids(rng, n_imp)
    surface = np.full(n, None, dtype=object)
    surface[imp] = "communities"
    position = np.full(n, None, dtype=object)
    position[imp] = rng.integers(0, 20, n_imp)
    propensity = np.full(n, None, dtype=object)
    propensity[imp] = rng.uniform(0.01, 1.0, n_imp)
    ts = start_us + np.sort(rng.integers(0, 30 * 86_400 * 1_000_000, n))
    cols = {
        "event_id": _ordered_ids(rng, ts) if ordered_ids else _hex_ids(rng, n),
        "ts_us": ts,
        "type": type_col,
        "actor": np.char.add("u", actors.astype(str)).astype(object),
        "target": (prefixes + target_num.astype(str).astype(object)),
        "target_kind": kind_col,
        "value": value,
        "request_id": request_id,
        "surface": surface,
        "position": position,
        "propensity": propensity,
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in EVENT_SCHEMA}, schema=EVENT_SCHEMA)


def _timed_appends(store: EventStore, table: pa.Table, batch_size: int, phase: str, on_phase: PhaseFn) -> float:
    seconds = 0.0
    for off in range(0, table.num_rows, batch_size):
        batch = table.slice(off, batch_size)
        t0 = time.perf_counter()
        store.append(batch)
        seconds += time.perf_counter() - t0
        on_phase(phase, min(off + batch_size, table.num_rows), table.num_rows)
    return seconds


def _preload(store: EventStore, w: Workload, on_phase: PhaseFn) -> None:
    for off in range(0, w.preload, 100_000):
        store.append(synthetic_events(min(100_000, w.preload - off), seed=w.seed + 1_000 + off,
                                      ordered_ids=w.ordered_ids))
        on_phase("preload", min(off + 100_000, w.preload), w.preload)


def bench_sqlite(table: pa.Table, w: Workload, on_phase: PhaseFn) -> dict:
    with tempfile.TemporaryDirectory(prefix="belong-bench-") as tmp:
        store = SqliteStore(Path(tmp) / "store")
        try:
            _preload(store, w, on_phase)
            seconds = _timed_appends(store, table, w.batch_size, "sqlite", on_phase)
            stored = store.count()
        finally:
            store.close()
        base_seconds = _sqlite_baseline(table, Path(tmp) / "baseline.sqlite3")
    return _figures(w, seconds, base_seconds, stored - w.preload) | {
        "durability": "WAL, synchronous=FULL, one commit per batch",
        "baseline_method": "executemany into a plain table (no keys/indexes), one transaction, synchronous=FULL",
    }


def _sqlite_baseline(table: pa.Table, db: Path) -> float:
    import sqlite3

    rows = table_rows(table, EVENT_COLUMNS)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"CREATE TABLE raw ({', '.join(EVENT_COLUMNS)})")
        sql = f"INSERT INTO raw VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        conn.close()


def bench_postgres(url: str, table: pa.Table, w: Workload, on_phase: PhaseFn) -> dict:
    schema = f"belong_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        return {"skipped": f"cannot connect to {redact(url)}: {str(exc).strip()}"}
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in url else "?"
        store = PostgresStore(f"{url}{sep}options=-csearch_path%3D{schema}")
        try:
            _preload(store, w, on_phase)
            seconds = _timed_appends(store, table, w.batch_size, "postgres", on_phase)
            stored = store.count()
            sync = store.synchronous_commit()
        finally:
            store.close()
        data = events_csv(table)
        admin.execute(
            f'CREATE TABLE "{schema}".raw (ord BIGINT, event_id TEXT, ts_us BIGINT, type TEXT, actor TEXT, '
            "target TEXT, target_kind TEXT, value DOUBLE PRECISION, request_id TEXT, surface TEXT, "
            "position INTEGER, propensity DOUBLE PRECISION)"
        )
        admin.execute("SET synchronous_commit = on")
        t0 = time.perf_counter()
        with admin.transaction(), admin.cursor() as cur, cur.copy(
            f'COPY "{schema}".raw FROM STDIN (FORMAT csv)'
        ) as copy:
            copy.write(data)
        base_seconds = time.perf_counter() - t0
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
    return _figures(w, seconds, base_seconds, stored - w.preload) | {
        "durability": f"synchronous_commit={sync}, one transaction per batch (COPY to staging + INSERT ON CONFLICT)",
        "baseline_method": "COPY (CSV, rows pre-encoded) into a plain table (no keys/indexes), one transaction",
    }


def _figures(w: Workload, seconds: float, base_seconds: float, stored: int) -> dict:
    eps = w.events / seconds if seconds > 0 else float("inf")
    base = w.events / base_seconds if base_seconds > 0 else float("inf")
    return {
        "events_per_s": round(eps),
        "baseline_events_per_s": round(base),
        "ratio": round(eps / base, 3),
        "events": w.events,
        "stored": stored,
        "batch_size": w.batch_size,
        "batches": -(-w.events // w.batch_size),
        "preloaded": w.preload,
        "ordered_ids": w.ordered_ids,
        "seconds": round(seconds, 3),
        "baseline_seconds": round(base_seconds, 3),
    }


def run(w: Workload, postgres_url: str | None, on_phase: PhaseFn | None = None) -> dict:
    """Benchmark every backend on the same synthetic events; returns the JSON document."""
    phase = on_phase or (lambda name, done, total: None)
    table = synthetic_events(w.events, seed=w.seed, ordered_ids=w.ordered_ids)
    out: dict[str, object] = {
        "events": w.events, "batch_size": w.batch_size, "preload": w.preload, "seed": w.seed,
        "ordered_ids": w.ordered_ids,
        # figures are wall-clock: a loaded machine (load average above the core count) lowers all of them
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_before": round(os.getloadavg()[0], 2)},
    }
    backends: dict[str, object] = {"sqlite": bench_sqlite(table, w, phase)}
    if postgres_url:
        backends["postgres"] = bench_postgres(postgres_url, table, w, phase)
    else:
        backends["postgres"] = {
            "skipped": "no PostgreSQL URL: pass --postgres-url or set BELONG_BENCH_POSTGRES_URL"
        }
    out["backends"] = backends
    return out
