"""An inline SVG chart of a connector's hourly mail volume against its baseline band.

Why SVG built here rather than a charting library: the page must be self-contained (no scripts,
no CDNs) and readable offline, printed or mailed; a bar per hour, the normal band as a shaded
area, its median as a dashed line, and numbered markers for configuration changes (C1...) and
admin logon anomalies (A1...) on the time axis say what an analyst needs. Attacker-controlled
text only reaches the SVG through :func:`grading.report.markup.el`, as escaped ``<title>`` text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from grading.report.markup import Markup, el
from grading.report.model import Marker, parse_time

WIDTH, HEIGHT = 960, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 32, 40, 40
HOUR = timedelta(hours=1)

COLOURS = {
    "bar": "#4f7fc4",
    "above": "#d92d20",
    "band": "#cfe8d5",
    "median": "#2f7a45",
    "change": "#6941c6",
    "admin": "#e07000",
    "grid": "#e4e7ec",
    "axis": "#475467",
}


@dataclass(frozen=True)
class Frame:
    """Maps hours and message counts to plot coordinates."""

    start: datetime
    hours: int
    ymax: float

    @property
    def plot_w(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def plot_h(self) -> float:
        return HEIGHT - TOP - BOTTOM

    def x(self, t: datetime) -> float:
        return LEFT + (t - self.start) / HOUR * self.plot_w / max(self.hours, 1)

    def y(self, value: float) -> float:
        return TOP + self.plot_h * (1 - min(value, self.ymax) / self.ymax)

    def contains(self, t: datetime) -> bool:
        return self.start <= t <= self.start + self.hours * HOUR


def nice_step(span: float, target: int = 5) -> float:
    """A 1/2/5 x 10^k step that cuts *span* into about *target* intervals."""
    raw = max(span, 1.0) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return max(step, 1.0)


def _series(verdict: dict[str, Any]) -> list[tuple[datetime, float]]:
    hourly = ((verdict.get("evidence") or {}).get("hourlyVolume") or {}).get("series") or []
    out = []
    for point in hourly:
        t = parse_time(point.get("hour"))
        if t is not None:
            out.append((t, float(point.get("messages") or 0)))
    return sorted(out)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _y_axis(frame: Frame) -> list[Markup]:
    step = nice_step(frame.ymax)
    out = []
    tick = 0.0
    while tick <= frame.ymax + 1e-9:
        y = frame.y(tick)
        out.append(el("line", {"x1": LEFT, "x2": WIDTH - RIGHT, "y1": y, "y2": y, "stroke": COLOURS["grid"]}))
        out.append(el("text", {"x": LEFT - 6, "y": y + 4, "text-anchor": "end", "class": "tick"}, _fmt(tick)))
        tick += step
    out.append(
        el(
            "text",
            {
                "x": 14,
                "y": TOP + frame.plot_h / 2,
                "class": "axis-label",
                "text-anchor": "middle",
                "transform": f"rotate(-90 14 {TOP + frame.plot_h / 2:.0f})",
            },
            "messages / hour",
        )
    )
    return out


def _x_axis(frame: Frame) -> list[Markup]:
    step = next(s for s in (1, 2, 3, 4, 6, 12, 24, 48, 72, 168, 336, 720) if frame.hours / s <= 12 or s == 720)
    base = frame.y(0)
    out = [el("line", {"x1": LEFT, "x2": WIDTH - RIGHT, "y1": base, "y2": base, "stroke": COLOURS["axis"]})]
    last_day = None
    for i in range(0, frame.hours + 1, step):
        t = frame.start + i * HOUR
        x = frame.x(t)
        out.append(el("line", {"x1": x, "x2": x, "y1": base, "y2": base + 5, "stroke": COLOURS["axis"]}))
        out.append(el("text", {"x": x, "y": base + 18, "text-anchor": "middle", "class": "tick"}, f"{t:%H:%M}"))
        if t.date() != last_day:
            out.append(el("text", {"x": x, "y": base + 31, "text-anchor": "middle", "class": "tick day"}, f"{t:%b %d}"))
            last_day = t.date()
    return out


def _band(frame: Frame, baseline: dict[str, Any] | None) -> list[Markup]:
    if not baseline:
        return []  # the legend under the chart says why there is none
    upper = float(baseline.get("upper") or 0)
    median = float(baseline.get("median") or 0)
    right = WIDTH - RIGHT
    return [
        el(
            "rect",
            {
                "class": "band",
                "x": LEFT,
                "y": frame.y(upper),
                "width": right - LEFT,
                "height": frame.y(0) - frame.y(upper),
                "fill": COLOURS["band"],
            },
            el(
                "title",
                None,
                f"normal band: up to {_fmt(upper)} messages/h (median {_fmt(median)}, "
                f"from {baseline.get('hours') or 0} h of history)",
            ),
        ),
        el(
            "line",
            {
                "class": "median",
                "x1": LEFT,
                "x2": right,
                "y1": frame.y(median),
                "y2": frame.y(median),
                "stroke": COLOURS["median"],
                "stroke-dasharray": "6 4",
                "stroke-width": 1.5,
            },
        ),
    ]


def _bars(frame: Frame, series: list[tuple[datetime, float]], upper: float | None) -> list[Markup]:
    width = frame.plot_w / max(frame.hours, 1)
    gap = min(2.0, width * 0.2)
    out = []
    for t, messages in series:
        if messages <= 0:
            continue
        above = upper is not None and messages > upper
        out.append(
            el(
                "rect",
                {
                    "class": "bar above" if above else "bar",
                    "x": frame.x(t) + gap / 2,
                    "y": frame.y(messages),
                    "width": max(width - gap, 0.5),
                    "height": frame.y(0) - frame.y(messages),
                    "fill": COLOURS["above" if above else "bar"],
                },
                el(
                    "title",
                    None,
                    f"{t:%Y-%m-%d %H:00} UTC: {_fmt(messages)} messages"
                    + (" (above the normal band)" if above else ""),
                ),
            )
        )
    return out


def _markers(frame: Frame, markers: list[Marker]) -> list[Markup]:
    out = []
    base = frame.y(0)
    placed: dict[str, list[float]] = {"change": [], "admin": []}
    for m in markers:
        if not frame.contains(m.time):
            continue
        x = frame.x(m.time)
        # Events close in time share a line; their labels move right instead of overprinting.
        crowd = sum(1 for other in placed[m.kind] if abs(other - x) < 30)
        placed[m.kind].append(x)
        colour = COLOURS[m.kind]
        tip = el("title", None, f"{m.label} {m.time:%Y-%m-%d %H:%M} UTC: {m.description}")
        if m.kind == "change":
            shape = el("path", {"d": f"M{x - 6:.1f},{TOP - 16} h12 l-6,8 z", "fill": colour})
            label_y, anchor_y = TOP - 20, TOP - 8
        else:
            shape = el("path", {"d": f"M{x:.1f},{base - 7} l6,7 l-6,7 l-6,-7 z", "fill": colour})
            label_y, anchor_y = base - 10, base
        out.append(
            el(
                "g",
                {"class": f"marker {m.kind}"},
                tip,
                el(
                    "line",
                    {
                        "class": "marker-line",
                        "x1": x,
                        "x2": x,
                        "y1": anchor_y,
                        "y2": base if m.kind == "change" else TOP,
                        "stroke": colour,
                        "stroke-width": 1.5,
                        "stroke-dasharray": "3 3",
                    },
                ),
                shape,
                el("text", {"x": x + 8 + 26 * crowd, "y": label_y, "class": "marker-label", "fill": colour}, m.label),
            )
        )
    return out


def volume_chart(verdict: dict[str, Any], markers: list[Marker], chart_id: str) -> Markup:
    """The chart of one verdict's ``evidence.hourlyVolume``, *markers* on its time axis."""
    volume = (verdict.get("evidence") or {}).get("hourlyVolume") or {}
    baseline = volume.get("baseline")
    series = _series(verdict)
    if series:
        start, hours = series[0][0], int((series[-1][0] - series[0][0]) / HOUR) + 1
    else:
        times = [m.time for m in markers] or [datetime.now().astimezone()]
        start, hours = min(times).replace(minute=0, second=0, microsecond=0), 24
    peak = max((m for _, m in series), default=0.0)
    upper = float(baseline["upper"]) if baseline and baseline.get("upper") is not None else None
    top = max(peak, upper or 0.0, 1.0) * 1.1
    frame = Frame(start, hours, nice_step(top) * math.ceil(top / nice_step(top)))
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    above = sum(1 for _, m in series if upper is not None and m > upper)
    summary = (
        f"{len(series)} hours, peak {_fmt(peak)} messages/h"
        + (
            f", {above} hour(s) above the normal band (up to {_fmt(upper)})"
            if upper is not None
            else f", no baseline band ({volume.get('baselineReason') or 'no history'})"
        )
        + f"; {sum(1 for m in markers if m.kind == 'change')} configuration change(s), "
        f"{sum(1 for m in markers if m.kind == 'admin')} admin logon anomaly(ies)"
    )
    parts: list[Any] = [
        el("title", {"id": title_id}, f"Hourly mail volume of connector {verdict.get('connector')}"),
        el("desc", {"id": desc_id}, summary),
        _band(frame, baseline),
        _y_axis(frame),
        _bars(frame, series, upper),
        _x_axis(frame),
        _markers(frame, markers),
    ]
    if not series:
        parts.append(
            el(
                "text",
                {"x": LEFT + frame.plot_w / 2, "y": TOP + frame.plot_h / 2, "class": "note", "text-anchor": "middle"},
                "No mail through this connector in the window",
            )
        )
    return el(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "class": "chart",
            "role": "img",
            "aria-labelledby": f"{title_id} {desc_id}",
            "id": chart_id,
        },
        *parts,
    )
