"""Self-contained HTML report of an evaluation (the JSON of :meth:`EvaluationRun.to_dict`, one or several models).

One file, no external resources: inline CSS, plots as base64 PNG (matplotlib, Agg backend). Sections: the split,
a comparison table at the headline K with 95% bootstrap intervals, the paired tests, and three plots — metric by
K (Recall and NDCG), per-segment bars (NDCG at the headline K), and popularity bias (ARP vs NDCG); for a model
that learned a ranker (``fitted`` in its result), its feature importance (gain, top features) and its calibration
error before and after calibration, per objective, on its own validation lists.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

SEGMENT_ORDER = ("warm", "cold", "light", "heavy", "teen", "adult")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}td.best{font-weight:bold;background:#eef7ee}
.ci{color:#777;font-size:.85em}img{max-width:100%;margin:.5em 0}.muted{color:#777}
"""


def _results(run: dict[str, Any]) -> list[dict[str, Any]]:
    return run["results"] if "results" in run else [run]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"
    return html.escape(str(v))


def _pvalue(p: float) -> str:
    return "&lt; 1e-300" if p < 1e-300 else f"{p:.3g}"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plot_by_k(run: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("recall", "ndcg"), strict=True):
        for r in _results(run):
            ys = [r["metrics"].get(f"{metric}@{k}") for k in run["ks"]]
            ax.plot(run["ks"], ys, marker="o", label=r["model"])
        ax.set_xlabel("K")
        ax.set_ylabel(f"{metric}@K")
        ax.set_xticks(run["ks"])
        ax.grid(alpha=.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("metric by K")
    return _png(fig)


def _plot_segments(run: dict[str, Any], metric: str) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    results = _results(run)
    present = {s for r in results for s in r["segments"]}
    segments = [s for s in SEGMENT_ORDER if s in present] + sorted(present - set(SEGMENT_ORDER))
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / max(len(results), 1)
    x = np.arange(len(segments))
    for j, r in enumerate(results):
        vals = [r["segments"].get(s, {}).get(metric) or 0.0 for s in segments]
        ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=r["model"])
    users = {s: next((r["segments"][s]["users"] for r in results if s in r["segments"]), 0) for s in segments}
    ax.set_xticks(x, [f"{s}\n({users[s]:,} users)" for s in segments])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per segment")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=.3)
    return _png(fig)


def _plot_popularity(run: dict[str, Any], k: int) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in _results(run):
        x, y = r["metrics"].get(f"arp@{k}"), r["metrics"].get(f"ndcg@{k}")
        if x is None or y is None:
            continue
        ax.scatter([x], [y], s=60)
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xlabel(f"ARP@{k} (mean training popularity of recommended items)")
    ax.set_ylabel(f"ndcg@{k}")
    ax.set_title("popularity bias vs accuracy")
    ax.grid(alpha=.3)
    return _png(fig)


def _popularity_section(run: dict[str, Any], k: int) -> str:
    if not any(f"arp@{k}" in r["metrics"] for r in _results(run)):
        return '<h2>Popularity bias</h2><p class="muted">Not measured: sampled-candidate protocol.</p>'
    return f"<h2>Popularity bias</h2>{_plot_popularity(run, k)}"


def _comparison_table(run: dict[str, Any], k: int) -> str:
    results = _results(run)
    names = [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hr", "mrr", "map", "coverage", "arp",
                                   "novelty", "ild")]
    names = [n for n in names if any(n in r["metrics"] for r in results)]
    lower_better = {f"arp@{k}"}
    best = {}
    for n in names:
        vals = [r["metrics"].get(n) for r in results]
        vals = [v for v in vals if isinstance(v, float) and not math.isnan(v)]
        if vals:
            best[n] = min(vals) if n in lower_better else max(vals)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for r in results:
        cells = []
        for n in names:
            v, ci = r["metrics"].get(n), r["ci95"].get(n)
            ci_txt = (f'<br><span class="ci">[{_fmt(ci[0])}, {_fmt(ci[1])}]</span>'
                      if ci and ci[0] is not None else "")
            cls = ' class="best"' if len(results) > 1 and n in best and v == best[n] else ""
            cells.append(f"<td{cls}>{_fmt(v)}{ci_txt}</td>")
        rows.append(f"<tr><td>{html.escape(r['model'])}</td>{''.join(cells)}"
                    f"<td>{r['fit_seconds']:.2f}</td><td>{r['score_seconds']:.2f}</td></tr>")
    return (f"<table><tr><th>model</th>{head}<th>fit s</th><th>score s</th></tr>{''.join(rows)}</table>"
            '<p class="muted">95% bootstrap intervals over users (1000 draws) under each value.</p>')


def _all_k_table(run: dict[str, Any]) -> str:
    results = _results(run)
    names = sorted({n for r in results for n in r["metrics"]}, key=lambda n: (n.split("@")[0], int(n.split("@")[1])))
    head = "".join(f"<th>{html.escape(r['model'])}</th>" for r in results)
    rows = []
    for n in names:
        cells = "".join(f"<td>{_fmt(r['metrics'].get(n))}</td>" for r in results)
        rows.append(f"<tr><td>{html.escape(n)}</td>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _params_table(run: dict[str, Any]) -> str:
    rows = []
    for r in _results(run):
        params = ", ".join(f"{html.escape(str(k))}={html.escape(str(v))}" for k, v in r["params"].items())
        tuned = " (tuned)" if r.get("tuned") else ""
        rows.append(f"<tr><td>{html.escape(r['model'])}</td><td style='text-align:left'>{params}{tuned}</td></tr>")
    return f"<table><tr><th>model</th><th>parameters</th></tr>{''.join(rows)}</table>"


IMPORTANCE_TOP = 20


def _plot_importance(name: str, importance: dict[str, float]) -> str:
    import matplotlib.pyplot as plt

    top = sorted(importance.items(), key=lambda kv: -kv[1])[:IMPORTANCE_TOP]
    total = sum(importance.values()) or 1.0
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(top) + 1))
    ax.barh([f for f, _ in reversed(top)], [100.0 * g / total for _, g in reversed(top)], color="#4a7ab5")
    ax.set_xlabel("share of total gain (%)")
    ax.set_title(f"{name}: feature importance (top {len(top)} of {len(importance)})", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return _png(fig)


def _fitted_section(run: dict[str, Any]) -> str:
    """Feature importance plot and calibration table of every model with a learned ranker."""
    parts = []
    for r in _results(run):
        fitted = r.get("fitted") or {}
        if not fitted:
            continue
        name = html.escape(r["model"])
        if fitted.get("feature_importance"):
            parts.append(f"<p>{name}: feature importance (LightGBM gain of the ordering model)</p>"
                         + _plot_importance(r["model"], fitted["feature_importance"]))
        cal = fitted.get("calibration_by_objective") or fitted.get("calibration") or {}
        nested = cal and all(isinstance(v, dict) for v in cal.values())
        per_objective = cal if nested else ({"join": cal} if cal else {})
        if per_objective:
            rows = "".join(
                f"<tr><td>{html.escape(obj)}</td><td>{html.escape(str(c.get('method', '')))}</td>"
                f"<td>{_fmt(c.get('ece_before'))}</td><td>{_fmt(c.get('ece_after'))}</td></tr>"
                for obj, c in per_objective.items() if isinstance(c, dict))
            parts.append(f"<p>{name}: calibration on held-out validation rows (expected calibration error)</p>"
                         "<table><tr><th>objective</th><th>method</th><th>ECE before</th><th>ECE after</th></tr>"
                         f"{rows}</table>")
        if fitted.get("ranker") and fitted.get("sources"):
            ranked_rows = [("ranker", fitted["ranker"])] + sorted(fitted["sources"].items())
            metric_names = list(fitted["ranker"])
            head = "".join(f"<th>{html.escape(m)}</th>" for m in metric_names)
            body = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{_fmt(v.get(m))}</td>"
                                                                      for m in metric_names) + "</tr>"
                           for n, v in ranked_rows)
            parts.append(f"<p>{name}: ranker against each source alone on its validation lists</p>"
                         f"<table><tr><th>list order</th>{head}</tr>{body}</table>")
    return "<h2>Learned ranker</h2>" + "".join(parts) if parts else ""


def _paired_table(run: dict[str, Any]) -> str:
    paired = run.get("paired") or {}
    if not paired:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(pair)}</td><td>{html.escape(p['metric'])}</td><td>{p['mean_diff']:+.4f}</td>"
        f"<td>{_pvalue(p['t_pvalue'])}</td><td>{_pvalue(p['wilcoxon_pvalue'])}</td><td>{p['n_users']:,}</td></tr>"
        for pair, p in paired.items()
    )
    return ("<h2>Paired comparisons</h2><table><tr><th>pair (a vs b)</th><th>metric</th><th>mean a − b</th>"
            f"<th>paired t p</th><th>Wilcoxon p</th><th>users</th></tr>{rows}</table>")


def render_html(run: dict[str, Any]) -> str:
    """The report as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    k = run["primary_k"]
    proto = ", ".join(f"{html.escape(str(a))}={html.escape(str(b))}" for a, b in run["protocol"].items())
    split = ", ".join(f"{html.escape(str(a))}: {_fmt(b)}" for a, b in run["split"].items())
    models = ", ".join(html.escape(r["model"]) for r in _results(run))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>belong evaluation — {html.escape(run['dataset'])}</title>
<style>{_CSS}</style></head><body>
<h1>Offline evaluation: {html.escape(run['dataset'])}</h1>
<p>Models: {models}<br>Protocol: {proto}<br><span class="muted">Split: {split}</span></p>
<h2>Comparison at K = {k}</h2>{_comparison_table(run, k)}
{_paired_table(run)}
<h2>Metric by K</h2>{_plot_by_k(run)}
<h2>Segments</h2>{_plot_segments(run, f"ndcg@{k}")}
{_popularity_section(run, k)}
{_fitted_section(run)}
<h2>All metrics</h2>{_all_k_table(run)}
<h2>Parameters</h2>{_params_table(run)}
</body></html>
"""


def write_report(path: str | Path, run: dict[str, Any]) -> Path:
    """Write :func:`render_html` of ``run`` to ``path`` (parent folders created)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(run), encoding="utf-8")
    except OSError as exc:
        from belong.errors import ValidationError

        raise ValidationError("report", f"cannot write {path}: {exc.strerror or exc}") from None
    return path
