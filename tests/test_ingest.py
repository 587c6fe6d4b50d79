"""Ingestion of JSONL/CSV/Parquet files (belong.ingest) and the ``belong ingest`` / ``stats`` / ``export`` commands."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from belong import ingest as ingest_mod
from belong.domain import parse_event
from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.ingest import ingest_file
from cli_runner import run_cli

GOOD = {"event_id": "e1", "ts": "2024-01-02T03:04:05Z", "type": "join", "actor": "u1", "target": "c1"}


def good(i: int, **change) -> dict:
    return {**GOOD, "event_id": f"e{i}", "actor": f"u{i % 5}", **change}


def write_jsonl(path: Path, lines: list[object]) -> Path:
    with path.open("wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line))
            f.write(b"\n")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def stored_ids(store_dir: Path) -> list[str]:
    with open_store(store_dir, create=False) as st:
        return st.read_events().column("event_id").to_pylist()


# ------------------------------------------------------------------------------------------------ formats


def test_jsonl_good_and_bad_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [
        good(1),
        good(2, ts="not a time"),  # line 2
        b"",  # line 3: blank lines are skipped but counted
        b"{not json",  # line 4
        [1, 2, 3],  # line 5
        good(3, type="message", value=0),  # line 6
        good(4, colour="red"),  # line 7
        good(5),
    ])
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st)
    assert (report.accepted, report.rejected, report.duplicates, report.rows) == (2, 5, 0, 7)
    assert [(e["line"], e["field"]) for e in report.errors] == [
        (2, "ts"), (4, "line"), (5, "event"), (6, "value"), (7, "colour")
    ]
    assert report.errors[1]["reason"].startswith("invalid JSON")
    assert stored_ids(tmp_path / "store") == ["e1", "e5"]


def test_csv_line_numbers_count_the_header_and_multiline_records(tmp_path: Path) -> None:
    header = ["event_id", "ts", "type", "actor", "target", "value"]
    path = write_csv(tmp_path / "ev.csv", header, [
        ["e1", "1704164645", "join", "u1", "c1", ""],  # line 2
        ["e2", "1704164645", "message", "u1", "c1", "-3"],  # line 3
        ['multi\nline', "1704164645", "join", "u1", "c1", ""],  # lines 4-5: control character in the id
        ["e3", "1704164645", "join", "u1", "c1", "", "extra"],  # line 6
        ["e4", "", "join", "u1", "c1", ""],  # line 7
        ["e5", "2024-01-02T03:04:06Z", "view", "u2", "x1", "2"],  # line 8
    ])
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st)
    assert [(e["line"], e["field"]) for e in report.errors] == [(3, "value"), (4, "event_id"), (6, "line"), (7, "ts")]
    assert "has 7 fields, the header has 6" in report.errors[2]["reason"]
    assert (report.accepted, report.rejected) == (2, 4)
    assert stored_ids(tmp_path / "store") == ["e1", "e5"]


def test_csv_bad_utf8_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_bytes(
        b"\xef\xbb\xbfevent_id,ts,type,actor,target\r\n"
        b"e1,1704164645,join,u1,c1\r\n"
        b"\r\n"
        b"e\xff2,1704164645,join,u1,c1\r\n"
        b"e3,1704164645,join,u1,c1\r\n"
    )
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st)
    assert report.errors == [{"line": 4, "field": "line", "reason": "is not valid UTF-8"}]
    assert stored_ids(tmp_path / "store") == ["e1", "e3"]


def test_csv_without_header_rows(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("event_id,ts,type,actor,target\n")
    with open_store(tmp_path / "store") as st:
        with pytest.raises(ValidationError, match="header"):
            ingest_file(tmp_path / "empty.csv", st)
        assert ingest_file(tmp_path / "header.csv", st).rows == 0


def test_parquet_rows_and_export_round_trip(tmp_path: Path) -> None:
    rows = [good(i, ts=1_704_164_645 + i) for i in range(5)] + [good(9, ts=1_704_164_645, type="teleport")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ev.parquet")
    with open_store(tmp_path / "a") as a:
        report = ingest_file(tmp_path / "ev.parquet", a)
        reason = report.errors[0]["reason"]
        assert (report.accepted, report.errors) == (5, [{"line": 6, "field": "type", "reason": reason}])
        a.append([parse_event({**GOOD, "event_id": "µs", "ts": "2024-01-02T03:04:05.123457Z", "type": "impression",
                               "request_id": "r", "surface": "people", "position": 1, "propensity": 0.3,
                               "target_kind": "user", "target": "u9"})])
        a.export_parquet(tmp_path / "export.parquet")
        # what export_parquet writes (ts_us, all columns) ingests back unchanged
        with open_store(tmp_path / "b") as b:
            again = ingest_file(tmp_path / "export.parquet", b)
            assert (again.accepted, again.rejected) == (6, 0)
            assert b.read_events().equals(a.read_events())


def test_ts_us_column_is_validated(tmp_path: Path) -> None:
    base = {k: v for k, v in GOOD.items() if k != "ts"}
    path = write_jsonl(tmp_path / "ev.jsonl", [
        {**base, "ts_us": 1_704_164_645_000_001}, {**base, "event_id": "e2", "ts_us": -5},
        {**base, "event_id": "e3", "ts_us": "soon"}, {**GOOD, "event_id": "e4", "ts_us": 1_704_164_645_000_000},
    ])
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st)
        assert [(e["line"], e["field"]) for e in report.errors] == [(2, "ts_us"), (3, "ts_us"), (4, "ts_us")]
        assert report.errors[2]["reason"] == "give the time once: ts, timestamp or ts_us"
        assert st.read_events().column("ts_us").to_pylist() == [1_704_164_645_000_001]


def test_entity_files(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "users.csv", ["id", "created_at", "age_group", "interests"], [
        ["u1", "2024-01-01", "teen", "music,art"],
        ["u2", "2024-01-01", "grown-up", ""],
        ["u1", "2024-01-01", "adult", "chess"],
    ])
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st, kind="users")
        assert (report.accepted, report.rejected, report.errors[0]["field"]) == (2, 1, "age_group")
        assert st.users().to_pylist() == [{"id": "u1", "created_at_us": 1_704_067_200_000_000, "age_group": "adult",
                                           "locale": "und", "interests": ["chess"], "status": "active"}]


# ------------------------------------------------------------------------------------------------ modes


def test_strict_stores_nothing_when_any_row_is_bad(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [good(i) for i in range(30)] + [good(99, actor="")])
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st, strict=True, chunk_rows=7)
        assert (report.accepted, report.rejected, report.stored) == (0, 1, False)
        assert report.errors == [{"line": 31, "field": "actor", "reason": "must not be empty"}]
        assert st.count() == 0
        ok = ingest_file(write_jsonl(tmp_path / "ok.jsonl", [good(i) for i in range(30)]), st, strict=True)
        assert (ok.accepted, ok.stored, st.count()) == (30, True, 30)


def test_duplicates_within_and_across_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [good(1), good(2), good(1), good(3)])
    with open_store(tmp_path / "store") as st:
        first = ingest_file(path, st, chunk_rows=2)  # the repeat of e1 lands in another chunk
        second = ingest_file(path, st)
    assert (first.accepted, first.duplicates) == (3, 1)
    assert (second.accepted, second.duplicates) == (0, 4)


def test_errors_are_capped_but_all_counted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [good(i, type="nope") for i in range(ingest_mod.MAX_ERRORS + 7)])
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st)
    assert report.rejected == ingest_mod.MAX_ERRORS + 7 and len(report.errors) == ingest_mod.MAX_ERRORS
    assert report.to_dict()["errors_truncated"] is True


def test_progress_is_reported_per_chunk_up_to_the_file_size(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [good(i) for i in range(25)])
    calls: list[tuple[int, int]] = []
    with open_store(tmp_path / "store") as st:
        ingest_file(path, st, chunk_rows=10, on_progress=lambda done, total: calls.append((done, total)))
    size = path.stat().st_size
    assert len(calls) == 4 and calls[0] == (0, size) and all(t == size for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == size


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [("ev.txt", {}, "format"), ("missing.jsonl", {}, "file"), ("ev.jsonl", {"kind": "pets"}, "kind"), (".", {}, "file"),
     ("ev.jsonl", {"fmt": "xml"}, "format"), ("bad.parquet", {}, "file")],
)
def test_file_level_errors(tmp_path: Path, name: str, kwargs: dict, field: str) -> None:
    for n in ("ev.txt", "ev.jsonl"):
        write_jsonl(tmp_path / n, [GOOD])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 but not really")
    with open_store(tmp_path / "store") as st, pytest.raises(ValidationError) as exc:
        ingest_file(tmp_path / name, st, **kwargs)
    assert exc.value.field == field


# ------------------------------------------------------------------------------------------------ properties

_junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(["", "join", "view", "impression", "user", "content", "2024-01-01", "-1", "1e400", "\x00"]),
    st.lists(st.integers(), max_size=2),
)
_fields = st.sampled_from(["event_id", "ts", "type", "actor", "target", "target_kind", "value", "position",
                           "propensity", "request_id", "surface", "bogus"])
_rows = st.one_of(
    st.builds(lambda i, ch: {**good(i), **ch}, st.integers(0, 30), st.dictionaries(_fields, _junk, max_size=2)),
    st.builds(good, st.integers(0, 30)),
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b" ")),  # an unparseable line
    _junk,
)
_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expected(records: list[object]) -> tuple[int, set[str]]:
    """Rows parse_event accepts on its own, and the distinct event_ids they carry."""
    ok, ids = 0, set()
    for r in records:
        try:
            e = parse_event(orjson.loads(r) if isinstance(r, bytes) else r)
        except (ValidationError, orjson.JSONDecodeError):
            continue
        ok += 1
        ids.add(e.event_id)
    return ok, ids


@_SETTINGS
@given(st.lists(_rows, max_size=25), st.booleans())
def test_malformed_jsonl_rows_never_crash_and_are_never_stored(records: list[object], strict: bool) -> None:
    # stdlib json writes what orjson cannot (huge integers, NaN): those lines must be reported, not crash
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    n_ok, ids = _expected(lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_jsonl(Path(tmp) / "ev.jsonl", lines)
        with open_store(Path(tmp) / "store") as st:
            report = ingest_file(path, st, strict=strict, chunk_rows=4)
            got = set(st.read_events().column("event_id").to_pylist())
    n_rows = sum(1 for line in lines if line.strip())
    assert report.rows == n_rows and report.rejected == n_rows - n_ok
    assert all(set(e) == {"line", "field", "reason"} and e["field"] and e["reason"] for e in report.errors)
    if strict and report.rejected:
        assert got == set() and report.accepted == 0
    else:
        assert got == ids and report.accepted == len(ids) and report.accepted + report.duplicates == n_ok


@_SETTINGS
@given(st.lists(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["join", "1704164645", "u1", "c1", ""])),
                         min_size=4, max_size=6), max_size=15))
def test_malformed_csv_rows_never_crash(cells: list[list[str]]) -> None:
    header = ["event_id", "ts", "type", "actor", "target"]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(Path(tmp) / "ev.csv", header, cells)
        with open_store(Path(tmp) / "store") as st:
            report = ingest_file(path, st)
            got = set(st.read_events().column("event_id").to_pylist())
    expected = set()
    for row in cells:
        if len(row) == len(header):
            try:
                expected.add(parse_event(dict(zip(header, row, strict=True))).event_id)
            except ValidationError:
                pass
    assert got == expected and report.accepted == len(expected)
    assert report.rows == report.accepted + report.duplicates + report.rejected


# ------------------------------------------------------------------------------------------------ CLI




def test_cli_ingest_stats_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [good(1), good(2, type="view", target="x1"), good(3, ts="bad")])
    store = str(tmp_path / "store")
    code, out, _ = run_cli(monkeypatch, capsys, "ingest", str(path), "--store", store, "--json")
    report = orjson.loads(out)
    assert code == 0 and (report["accepted"], report["rejected"], report["duplicates"]) == (2, 1, 0)
    assert report["errors"] == [{"line": 3, "field": "ts", "reason": report["errors"][0]["reason"]}]

    code, out, _ = run_cli(monkeypatch, capsys, "ingest", str(path), "--store", store, "--json", "--strict")
    assert code == 2 and orjson.loads(out)["stored"] is False

    code, out, _ = run_cli(monkeypatch, capsys, "ingest", str(path), "--store", store)
    assert code == 0 and "2 duplicates" in out and "line 3: ts:" in out

    code, out, _ = run_cli(monkeypatch, capsys, "stats", "--store", store, "--json")
    stats = orjson.loads(out)
    assert code == 0 and stats["events"] == 2 and stats["events_by_type"] == {"join": 1, "view": 1}
    assert stats["active_users"] == 2 and stats["first_event"] == "2024-01-02T03:04:05Z"

    code, out, _ = run_cli(monkeypatch, capsys, "stats", "--store", store)
    assert code == 0 and "events" in out and "active communities" in out

    code, out, _ = run_cli(monkeypatch, capsys, "export", str(tmp_path / "v.parquet"), "--store", store,
                           "--type", "view", "--json")
    assert code == 0 and orjson.loads(out)["rows"] == 1
    assert pq.read_table(tmp_path / "v.parquet").column("event_id").to_pylist() == ["e2"]


@pytest.mark.postgres
def test_cli_ingest_into_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                  postgres_schema_url: str) -> None:
    path = write_csv(tmp_path / "ev.csv", ["event_id", "ts", "type", "actor", "target"], [
        ["e1", "2024-01-02T03:04:05Z", "join", "u1", "c1"], ["e2", "2024-01-02T03:04:06Z", "join", "u2", "c1"],
        ["e3", "2024-01-02T03:04:07Z", "join", "u3", ""],
    ])
    code, out, _ = run_cli(monkeypatch, capsys, "ingest", str(path), "--store", postgres_schema_url, "--json")
    report = orjson.loads(out)
    assert code == 0 and (report["accepted"], report["rejected"]) == (2, 1)
    assert report["errors"] == [{"line": 4, "field": "target", "reason": "must not be empty"}]
    monkeypatch.setenv("BELONG_STORE", postgres_schema_url)  # the default store
    from belong.settings import get_settings

    get_settings.cache_clear()
    try:
        code, out, _ = run_cli(monkeypatch, capsys, "stats", "--json")
    finally:
        get_settings.cache_clear()
    stats = orjson.loads(out)
    assert code == 0 and stats["events"] == 2 and stats["active_communities"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "nope.jsonl"], "no such file"),
        (["ingest", "ev.jsonl", "--kind", "pets"], "kind"),
        (["stats"], "no belong store"),
        (["ingest", "ev.jsonl", "--store", "ftp://x"], "unsupported URL scheme"),
        (["export", "o.parquet", "--type", "teleport"], "type"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "ev.jsonl", [GOOD])
    if "--store" not in args:
        args = [*args, "--store", str(tmp_path / "missing-store")]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "missing-store").exists()  # a refused command creates no store


def test_entry_point_subprocess(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [good(1), good(2, actor=None)])
    exe = Path(sys.executable).with_name("belong")
    proc = subprocess.run([str(exe), "ingest", str(path), "--store", str(tmp_path / "s"), "--json", "--strict"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert orjson.loads(io.StringIO(proc.stdout).read())["errors"][0]["field"] == "actor"
