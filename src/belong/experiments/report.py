"""The HTML report of an analysis (:func:`belong.experiments.analyze.analyze`): one file, no external resources
(inline CSS, base64 PNG plots, matplotlib Agg). Sections: arms and SRM, the effect of every metric with its
fixed-horizon and always-valid intervals over the days, a forest plot of all metrics, the table of effects."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
        ".flag{color:#b00;font-weight:bold}")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _over_time(result: dict[str, Any], metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = result.get("days", [])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    arms = [a["arm"] for a in result["arms"] if a["arm"] != result["control"]]
    for arm in arms:
        xs, eff, lo, hi, alo, ahi = [], [], [], [], [], []
        for d in days:
            e = next((e for e in d["metrics"].get(metric, []) if e.get("arm") == arm), None)
            if e is None or e.get("effect") is None:
                continue
            xs.append(d["day"])
            eff.append(e["effect"])
            lo.append(e.get("ci_low"))
            hi.append(e.get("ci_high"))
            alo.append(e.get("av_ci_low"))
            ahi.append(e.get("av_ci_high"))
        if not xs:
            continue
        ax.plot(xs, eff, marker="o", label=f"{arm} effect")
        if None not in lo and None not in hi:
            ax.errorbar(xs, eff, yerr=[[e - a for e, a in zip(eff, lo, strict=True)],
                                       [b - e for e, b in zip(eff, hi, strict=True)]],
                        fmt="none", capsize=3, alpha=0.6, label=f"{arm} fixed-horizon CI")
        if None not in alo and None not in ahi:
            ax.plot(xs, alo, "--", marker="_", markersize=14, color="grey", linewidth=1,
                    label=f"{arm} always-valid CI")
            ax.plot(xs, ahi, "--", marker="_", markersize=14, color="grey", linewidth=1)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("day")
    ax.set_ylabel(f"{metric}: treatment - control")
    ax.set_title(f"{metric} over time")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig)


def _forest(result: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, e) for m, effects in result["metrics"].items() for e in effects
            if e.get("rel_effect") is not None or e.get("effect") is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(rows)) + 1))
    for i, (_metric, e) in enumerate(rows):
        base = e.get("control_mean") or None
        scale = 1.0 / abs(base) if base else 1.0
        eff = (e.get("effect") or 0.0) * scale
        lo = e.get("ci_low")
        hi = e.get("ci_high")
        if lo is not None and hi is not None:
            ax.plot([lo * scale, hi * scale], [i, i], color="C0")
        ax.plot([eff], [i], "o", color="C0")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{m} ({e.get('arm')})" for m, e in rows])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("effect relative to the control mean (fixed-horizon interval)")
    ax.invert_yaxis()
    return _png(fig)


def render(result: dict[str, Any]) -> str:
    srm = result["srm"]
    flag = '<span class="flag">SRM flagged (p &lt; 0.001): do not trust the effects</span>' if srm.get("flagged") \
        else "no sample-ratio mismatch"
    arms = "".join(f"<tr><td>{_fmt(a['arm'])}</td><td>{_fmt(a['weight'])}</td><td>{a['units']}</td>"
                   f"<td>{a['users']}</td><td>{a['exposures']}</td></tr>" for a in result["arms"])
    cols = ["arm", "n", "mean", "control_mean", "effect", "rel_effect", "ci_low", "ci_high", "p_value",
            "av_ci_low", "av_ci_high", "cuped_used", "variance_reduction"]
    effects = "".join(f"<tr><td>{_fmt(m)}</td>" + "".join(f"<td>{_fmt(e.get(c))}</td>" for c in cols) + "</tr>"
                      for m, es in result["metrics"].items() for e in es)
    skipped = "".join(f"<li>{_fmt(m)}: not estimated ({_fmt(why)})</li>"
                      for m, why in result.get("skipped_metrics", {}).items())
    plots = "".join(f"<h3>{_fmt(m)}</h3>{_over_time(result, m)}" for m in result["metrics"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Experiment {_fmt(result['experiment'])}</title>
<style>{_CSS}</style></head><body>
<h1>Experiment {_fmt(result['experiment'])}</h1>
<p>status {_fmt(result['status'])}, unit {_fmt(result['unit'])}, control {_fmt(result['control'])}, from
{_fmt(result['start'])} to {_fmt(result['as_of'])}; primary metric {_fmt(result['primary_metric'])},
α = {result['alpha']}</p>
<h2>Arms</h2><table><tr><th>arm</th><th>weight</th><th>units</th><th>users</th><th>exposures</th></tr>{arms}</table>
<p>SRM χ² = {_fmt(srm.get('chi2'))}, p = {_fmt(srm.get('p_value'))}: {flag}</p>
<h2>All metrics</h2>{_forest(result)}
<table><tr><th>metric</th>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{effects}</table>
<ul>{skipped}</ul>
<h2>Over time</h2>{plots}
</body></html>"""


def write(result: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(result), "utf-8")
    return p
