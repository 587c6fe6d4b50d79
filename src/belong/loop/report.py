"""The HTML report of a loop run (:func:`belong.loop.runner.run`): one file, no external resources (inline CSS,
base64 PNG plots, matplotlib Agg). Sections: the scenario, estimated against true effects with intervals, daily
metrics per arm (table and plots), retrains, seconds per simulated day, the response model's parameters."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from belong.experiments.report import _CSS, _fmt, _png


def _daily_plot(result: dict[str, Any], key: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    days = [r["day"] + 1 for r in result["daily"]]
    for arm in result["scenario"]["arms"]:
        ax.plot(days, [r["arms"][arm["name"]][key] for r in result["daily"]], marker="o", label=arm["name"])
    ax.set_xlabel("simulated day")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def _effect_plot(result: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    effects = result["effects"]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.6 * len(effects)))
    for i, e in enumerate(effects):
        ax.errorbar([e["effect"]], [i], xerr=[[e["effect"] - e["ci_low"]], [e["ci_high"] - e["effect"]]], fmt="o",
                    color="C0", label="estimate, 95% CI" if i == 0 else None)
        ax.plot([e["true_effect"]], [i], "D", color="C3", label="truth" if i == 0 else None)
    ax.axvline(0, color="#888", lw=0.8)
    ax.set_yticks(range(len(effects)), [f"{e['arm']} − {e['control']} ({e['unit']})" for e in effects])
    ax.set_xlabel(effects[0]["metric"] if effects else "")
    ax.legend(loc="best")
    return _png(fig)


def _offpolicy(ope: dict[str, Any]) -> str:
    """Scenario (d): each target's off-policy estimates from the logging arm's lists, beside its online value and
    truth (per list: every position; at the slot: the exploration position only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [f"<h2>Off-policy estimate against online value and truth</h2><p>Logging policy: "
             f"{html.escape(ope['logging'])} ({ope['logged_lists']} logged lists, {ope['lists_per_day']} a day at "
             f"most; exploration slot at position {ope['slot_position']}). Value: joins per list shown (list: every "
             "position; slot: the exploration position). Online: the target arm's own lists. Truth: expected joins "
             "per list under the target without sampling, visit-weighted.</p>"]
    for t in ope["targets"]:
        parts.append(f"<h3>{html.escape(t['arm'])} from {html.escape(ope['logging'])}'s logs</h3>")
        parts.append(_table(t["estimates"], ["level", "estimator", "value", "ci_low", "ci_high", "online",
                                             "online_ci_low", "online_ci_high", "truth", "bias_vs_truth",
                                             "bias_vs_online", "covers_truth", "covers_online", "ess",
                                             "max_weight", "warning"]))
        parts.append(_table([t["info"]], list(t["info"])))
        rows = [r for r in t["estimates"] if r["value"] is not None and r.get("ci_low") is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.8 + 0.45 * len(rows)))
        for i, r in enumerate(rows):
            ax.errorbar([r["value"]], [i], xerr=[[r["value"] - r["ci_low"]], [r["ci_high"] - r["value"]]],
                        fmt="o", color="C0", label="estimate, 95% CI" if i == 0 else None)
            ax.errorbar([r["online"]], [i + 0.25], xerr=[[r["online"] - r["online_ci_low"]],
                                                         [r["online_ci_high"] - r["online"]]],
                        fmt="s", color="C2", label="online, 95% CI" if i == 0 else None)
            ax.plot([r["truth"]], [i], "D", color="C3", label="truth" if i == 0 else None)
        ax.set_yticks(range(len(rows)), [f"{r['level']}: {r['estimator']}" for r in rows])
        ax.set_xlabel("joins per list")
        ax.legend(loc="best")
        parts.append(_png(fig))
    return "\n".join(parts)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(result: dict[str, Any], *, timings: bool = True) -> str:
    """The report. ``timings=False`` leaves out wall-clock figures (the rest is a function of the scenario). A
    result of several variants (one per unit of randomisation) gives a summary of every effect, then each run."""
    if "variants" in result:
        sc = result["scenario"]
        head = (f"<!doctype html><html><head><meta charset='utf-8'><title>belong loop: {html.escape(sc['name'])}"
                f"</title><style>{_CSS}</style></head><body><h1>Closed loop: {html.escape(sc['name'])}</h1>"
                f"<p>{html.escape(sc['description'])}</p><h2>Every effect, by unit of randomisation</h2>")
        summary = _table(result["effects"], ["unit", "arm", "control", "effect", "se", "ci_low", "ci_high",
                                             "true_effect", "true_effect_se", "bias", "covers_truth"])
        bodies = [_body(v, timings) for v in result["variants"]]
        return "\n".join([head, summary, _effect_plot(result), *bodies, "</body></html>"])
    sc = result["scenario"]
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>belong loop: "
                      f"{html.escape(sc['name'])}</title><style>{_CSS}</style></head><body>",
                      _body(result, timings), "</body></html>"])


def _body(result: dict[str, Any], timings: bool) -> str:
    sc = result["scenario"]
    parts = [f"<h1>Closed loop: {html.escape(sc['name'])} (unit: {html.escape(sc['unit'])})</h1>"
             f"<p>{html.escape(sc['description'])}</p>",
             _table([{k: v for k, v in sc.items() if k != "arms"}], [k for k in sc if k != "arms"]),
             "<h2>Arms</h2>", _table([{**a, "assigned": result["assigned"][a["name"]]} for a in sc["arms"]],
                                     ["name", "surface", "weight", "assigned"]),
             "<h2>Effects: estimate against the truth</h2>",
             "<p>Estimate: Welch difference of recommended joins per person over the run (intention to treat). "
             "Truth: the response model's expected joins of each person under each arm, without sampling "
             "(docs/LOOP.md).</p>",
             _table(result["effects"], ["arm", "control", "metric", "n", "control_n", "effect", "ci_low", "ci_high",
                                        "p_value", "true_effect", "true_effect_se", "bias", "covers_truth",
                                        "excludes_zero"]),
             _effect_plot(result) if result["effects"] else "",
             "<h2>Daily metrics per arm</h2>",
             _daily_plot(result, "joins_per_visitor", "recommended joins per visitor"),
             _daily_plot(result, "expected_joins_per_person", "true expected joins per person (every person)")]
    rows = [{"day": r["day"] + 1, "arm": name, **m} for r in result["daily"] for name, m in r["arms"].items()]
    parts.append(_table(rows, ["day", "arm", "visitors", "impressions", "joins", "leaves", "joins_per_visitor",
                               "expected_joins_per_person"]))
    parts.append(_api_section(result.get("backend", {}), timings))
    if "offpolicy" in result:
        parts.append(_offpolicy(result["offpolicy"]))
    parts.append("<h2>Retrains</h2>")
    parts.append(_table(result["retrains"], ["day", "seconds"] if timings else ["day"]))
    if timings:
        parts.append("<h2>Seconds per simulated day</h2>")
        parts.append(_table([result["seconds_per_day"]], list(result["seconds_per_day"])))
        if "cpu_seconds_per_day" in result:
            parts.append("<p>CPU seconds of this process per simulated day (worker processes not counted):</p>")
            parts.append(_table([result["cpu_seconds_per_day"]], list(result["cpu_seconds_per_day"])))
        parts.append(_table([result["timing_s"]], list(result["timing_s"])))
    parts.append("<h2>Response model (fixed)</h2>")
    parts.append(_table([result["response_params"]], list(result["response_params"])))
    return "\n".join(parts)


def _api_section(stats: dict[str, Any], timings: bool) -> str:
    """The API during the run (``--mode http``): calls, status codes and latency percentiles by route; 5xx, failed
    and degraded lists, and lists whose experiment arm (as the server named it) was not the loop's."""
    if stats.get("mode") != "http":
        return ""
    cols = ["route", "calls", "status", *(["p50_ms", "p95_ms", "p99_ms", "max_ms"] if timings else [])]
    rows = [{"route": route, **{k: v for k, v in r.items() if k != "status"},
             "status": ", ".join(f"{code}: {n}" for code, n in r["status"].items())}
            for route, r in stats.get("routes", {}).items()]
    totals = {k: stats.get(k) for k in ("errors_5xx", "errors_4xx", "failed_lists", "degraded_lists",
                                        "arm_disagreements")}
    return "\n".join(["<h2>The API during the run (HTTP mode)</h2>",
                      "<p>Every list was a <code>GET /v1/recommendations/communities</code> to a real <code>belong "
                      "serve</code> on 127.0.0.1 (lists under another arm than the person's own, for the truth, with "
                      "<code>arm=</code>); events and impressions were posted to <code>/v1/events</code> and "
                      "<code>/v1/impressions</code>; each retrain was <code>belong train</code> then <code>POST "
                      "/v1/models?artifact=…&amp;activate=true</code>. Latency is measured by the client.</p>",
                      _table(rows, cols), _table([totals], list(totals)),
                      *(["<p>CPU seconds of the server process (serving, recording, start, swaps) and of the "
                         "<code>belong train</code> runs with their workers:</p>",
                         _table([stats["cpu_s"]], list(stats["cpu_s"]))] if timings and stats.get("cpu_s") else [])])


def write(result: dict[str, Any], path: str | Path, *, timings: bool = True) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result, timings=timings), encoding="utf-8")
    return out
