"""Charts as inline SVG, drawn in Python: the report needs no script, no font and no network to show them.

Two kinds, each returning one `<figure>` of markup:

    time_chart   values over time: bars (one per run or per time bucket, colored per mark, may go below
                 zero), lines and dots; a left axis and, for a second measure, a right one
    bar_chart    one horizontal bar per label, stacked by series (rejected rows by reason and sync,
                 throughput per destination, a build's slowest models)

Every mark carries a `<title>` (the browser shows it as a tooltip) with its exact figures; every text
that came from the project (an audience, a reason, a model name) is escaped here, once, by `esc`.
Sizes are in the viewBox's units; the page scales the SVG to its column.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Bar", "Mark", "Series", "bar_chart", "esc", "number", "time_chart"]

WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 58, 58, 34, 40
BAR_HEIGHT, LABEL_WIDTH = 22, 230


def esc(text: object) -> str:
    """Text for HTML or SVG, quotes included (attributes too)."""
    return escape(str(text), quote=True)


def number(value: float) -> str:
    """A short figure for an axis: 950, 1.2k, 3.4M; fractions below 10 keep one decimal."""
    magnitude = abs(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            return f"{value / size:.3g}{suffix}"
    if magnitude and magnitude < 10 and value != int(value):
        return f"{value:.2g}"
    return f"{value:.0f}"


@dataclass(frozen=True)
class Mark:
    """One drawn value: at time `x` (epoch seconds), `y`, its tooltip, and a color of its own (bars). A bar
    with `parts` (value, color) is stacked from them, bottom first; each part at least 2 px high, so that
    one refused run among many is still seen."""

    x: float
    y: float
    tip: str
    color: str | None = None
    parts: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class Series:
    """A named set of marks drawn one way (`bars`, `line` or `dots`), on the left or the right axis."""

    name: str
    color: str
    kind: str
    marks: Sequence[Mark]
    right: bool = False


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label and its stacked parts, (value, color, tooltip) each."""

    label: str
    parts: Sequence[tuple[float, str, str]]
    note: str = ""
    tip: str = ""


@dataclass
class _Canvas:
    title: str
    subtitle: str
    height: int = HEIGHT
    width: int = WIDTH
    body: list[str] = field(default_factory=list)

    def add(self, markup: str) -> None:
        self.body.append(markup)

    def figure(self, legend: Sequence[tuple[str, str, str]] = (), kind: str = "chart") -> str:
        label = esc(self.title)
        svg = (f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{label}" '
               f'xmlns="http://www.w3.org/2000/svg">{"".join(self.body)}</svg>')
        keys = "".join(f'<span class="key"><i class="swatch {esc(shape)}" style="background:{esc(color)}"></i>'
                       f"{esc(name)}</span>" for name, color, shape in legend)
        caption = f'<figcaption><b>{label}</b>{f" <span>{esc(self.subtitle)}</span>" if self.subtitle else ""}'
        caption += f'<div class="legend">{keys}</div></figcaption>' if keys else "</figcaption>"
        return f'<figure class="{kind}">{caption}{svg}</figure>'


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _value_ticks(low: float, high: float) -> tuple[float, float, list[float]]:
    """An axis from below `low` to above `high` in round steps; (axis low, axis high, ticks)."""
    if high <= low:
        high = low + 1
    step = _nice_step(high - low)
    bottom, top = math.floor(low / step) * step, math.ceil(high / step) * step
    count = round((top - bottom) / step)
    return bottom, top, [bottom + i * step for i in range(count + 1)]


_TIME_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400,
               28 * 86400, 91 * 86400)


def _time_ticks(start: float, end: float) -> list[tuple[float, str]]:
    """Round UTC moments between `start` and `end`, labelled at their scale (time of day, or date)."""
    span = max(end - start, 60.0)
    step = next((s for s in _TIME_STEPS if span / s <= 6), _TIME_STEPS[-1])
    first = math.ceil(start / step) * step
    ticks, last_day = [], None
    moment = first
    while moment <= end:
        when = dt.datetime.fromtimestamp(moment, dt.timezone.utc)
        if step >= 86400:
            label = when.strftime("%b %d")
        elif when.date() != last_day:
            label = when.strftime("%b %d %H:%M")
        else:
            label = when.strftime("%H:%M")
        last_day = when.date()
        ticks.append((moment, label))
        moment += step
    return ticks


def time_chart(title: str, series: Sequence[Series], *, start: float, end: float, left_label: str,
               right_label: str = "", subtitle: str = "", bucket: float = 0.0,
               legend: Sequence[tuple[str, str, str]] | None = None, width: int = WIDTH) -> str:
    """A chart of `series` between the epoch seconds `start` and `end`, `width` units wide. Bars are
    `bucket` seconds wide (at least 3 px, at most 24); the left axis covers the left series, the right
    one the others."""
    canvas = _Canvas(title, subtitle, width=width)
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if end <= start:
        start, end = start - 1800, end + 1800
    pad = max(bucket / 2, (end - start) * 0.02)
    x0, x1 = start - pad, end + pad

    def x_of(value: float) -> float:
        return LEFT + (value - x0) / (x1 - x0) * plot_w

    axes = {}
    for right in (False, True):
        values = [mark.y for item in series if item.right == right for mark in item.marks]
        if values:
            axes[right] = _value_ticks(min(0.0, *values), max(0.0, *values))
    for tick, label in _time_ticks(x0, x1):
        x = x_of(tick)
        canvas.add(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                   f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{esc(label)}</text>')
    for right, (low, high, ticks) in axes.items():
        for tick in ticks:
            y = TOP + plot_h - (tick - low) / (high - low) * plot_h
            if not right:
                canvas.add(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
            x, anchor = (LEFT + plot_w + 6, "start") if right else (LEFT - 6, "end")
            canvas.add(f'<text class="tick" x="{x}" y="{y + 4:.1f}" text-anchor="{anchor}">{number(tick)}</text>')
    canvas.add(f'<text class="axis-label" x="{LEFT - 6}" y="{TOP - 12}" text-anchor="start">{esc(left_label)}</text>')
    if right_label and True in axes:
        canvas.add(f'<text class="axis-label" x="{LEFT + plot_w + 6}" y="{TOP - 12}" '
                   f'text-anchor="end">{esc(right_label)}</text>')
    canvas.add(f'<text class="axis-label" x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
               f'time (UTC)</text>')
    bar = min(24.0, max(3.0, bucket / (x1 - x0) * plot_w * 0.8)) if bucket else 6.0
    for item in series:
        if item.right not in axes:
            continue
        low, high, _ = axes[item.right]

        def y_of(value: float, low: float = low, high: float = high) -> float:
            return TOP + plot_h - (value - low) / (high - low) * plot_h

        canvas.add(f'<g class="series {esc(item.kind)}" data-series="{esc(item.name)}">'
                   f"{_marks(item, x_of, y_of, bar)}</g>")
        if 0 > low and not item.right:
            zero = y_of(0)
            canvas.add(f'<line class="zero" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{zero:.1f}" y2="{zero:.1f}"/>')
    canvas.add(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>')
    keys = legend if legend is not None else [(item.name, item.color, item.kind) for item in series]
    return canvas.figure(keys)


def _marks(item: Series, x_of, y_of, width: float) -> str:
    out = []
    if item.kind == "line" and len(item.marks) > 1:
        points = " ".join(f"{x_of(m.x):.1f},{y_of(m.y):.1f}" for m in item.marks)
        out.append(f'<polyline class="line" points="{points}" stroke="{esc(item.color)}"><title>'
                   f"{esc(item.name)}</title></polyline>")
    for mark in item.marks:
        color = esc(mark.color or item.color)
        x, y, base = x_of(mark.x), y_of(mark.y), y_of(0)
        if item.kind == "bars" and mark.parts:
            out.append(f"<g><title>{esc(mark.tip)}</title>")
            for value, part_color in mark.parts:
                height = max(y_of(0) - y_of(value), 2.0)
                base -= height
                out.append(f'<rect class="bar" x="{x - width / 2:.1f}" y="{base:.1f}" width="{width:.1f}" '
                           f'height="{height:.1f}" fill="{esc(part_color)}"/>')
            out.append("</g>")
        elif item.kind == "bars":
            top, height = min(y, base), max(abs(base - y), 1.0)
            out.append(f'<rect class="bar" x="{x - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" '
                       f'height="{height:.1f}" fill="{color}"><title>{esc(mark.tip)}</title></rect>')
        else:
            radius = 3.2 if item.kind == "dots" else 2.4
            out.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{color}">'
                       f"<title>{esc(mark.tip)}</title></circle>")
    return "".join(out)


def bar_chart(title: str, bars: Sequence[Bar], *, unit: str, subtitle: str = "",
              legend: Sequence[tuple[str, str, str]] = (), width: int = WIDTH, notes: int = 70) -> str:
    """Horizontal bars in the order given, each label on the left and its total (or note) at its end,
    `notes` units left for those."""
    top = 8
    height = top + len(bars) * BAR_HEIGHT + BOTTOM
    canvas = _Canvas(title, subtitle, height=height, width=width)
    plot_w = width - LABEL_WIDTH - notes
    totals = [sum(value for value, _, _ in bar.parts) for bar in bars]
    _, high, ticks = _value_ticks(0.0, max(totals, default=1.0) or 1.0)
    bottom = top + len(bars) * BAR_HEIGHT
    for tick in ticks:
        x = LABEL_WIDTH + tick / high * plot_w
        canvas.add(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{bottom}"/>'
                   f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{number(tick)}</text>')
    canvas.add(f'<text class="axis-label" x="{LABEL_WIDTH + plot_w / 2:.0f}" y="{bottom + 34}" '
               f'text-anchor="middle">{esc(unit)}</text>')
    for row, (bar, total) in enumerate(zip(bars, totals)):
        y = top + row * BAR_HEIGHT
        label = bar.label if len(bar.label) <= 32 else bar.label[:31] + "…"
        canvas.add(f'<text class="label" x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">{esc(label)}'
                   f"<title>{esc(bar.tip or bar.label)}</title></text>")
        x = float(LABEL_WIDTH)
        for value, color, tip in bar.parts:
            length = max(value / high * plot_w, 1.0)
            canvas.add(f'<rect class="bar" x="{x:.1f}" y="{y + 4}" width="{length:.1f}" height="{BAR_HEIGHT - 8}" '
                       f'fill="{esc(color)}"><title>{esc(tip)}</title></rect>')
            x += length
        canvas.add(f'<text class="value" x="{x + 6:.1f}" y="{y + 15}">{esc(bar.note or number(total))}</text>')
    return canvas.figure(legend, kind="chart bars")
