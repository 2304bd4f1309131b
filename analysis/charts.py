"""Inline SVG line charts for reports: no JavaScript, no network, one string per chart.

A chart overlays one polyline per run (already downsampled by ``curves.downsample``),
draws non-finite points as red crosses at the top edge, and shades anomaly step ranges
in the severity's colour with a tooltip (``<title>``) carrying the message.
"""

from __future__ import annotations

import math
from html import escape
from typing import Mapping, Sequence

from runlake.schemas.severity import by_severity

__all__ = ["PALETTE", "line_chart"]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_SEVERITY = by_severity(("#9ecae1", "#fdae6b", "#fb6a4a"))  # least severe first


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    x_label: str = "step",
    bands: Sequence[Mapping] = (),
    colors: Mapping[str, str] | None = None,
    width: int = 600,
    height: int = 280,
) -> str:
    """An SVG line chart.

    Args:
        series: ``{label: (xs, ys)}``, each sorted by x; NaN/inf ys are drawn as crosses.
        title: chart title.
        x_label: x axis label.
        bands: shaded x ranges: dicts with x0, x1, severity, label.
        colors: ``{label: css colour}``; default from ``PALETTE`` in order.
        width, height: pixel size.

    Returns:
        An ``<svg>`` element as a string.
    """
    left, right, top, bottom = 64, 12, 28, 40
    pw, ph = width - left - right, height - top - bottom
    xs_all = [x for xs, _ in series.values() for x in xs if x is not None and math.isfinite(x)]
    ys_all = [y for _, ys in series.values() for y in ys if y is not None and math.isfinite(y)]
    for b in bands:
        xs_all += [v for v in (b.get("x0"), b.get("x1")) if v is not None]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="18" font-size="13" font-family="sans-serif" '
           f'font-weight="bold">{escape(title)}</text>']
    if not xs_all or not ys_all:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                   f'font-family="sans-serif" fill="#888">no finite data</text></svg>')
        return "".join(out)
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) or 1) * 0.05, y1 + (abs(y1) or 1) * 0.05
    pad = (y1 - y0) * 0.04
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>')
    for b in bands:
        bx0, bx1 = sx(b["x0"]), sx(b["x1"])
        w = max(bx1 - bx0, 2.0)
        fill = _SEVERITY.get(b.get("severity", "info"), "#ccc")
        out.append(f'<rect class="anomaly" x="{bx0:.1f}" y="{top}" width="{w:.1f}" height="{ph}" '
                   f'fill="{fill}" fill-opacity="0.45"><title>{escape(b.get("label", ""))}</title></rect>')
    for t in _nice_ticks(y0, y1):
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
                   f'font-family="sans-serif" fill="#555">{_fmt(t)}</text>')
    for t in _nice_ticks(x0, x1):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#999"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" font-size="10" text-anchor="middle" '
                   f'font-family="sans-serif" fill="#555">{_fmt(t)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle" '
               f'font-family="sans-serif" fill="#333">{escape(x_label)}</text>')
    colors = dict(colors or {})
    for i, (label, (xs, ys)) in enumerate(series.items()):
        color = colors.get(label, PALETTE[i % len(PALETTE)])
        segments, current, crosses = [], [], []
        for x, y in zip(xs, ys):
            if y is None or not math.isfinite(y):
                if current:
                    segments.append(current)
                    current = []
                if y is not None:
                    crosses.append(x)
                continue
            current.append(f"{sx(x):.1f},{sy(y):.1f}")
        if current:
            segments.append(current)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            else:
                out.append(f'<polyline class="curve" fill="none" stroke="{color}" stroke-width="1.4" '
                           f'points="{" ".join(seg)}"><title>{escape(label)}</title></polyline>')
        for x in crosses:
            cx = sx(x)
            out.append(f'<text x="{cx:.1f}" y="{top + 10}" font-size="11" text-anchor="middle" '
                       f'fill="#d62728">✕<title>{escape(label)}: non-finite at {_fmt(x)}</title></text>')
    return "".join(out) + "</svg>"
