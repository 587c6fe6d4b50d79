"""JSONL blocks read by Arrow's JSON reader (the fast path of ``belong ingest``) against ``orjson`` line by line: a
block Arrow reads and the column-wise check accepts holds exactly the events the line-by-line path gives; lines
Arrow might read differently (huge integers, NaN, a byte-order mark, several objects on a line, a block that starts
with something other than an object) send the block back to ``orjson``, so the report is the same."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from belong.eventlog import open_store
from belong.ingest import _fast_chunk, _fast_table, _json_table, ingest_file

GOOD = {"event_id": "e1", "ts": "2026-01-02T03:04:05Z", "type": "join", "actor": "u1", "target": "c1"}


def _lines(raws: list[bytes]) -> list[tuple[int, bytes]]:
    return [(i, r + b"\n") for i, r in enumerate(raws, start=1)]


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=10),
    st.sampled_from(["join", "view", "impression", "community", "user", "2026-01-02T03:04:05Z", "1767323045", "0.5"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_keys = st.sampled_from(["event_id", "ts", "ts_us", "type", "actor", "target", "target_kind", "value", "position",
                         "propensity", "request_id", "surface"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_keys, _values, max_size=3), min_size=1, max_size=6), st.integers(0, 5))
def test_arrow_blocks_never_store_other_events_than_orjson(changes: list[dict], seed: int) -> None:
    records = [{**GOOD, "event_id": f"e{i}-{seed}", **ch} for i, ch in enumerate(changes)]
    raws = [json.dumps(r).encode() for r in records]  # stdlib json: NaN, Infinity and huge integers too
    table = _json_table(_lines(raws))
    fast = None if table is None else _fast_table(table)
    if fast is None:
        return  # orjson and the row path decide, as before
    parsed = [orjson.loads(r) for r in raws]  # every line is JSON orjson reads
    assert fast.equals(_fast_chunk(parsed))


@pytest.mark.parametrize("raws", [
    [b"null", json.dumps(GOOD).encode()],  # pyarrow 26 crashes on a block that starts with null
    [json.dumps(GOOD).encode(), b"null"],
    [json.dumps(GOOD).encode() + b" " + json.dumps({**GOOD, "event_id": "e2"}).encode()],  # two objects, one line
    [b"\xef\xbb\xbf" + json.dumps(GOOD).encode()],
    [json.dumps({**GOOD, "value": 12345678901234567890123}).encode()],
    [json.dumps({**GOOD, "value": float("nan")}).encode()],
    [b'{"event_id": "e1", "event_id": "e2", "ts": 1767323045, "type": "join", "actor": "u1", "target": "c1"}'],
])
def test_lines_arrow_might_read_otherwise_are_left_to_orjson(raws: list[bytes]) -> None:
    table = _json_table(_lines(raws))
    assert table is None or _fast_table(table) is None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ev.jsonl"
        path.write_bytes(b"".join(r + b"\n" for r in raws))
        with open_store(Path(tmp) / "store") as st:
            report = ingest_file(path, st)
    ok = 0
    for r in raws:
        try:
            rec = orjson.loads(r)
        except orjson.JSONDecodeError:
            continue
        ok += isinstance(rec, dict) and rec.get("value") == rec.get("value")  # not NaN
    assert report.rows == len(raws) and report.accepted + report.duplicates == ok
    assert report.rejected == len(raws) - ok


def test_a_big_clean_file_goes_through_arrow_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from belong import ingest as ingest_mod

    records = [{**GOOD, "event_id": f"e{i}", "ts_us": 1_767_323_045_000_000 + i} for i in range(2_500)]
    for r in records:
        r.pop("ts")
    path = tmp_path / "ev.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n\n")
    arrow_blocks = []
    real = ingest_mod._json_table

    def spy(lines):
        out = real(lines)
        arrow_blocks.append(out is not None)
        return out

    monkeypatch.setattr(ingest_mod, "_json_table", spy)
    with open_store(tmp_path / "store") as st:
        report = ingest_file(path, st, chunk_rows=1_000)
        stored = st.read_events()
    assert arrow_blocks == [True, True, True]
    assert report.accepted == 2_500 and report.rejected == 0
    assert stored.column("event_id").to_pylist() == [f"e{i}" for i in range(2_500)]
    assert stored.column("ts_us").to_pylist() == [r["ts_us"] for r in records]


# ------------------------------------------------------------------------------------------------ CSV

_plain = st.one_of(st.text(alphabet=st.characters(blacklist_characters='",\r\n', codec="utf-8"), max_size=8),
                   st.sampled_from(["join", "view", "u1", "c1", "x3", "", " ", "2026-01-02T03:04:05Z", "1767323045",
                                    "content", "community", "2", "-1", "\t"]))
_cells = st.one_of(
    _plain, _plain,
    _plain.map(lambda c: f'"{c}"'),  # wholly quoted: still Arrow's reader
    st.sampled_from(['"a,b"', '""', '"u1"', '" c1 "']),
    st.sampled_from(['a"b', '"x""y"', '"c1" ', ' "c1"', '"line\nbreak"', '"u1']),  # Python's csv from here on
)


def _ingest_both(tmp: Path, text: bytes, chunk_rows: int, monkeypatch: pytest.MonkeyPatch) -> list:
    """The file ingested as it is read now and with every line through Python's csv (the reference)."""
    from belong import ingest as ingest_mod

    path = tmp / "ev.csv"
    path.write_bytes(text)
    out = []
    for name, plain in (("arrow", ingest_mod._plain_header), ("python", lambda _first: None)):
        monkeypatch.setattr(ingest_mod, "_plain_header", plain)
        with open_store(tmp / name) as st:
            report = ingest_file(path, st, chunk_rows=chunk_rows).to_dict()
            out.append((report, st.read_events().to_pylist()))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_cells, min_size=4, max_size=6), max_size=12), chunk_rows=st.integers(1, 5),
       newline=st.sampled_from([b"\n", b"\r\n"]), blank=st.booleans(), quoted=st.booleans())
def test_csv_through_arrow_is_read_as_pythons_csv_reads_it(
        rows: list[list[str]], chunk_rows: int, newline: bytes, blank: bool, quoted: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    header = ["event_id", "ts", "type", "actor", "target"]
    names = [f'"{h}"' if quoted else h for h in header]  # as pyarrow writes it even with quoting_style="none"
    lines = [",".join(names).encode()] + [",".join(r).encode() for r in rows]
    if blank:
        lines.insert(len(lines) // 2 + 1, b"")
    with tempfile.TemporaryDirectory() as tmp:
        arrow, python = _ingest_both(Path(tmp), newline.join(lines) + newline, chunk_rows, monkeypatch)
    assert arrow == python


def test_csv_switches_to_pythons_reader_at_the_first_quote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = b"event_id,ts,type,actor,target"
    lines = [header] + [f"e{i},1767323045,join,u1,c{i}".encode() for i in range(7)]
    lines += [b'e7,1767323045,join,u1,"c\n7"', b"e8,1767323045,join,u1,", b'"e9",1767323045,join,u1,c9']
    arrow, python = _ingest_both(tmp_path, b"\n".join(lines) + b"\n", 3, monkeypatch)
    assert arrow == python
    report = arrow[0]
    assert report["accepted"] == 8 and report["errors"] == [
        {"line": 9, "field": "target", "reason": "must not contain control characters"},
        {"line": 11, "field": "target", "reason": "must not be empty"}]


def test_a_store_failure_on_the_writer_thread_stops_the_file(tmp_path: Path) -> None:
    from belong.errors import StoreError

    path = tmp_path / "ev.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**GOOD, "event_id": f"e{i}"}) + b"\n" for i in range(50)))
    st = open_store(tmp_path / "store")
    st.close()  # every append now fails (a real error of the database, raised on the writer thread)
    with pytest.raises(StoreError):
        ingest_file(path, st, chunk_rows=10)
