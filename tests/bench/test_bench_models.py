"""``belong bench models`` through the real CLI on a small catalogue (shape of the figures; the 50,000-community
run is tests/models/test_large_catalogue.py and the command itself)."""

from __future__ import annotations

import json

from cli_runner import run_cli


def test_bench_models_reports_each_model_and_the_baseline(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "bench", "models", "--users", "400", "--communities", "300",
                           "--models", "ease,bspm,gfcf", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["items"] == 300 and result["baseline"]["model"] == "most-popular"
    assert [r["model"] for r in result["models"]] == ["ease", "bspm", "gf-cf"]
    for r in result["models"]:
        assert "error" not in r and r["fit_s"] >= 0 and r["fit_peak_mib"] > 0


def test_bench_models_bad_input_exits_2(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "bench", "models", "--communities", "1")
    assert code == 2 and "communities" in err
    code, _, err = run_cli(monkeypatch, capsys, "bench", "models", "--models", "nope")
    assert code == 2 and "model" in err
