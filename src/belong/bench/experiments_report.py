"""HTML report of ``belong bench experiments``: one self-contained file (inline CSS, plots as base64 PNG) with the
A/A false-positive rates and the A/B power by way of reading, both by day, SRM and CUPED."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from belong.evaluation.report import _CSS, _fmt, _png

_LABELS = {"naive_fixed_horizon": "fixed horizon, read daily (naive)", "always_valid": "always-valid, read daily",
           "cuped_naive_fixed_horizon": "CUPED fixed horizon, read daily (naive)",
           "cuped_always_valid": "CUPED always-valid, read daily",
           "fixed_horizon_that_day": "fixed horizon, that day alone"}


def _plot(series: dict[str, list[float]], title: str, ylabel: str, alpha: float | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for key, values in series.items():
        ax.plot(range(1, len(values) + 1), values, label=_LABELS.get(key, key),
                linestyle="--" if "naive" in key or "that_day" in key else "-")
    if alpha is not None:
        ax.axhline(alpha, color="grey", linewidth=0.8, linestyle=":", label=f"α = {alpha}")
    ax.set_xlabel("day")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _table(rows: dict[str, Any], head: tuple[str, str]) -> str:
    body = "".join(f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items()
                   if not isinstance(v, dict | list))
    return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th></tr>{body}</table>"


def render_html(out: dict[str, Any]) -> str:
    m, aa, ab, srm, cu = out["model"], out["aa"], out["ab"], out["srm"], out["cuped"]
    alpha = m["alpha"]
    srm_rows = "".join(
        f"<tr><td>{r['exposures']:,}</td><td>{_fmt(r['true_50_50_not_flagged'])}</td>"
        f"<td>{_fmt(r['assigned_52_48_flagged'])}</td><td>{_fmt(r['exact_52_48_split']['chi2'])}</td>"
        f"<td>{r['exact_52_48_split']['p_value']:.2g}</td><td>{r['exact_52_48_split']['flagged']}</td></tr>"
        for r in srm["by_exposures"])
    model = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in m.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>belong bench experiments</title>
<style>{_CSS}</style></head><body>
<h1>Experiment statistics on {m['runs']} simulated A/A and A/B experiments × {m['days']} days</h1>
<ul class="muted">{model}</ul>
<h2>A/A: how often each way of reading finds an effect that is not there</h2>
{_table({k: v for k, v in aa.items() if k not in ("truth",)}, ("reading", "share of runs"))}
{_plot(aa["ever_rejected_by_day"], "A/A: share of runs that have rejected by day d", "share of runs", alpha)}
<h2>A/B: power (planted relative effect {ab['planted_relative_effect']:.0%},
true effect {ab['true_absolute_effect_at_end']} at the end)</h2>
{_table(ab["power"], ("reading", "power"))}
{_plot(ab["detected_by_day"], "A/B: share of runs that have detected the effect by day d", "share of runs", None)}
<h2>Sample-ratio mismatch (declared 50/50, flagged at p &lt; {srm['threshold_p']})</h2>
<table><tr><th>exposures</th><th>true 50/50 not flagged</th><th>p = 0.52 flagged</th><th>exact 52/48 χ²</th>
<th>p</th><th>flagged</th></tr>{srm_rows}</table>
<p>simulated A/A runs not flagged: {_fmt(srm['aa_runs_not_flagged'])}</p>
<h2>CUPED</h2>{_table(cu, ("generative model", ""))}
{_table(cu["simulated_world"], ("belong's simulated world", "")) if cu.get("simulated_world") else ""}
<p class="muted">{html.escape(str(out['seconds']))}</p>
</body></html>"""


def write_report(path: str | Path, out: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(out), encoding="utf-8")
    return p
