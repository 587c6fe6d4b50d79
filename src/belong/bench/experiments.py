"""``belong bench experiments``: the statistics of ``belong.experiments.stats`` on many simulated experiments whose
truth is known: A/A false-positive rates (fixed horizon read once, always-valid read daily, naive daily fixed
horizon), the power of each method on an A/B with a planted effect, SRM on true and skewed splits, and CUPED's
variance reduction.

The generative model (one run = one experiment, units are users; the truth is stated in the JSON):

* each user has a base activity ``λ_i ~ LogNormal(0, sigma)`` messages per day (heavy-tailed: a few users send most
  messages) and a post-period drift ``λ'_i = λ_i · LogNormal(0, drift)`` (the pre-period predicts, not perfectly);
* ``history`` of the users (chosen at random) have a 28-day pre-exposure period: ``x_i ~ Poisson(28 λ_i)``; the
  others are new (``x_i`` missing: CUPED's fallback);
* a user is exposed at their first request: day 0 for ``day0`` of them, otherwise a uniform day in [1, days);
* from exposure on, messages per day ``~ Poisson(λ'_i · (1 + effect · treated_i))``;
* the metric read on day ``d`` is each exposed user's messages since exposure (cumulative), arms by a fair coin
  (or ``p=0.52`` for the SRM skew);
* so the true absolute effect at the end is ``effect · E[λ'] · E[days exposed]`` (0 for the A/A runs).

Daily readings are vectorised over runs and days with the same functions ``compare`` uses (``welch``,
``gavi_halfwidth``, and ``cuped_batch``, the vectorised twin of its CUPED estimator); CUPED's figures at the end
(variance reduction, widths) come from ``compare`` itself, one call per run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scipy import stats as sps

from belong.experiments.stats import compare, cuped_batch, gavi_halfwidth, srm, welch

PRE_DAYS = 28


def _simulate(rng: np.random.Generator, runs: int, users: int, days: int, effect: float, sigma: float,
              drift: float, history: float, day0: float, p_treat: float = 0.5) -> dict[str, np.ndarray]:
    lam = rng.lognormal(0.0, sigma, (runs, users))
    post = lam * rng.lognormal(0.0, drift, (runs, users))
    x = rng.poisson(PRE_DAYS * lam).astype(float)
    x[rng.random((runs, users)) >= history] = np.nan
    arrive = np.where(rng.random((runs, users)) < day0, 0, rng.integers(1, max(days, 2), (runs, users)))
    treat = rng.random((runs, users)) < p_treat
    rate = post * (1.0 + effect * treat)
    day = np.arange(days)
    exposed = arrive[:, :, None] <= day[None, None, :]
    daily = rng.poisson(rate[:, :, None] * exposed)  # zero before exposure
    return {"y": np.cumsum(daily, axis=2, dtype=np.float64), "exposed": exposed, "treat": treat, "x": x}


def _daily_readings(sim: dict[str, np.ndarray], alpha: float, n_tune: float) -> dict[str, np.ndarray]:
    """Welch and always-valid readings for every run and day: arrays (runs, days)."""
    y, e, t = sim["y"], sim["exposed"], sim["treat"][:, :, None]
    stats = {}
    for name, m in (("t", e & t), ("c", e & ~t)):
        n = m.sum(axis=1).astype(float)
        s1 = (y * m).sum(axis=1)
        s2 = (y * y * m).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s1 / n
            var = np.maximum(s2 - s1 * mean, 0.0) / (n - 1)
        stats[name] = (mean, var, n)
    w = welch(*stats["t"], *stats["c"], alpha=alpha)
    n_all = stats["t"][2] + stats["c"][2]
    hw = gavi_halfwidth(w["se"], n_all, alpha, n_tune)
    # CUPED read every day too (the same estimator as compare, vectorised over runs)
    z = float(sps.norm.ppf(1.0 - alpha / 2.0))
    cu_fixed = np.zeros_like(hw, dtype=bool)
    cu_av = np.zeros_like(hw, dtype=bool)
    for d in range(y.shape[2]):
        cb = cuped_batch(y[:, :, d], sim["treat"], sim["x"], e[:, :, d], unadjusted=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            cu_fixed[:, d] = np.abs(cb["effect"]) > z * cb["se"]
            cu_av[:, d] = np.abs(cb["effect"]) > gavi_halfwidth(cb["se"], n_all[:, d], alpha, n_tune)
    return {"effect": w["effect"], "fixed_reject": w["p_value"] < alpha,
            "av_excludes": np.abs(w["effect"]) > hw, "n": n_all,
            "n_t": stats["t"][2], "n_c": stats["c"][2], "ci_width": w["ci_high"] - w["ci_low"],
            "cuped_fixed_reject": cu_fixed, "cuped_av_excludes": cu_av}


def _final_cuped(sim: dict[str, np.ndarray], alpha: float, n_tune: float) -> dict[str, np.ndarray]:
    runs = sim["y"].shape[0]
    out = {k: np.zeros(runs) for k in ("reject", "av_excludes", "vr", "width_before", "width_after", "effect")}
    q = 2.0 * 1.959963984540054
    for r in range(runs):
        m = sim["exposed"][r, :, -1]
        arm = np.where(sim["treat"][r, m], "treatment", "control")
        (res,) = compare(sim["y"][r, m, -1], arm, control="control", x_pre=sim["x"][r, m], alpha=alpha,
                         n_tune=n_tune)
        out["reject"][r] = res.p_value < alpha
        out["av_excludes"][r] = res.av_ci_low > 0 or res.av_ci_high < 0
        out["vr"][r] = res.variance_reduction if res.variance_reduction is not None else 0.0
        out["width_before"][r] = q * (res.se_unadjusted or res.se)
        out["width_after"][r] = q * res.se
        out["effect"][r] = res.effect
    return out


def _run_block(rng: np.random.Generator, runs: int, users: int, days: int, effect: float, chunk: int,
               params: dict[str, float], alpha: float, n_tune: float, progress: Progress | None,
               label: str) -> dict[str, np.ndarray]:
    parts: list[dict[str, np.ndarray]] = []
    task = progress.add_task(label, total=runs) if progress is not None else None
    done = 0
    while done < runs:
        k = min(chunk, runs - done)
        sim = _simulate(rng, k, users, days, effect, **params)
        d = _daily_readings(sim, alpha, n_tune)
        c = _final_cuped(sim, alpha, n_tune)
        parts.append({**{f"daily_{a}": b for a, b in d.items()}, **{f"cuped_{a}": b for a, b in c.items()}})
        done += k
        if progress is not None and task is not None:
            progress.advance(task, k)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _rates(b: dict[str, np.ndarray]) -> dict[str, float]:
    fixed_end = b["daily_fixed_reject"][:, -1]
    return {
        "fixed_horizon_read_once_at_end": float(fixed_end.mean()),
        "always_valid_read_daily_ever_excludes_0": float(b["daily_av_excludes"].any(axis=1).mean()),
        "naive_fixed_horizon_read_daily_ever_rejects": float(b["daily_fixed_reject"].any(axis=1).mean()),
        "always_valid_read_once_at_end": float(b["daily_av_excludes"][:, -1].mean()),
        "cuped_fixed_horizon_at_end": float(b["cuped_reject"].mean()),
        "cuped_always_valid_at_end": float(b["cuped_av_excludes"].mean()),
        "cuped_always_valid_read_daily_ever_excludes_0": float(b["daily_cuped_av_excludes"].any(axis=1).mean()),
        "cuped_naive_fixed_horizon_read_daily_ever_rejects": float(b["daily_cuped_fixed_reject"].any(axis=1).mean()),
    }


def _by_day(b: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Share of runs that have rejected (or excluded 0) on or before each day, per way of reading."""
    def ever(key: str) -> list[float]:
        return [round(float(v), 4) for v in np.logical_or.accumulate(b[key], axis=1).mean(axis=0)]

    return {"naive_fixed_horizon": ever("daily_fixed_reject"), "always_valid": ever("daily_av_excludes"),
            "cuped_naive_fixed_horizon": ever("daily_cuped_fixed_reject"),
            "cuped_always_valid": ever("daily_cuped_av_excludes"),
            "fixed_horizon_that_day": [round(float(v), 4) for v in b["daily_fixed_reject"].mean(axis=0)]}


def _srm_block(rng: np.random.Generator, runs: int, sizes: list[int]) -> dict[str, Any]:
    rows = []
    for n in sizes:
        fair = rng.binomial(n, 0.5, runs)
        skew = rng.binomial(n, 0.52, runs)
        w = {"control": 0.5, "treatment": 0.5}
        fair_flag = np.mean([srm({"control": int(n - a), "treatment": int(a)}, w).flagged for a in fair])
        skew_flag = np.mean([srm({"control": int(n - a), "treatment": int(a)}, w).flagged for a in skew])
        exact = srm({"control": int(round(0.48 * n)), "treatment": n - int(round(0.48 * n))}, w)
        rows.append({"exposures": n, "true_50_50_not_flagged": float(1.0 - fair_flag),
                     "assigned_52_48_flagged": float(skew_flag),
                     "exact_52_48_split": {"chi2": round(exact.chi2, 3), "p_value": exact.p_value,
                                           "flagged": exact.flagged}})
    return {"threshold_p": 0.001, "runs": runs, "by_exposures": rows}


def cuped_on_simulated_world(n_users: int = 10_000, n_communities: int = 400, *, days: int = 28, splits: int = 50,
                             seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """CUPED on belong's own simulator (:func:`belong.simulate.simulate_world`): messages per user in the last
    ``days`` days (the experiment) with the ``days`` before as the pre-period (NaN for users whose first event
    comes later: the fallback), over ``splits`` random 50/50 assignments analysed by :func:`compare`."""
    import pandas as pd

    from belong.simulate import simulate_world

    world = simulate_world(n_users, n_communities, seed=seed)
    ev = world.events
    ids = world.users.column("id").to_pylist()
    index = pd.Index(ids)
    ts = ev.column("ts_us").to_numpy()
    actor = index.get_indexer(pd.Series(ev.column("actor").to_pylist(), dtype=object))
    is_msg = np.asarray(ev.column("type").to_pylist(), dtype=object) == "message"
    end = int(ts.max())
    start = end - days * 86_400_000_000
    pre_start = start - days * 86_400_000_000
    ok = actor >= 0
    first = np.full(len(ids), np.iinfo(np.int64).max)
    np.minimum.at(first, actor[ok], ts[ok])
    post = ok & is_msg & (ts >= start)
    pre = ok & is_msg & (ts >= pre_start) & (ts < start)
    y = np.bincount(actor[post], minlength=len(ids)).astype(float)
    x = np.bincount(actor[pre], minlength=len(ids)).astype(float)
    x[first >= pre_start] = np.nan  # no history before the pre-period began
    rng = np.random.default_rng(seed)
    vr, before, after = [], [], []
    q = 2.0 * float(sps.norm.ppf(1.0 - alpha / 2.0))
    for _ in range(splits):
        arm = np.where(rng.random(len(ids)) < 0.5, "treatment", "control")
        (res,) = compare(y, arm, control="control", x_pre=x, alpha=alpha)
        vr.append(res.variance_reduction or 0.0)
        before.append(q * (res.se_unadjusted or res.se))
        after.append(q * res.se)
    have = np.isfinite(x)
    return {"world": {"users": n_users, "communities": n_communities, "seed": seed, "simulated_days":
                      round((end - int(ts.min())) / 86_400_000_000, 1)},
            "metric": f"messages per user in the last {days} days", "pre_period_days": days,
            "users_with_history": round(float(have.mean()), 4), "mean_messages": round(float(y.mean()), 4),
            "pre_post_correlation": round(float(np.corrcoef(x[have], y[have])[0, 1]), 4),
            "splits": splits, "variance_reduction_mean": round(float(np.mean(vr)), 4),
            "ci_width_before_mean": round(float(np.mean(before)), 4),
            "ci_width_after_mean": round(float(np.mean(after)), 4), "goal": 0.30,
            "pass": bool(np.mean(vr) >= 0.30)}


def bench_experiments(runs: int = 500, days: int = 28, users: int = 4000, *, effect: float = 0.15,
                      sigma: float = 1.2, drift: float = 0.4, history: float = 0.8, day0: float = 0.5,
                      alpha: float = 0.05, n_tune: float | None = None, chunk: int = 25, seed: int = 0,
                      srm_sizes: tuple[int, ...] = (4000, 10000, 20000, 50000), world_users: int = 10_000,
                      console: Console | None = None) -> dict[str, Any]:
    """The done-when figures of the experiments issue. ``n_tune`` defaults to the expected number of exposed users
    at the end (the always-valid interval is tightest there)."""
    console = console or Console(stderr=True)
    rng = np.random.default_rng(seed)
    exposed_share = day0 + (1 - day0) * (days - 1) / max(days - 1, 1) if days > 1 else 1.0
    n_tune = float(n_tune if n_tune is not None else users * exposed_share)
    params = {"sigma": sigma, "drift": drift, "history": history, "day0": day0}
    t0, c0 = time.perf_counter(), time.process_time()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        aa = _run_block(rng, runs, users, days, 0.0, chunk, params, alpha, n_tune, progress, "A/A runs")
        ab = _run_block(rng, runs, users, days, effect, chunk, params, alpha, n_tune, progress, "A/B runs")
    sim_s, sim_cpu = time.perf_counter() - t0, time.process_time() - c0
    srm_out = _srm_block(rng, runs, list(srm_sizes))
    # SRM on the simulated A/A runs themselves (declared 50/50, exposures at the end)
    aa_srm = [srm({"control": int(c), "treatment": int(t)}, {"control": 0.5, "treatment": 0.5}).flagged
              for c, t in zip(aa["daily_n_c"][:, -1], aa["daily_n_t"][:, -1], strict=True)]
    srm_out["aa_runs_not_flagged"] = float(1.0 - np.mean(aa_srm))
    world_cuped = cuped_on_simulated_world(world_users, seed=seed) if world_users else None

    # truth: E[days exposed] for the arrival model, E[λ'] = exp(σ²/2 + drift²/2)
    mean_window = day0 * days + (1 - day0) * float(np.mean(days - np.arange(1, max(days, 2))))
    mean_rate = math.exp(sigma**2 / 2 + drift**2 / 2)
    true_abs = effect * mean_rate * mean_window
    aa_rates, ab_rates = _rates(aa), _rates(ab)
    first_day = np.where(ab["daily_av_excludes"].any(axis=1), ab["daily_av_excludes"].argmax(axis=1) + 1, -1)
    detected = first_day[first_day > 0]
    ab_end = ab["daily_effect"][:, -1]
    return {
        "model": {"units": "users", "users_per_run": users, "days": days, "runs": runs, "alpha": alpha,
                  "activity": f"lambda ~ LogNormal(0, {sigma}) messages/day; post-period drift LogNormal(0, {drift})",
                  "pre_period": f"{PRE_DAYS} days, x ~ Poisson({PRE_DAYS} lambda) for {history:.0%} of users "
                                "(the rest have no history)",
                  "exposure": f"{day0:.0%} on day 0, the rest uniform over days 1..{days - 1}",
                  "metric": "messages per user since exposure, cumulative, read at the end of each day",
                  "always_valid": {"method": "normal-mixture confidence sequence (Howard et al. 2021; GAVI)",
                                   "n_tune": n_tune},
                  "seed": seed},
        "aa": {**aa_rates, "truth": "no effect", "ever_rejected_by_day": _by_day(aa),
               "targets": {"fixed_horizon_read_once_at_end": [0.03, 0.07],
                           "always_valid_read_daily_ever_excludes_0": "<= 0.05"},
               "pass": {"fixed_horizon_read_once_at_end":
                        0.03 <= aa_rates["fixed_horizon_read_once_at_end"] <= 0.07,
                        "always_valid_read_daily_ever_excludes_0":
                        aa_rates["always_valid_read_daily_ever_excludes_0"] <= 0.05}},
        "ab": {"planted_relative_effect": effect, "true_absolute_effect_at_end": round(true_abs, 4),
               "mean_estimated_effect_at_end": round(float(ab_end.mean()), 4),
               "mean_cuped_estimate_at_end": round(float(ab["cuped_effect"].mean()), 4),
               "power": ab_rates, "detected_by_day": _by_day(ab),
               "always_valid_first_detection_day_median": float(np.median(detected)) if detected.size else None},
        "srm": srm_out,
        "cuped": {"metric": "messages per user since exposure, at the end",
                  "covariate": f"messages in the {PRE_DAYS}-day pre-exposure window (missing-history indicator "
                               "for new users)",
                  "variance_reduction_mean": round(float(aa["cuped_vr"].mean()), 4),
                  "variance_reduction_p05": round(float(np.percentile(aa["cuped_vr"], 5)), 4),
                  "ci_width_before_mean": round(float(aa["cuped_width_before"].mean()), 4),
                  "ci_width_after_mean": round(float(aa["cuped_width_after"].mean()), 4),
                  "goal": 0.30, "pass": bool(aa["cuped_vr"].mean() >= 0.30),
                  "simulated_world": world_cuped},
        "seconds": {"simulation_and_analysis": round(sim_s, 2), "simulation_and_analysis_cpu": round(sim_cpu, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
