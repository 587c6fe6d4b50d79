"""The done-when simulations of ``belong bench experiments`` in a small version: the ranges asserted are loose
enough to be statistically safe at this size (the 500-run figures are the CLI command's)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from belong.bench.experiments import _daily_readings, _simulate, bench_experiments
from belong.experiments.stats import compare
from cli_runner import run_cli


@pytest.fixture(scope="module")
def small():
    return bench_experiments(runs=120, days=10, users=1500, effect=0.3, srm_sizes=(20000, 50000), seed=3,
                             world_users=2000)


def test_aa_false_positives_and_always_valid_peeking(small):
    aa = small["aa"]
    # expected 0.05; 120 runs: sd 0.02, so [0, 0.13] is > 4 sd wide
    assert aa["fixed_horizon_read_once_at_end"] <= 0.13
    assert aa["always_valid_read_daily_ever_excludes_0"] <= 0.08
    assert aa["cuped_always_valid_read_daily_ever_excludes_0"] <= 0.08
    # peeking at the fixed-horizon interval every day rejects at least as often as reading it once
    assert aa["naive_fixed_horizon_read_daily_ever_rejects"] >= aa["fixed_horizon_read_once_at_end"]
    assert aa["naive_fixed_horizon_read_daily_ever_rejects"] >= aa["always_valid_read_daily_ever_excludes_0"]
    by_day = aa["ever_rejected_by_day"]
    assert by_day["naive_fixed_horizon"][-1] == pytest.approx(aa["naive_fixed_horizon_read_daily_ever_rejects"],
                                                              abs=1e-4)
    assert all(a <= b for a, b in zip(by_day["always_valid"], by_day["always_valid"][1:], strict=False))


def test_ab_power_ordering_and_cuped(small):
    p = small["ab"]["power"]
    assert p["fixed_horizon_read_once_at_end"] > small["aa"]["fixed_horizon_read_once_at_end"]
    assert p["cuped_fixed_horizon_at_end"] >= p["fixed_horizon_read_once_at_end"] - 0.05
    assert p["always_valid_read_once_at_end"] <= p["fixed_horizon_read_once_at_end"]
    # CUPED narrows the always-valid interval too: read daily it finds the effect at least about as often
    assert p["cuped_always_valid_read_daily_ever_excludes_0"] >= p["always_valid_read_daily_ever_excludes_0"] - 0.05
    cu = small["cuped"]
    assert cu["variance_reduction_mean"] >= 0.3 and cu["ci_width_after_mean"] < cu["ci_width_before_mean"]
    world = cu["simulated_world"]  # belong's own simulator: messages in the last 28 days, the 28 before as covariate
    assert 0.5 < world["users_with_history"] < 1 and world["variance_reduction_mean"] >= 0.2
    assert world["ci_width_after_mean"] < world["ci_width_before_mean"]


def test_srm_flags_52_48_and_not_50_50(small):
    rows = {r["exposures"]: r for r in small["srm"]["by_exposures"]}
    assert rows[50000]["assigned_52_48_flagged"] >= 0.95 and rows[50000]["exact_52_48_split"]["flagged"]
    assert rows[20000]["true_50_50_not_flagged"] >= 0.97 and small["srm"]["aa_runs_not_flagged"] >= 0.97


def test_vectorised_daily_reading_is_compare():
    sim = _simulate(np.random.default_rng(1), 2, 500, 5, 0.2, sigma=1.0, drift=0.3, history=0.8, day0=0.5)
    d = _daily_readings(sim, 0.05, 800.0)
    for r in range(2):
        for day in (1, 4):
            m = sim["exposed"][r, :, day]
            arm = np.where(sim["treat"][r, m], "t", "c")
            (res,) = compare(sim["y"][r, m, day], arm, control="c", n_tune=800.0)
            assert d["effect"][r, day] == pytest.approx(res.effect, rel=1e-9)
            assert d["fixed_reject"][r, day] == (res.p_value < 0.05)
            assert d["av_excludes"][r, day] == (res.av_ci_low > 0 or res.av_ci_high < 0)


def test_cli_bench_experiments_json(monkeypatch, capsys, tmp_path):
    report = tmp_path / "exp.html"
    code, out, _ = run_cli(monkeypatch, capsys, "bench", "experiments", "--runs", "6", "--days", "3", "--users",
                           "300", "--world-users", "0", "--json", "--report", str(report))
    assert code == 0
    data = json.loads(out)
    assert data["model"]["runs"] == 6 and set(data) >= {"aa", "ab", "srm", "cuped", "seconds"}
    assert len(data["aa"]["ever_rejected_by_day"]["always_valid"]) == 3
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2 and "Sample-ratio mismatch" in page
    code, _, err = run_cli(monkeypatch, capsys, "bench", "experiments", "--n-tune", "-1")
    assert code == 2 and "n-tune" in err
