"""What the Experiments page shows, from the experiment store and the analysis
(:func:`belong.experiments.analyze.analyze`, the same as ``GET /v1/experiments/{name}/results``): each experiment's
arms and exposures, each metric's effect with its fixed-horizon and always-valid intervals at the end and per day,
the SRM check, and the guardrail flags. No HTTP here."""

from __future__ import annotations

from typing import Any

#: a guardrail metric (reports, blocks) is flagged for an arm when its fixed-horizon interval lies entirely above
#: zero: the arm raises it, with the analysis' confidence
GUARDRAIL_RULE = "the arm's fixed-horizon interval on the guardrail lies entirely above zero (the arm raises it)"


def listing(experiments: list[Any], now_us: int) -> list[dict[str, Any]]:
    """One row per experiment: name, surface, status (running now, scheduled, stopped), arms and their weights."""
    rows = []
    for exp in sorted(experiments, key=lambda e: (e.status != "running", e.name)):
        d = exp.declaration
        state = exp.status
        if state == "running" and not exp.running(now_us):
            state = "scheduled" if d.start_us > now_us else "ended"
        rows.append({"name": exp.name, "surface": d.surface, "status": exp.status, "state": state,
                     "version": exp.version, "unit": d.unit, "primary_metric": d.primary_metric,
                     "guardrails": list(d.guardrails), "layer": d.layer, "layer_range": list(exp.layer_range),
                     "arms": [{"name": a.name, "weight": a.weight} for a in d.arms],
                     "stoppable": exp.status == "running"})
    return rows


def guardrail_flags(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (guardrail, non-control arm): its effect, interval, and whether it is flagged."""
    out = []
    for metric in result.get("guardrails", []):
        for e in result.get("metrics", {}).get(metric, []):
            lo = e.get("ci_low")
            out.append({"metric": metric, "arm": e.get("arm"), "effect": e.get("effect"), "ci_low": lo,
                        "ci_high": e.get("ci_high"), "flagged": lo is not None and lo > 0})
        if not result.get("metrics", {}).get(metric):
            out.append({"metric": metric, "arm": None, "effect": None, "ci_low": None, "ci_high": None,
                        "flagged": False, "why": result.get("skipped_metrics", {}).get(metric, "no data")})
    return out


def over_time(result: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """Per non-control arm, the metric's effect and both intervals at the end of each day (cumulative)."""
    arms = [a["arm"] for a in result["arms"] if a["arm"] != result["control"]]
    series = []
    for arm in arms:
        points = []
        for day in result.get("days", []):
            e = next((e for e in day["metrics"].get(metric, []) if e.get("arm") == arm), None)
            if e is None or e.get("effect") is None:
                continue
            points.append({"day": day["day"], "end": day["end"], "effect": e["effect"], "ci_low": e.get("ci_low"),
                           "ci_high": e.get("ci_high"), "av_ci_low": e.get("av_ci_low"),
                           "av_ci_high": e.get("av_ci_high"), "n": e.get("n"), "control_n": e.get("control_n")})
        series.append({"arm": arm, "points": points})
    return series


def detail(result: dict[str, Any]) -> dict[str, Any]:
    """The page's view of one analysis: the result, its metrics in the declaration's order (primary and guardrails
    first), the guardrail flags and each metric's effects over time."""
    first = [result["primary_metric"], *result.get("guardrails", [])]
    order = [m for m in first if m in result["metrics"]] + [m for m in result["metrics"] if m not in first]
    metrics = [{"metric": m, "effects": result["metrics"][m], "skipped": result.get("skipped_metrics", {}).get(m),
                "primary": m == result["primary_metric"], "guardrail": m in result.get("guardrails", []),
                "series": over_time(result, m)} for m in order]
    for m in metrics:
        m["pairs"] = [(s["arm"], s["points"]) for s in m["series"]]
    flags = guardrail_flags(result)
    return {"result": result, "metrics": metrics, "guardrails": flags,
            "guardrail_flagged": any(f["flagged"] for f in flags), "srm": result["srm"]}
