"""Charts of an objective's metric over the intervals, as self-contained SVG files.

Hand-written SVG keeps plotting free of dependencies (no matplotlib in a test run): a line per
version, the objective's limits as horizontal lines, axes with round ticks. Every element a
tool may want to read carries a ``data-*`` attribute, so a chart is also machine-checkable.

>>> dark = Series("dark", [(1.0, 7.1), (2.0, 7.3)])
>>> live = Series("live", [(1.0, 6.9), (2.0, None)])
>>> svg = chart("mean-latency <= 50", "ms", [live, dark], [Limit("upper", 50.0)])
>>> svg.count('class="series"')
2
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from pytest_darklaunch.core.experiment import ExperimentData
    from pytest_darklaunch.core.verdict import Verdict
    from pytest_darklaunch.session import DarklaunchSession

WIDTH, HEIGHT = 720, 360  # of a chart, in SVG pixels
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 56, 48
COLORS = {"dark": "#7b2cbf", "live": "#1f77b4"}
LIMIT_COLOR = "#c0392b"


@dataclass(frozen=True)
class Series:
    """One version's values: ``(seconds since the experiment started, value or None)``."""

    version: str
    points: Sequence[tuple[float, float | None]]


@dataclass(frozen=True)
class Limit:
    """A horizontal line: ``kind`` is ``upper`` or ``lower``."""

    kind: str
    value: float


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]``: steps of 1, 2 or 5 times a power of ten.

    >>> nice_ticks(0, 23)
    [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    """
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    for k in range(3 * count + 2):  # hi is reached within about count + 1 steps
        value = round(first + k * step, 12)
        ticks.append(value)
        if value >= hi:
            break
    return ticks


def _num(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class _Frame:
    """The plot area and its scales: data values to SVG pixels."""

    x_ticks: Sequence[float]
    y_ticks: Sequence[float]

    def px(self, x: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * x / self.x_ticks[-1]

    def py(self, y: float) -> float:
        lo, hi = self.y_ticks[0], self.y_ticks[-1]
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (y - lo) / (hi - lo))


def chart(
    title: str,
    units: str,
    series: Sequence[Series],
    limits: Sequence[Limit],
    subtitle: str = "",
    outcome: str = "",
) -> str:
    """An SVG document: one ``<path class="series" data-version=...>`` per series.

    A missing value (``None``) breaks the line instead of being drawn as zero.
    """
    values = [v for s in series for _, v in s.points if v is not None and math.isfinite(v)]
    values += [limit.value for limit in limits]
    xs = [x for s in series for x, _ in s.points]
    x_hi = max(xs) if xs else 1.0
    frame = _Frame(
        x_ticks=nice_ticks(0.0, x_hi or 1.0, 6),
        y_ticks=nice_ticks(min([0.0, *values]), max([0.0, *values]) * 1.05 or 1.0),
    )
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" '
        f"data-title={quoteattr(title)} data-units={quoteattr(units)} "
        f"data-outcome={quoteattr(outcome)}>",
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="40" fill="#555">{escape(subtitle)}</text>',
        *_axes(frame, units),
        *_limit_lines(frame, limits),
        *_series_lines(frame, series, units),
        *_legend(series),
        "</svg>",
    ]
    return "\n".join(out) + "\n"


def _axes(frame: _Frame, units: str) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = []
    for y in frame.y_ticks:
        py = frame.py(y)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" '
            'stroke="#e5e5e5"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{_num(y)}</text>')
    for x in frame.x_ticks:
        out.append(
            f'<text x="{frame.px(x):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{_num(x)}</text>"
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
        "seconds since the experiment started (end of each interval)</text>"
    )
    out.append(
        f'<text transform="translate(16 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(units or "value")}</text>'
    )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    return out


def _limit_lines(frame: _Frame, limits: Sequence[Limit]) -> list[str]:
    out = []
    for limit in limits:
        y = frame.py(limit.value)
        out.append(
            f'<line class="limit" data-limit="{limit.kind}" data-value="{limit.value!r}" '
            f'x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{LIMIT_COLOR}" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text x="{WIDTH - RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end" '
            f'fill="{LIMIT_COLOR}">{limit.kind} limit {_num(limit.value)}</text>'
        )
    return out


def _series_lines(frame: _Frame, series: Sequence[Series], units: str) -> list[str]:
    out = []
    for s in series:
        color = COLORS.get(s.version, "#333")
        out.append(
            f'<path class="series" data-version={quoteattr(s.version)} '
            f'd="{_path(s.points, frame.px, frame.py)}" fill="none" stroke="{color}" '
            'stroke-width="2"/>'
        )
        for x, v in s.points:
            if v is None or not math.isfinite(v):
                continue
            out.append(
                f'<circle class="point" data-version={quoteattr(s.version)} '
                f'cx="{frame.px(x):.1f}" cy="{frame.py(v):.1f}" r="3" fill="{color}">'
                f"<title>{escape(s.version)} t+{_num(x)} s: {_num(v)} {escape(units)}</title>"
                "</circle>"
            )
    return out


def _legend(series: Sequence[Series]) -> list[str]:
    out = []
    for k, s in enumerate(series):
        x = LEFT + 10 + 90 * k
        color = COLORS.get(s.version, "#333")
        out.append(
            f'<line x1="{x}" x2="{x + 20}" y1="{TOP + 14}" y2="{TOP + 14}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        out.append(f'<text x="{x + 26}" y="{TOP + 18}">{escape(s.version)}</text>')
    return out


def _path(
    points: Sequence[tuple[float, float | None]],
    px: Callable[[float], float],
    py: Callable[[float], float],
) -> str:
    """``M``/``L`` commands; a missing value starts a new segment."""
    parts: list[str] = []
    pen_down = False
    for x, v in points:
        if v is None or not math.isfinite(v):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{px(x):.1f},{py(v):.1f}")
        pen_down = True
    return " ".join(parts)


def _points(
    data: ExperimentData | None, metric: str, key: str
) -> list[tuple[float, float | None]]:
    """``(seconds since the start, value)`` of each interval on window ``key`` (a role, or a
    role on a route); none when that window was not measured."""
    if data is None or not data.intervals or key not in data.intervals[0].windows:
        return []
    return [(i.end - data.started_at, e.value) for i, e in data.series(metric, key)]


def objective_charts(
    darklaunch: DarklaunchSession, verdicts: Sequence[Verdict]
) -> list[tuple[str, str]]:
    """``(test id, SVG document)`` per spec objective of the run: its metric per interval for
    live and dark, its limits and its outcome (written by :func:`write_plots`, inlined in the
    pytest-html report)."""
    from pytest_darklaunch.core.routes import window_key
    from pytest_darklaunch.core.units import format_value
    from pytest_darklaunch.report.assessment import (
        limit_text,
        objective_files,
        shown_values,
    )

    spec, data = darklaunch.spec, darklaunch.data
    out = []
    by_objective = {v.objective: v for v in verdicts}
    for ident, obj in objective_files(spec):
        units = spec.units_of(obj.metric)
        # live first, so dark is drawn on top where the two overlap
        series = [
            Series(role, _points(data, obj.metric, window_key(role, obj.route)))
            for role in ("live", "dark")
        ]
        limits = [
            Limit(kind, value)
            for kind, value in (("upper", obj.upper), ("lower", obj.lower))
            if value is not None
        ]
        v = by_objective.get(obj)
        outcome = v.outcome if v else ""
        subtitle = f"per-interval values; limit {limit_text(obj, units) or 'none'}"
        if v is not None:
            dark, live = shown_values(v, data)
            subtitle += (
                f"; cumulative dark {format_value(dark, units)}, "
                f"live {format_value(live, units)}: {outcome}"
            )
        out.append((ident, chart(obj.label, units, series, limits, subtitle, outcome)))
    return out


def write_plots(
    directory: str, darklaunch: DarklaunchSession, verdicts: Sequence[Verdict]
) -> dict[str, str]:
    """One SVG per spec objective of the run, named by the objective's test id
    (``mean-latency.svg``); returns ``{id: path}``."""
    os.makedirs(directory, exist_ok=True)
    out = {}
    for ident, svg in objective_charts(darklaunch, verdicts):
        path = os.path.join(directory, re.sub(r"[^A-Za-z0-9._-]+", "_", ident) + ".svg")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(svg)
        out[ident] = path
    return out
