"""``belong experiment analyze``: the per-unit table of every metric (:mod:`belong.experiments.metrics`), read by
the estimators of :mod:`belong.experiments.stats` (difference in means, delta method for ratio metrics, CUPED with
its fallback, fixed-horizon and always-valid intervals, cluster-robust errors for cluster experiments) and the SRM
check, at the end and at the end of every day since the start (cumulative: what a daily reader saw)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from belong.domain import us_to_iso
from belong.errors import ValidationError
from belong.experiments.declaration import METRICS
from belong.experiments.metrics import DAY_US, PRE_WINDOW_US, MetricData, UnitTable, read_events
from belong.experiments.store import Experiment, Exposure, open_experiments

MAX_DAYS = 120


def as_dict(obj: Any) -> dict[str, Any]:
    """A result record (msgspec Struct, dataclass or named tuple) as a plain dict."""
    if hasattr(obj, "__struct_fields__"):
        return {f: getattr(obj, f) for f in obj.__struct_fields__}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    return dict(obj)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def compare_table(table: UnitTable, exp: Experiment, metrics: list[str], alpha: float,
                  skipped: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """Each metric's effects (one per non-control arm) on ``table``. A metric is left empty while an arm has
    fewer than 2 units, or when the estimator refuses the data (a ratio metric whose denominator is zero in an
    arm): the reason goes to ``skipped``."""
    from belong.experiments.stats import compare

    decl = exp.declaration
    arms = np.asarray(table.arms, dtype=object).astype(str)
    counts = {a.name: int((arms == a.name).sum()) for a in decl.arms}
    out: dict[str, list[dict]] = {}
    cluster = np.asarray(table.units, dtype=object).astype(str) if decl.unit == "cluster" else None
    for metric in metrics:
        out[metric] = []
        if min(counts.values()) < 2:
            if skipped is not None:
                skipped[metric] = "fewer than 2 units in an arm"
            continue
        y, denom, x_pre = table.values(metric)
        try:
            effects = compare(y, arms, control=decl.control, x_pre=x_pre, denom=denom, cluster=cluster,
                              alpha=alpha)
        except ValidationError as exc:
            if skipped is not None:
                skipped[metric] = str(exc)
            continue
        out[metric] = [_clean(as_dict(e)) for e in effects]
    return out


def srm_check(table: UnitTable, exp: Experiment) -> dict[str, Any]:
    """Sample-ratio mismatch: randomisation units per arm against the declared weights."""
    from belong.experiments.stats import srm

    decl = exp.declaration
    units: dict[str, set[str]] = {a.name: set() for a in decl.arms}
    for arm, unit in zip(table.arms, table.units, strict=True):
        units.setdefault(str(arm), set()).add(str(unit))
    counts = {a: len(u) for a, u in units.items()}
    weights = {a.name: a.weight for a in decl.arms}
    if sum(counts.values()) == 0:
        return {"counts": counts, "chi2": None, "p_value": None, "flagged": False}
    return _clean({"counts": counts, **as_dict(srm(counts, weights))})


def analyze(store_spec: str, name: str, *, as_of_us: int | None = None, alpha: float = 0.05,
            daily: bool = True) -> dict[str, Any]:
    """The analysis of experiment ``name`` as of ``as_of_us`` (default: now, or its stop when earlier)."""
    with open_experiments(store_spec) as store:
        exp = store.get(name)
        exposures = store.exposures(name)
    decl = exp.declaration
    end = as_of_us if as_of_us is not None else time.time_ns() // 1000
    if decl.stop_us is not None:
        end = min(end, decl.stop_us)
    exposures = [e for e in exposures if e.ts_us < end]
    first = min((e.ts_us for e in exposures), default=decl.start_us)
    events = read_events(store_spec, min(first, decl.start_us) - PRE_WINDOW_US, end)
    data = MetricData(events, exposures)
    metrics = [*decl.metrics, *[m for m in METRICS if m not in decl.metrics]]
    table = data.table(end)
    out: dict[str, Any] = {
        "experiment": name, "version": exp.version, "status": exp.status, "unit": decl.unit,
        "control": decl.control, "primary_metric": decl.primary_metric, "guardrails": list(decl.guardrails),
        "start": us_to_iso(decl.start_us), "as_of": us_to_iso(end), "alpha": alpha,
        "arms": _arms(exp, table, exposures),
        "srm": srm_check(table, exp),
    }
    skipped: dict[str, str] = {}
    out["metrics"] = compare_table(table, exp, metrics, alpha, skipped)
    out["skipped_metrics"] = skipped
    if daily:  # days from the first exposure (or the start, when later); the last MAX_DAYS of them
        days = []
        origin = max(decl.start_us, first)
        n_days = max(1, -(-(end - origin) // DAY_US))
        for d in range(max(0, n_days - MAX_DAYS), n_days):
            cut = min(end, origin + (d + 1) * DAY_US)
            t = data.table(cut)
            day_skipped: dict[str, str] = {}
            days.append({"day": d + 1, "end": us_to_iso(cut), "arms": _arms(exp, t, exposures, cut),
                         "metrics": compare_table(t, exp, metrics, alpha, day_skipped),
                         "skipped_metrics": day_skipped})
        out["days"] = days
    return out


def _arms(exp: Experiment, table: UnitTable, exposures: list[Exposure], cut: int | None = None) -> list[dict]:
    arms = np.asarray(table.arms, dtype=object).astype(str)
    served: dict[str, int] = {}
    for e in exposures:
        if cut is None or e.ts_us < cut:
            served[e.arm] = served.get(e.arm, 0) + 1
    return [{"arm": a.name, "weight": a.weight, "users": int((arms == a.name).sum()),
             "units": len({str(u) for u, x in zip(table.units, arms, strict=True) if x == a.name}),
             "exposures": served.get(a.name, 0)} for a in exp.declaration.arms]
