"""Small inline SVG charts drawn on the server (no chart library, no script): horizontal bars and a line plot.
Each is an ``<svg role="img">`` with a title, so a screen reader announces what it shows; the numbers are also in
a table next to it."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def bars(rows: Sequence[tuple[str, float]], title: str, width: int = 520, row_h: int = 18) -> Markup:
    """Horizontal bars, one per (label, value), longest first as given."""
    if not rows:
        return Markup("")
    top = max(v for _, v in rows) or 1.0
    label_w = 180
    h = row_h * len(rows) + 4
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {h}" preserveAspectRatio="xMinYMin meet" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, (label, value) in enumerate(rows):
        y = i * row_h + 2
        w = max(1.0, (width - label_w - 60) * value / top)
        parts.append(f'<text x="{label_w - 6}" y="{y + row_h - 5}" text-anchor="end">{escape(label[:28])}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" class="bar"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + row_h - 5}">{value:.3g}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def line(points: Sequence[tuple[float, float]], title: str, x_label: str, y_label: str, *, diagonal: bool = False,
         width: int = 360, height: int = 240) -> Markup:
    """A line through ``points`` on [0, max] axes (``diagonal``: the y = x reference line, for calibration)."""
    if not points:
        return Markup("")
    pad = 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_max = max(max(xs), max(ys) if diagonal else 0.0) or 1.0
    y_max = max(max(ys), x_max if diagonal else 0.0) or 1.0

    def sx(x: float) -> float:
        return pad + (width - pad - 8) * x / x_max

    def sy(y: float) -> float:
        return height - pad - (height - pad - 8) * y / y_max

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
             f"<title>{escape(title)}</title>",
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - 8}" y2="{height - pad}" class="axis"/>',
             f'<line x1="{pad}" y1="8" x2="{pad}" y2="{height - pad}" class="axis"/>',
             f'<text x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">{escape(x_label)} (0 to {x_max:.3g})'
             "</text>",
             f'<text x="12" y="{height / 2:.0f}" transform="rotate(-90 12 {height / 2:.0f})" text-anchor="middle">'
             f"{escape(y_label)} (0 to {y_max:.3g})</text>"]
    if diagonal:
        m = min(x_max, y_max)
        parts.append(f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(m):.1f}" y2="{sy(m):.1f}" class="ref"/>')
    parts.append(f'<polyline points="{path}" class="series"/></svg>')
    return Markup("".join(parts))


def intervals(series: Sequence[tuple[str, Sequence[dict]]], title: str, *, width: int = 520, height: int = 240
              ) -> Markup:
    """Effects over days with their intervals: per series a line through ``effect``, a vertical bar from
    ``ci_low`` to ``ci_high`` (fixed-horizon) and dashed ticks at ``av_ci_low``/``av_ci_high`` (always-valid);
    the zero line drawn. Points are dicts with ``day`` and those keys (a missing bound is left out)."""
    pts = [p for _, ps in series for p in ps]
    if not pts:
        return Markup("")
    vals = [p[k] for p in pts for k in ("effect", "ci_low", "ci_high", "av_ci_low", "av_ci_high")
            if p.get(k) is not None]
    lo, hi = min([0.0, *vals]), max([0.0, *vals])
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    days = [p["day"] for p in pts]
    d0, d1 = min(days), max(days)
    pad_l, pad_b = 52, 30

    def sx(d: float) -> float:
        return pad_l + (width - pad_l - 12) * ((d - d0) / (d1 - d0) if d1 > d0 else 0.5)

    def sy(v: float) -> float:
        return 8 + (height - pad_b - 8) * (hi - v) / (hi - lo)

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
             f"<title>{escape(title)}</title>",
             f'<line x1="{pad_l}" y1="{sy(0):.1f}" x2="{width - 8}" y2="{sy(0):.1f}" class="ref"/>',
             f'<line x1="{pad_l}" y1="8" x2="{pad_l}" y2="{height - pad_b}" class="axis"/>',
             f'<text x="{pad_l - 4}" y="14" text-anchor="end">{hi:.3g}</text>',
             f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end">{lo:.3g}</text>',
             f'<text x="{width / 2:.0f}" y="{height - 8}" text-anchor="middle">day {d0} to {d1}</text>']
    for i, (_, ps) in enumerate(series):
        cls = f"series s{i % 4}"
        for p in ps:
            x = sx(p["day"])
            if p.get("ci_low") is not None and p.get("ci_high") is not None:
                parts.append(f'<line x1="{x:.1f}" y1="{sy(p["ci_low"]):.1f}" x2="{x:.1f}" y2="{sy(p["ci_high"]):.1f}" '
                             f'class="{cls} ci"/>')
            for k in ("av_ci_low", "av_ci_high"):
                if p.get(k) is not None:
                    parts.append(f'<line x1="{x - 6:.1f}" y1="{sy(p[k]):.1f}" x2="{x + 6:.1f}" y2="{sy(p[k]):.1f}" '
                                 f'class="{cls} av"/>')
        path = " ".join(f"{sx(p['day']):.1f},{sy(p['effect']):.1f}" for p in ps)
        if path:
            parts.append(f'<polyline points="{path}" class="{cls}"/>')
        parts.extend(f'<circle cx="{sx(p["day"]):.1f}" cy="{sy(p["effect"]):.1f}" r="3" class="dot s{i % 4}"/>'
                     for p in ps)
    parts.append("</svg>")
    return Markup("".join(parts))
