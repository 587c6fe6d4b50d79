"""``belong bench log-read``: the columnar read against the row path on one store, same run (a real SQLite store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from belong.bench.logread import bench_log_read
from belong.eventlog import open_store
from belong.testing.eventlog import T0, tbl
from cli_runner import run_cli


def _store(path: Path) -> Path:
    records = [{"event_id": f"e{i}", "ts_us": T0 + (i * 7919 % 1000) * 1000, "type": "join", "actor": f"u{i % 31}",
                "target": f"c{i % 11}", "target_kind": "community", "value": 1.0 + i / 3} for i in range(3000)]
    with open_store(path) as st:
        st.append(tbl(records))
    return path


def test_the_two_reads_give_one_table(tmp_path: Path) -> None:
    out = bench_log_read(_store(tmp_path / "s"))
    assert out["events"] == 3000 and out["identical"] is True
    assert out["baseline_row_path"]["cpu_s"] >= 0 and out["columnar"]["wall_s"] >= 0
    assert bench_log_read(tmp_path / "s", upto_seq=100)["events"] == 100


def test_a_missing_store_is_exit_2_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "bench", "log-read", "--store", str(tmp_path / "none"))
    assert code == 2 and "store" in err
