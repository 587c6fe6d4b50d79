"""``belong bench exposure`` on a tiny world: its JSON names the three conditions and the exposures written."""

from __future__ import annotations

import json

from cli_runner import run_cli


def test_bench_exposure_small(tmp_path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "bench", "exposure", "--users", "200", "--communities", "20",
                             "--store", str(tmp_path / "w"), "--working-set", "20", "--rounds", "2")
    assert code == 0, err
    result = json.loads(out)
    for cond in ("baseline", "idle", "running"):
        assert result[cond]["requests"] == 40 and result[cond]["median_us"] > 0
    assert "median_overhead_us" in result["running"]
    # the running condition served 2 warm-up + 2 timed passes of 20 users: one exposure per answer with a list
    assert 0 < result["exposures_written"] <= 80
