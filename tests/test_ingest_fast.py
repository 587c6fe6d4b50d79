"""The vectorised event validation (belong.ingest_fast) against the row-by-row parser it stands in for: on every
record it either returns exactly the events ``parse_event`` gives, or leaves the chunk to the row path — never
accepting a row the row path refuses; and files ingest to the same store and the same report either way."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from belong import ingest as ingest_mod
from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.ingest import _fast_chunk, ingest_file, parse_row
from belong.schema import EVENT_SCHEMA, events_to_table

BASE = {"event_id": "e1", "ts": "2026-01-02T03:04:05Z", "type": "join", "actor": "u1", "target": "c1"}


#: the ways of giving the time (one per file, as a file is written: a column has one type)
STAMPS = [["2026-01-02T03:04:05Z", "2026-01-02 03:04:05.25+02:00", "2026-06-30T23:59:59.123456-05:30",
           "2026-03-01T00:00:00"], [1767323045, 1767323046], [1767323045.5, 1767323046.000001],
          ["1767323045", "1767323045.000001"]]


def valid_records(n: int = 400, stamps: list | None = None) -> list[dict]:
    """Every event type, impressions and clicks with their fields, times given one way (``stamps``)."""
    out: list[dict] = []
    stamps = stamps or STAMPS[0]
    kinds = [("join", "c", {}), ("leave", "c", {}), ("message", "c", {"value": 3}),
             ("voice_minutes", "c", {"value": 12.5}), ("view", "x", {"target_kind": "content"}),
             ("reaction", "x", {"target_kind": "content", "value": 2}), ("friend_request", "u", {}),
             ("friend_accept", "u", {"target_kind": "user"}), ("block", "u", {"target_kind": "user"}),
             ("block", "c", {"target_kind": "community"}), ("report", "c", {}),
             ("impression", "c", {"request_id": "r1", "surface": "communities", "position": 3,
                                  "propensity": 0.25}),
             ("click", "c", {"request_id": "r1", "surface": "communities", "position": 0}), ("click", "c", {})]
    for i in range(n):
        etype, prefix, extra = kinds[i % len(kinds)]
        rec = {"event_id": f"ev-{i}", "ts": stamps[i % len(stamps)], "type": etype, "actor": f"u{i % 37}",
               "target": f"{prefix}{(i * 7) % 41 + 100}", **extra}
        out.append(rec)
    return out


def row_path(records: list[dict]) -> pa.Table:
    return events_to_table([parse_row("events", r) for r in records])


@pytest.mark.parametrize("stamps", STAMPS, ids=["iso", "int", "float", "text"])
def test_the_fast_path_gives_exactly_the_row_paths_events(stamps):
    records = valid_records(stamps=stamps)
    fast = _fast_chunk(records)
    assert fast is not None, "a clean chunk goes through the fast path"
    assert fast.schema == EVENT_SCHEMA
    assert fast.equals(row_path(records))


def test_ts_us_as_exported():
    records = [{**BASE, "event_id": f"e{i}", "ts": None, "ts_us": 1_767_323_045_000_123 + i} for i in range(5)]
    for r in records:
        r.pop("ts")
    fast = _fast_chunk(records)
    assert fast is not None and fast.equals(row_path(records))


#: one change to a valid record: each either still valid (the row path normalises it: the fast path must
#: agree or step aside) or invalid (the fast path must step aside)
MUTATIONS: list[dict] = [
    {"event_id": ""}, {"event_id": "  padded  "}, {"event_id": "ünïcode"}, {"event_id": "a\x01b"},
    {"event_id": "x" * 129}, {"event_id": "x" * 128}, {"event_id": 12345}, {"event_id": None}, {"actor": True},
    {"ts": "yesterday"}, {"ts": "2026-02-30T00:00:00Z"}, {"ts": "2026-01-02T24:00:00Z"}, {"ts": -5},
    {"ts": "2101-01-01T00:00:00Z"}, {"ts": float("nan")}, {"ts": ""}, {"ts": None}, {"ts": "  1767323045 "},
    {"timestamp": "2026-01-02T03:04:05Z"}, {"ts": "2026-01-02T03:04:05.1234567Z"},
    {"type": "JOIN"}, {"type": "fly"}, {"type": None}, {"target_kind": "user"}, {"target_kind": "Community"},
    {"target_kind": ""}, {"value": -1}, {"value": 0}, {"value": "1_000"}, {"value": "abc"}, {"value": ""},
    {"value": float("inf")}, {"value": " 2"}, {"type": "message", "value": 0}, {"type": "message", "value": 0.5},
    {"type": "friend_accept", "target": "u1", "target_kind": "user"}, {"colour": "red"},
    {"type": "impression", "request_id": "r", "surface": "people", "position": 1, "propensity": 1.5},
    {"type": "impression", "request_id": "r", "surface": "people", "position": 1, "propensity": 0.5},
    {"type": "impression", "request_id": "r", "surface": "people", "position": -1, "propensity": 0.5},
    {"type": "impression", "request_id": "r", "surface": "people", "position": "1.0", "propensity": 0.5},
    {"type": "impression", "request_id": "r", "surface": "people", "propensity": 0.5},
    {"type": "click", "propensity": 0.5}, {"request_id": "r"}, {"type": "click", "surface": "Nope"},
    {"type": "impression", "request_id": "r", "surface": "people", "position": 2**31, "propensity": 0.5},
]


def _row_verdict(record: dict) -> pa.Table | str:
    try:
        return row_path([record])
    except ValidationError as exc:
        return f"{exc.field}: {exc.reason}"


@pytest.mark.parametrize("change", MUTATIONS, ids=[str(m)[:40] for m in MUTATIONS])
def test_a_changed_record_is_never_judged_differently(change):
    records = valid_records(30)
    changed = {**records[7], **change}
    records[7] = {k: v for k, v in changed.items() if v is not None or k in ("ts", "event_id", "type")}
    fast = _fast_chunk(records)
    verdicts = [_row_verdict(r) for r in records]
    if fast is None:
        return  # the row path decides, as before
    assert not any(isinstance(v, str) for v in verdicts), "the fast path accepted a row the row path refuses"
    assert fast.equals(pa.concat_tables(verdicts)), "the fast path stored other values than the row path"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["event_id", "ts", "type", "actor", "target", "target_kind", "value",
                                        "request_id", "surface", "position", "propensity", "timestamp"]),
                       st.one_of(st.none(), st.text(max_size=12), st.integers(-10, 2_000_000_000),
                                 st.floats(allow_nan=True), st.booleans(),
                                 st.sampled_from(["join", "impression", "click", "user", "content", "people",
                                                  "2026-01-02T03:04:05Z", "0.5", "3"])),
                       max_size=6))
def test_random_records_never_pass_where_the_row_path_refuses(change):
    records = valid_records(14)
    records[3] = {**records[3], **change}
    fast = _fast_chunk(records)
    if fast is None:
        return
    verdicts = [_row_verdict(r) for r in records]
    assert not any(isinstance(v, str) for v in verdicts), (change, verdicts)
    assert fast.equals(pa.concat_tables(verdicts))


def _write(tmp: Path, fmt: str, records: list[dict]) -> Path:
    path = tmp / f"events.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    elif fmt == "csv":
        fields = sorted({k for r in records for k in r})
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in records)
    else:
        rows = [{k: (None if r.get(k) is None else str(r.get(k))) for k in sorted({k for r in records for k in r})}
                for r in records]
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_files_ingest_the_same_with_and_without_the_fast_path(tmp_path, fmt, monkeypatch):
    records = valid_records(1_000)
    records[123] = {**records[123], "value": -3}  # one bad row in the second chunk
    records[640] = {**records[640], "type": "fly"}
    path = _write(tmp_path, fmt, records)
    reports, tables = [], []
    calls = {"fast": 0}
    real = ingest_mod._fast_table

    def counting(chunk):
        out = real(chunk)
        calls["fast"] += out is not None
        return out

    for name, fast in (("fast", counting), ("rows", lambda _chunk: None)):
        monkeypatch.setattr(ingest_mod, "_fast_table", fast)
        with open_store(tmp_path / name) as store:
            reports.append(ingest_file(path, store, chunk_rows=100).to_dict())
            tables.append(store.read_events().sort_by("event_id"))
    assert reports[0] == reports[1]
    assert reports[0]["rejected"] == 2 and [e["field"] for e in reports[0]["errors"]] == ["value", "type"]
    assert tables[0].equals(tables[1])
    assert calls["fast"] == 8, "the eight clean chunks of 100 went through the fast path"


def test_bench_ingest_files_reports_both_paths():
    from belong.bench.ingest_files import bench_ingest_files

    out = bench_ingest_files(3_000, chunk_rows=1_000)
    assert out["append_only"]["rows_per_s"] > 0
    for fmt in ("jsonl", "csv", "parquet"):
        fig = out["formats"][fmt]
        for name in ("vectorised", "row_by_row"):
            assert fig[name]["stored"] == fig[name]["accepted"] == 3_000 and fig[name]["rejected"] == 0
        assert fig["speedup"] > 0 and fig["cpu_speedup"] > 0
