"""Bootstrap intervals and paired significance tests."""

from __future__ import annotations

import numpy as np
import pytest

from belong.evaluation.stats import bootstrap_ci, paired_test


def test_bootstrap_ci_contains_the_mean_and_is_seeded() -> None:
    v = np.random.default_rng(0).random(500)
    lo, hi = bootstrap_ci(v, seed=1)
    assert lo < v.mean() < hi
    # about ±1.96 standard errors of the mean
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(v, seed=1) == (lo, hi)
    # blocks of draws give the same answer as one block
    assert bootstrap_ci(v, seed=1, chunk=1_000) == (lo, hi)


def test_bootstrap_ci_ignores_nan_and_handles_empty() -> None:
    lo, hi = bootstrap_ci(np.array([1.0, np.nan, 1.0]))
    assert lo == hi == 1.0
    assert all(np.isnan(bootstrap_ci(np.array([np.nan]))))


def test_paired_test_detects_a_real_difference() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(300)
    better = base + 0.05 + rng.normal(0, 0.05, 300)
    out = paired_test(better, base)
    assert out["mean_diff"] == pytest.approx(float((better - base).mean()))
    assert out["t_pvalue"] < 1e-6 and out["wilcoxon_pvalue"] < 1e-6
    assert out["n_users"] == 300


def test_paired_test_does_not_flag_a_null_difference() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(300)
    b = a + rng.normal(0, 0.05, 300)  # noise only, no shift
    out = paired_test(a, b)
    assert out["t_pvalue"] > 0.05 and out["wilcoxon_pvalue"] > 0.05
    same = paired_test(a, a.copy())
    assert same["t_pvalue"] == 1.0 and same["wilcoxon_pvalue"] == 1.0 and same["mean_diff"] == 0.0
