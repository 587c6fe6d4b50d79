"""Uncertainty of offline metrics: user-bootstrap confidence intervals and paired significance tests.

Both work on per-user metric vectors (see :mod:`belong.evaluation.metrics`): users are the sampling unit.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps

BOOTSTRAP_DRAWS = 1000


def bootstrap_ci(values: np.ndarray, *, draws: int = BOOTSTRAP_DRAWS, seed: int = 0, level: float = 0.95,
                 chunk: int = 10_000_000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample users with replacement ``draws`` times (seeded).

    NaN entries (metrics undefined for a user) are left out first. Returns ``(nan, nan)`` for no data.
    """
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(draws)
    step = max(1, chunk // v.size)  # draws per block, so that the index block stays below ``chunk`` entries
    for lo in range(0, draws, step):
        n = min(step, draws - lo)
        means[lo:lo + n] = v[rng.integers(0, v.size, size=(n, v.size))].mean(1)
    alpha = (1.0 - level) / 2.0
    lo_q, hi_q = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo_q), float(hi_q))


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, float | int]:
    """Compare two models on the same users: mean difference (a - b), paired t-test and Wilcoxon signed-rank
    p-values (two-sided). Identical vectors give p = 1. Users where either value is NaN are left out."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_test: vectors must align, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    d = a - b
    out: dict[str, float | int] = {"n_users": int(d.size), "mean_a": _mean(a), "mean_b": _mean(b),
                                   "mean_diff": _mean(d)}
    if d.size < 2 or not np.any(d):
        out.update(t_pvalue=1.0, wilcoxon_pvalue=1.0)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t_p = sps.ttest_rel(a, b).pvalue
        w_p = sps.wilcoxon(a, b, zero_method="wilcox").pvalue
    out.update(t_pvalue=_p(t_p), wilcoxon_pvalue=_p(w_p))
    return out


def _mean(v: np.ndarray) -> float:
    return float(v.mean()) if v.size else math.nan


def _p(p: float) -> float:
    return 1.0 if not np.isfinite(p) else float(p)
