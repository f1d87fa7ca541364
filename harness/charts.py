"""Charts as inline SVG text: the phase timeline and metric histories, for reports read without a network.

The session report (:mod:`harness.report`) and the timeline next to the JUnit
report must open from a CI artifact on a machine without internet, so they
carry their charts as SVG generated here: no JavaScript plotting library, no
CDN, nothing beyond the standard library. A chart is a pure function of its
data (same input, same bytes), which keeps the unit tests on structure.

The timeline draws one lane per process (the session, or each xdist worker),
a time axis in seconds from the session start, and each bar with its full
label: beside the bar where there is room, inside it when it is wide enough,
otherwise on the next free row of its lane (rows are packed so that no label
overlaps another). Only bars are ``<rect>`` elements (tests count them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["COLOURS", "Bar", "line_plot_svg", "nice_step", "timeline_svg"]

COLOURS = {
    "ok": "#3b82f6",       # a phase that ended normally
    "passed": "#16a34a",
    "failed": "#dc2626",
    "error": "#9f1239",
    "skipped": "#9ca3af",
    "xfailed": "#d97706",
    "xpassed": "#d97706",
}
"""Bar colour by state: a phase's (ok, failed) or its test's outcome."""

_CHAR = 7.3    # px per character of 12 px monospace (DejaVu Sans Mono: 7.22)
_ROW = 20
_LEFT = 64     # the lane-name gutter
_PLOT = 1000   # px for the whole session on the time axis
_OVERHANG = 150  # px a label may run past the axis's end before it goes left of its bar
_AXIS = 26


@dataclass(frozen=True)
class Bar:
    """One timed thing on the timeline."""

    lane: str
    label: str
    start: float
    """Seconds after the session started."""
    seconds: float
    state: str = "ok"
    """A key of :data:`COLOURS`."""
    href: str = ""
    """Where clicking the bar goes (an anchor in the report); empty: nowhere."""
    note: str = ""


def nice_step(total: float, ticks: int = 10) -> float:
    """A round tick interval (1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10 ... min) giving at most ``ticks`` ticks."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if total / step <= ticks:
            return float(step)
    return 3600.0 * math.ceil(total / 3600 / ticks)


def _clock(seconds: float, total: float) -> str:
    if total < 180:
        return f"{seconds:g} s"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _lane_key(lane: str) -> tuple[int, int, str]:
    digits = "".join(ch for ch in lane if ch.isdigit())
    return (0 if not lane.startswith("gw") else 1, int(digits) if digits else 0, lane)


def timeline_svg(bars: Sequence[Bar], total: float, *, title: str = "harness phases") -> str:
    """The bars on a time axis of ``total`` seconds, one lane per ``Bar.lane`` (workers in number order)."""
    total = max([total, 1.0, *(b.start + b.seconds for b in bars)])
    scale = _PLOT / total
    lanes = sorted({b.lane for b in bars}, key=_lane_key)
    placed: list[tuple[Bar, int, float, float, str, float]] = []   # bar, row (global), x, w, where, text x
    row_base = 0
    lane_rows: list[tuple[str, int, int]] = []   # lane, first row, row count
    right_edge = float(_LEFT + _PLOT)
    for lane in lanes:
        rows: list[list[tuple[float, float]]] = []
        spans: list[tuple[float, float, int]] = []   # placed bars of this lane: start, end, row
        for bar in sorted((b for b in bars if b.lane == lane), key=lambda b: (b.start, -b.seconds)):
            x = _LEFT + bar.start * scale
            w = max(1.5, bar.seconds * scale)
            text = _bar_text(bar)
            tw = len(text) * _CHAR
            if tw + 8 <= w:
                where, extent, tx = "inside", (x, x + w), x + 4
            elif x + w + 4 + tw <= _LEFT + _PLOT + _OVERHANG or x - 4 - tw < _LEFT:
                where, extent, tx = "right", (x, x + w + 4 + tw), x + w + 4
            else:
                where, extent, tx = "left", (x - 4 - tw, x + w), x - 4
            right_edge = max(right_edge, extent[1])
            # A phase inside another (a project run inside its test) goes below it, never above.
            inside = [r for a, b, r in spans if a <= bar.start and bar.start + bar.seconds <= b]
            first = max(inside) + 1 if inside else 0
            for index in range(first, len(rows)):
                if all(extent[1] + 2 <= a or extent[0] >= b + 2 for a, b in rows[index]):
                    rows[index].append(extent)
                    row = index
                    break
            else:
                rows.append([extent])
                row = len(rows) - 1
            spans.append((bar.start, bar.start + bar.seconds, row))
            placed.append((bar, row_base + row, x, w, where, tx))
        count = max(1, len(rows))
        lane_rows.append((lane, row_base, count))
        row_base += count
    gaps = 8
    body_top = _AXIS + 18
    height = body_top + row_base * _ROW + gaps * len(lanes) + _AXIS + 6
    width = float(math.ceil(right_edge + 12))
    lane_offset = {lane: i * gaps for i, (lane, _first, _count) in enumerate(lane_rows)}

    def y_of(row: int, lane: str) -> float:
        return body_top + row * _ROW + lane_offset[lane]

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width:.0f}" height="{height}" '
           f'viewBox="0 0 {width:.0f} {height}" font-family="DejaVu Sans Mono, monospace" font-size="12" '
           'role="img">',
           f"<title>{escape(title)}: {total:.1f} s</title>",
           f'<text x="4" y="14" font-weight="bold">{escape(title)}: {total:.1f} s wall '
           f'(axis: {"seconds" if total < 180 else "minutes:seconds"} from the session start)</text>']
    axis_bottom = body_top + row_base * _ROW + gaps * len(lanes)
    step = nice_step(total)
    ticks = [i * step for i in range(int(total / step + 1e-9) + 1)]
    for t in ticks:
        x = _LEFT + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{_AXIS + 8}" x2="{x:.1f}" y2="{axis_bottom + 4}" stroke="#e5e7eb"/>')
        for ty in (_AXIS + 4, axis_bottom + 18):
            out.append(f'<text x="{x:.1f}" y="{ty}" text-anchor="middle" fill="#374151">{_clock(t, total)}</text>')
    out.append(f'<line x1="{_LEFT}" y1="{_AXIS + 8}" x2="{_LEFT + _PLOT}" y2="{_AXIS + 8}" stroke="#6b7280"/>')
    out.append(f'<line x1="{_LEFT}" y1="{axis_bottom + 4}" x2="{_LEFT + _PLOT}" y2="{axis_bottom + 4}" '
               'stroke="#6b7280"/>')
    for index, (lane, first, count) in enumerate(lane_rows):
        top = y_of(first, lane) - 3
        bottom = top + count * _ROW + 2
        if index % 2:
            out.append(f'<path d="M0 {top:.1f}H{width:.0f}V{bottom:.1f}H0Z" fill="#f3f4f6"/>')
        out.append(f'<text x="4" y="{top + 15:.1f}" font-weight="bold" fill="#111827">{escape(lane)}</text>')
    for bar, row, x, w, where, tx in placed:
        y = y_of(row, bar.lane)
        colour = COLOURS.get(bar.state, COLOURS["ok"])
        text = _bar_text(bar)
        tip = f"{bar.lane}: {bar.label}: {bar.seconds:.1f} s from {bar.start:.1f} s ({bar.state})"
        if bar.note:
            tip += f" - {bar.note}"
        rect = (f'<rect class="bar {escape(bar.state)}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                f'height="{_ROW - 5}" rx="2" fill="{colour}"><title>{escape(tip)}</title></rect>')
        fill = "#ffffff" if where == "inside" else "#111827"
        anchor = ' text-anchor="end"' if where == "left" else ""
        label = f'<text x="{tx:.1f}" y="{y + 11.5:.1f}" fill="{fill}"{anchor}>{escape(text)}</text>'
        if bar.href:
            out.append(f'<a href="{escape(bar.href)}">{rect}{label}</a>')
        else:
            out.append(rect + label)
    out.append("</svg>")
    return "\n".join(out)


def _bar_text(bar: Bar) -> str:
    return f"{bar.label} ({bar.seconds:.1f} s)"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line_plot_svg(points: Sequence[tuple[float, float]], *, title: str, width: int = 320,
                  height: int = 170) -> str:
    """``(step, value)`` points as a line with dots, min/max ticks on both axes; non-finite values are skipped."""
    finite = sorted((float(s), float(v)) for s, v in points if math.isfinite(v) and math.isfinite(s))
    left, right, top, bottom = 62, 12, 24, 32
    pw, ph = width - left - right, height - top - bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="metric-plot" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif" font-size="11" role="img">',
           f"<title>{escape(title)}</title>",
           f'<text x="{left}" y="15" font-weight="bold">{escape(title)}</text>',
           f'<path d="M{left} {top}V{top + ph}H{left + pw}" fill="none" stroke="#6b7280"/>']
    if not finite:
        out.append(f'<text x="{left + 8}" y="{top + ph / 2:.1f}" fill="#6b7280">no finite values</text>')
        out.append("</svg>")
        return "\n".join(out)
    xs = [s for s, _ in finite]
    ys = [v for _, v in finite]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if y0 == y1:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad

    def px(s: float) -> float:
        return left + (s - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    for value in (y0, (y0 + y1) / 2, y1):
        y = py(value)
        out.append(f'<line x1="{left - 3}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#374151">{_fmt(value)}</text>')
    for step in sorted({x0, x1} if len(set(xs)) > 1 else {xs[0]}):
        x = px(step)
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle" fill="#374151">{_fmt(step)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#6b7280">step</text>')
    if len(finite) > 1:
        line = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in finite)
        out.append(f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="1.5"/>')
    if len(finite) <= 60:
        for s, v in finite:
            out.append(f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="3" fill="#2563eb">'
                       f"<title>step {_fmt(s)}: {v!r}</title></circle>")
    if len(finite) == 1:
        s, v = finite[0]
        out.append(f'<text x="{px(s) + 6:.1f}" y="{py(v) - 6:.1f}" fill="#111827">{v:.6g}</text>')
    out.append("</svg>")
    return "\n".join(out)
