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
