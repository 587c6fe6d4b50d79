"""Statistics of an online experiment: arm-vs-control effects with fixed-horizon and always-valid intervals, CUPED,
ratio metrics by the delta method, cluster-robust errors, and the sample-ratio-mismatch test.

One estimator covers every case: the effect of an arm is the coefficient of the arm's indicator in the least-squares
fit of the per-unit value on ``[1, arm]`` (plus the pre-exposure covariate for CUPED), restricted to the units of
that arm and of control, with a sandwich covariance:

* **plain**: the coefficient is ``mean_t - mean_c`` and HC2 is exactly Welch's ``s_t²/n_t + s_c²/n_c``; the
  fixed-horizon interval and p-value use Student's t with the Welch–Satterthwaite degrees of freedom (identical to
  ``scipy.stats.ttest_ind(equal_var=False)``).
* **ratio metric** (``denom`` given, e.g. messages per session): each unit's value is replaced by its delta-method
  linearisation ``z_i = R_a + (y_i - R_a d_i) / mean(d)_a`` in its arm ``a``, where ``R_a = sum(y)/sum(d)``; the
  arm mean of ``z`` is ``R_a`` and ``var(z)/n`` is the delta-method variance of ``R_a``.
* **CUPED** (``x_pre`` given): the covariate enters the regression centred, with a common slope (the within-arm
  pooled theta). Units without history (``x_pre`` NaN) get ``x = 0`` and a centred missing-history indicator of
  their own (the CUPED++ fallback: they are adjusted by their own intercept, never dropped). The covariance is HC2
  (or CR1 with clusters) of that regression, so the uncertainty of theta is counted.
* **clusters** (``cluster`` given): CR1 cluster-robust covariance as statsmodels computes it,
  ``G/(G-1) · (N-1)/(N-K) · (X'X)⁻¹ Σ_g X_g'e_g e_g'X_g (X'X)⁻¹``.

With CUPED or clusters the fixed-horizon interval uses the normal distribution (as statsmodels' robust covariances
do by default).

**Always-valid interval** (safe to read every day): the two-sided normal-mixture confidence sequence of Howard et
al. (2021, eq. 14), in the form GrowthBook calls GAVI: with ``N = n_t + n_c`` and ``σ² = se² · N``,

    half-width = σ · sqrt( 2 (N ρ² + 1) / (N² ρ²) · log( sqrt(N ρ² + 1) / α ) ),
    ρ = sqrt( (-2 log α + log(-2 log α + 1)) / n_tune ).

``n_tune`` is the tuning parameter: the total sample size at which the sequence is tightest (GrowthBook's default
is 5,000). Set it near the number of units expected at the end of the experiment; a wrong guess costs width, never
validity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from belong.errors import ValidationError

SRM_THRESHOLD = 0.001
DEFAULT_N_TUNE = 5000.0


@dataclass(frozen=True)
class ArmEffect:
    """One non-control arm against control. ``mean``/``control_mean`` are the raw arm means (ratios for ratio
    metrics); ``effect`` and its intervals are CUPED-adjusted when ``cuped_used``; ``variance_reduction`` is
    ``1 - var(adjusted effect) / var(unadjusted effect)`` (None without a covariate)."""

    arm: str
    n: int
    mean: float
    control_mean: float
    effect: float
    rel_effect: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    av_ci_low: float
    av_ci_high: float
    cuped_used: bool
    variance_reduction: float | None
    control_n: int = 0
    se_unadjusted: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio mismatch: Pearson chi-square of the observed arm counts against the declared weights."""

    chi2: float
    p_value: float
    flagged: bool
    expected: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# building blocks (vectorised where the simulations need them)


def gavi_halfwidth(se: np.ndarray | float, n: np.ndarray | float, alpha: float = 0.05,
                   n_tune: float = DEFAULT_N_TUNE) -> np.ndarray:
    """Half-width of the always-valid (normal-mixture) interval for an estimate with standard error ``se`` from
    ``n`` units in all (both arms). Vectorised over ``se`` and ``n``."""
    se_a = np.asarray(se, dtype=float)
    n_a = np.asarray(n, dtype=float)
    la = -2.0 * math.log(alpha)
    rho2 = (la + math.log(la + 1.0)) / float(n_tune)
    sigma = se_a * np.sqrt(n_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = 2.0 * (n_a * rho2 + 1.0) / (n_a * n_a * rho2) * np.log(np.sqrt(n_a * rho2 + 1.0) / alpha)
        return np.asarray(sigma * np.sqrt(inner))


ArrayLike = np.ndarray | float | int


def welch(mean_t: ArrayLike, var_t: ArrayLike, n_t: ArrayLike, mean_c: ArrayLike, var_c: ArrayLike,
          n_c: ArrayLike, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Welch's unequal-variance test from summary statistics (sample variances with ddof=1), vectorised:
    effect, se, df, p-value and the fixed-horizon interval."""
    a = np.asarray(var_t, dtype=float) / n_t
    b = np.asarray(var_c, dtype=float) / n_c
    se = np.sqrt(a + b)
    effect = np.asarray(mean_t, dtype=float) - mean_c
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (a + b) ** 2 / (a * a / (np.asarray(n_t) - 1) + b * b / (np.asarray(n_c) - 1))
        t = effect / se
    p = 2.0 * sps.t.sf(np.abs(t), df)
    q = sps.t.ppf(1.0 - alpha / 2.0, df)
    return {"effect": effect, "se": se, "df": df, "p_value": p, "ci_low": effect - q * se, "ci_high": effect + q * se}


def _hc2_batch(cols: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient 1 and its HC2 standard error of the OLS of ``y`` on ``cols``, for many runs at once: every array
    (runs, units); written with column products (k is small) instead of stacked matrices, which numpy multiplies
    slowly."""
    k = len(cols)
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    prod = {(i, j): cols[i] * cols[j] for i, j in pairs}
    xtx = np.empty((y.shape[0], k, k))
    for (i, j), p in prod.items():
        xtx[:, i, j] = xtx[:, j, i] = p.sum(axis=1)
    inv = np.linalg.pinv(xtx, hermitian=True)
    xty = np.stack([(c * y).sum(axis=1) for c in cols], axis=1)
    beta = (inv @ xty[:, :, None])[:, :, 0]
    e = y - sum(beta[:, i, None] * cols[i] for i in range(k))
    h = sum((1.0 if i == j else 2.0) * inv[:, i, j, None] * p for (i, j), p in prod.items())
    w = e * e / np.clip(1.0 - h, 1e-12, None)
    meat = np.empty_like(xtx)
    for (i, j), p in prod.items():
        meat[:, i, j] = meat[:, j, i] = (w * p).sum(axis=1)
    cov = inv @ meat @ inv
    return beta[:, 1], np.sqrt(np.maximum(cov[:, 1, 1], 0.0))


def cuped_batch(y: np.ndarray, treat: np.ndarray, x: np.ndarray, mask: np.ndarray, *,
                unadjusted: bool = True) -> dict[str, np.ndarray]:
    """The CUPED estimate of :func:`compare` (HC2, missing-history indicator) for many experiments at once: arrays
    (runs, units), ``mask`` the units each run includes. Returns effect and se per run (and the unadjusted ones).
    Runs where nobody has history (or every unit is missing history) get the zero column's coefficient 0, so their
    effect and se are the plain ones (``compare`` then reports ``cuped_used`` False)."""
    m = mask.astype(float)
    n = m.sum(axis=1, keepdims=True)
    have = np.isfinite(x) & mask
    xf = np.where(have, x, 0.0)
    miss = (~np.isfinite(x) & mask).astype(float)
    cols = [m, treat * m, (xf - (xf * m).sum(axis=1, keepdims=True) / n) * m,
            (miss - miss.sum(axis=1, keepdims=True) / n) * m]
    yv = np.where(mask, y, 0.0)
    effect, se = _hc2_batch(cols, yv)
    out = {"effect": effect, "se": se}
    if unadjusted:
        out["effect_unadjusted"], out["se_unadjusted"] = _hc2_batch(cols[:2], yv)
    return out


def _sandwich(X: np.ndarray, y: np.ndarray, cluster: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and their HC2 (no clusters) or CR1 (clusters) covariance."""
    XtX_inv = np.linalg.pinv(X.T @ X)
    beta = XtX_inv @ (X.T @ y)
    e = y - X @ beta
    n, k = X.shape
    if cluster is None:
        h = np.einsum("ij,jk,ik->i", X, XtX_inv, X)
        w = e * e / np.clip(1.0 - h, 1e-12, None)
        meat = (X * w[:, None]).T @ X
        return beta, XtX_inv @ meat @ XtX_inv
    _, g = np.unique(cluster, return_inverse=True)
    G = int(g.max()) + 1
    scores = np.zeros((G, k))
    np.add.at(scores, g, X * e[:, None])
    meat = scores.T @ scores
    corr = G / (G - 1) * (n - 1) / (n - k) if G > 1 else float("nan")
    return beta, corr * (XtX_inv @ meat @ XtX_inv)


def linearise_ratio(y: np.ndarray, denom: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Delta-method linearisation of a ratio metric ``sum(y)/sum(denom)`` per group: ``z`` whose group mean is the
    group's ratio and whose sample variance over ``n`` is its delta-method variance."""
    z = np.empty_like(y, dtype=float)
    for gv in np.unique(groups):
        m = groups == gv
        dbar = float(denom[m].mean())
        if dbar == 0.0:
            raise ValidationError("denom", f"the denominator sums to zero in arm {gv!r}")
        r = float(y[m].sum()) / float(denom[m].sum())
        z[m] = r + (y[m] - r * denom[m]) / dbar
    return z


# ---------------------------------------------------------------------------------------------------------------
# the public interface


def _as_1d(name: str, a: Any, n: int | None, dtype: Any = float) -> np.ndarray:
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim != 1:
        raise ValidationError(name, f"must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValidationError(name, f"has {arr.shape[0]} values, y has {n}")
    return arr


def compare(y: np.ndarray, arm: np.ndarray, *, control: str, x_pre: np.ndarray | None = None,
            denom: np.ndarray | None = None, cluster: np.ndarray | None = None, alpha: float = 0.05,
            n_tune: float = DEFAULT_N_TUNE) -> list[ArmEffect]:
    """Each non-control arm against ``control`` (arms in sorted order). See the module docstring for the
    estimators; ``n_tune`` is the always-valid interval's tuning parameter."""
    yv = _as_1d("y", y, None)
    n = yv.shape[0]
    arms = _as_1d("arm", arm, n, dtype=object).astype(str)
    if not np.all(np.isfinite(yv)):
        raise ValidationError("y", "has NaN or infinite values")
    if not 0.0 < alpha < 1.0:
        raise ValidationError("alpha", f"must be in (0, 1), got {alpha}")
    if n_tune <= 0:
        raise ValidationError("n_tune", "must be positive")
    d = None
    if denom is not None:
        d = _as_1d("denom", denom, n)
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValidationError("denom", "must be finite and non-negative")
    x = _as_1d("x_pre", x_pre, n) if x_pre is not None else None
    cl = _as_1d("cluster", cluster, n, dtype=object).astype(str) if cluster is not None else None
    names = sorted(set(arms.tolist()))
    if control not in names:
        raise ValidationError("control", f"arm {control!r} has no units (arms seen: {names})")
    if len(names) < 2:
        raise ValidationError("arm", "needs at least one arm besides control")
    z_all = linearise_ratio(yv, d, arms) if d is not None else yv
    out = []
    for name in names:
        if name == control:
            continue
        m = (arms == name) | (arms == control)
        out.append(_compare_pair(name, control, arms[m] == name, yv[m], z_all[m],
                                 None if d is None else d[m], None if x is None else x[m],
                                 None if cl is None else cl[m], alpha, n_tune))
    return out


def _compare_pair(name: str, control: str, t: np.ndarray, y: np.ndarray, z: np.ndarray, d: np.ndarray | None,
                  x: np.ndarray | None, cl: np.ndarray | None, alpha: float, n_tune: float) -> ArmEffect:
    n_t, n_c = int(t.sum()), int((~t).sum())
    if n_t < 2 or n_c < 2:
        raise ValidationError("arm", f"arms {name!r} and {control!r} need at least 2 units each ({n_t}, {n_c})")
    if d is None:
        mean_t, mean_c = float(y[t].mean()), float(y[~t].mean())
    else:
        mean_t, mean_c = float(y[t].sum() / d[t].sum()), float(y[~t].sum() / d[~t].sum())
    tf = t.astype(float)
    X0 = np.column_stack([np.ones_like(tf), tf])
    beta0, cov0 = _sandwich(X0, z, cl)
    se0 = math.sqrt(max(cov0[1, 1], 0.0))
    effect, se = float(beta0[1]), se0
    cuped_used, vr = False, None
    X = _cuped_design(x, X0)
    if X is not None:
        beta, cov = _sandwich(X, z, cl)
        effect, se = float(beta[1]), math.sqrt(max(cov[1, 1], 0.0))
        cuped_used = True
        vr = 1.0 - (se * se) / (se0 * se0) if se0 > 0 else None
    if np.ptp(z[t]) == 0 and np.ptp(z[~t]) == 0:
        se = 0.0  # not the rounding residue of the sandwich
        vr = None
    if se == 0.0:  # no variation in either arm (e.g. a guardrail nobody triggered): the difference is exact
        p, lo, hi = (1.0 if effect == 0 else 0.0), effect, effect
    elif cl is None and not cuped_used:
        w = welch(np.mean(z[t]), np.var(z[t], ddof=1), n_t, np.mean(z[~t]), np.var(z[~t], ddof=1), n_c, alpha)
        p, lo, hi = float(w["p_value"]), float(w["ci_low"]), float(w["ci_high"])
    else:
        q = float(sps.norm.ppf(1.0 - alpha / 2.0))
        p = float(2.0 * sps.norm.sf(abs(effect) / se))
        lo, hi = effect - q * se, effect + q * se
    hw = float(gavi_halfwidth(se, n_t + n_c, alpha, n_tune))
    rel = effect / mean_c if mean_c != 0 else float("nan")
    return ArmEffect(arm=name, n=n_t, mean=mean_t, control_mean=mean_c, effect=effect, rel_effect=rel, se=se,
                     ci_low=lo, ci_high=hi, p_value=p, av_ci_low=effect - hw, av_ci_high=effect + hw,
                     cuped_used=cuped_used, variance_reduction=vr, control_n=n_c,
                     se_unadjusted=se0 if cuped_used else None)


def _cuped_design(x: np.ndarray | None, X0: np.ndarray) -> np.ndarray | None:
    """``[1, arm, x - mean(x), missing - mean(missing)]`` (the last only when some units have no history);
    None when the covariate carries no information (all missing or constant among units with history)."""
    if x is None:
        return None
    have = np.isfinite(x)
    if have.sum() < 2 or float(np.var(x[have])) == 0.0:
        return None
    xf = np.where(have, x, 0.0)
    cols = [X0, (xf - xf.mean())[:, None]]
    if not have.all():
        miss = (~have).astype(float)
        cols.append((miss - miss.mean())[:, None])
    return np.column_stack(cols)


def srm(counts: dict[str, int], weights: dict[str, float]) -> SrmResult:
    """Pearson chi-square of observed units per arm against the declared allocation; flagged at p < 0.001."""
    if not weights:
        raise ValidationError("weights", "no arms declared")
    unknown = sorted(set(counts) - set(weights))
    if unknown:
        raise ValidationError("counts", f"arms not declared in the allocation: {unknown}")
    for k, w in weights.items():
        if not (w >= 0 and math.isfinite(w)):
            raise ValidationError(f"weights.{k}", f"must be a non-negative number, got {w}")
    for k, c in counts.items():
        if c < 0:
            raise ValidationError(f"counts.{k}", f"must be non-negative, got {c}")
    names = [k for k in sorted(weights) if weights[k] > 0]
    if len(names) < 2:
        raise ValidationError("weights", "needs at least two arms with positive weight")
    total_w = sum(weights[k] for k in names)
    obs = np.array([float(counts.get(k, 0)) for k in names])
    total = obs.sum()
    zero_w = [k for k in counts if weights.get(k, 0) == 0 and counts[k] > 0]
    if total == 0:
        return SrmResult(chi2=0.0, p_value=1.0, flagged=False, expected={k: 0.0 for k in names})
    exp = np.array([weights[k] / total_w for k in names]) * total
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p = float(sps.chi2.sf(chi2, len(names) - 1))
    if zero_w:  # units in an arm declared at weight 0 is a mismatch whatever the others say
        p = 0.0
    return SrmResult(chi2=chi2, p_value=p, flagged=p < SRM_THRESHOLD,
                     expected={k: float(e) for k, e in zip(names, exp, strict=True)})
