"""belong.experiments.stats checked against independent implementations on the same data: scipy's Welch t-test and
chi-square, statsmodels OLS with HC2 / cluster-robust covariance (plain, CUPED, CUPED with missing history,
clusters) and a cluster regression on expanded rows for the delta-method ratio metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from belong.errors import ValidationError
from belong.experiments.stats import compare, gavi_halfwidth, srm


def _data(n: int = 600, seed: int = 0, effect: float = 0.3):
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n) < 0.45, "b", "a")
    x = rng.lognormal(0.0, 1.0, n)
    y = 0.8 * x + rng.normal(0.0, 1.0, n) + effect * (arm == "b")
    return y, arm, x


def _ols(y, cols, **fit):
    return sm.OLS(y, sm.add_constant(np.column_stack(cols))).fit(**fit)


def test_plain_matches_scipy_welch_and_statsmodels_hc2():
    y, arm, _ = _data()
    (r,) = compare(y, arm, control="a")
    t = sps.ttest_ind(y[arm == "b"], y[arm == "a"], equal_var=False)
    ci = t.confidence_interval(0.95)
    assert r.p_value == pytest.approx(t.pvalue, rel=1e-9)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    fit = _ols(y, [(arm == "b").astype(float)], cov_type="HC2")
    assert r.effect == pytest.approx(fit.params[1], rel=1e-10)
    assert r.se == pytest.approx(fit.bse[1], rel=1e-10)
    assert r.n == int((arm == "b").sum()) and r.control_n == int((arm == "a").sum())
    assert r.mean == pytest.approx(y[arm == "b"].mean()) and r.control_mean == pytest.approx(y[arm == "a"].mean())
    assert r.rel_effect == pytest.approx(r.effect / r.control_mean)
    assert not r.cuped_used and r.variance_reduction is None
    # the always-valid interval contains the fixed-horizon one and is centred on the same estimate
    assert r.av_ci_low < r.ci_low < r.effect < r.ci_high < r.av_ci_high


def test_cuped_matches_statsmodels_regression_with_the_covariate():
    y, arm, x = _data(seed=1)
    (r,) = compare(y, arm, control="a", x_pre=x)
    fit = _ols(y, [(arm == "b").astype(float), x], cov_type="HC2")
    assert r.cuped_used
    assert r.effect == pytest.approx(fit.params[1], rel=1e-9)
    assert r.se == pytest.approx(fit.bse[1], rel=1e-9)
    assert r.p_value == pytest.approx(fit.pvalues[1], rel=1e-6)
    ci = fit.conf_int(0.05)[1]
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(ci), rel=1e-9)
    assert r.variance_reduction == pytest.approx(1 - r.se**2 / r.se_unadjusted**2)
    assert r.variance_reduction > 0.3  # x explains much of y here


def test_cuped_fallback_for_units_without_history_is_an_indicator_of_its_own():
    y, arm, x = _data(seed=2)
    rng = np.random.default_rng(3)
    x = np.where(rng.random(x.size) < 0.3, np.nan, x)
    (r,) = compare(y, arm, control="a", x_pre=x)
    miss = np.isnan(x).astype(float)
    fit = _ols(y, [(arm == "b").astype(float), np.nan_to_num(x), miss], cov_type="HC2")
    assert r.cuped_used
    assert r.effect == pytest.approx(fit.params[1], rel=1e-9) and r.se == pytest.approx(fit.bse[1], rel=1e-9)
    # nobody has history: no adjustment, the plain answer
    (plain,) = compare(y, arm, control="a")
    (none,) = compare(y, arm, control="a", x_pre=np.full(y.size, np.nan))
    assert not none.cuped_used and none.effect == plain.effect and none.se == plain.se


def test_cluster_robust_matches_statsmodels_cr1():
    rng = np.random.default_rng(4)
    g = rng.integers(0, 80, 1000)
    cl_arm = np.where(rng.random(80) < 0.5, "t", "c")
    arm = cl_arm[g]
    y = rng.normal(0, 1, 80)[g] + rng.normal(0, 1, 1000) + 0.2 * (arm == "t")
    x = y + rng.normal(0, 1, 1000)
    (r,) = compare(y, arm, control="c", cluster=g)
    fit = _ols(y, [(arm == "t").astype(float)], cov_type="cluster", cov_kwds={"groups": g})
    assert r.effect == pytest.approx(fit.params[1], rel=1e-9) and r.se == pytest.approx(fit.bse[1], rel=1e-9)
    assert r.p_value == pytest.approx(fit.pvalues[1], rel=1e-6)
    (rc,) = compare(y, arm, control="c", cluster=g, x_pre=x)
    fitc = _ols(y, [(arm == "t").astype(float), x], cov_type="cluster", cov_kwds={"groups": g})
    assert rc.effect == pytest.approx(fitc.params[1], rel=1e-9) and rc.se == pytest.approx(fitc.bse[1], rel=1e-9)
    # ignoring the clusters understates the error here (the units of a cluster share a level)
    (naive,) = compare(y, arm, control="c")
    assert naive.se < r.se


def test_ratio_metric_delta_method_equals_cluster_regression_on_the_expanded_rows():
    """Messages per session: the delta-method variance of sum(y)/sum(d) is the cluster-robust (CR0) variance of
    the per-session regression clustered by user, times n/(n-1) (sample variance) in each arm of equal size."""
    rng = np.random.default_rng(5)
    n = 400
    arm = np.array(["a"] * n + ["b"] * n)
    sessions = rng.integers(1, 8, 2 * n)
    level = rng.lognormal(0, 0.7, 2 * n) * (1 + 0.1 * (arm == "b"))
    rows_user = np.repeat(np.arange(2 * n), sessions)
    per_session = rng.poisson(level[rows_user] * 3).astype(float)
    y = np.bincount(rows_user, weights=per_session, minlength=2 * n)
    (r,) = compare(y, arm, control="a", denom=sessions.astype(float))
    ra = y[:n].sum() / sessions[:n].sum()
    rb = y[n:].sum() / sessions[n:].sum()
    assert (r.control_mean, r.mean, r.effect) == pytest.approx((ra, rb, rb - ra), rel=1e-12)
    fit = _ols(per_session, [(arm[rows_user] == "b").astype(float)], cov_type="cluster",
               cov_kwds={"groups": rows_user, "use_correction": False})
    assert fit.params[1] == pytest.approx(r.effect, rel=1e-9)
    assert r.se == pytest.approx(fit.bse[1] * math.sqrt(n / (n - 1)), rel=1e-9)


def test_several_arms_each_against_control():
    rng = np.random.default_rng(6)
    arm = rng.choice(["ctl", "v1", "v2"], 900)
    y = rng.normal(0, 1, 900) + (arm == "v2") * 0.5
    res = compare(y, arm, control="ctl")
    assert [r.arm for r in res] == ["v1", "v2"]
    for r in res:
        m = (arm == r.arm) | (arm == "ctl")
        t = sps.ttest_ind(y[m & (arm == r.arm)], y[m & (arm == "ctl")], equal_var=False)
        assert r.p_value == pytest.approx(t.pvalue, rel=1e-9)


def test_always_valid_halfwidth_matches_the_normal_mixture_formula():
    se, n, alpha, n_tune = 0.1, 2000, 0.05, 5000.0
    la = -2 * math.log(alpha)
    rho2 = (la + math.log(la + 1)) / n_tune
    s2 = se * se * n
    expect = math.sqrt(s2 * 2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    assert float(gavi_halfwidth(se, n, alpha, n_tune)) == pytest.approx(expect, rel=1e-12)
    # always wider than the fixed-horizon interval, and tightest (relative to it) near n_tune
    ratios = [float(gavi_halfwidth(1 / math.sqrt(m), m, alpha, n_tune)) * math.sqrt(m) / 1.959964
              for m in (100, 5000, 500000)]
    assert min(ratios) > 1.0 and ratios[1] < ratios[0] and ratios[1] < ratios[2]


def test_srm_matches_scipy_chisquare_and_flags_at_one_in_a_thousand():
    counts = {"a": 5200, "b": 4800}
    res = srm(counts, {"a": 0.5, "b": 0.5})
    ref = sps.chisquare([5200, 4800], [5000, 5000])
    assert res.chi2 == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert res.flagged
    ok = srm({"a": 5030, "b": 4970}, {"a": 1, "b": 1})
    assert not ok.flagged and ok.p_value > 0.001
    three = srm({"a": 100, "b": 210, "c": 290}, {"a": 1, "b": 2, "c": 3})
    ref3 = sps.chisquare([100, 210, 290], [100, 200, 300])
    assert three.chi2 == pytest.approx(ref3.statistic) and three.p_value == pytest.approx(ref3.pvalue)
    assert srm({"a": 0, "b": 0}, {"a": 1, "b": 1}).flagged is False


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"control": "zzz"}, "control"),
    ({"control": "a", "denom": np.zeros(10)}, "denom"),
    ({"control": "a", "x_pre": np.ones(3)}, "x_pre"),
    ({"control": "a", "alpha": 1.5}, "alpha"),
])
def test_bad_input_names_the_field(kwargs, field):
    y = np.arange(10.0)
    arm = np.array(["a", "b"] * 5)
    with pytest.raises(ValidationError) as e:
        compare(y, arm, **kwargs)
    assert e.value.field == field


def test_srm_refuses_undeclared_arms():
    with pytest.raises(ValidationError) as e:
        srm({"a": 5, "x": 3}, {"a": 0.5, "b": 0.5})
    assert e.value.field == "counts"


def test_cuped_batch_is_compare_run_by_run():
    from belong.experiments.stats import cuped_batch

    rng = np.random.default_rng(8)
    R, N = 4, 700
    x = rng.lognormal(0, 1, (R, N))
    y = 1.5 * x + rng.normal(0, 1, (R, N))
    t = rng.random((R, N)) < 0.5
    x[rng.random((R, N)) < 0.2] = np.nan
    mask = rng.random((R, N)) < 0.8
    b = cuped_batch(y, t, x, mask)
    for r in range(R):
        m = mask[r]
        (c,) = compare(y[r, m], np.where(t[r, m], "t", "c"), control="c", x_pre=x[r, m])
        assert b["effect"][r] == pytest.approx(c.effect, rel=1e-9) and b["se"][r] == pytest.approx(c.se, rel=1e-9)
        assert b["se_unadjusted"][r] == pytest.approx(c.se_unadjusted, rel=1e-9)


def test_no_variation_gives_an_exact_answer_not_nan():
    arm = np.array(["a", "b"] * 20)
    (r,) = compare(np.zeros(40), arm, control="a")
    assert (r.effect, r.se, r.p_value, r.ci_low, r.ci_high, r.av_ci_low, r.av_ci_high) == (0, 0, 1.0, 0, 0, 0, 0)
    assert np.isnan(r.rel_effect)  # relative to a zero control mean
    (r,) = compare(np.where(arm == "b", 1.0, 0.0), arm, control="a")
    assert r.effect == 1.0 and r.p_value == 0.0 and r.ci_low == r.ci_high == 1.0
