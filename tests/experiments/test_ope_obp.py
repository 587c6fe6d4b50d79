"""``belong bench ope``: belong's estimators on the benchmark's logged data, and against Open Bandit Pipeline when
an interpreter with obp is named by BELONG_OBP_PYTHON (obp cannot be installed beside belong's stack)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from belong.bench.ope import bench_ope, logged_lists, logged_slot
from belong.experiments.ope import evaluate_slate, evaluate_slot
from cli_runner import run_cli


def test_bench_ope_without_obp_reports_belong_and_a_refusal(monkeypatch):
    monkeypatch.delenv("BELONG_OBP_PYTHON", raising=False)
    out = bench_ope(400, 200)
    assert out["obp"] is None and "no obp interpreter" in out["note"]
    assert set(out["belong"]) == {"ips", "snips", "dm", "dr", "standard_ips", "independent_ips",
                                  "reward_interaction_ips", "pseudo_inverse"}
    assert all(e["value"] is not None for e in out["belong"].values())
    assert "never takes" in out["refusal_without_support"]


def test_benchmark_data_is_close_to_the_truth_on_average():
    """The generators' logging and evaluation policies are what the estimators assume: on a large log, IPS and DR
    agree with each other, with SNIPS and with the true value within sampling error."""
    fb, truth = logged_slot(np.random.default_rng(5), 6000)
    est = evaluate_slot(fb)
    assert abs(est["ips"].value - est["dr"].value) < 4 * est["ips"].se
    assert abs(est["snips"].value - est["ips"].value) < 4 * est["ips"].se
    for name in ("ips", "snips", "dr"):  # the generator knows the evaluation policy's true value
        assert abs(est[name].value - truth) < 4 * est["ips"].se, name
    lists = evaluate_slate(logged_lists(np.random.default_rng(6), 500))
    assert all(e.ess is not None and e.ess > 1 for e in lists.values())


@pytest.mark.skipif(not os.environ.get("BELONG_OBP_PYTHON"), reason="BELONG_OBP_PYTHON (an obp interpreter) unset")
def test_matches_obp_to_1e6():
    out = bench_ope(2000, 800)
    assert out["max_abs_diff"] <= 1e-6, out["abs_diff"]
    assert set(out["abs_diff"]) == {"ips", "snips", "dm", "dr", "standard_ips", "independent_ips",
                                    "reward_interaction_ips"}


def test_cli_bench_ope_json(monkeypatch, capsys):
    monkeypatch.delenv("BELONG_OBP_PYTHON", raising=False)
    code, out, _ = run_cli(monkeypatch, capsys, "bench", "ope", "--rounds", "50", "--lists", "20", "--json")
    assert code == 0 and json.loads(out)["data"]["slot_rounds"] == 50
    code, _, err = run_cli(monkeypatch, capsys, "bench", "ope", "--rounds", "50", "--lists", "20",
                           "--obp-python", "/nonexistent/python")
    assert code == 2 and "obp-python" in err
