"""``belong bench ingest``: the synthetic workload is valid and the report has both figures per backend
(no timing assertions: figures are measured by the command, not by tests)."""

from __future__ import annotations

import sys

import orjson
import pytest

from belong.bench.ingest import TYPE_MIX, Workload, run, synthetic_events
from belong.cli import main
from belong.schema import validate_event_table


def test_synthetic_events_are_valid_unique_and_mixed() -> None:
    t = synthetic_events(5_000, seed=3)
    assert validate_event_table(t).num_rows == 5_000
    assert len(set(t.column("event_id").to_pylist())) == 5_000
    assert set(t.column("type").to_pylist()) == {e.value for e in TYPE_MIX}
    ts = t.column("ts_us").to_pylist()
    assert ts == sorted(ts)
    assert synthetic_events(100, seed=3).equals(synthetic_events(100, seed=3))


def test_ordered_ids_follow_time() -> None:
    t = synthetic_events(2_000, seed=1, ordered_ids=True)
    ids = t.column("event_id").to_pylist()
    assert len(set(ids)) == 2_000 and all(len(i) == 32 for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    assert int(ids[0][:12], 16) == t.column("ts_us")[0].as_py() // 1000


def test_run_reports_both_figures_for_each_backend(postgres_url: str) -> None:
    out = run(Workload(events=3_000, batch_size=1_000, preload=1_000), postgres_url)
    for name in ("sqlite", "postgres"):
        fig = out["backends"][name]
        assert fig["events_per_s"] > 0 and fig["baseline_events_per_s"] > 0
        assert fig["stored"] == fig["events"] == 3_000 and fig["batches"] == 3 and fig["preloaded"] == 1_000
    assert "synchronous_commit=on" in out["backends"]["postgres"]["durability"]


def test_cli_json_without_postgres(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("BELONG_TEST_POSTGRES_URL", raising=False)
    monkeypatch.delenv("BELONG_BENCH_POSTGRES_URL", raising=False)
    monkeypatch.setattr(sys, "argv", ["belong", "bench", "ingest", "--json", "--events", "2000", "--batch-size", "500"])
    main()
    out = orjson.loads(capsys.readouterr().out)
    assert out["backends"]["sqlite"]["events"] == 2_000 and out["backends"]["sqlite"]["ratio"] > 0
    assert "skipped" in out["backends"]["postgres"]
