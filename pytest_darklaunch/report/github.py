"""GitHub Actions output: ``::error`` annotations and the job summary in Markdown."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict import FAIL, INCONCLUSIVE, PASS, Verdict
from pytest_darklaunch.report.assessment import (
    limit_text,
    metric_rows,
    mirror_facts,
    run_error,
    shown_values,
    summary_counts,
)

if TYPE_CHECKING:
    from pytest_darklaunch.session import DarklaunchSession


def in_github() -> bool:
    """True on GitHub Actions (a job summary file or the runner's own variable)."""
    return bool(os.environ.get("GITHUB_STEP_SUMMARY")) or os.environ.get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(verdicts: Sequence[Verdict], inconclusive: str = "fail") -> list[str]:
    """``::error title=darklaunch <metric>::<reason>`` for each failed objective (an
    inconclusive one is an error too when it fails its test, else a warning)."""
    out = []
    for v in verdicts:
        if v.outcome == PASS:
            continue
        kind = "error" if v.outcome == FAIL or inconclusive == "fail" else "warning"
        title = _escape_property(f"darklaunch {v.objective.subject}")
        message = _escape_data(f"{v.objective.label}: {v.outcome}: {v.reason}")
        out.append(f"::{kind} title={title}::{message}")
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_ICON = {PASS: "✅ pass", FAIL: "❌ fail", INCONCLUSIVE: "⚠️ inconclusive"}


def markdown_summary(
    darklaunch: DarklaunchSession, verdicts: Sequence[Verdict], plots: Sequence[tuple[str, str]]
) -> str:
    """The GitHub job summary: a headline, the objective and metrics assessment, plot links."""
    lines = _headline(darklaunch, verdicts)
    lines += _objective_table(darklaunch, verdicts)
    lines += _metrics_table(darklaunch)
    lines += _trend_charts(darklaunch)
    lines += _plot_links(plots)
    return "\n".join(lines) + "\n\n"


def _headline(darklaunch: DarklaunchSession, verdicts: Sequence[Verdict]) -> list[str]:
    """The counts by outcome, what ran how and for how long, and the run's error if any."""
    spec, data = darklaunch.spec, darklaunch.data
    observed_percent = mirror_facts(spec, data)["observed_percent"]
    observed = "" if observed_percent is None else f" (observed {observed_percent:.1f}%)"
    done = (
        f"{len(data.intervals)} of {data.planned}" if data else f"0 of {spec.duration.iterations}"
    )
    why = (data.stop_reason or data.stage) if data else "did not run"
    lines = [
        f"### darklaunch {spec.target}: {summary_counts(verdicts)}",
        "",
        f"live `{spec.versions.live.revision}`, dark `{spec.versions.dark.revision}` · backend "
        f"{darklaunch.resolved.settings.backend} · mirror {spec.mirror.percent:g}%{observed} · "
        f"{spec.traffic.rate_rps:g} requests/s · {done} intervals of "
        f"{spec.duration.interval_s:g} s ({_md(why)})",
        "",
    ]
    error = run_error(darklaunch)
    if error:
        lines += [f"**Error:** {_md(error)}", ""]
    return lines


def _objective_table(darklaunch: DarklaunchSession, verdicts: Sequence[Verdict]) -> list[str]:
    spec, data = darklaunch.spec, darklaunch.data
    lines = [
        "#### Objective assessment",
        "",
        "| Objective | Limit | Dark | Live | Samples | Outcome | Reason |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for v in verdicts:
        units = spec.units_of(v.objective.metric)
        dark, live = shown_values(v, data)
        lines.append(
            f"| {_md(v.objective.subject)} | {_md(limit_text(v.objective, units))} | "
            f"{format_value(dark, units)} | {format_value(live, units)} | {v.samples} | "
            f"{_ICON.get(v.outcome, v.outcome)} | {_md(v.reason)} |"
        )
    return lines


def _metrics_table(darklaunch: DarklaunchSession) -> list[str]:
    rows = metric_rows(darklaunch.spec, darklaunch.data)
    if not rows:
        return []
    return [
        "",
        "#### Metrics assessment (cumulative window)",
        "",
        "| Metric | Dark | Live | Dark vs live | Units | Samples (dark / live) |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
        *(
            f"| {_md(r.metric if r.route is None else f'{r.metric} (route {r.route})')} | "
            f"{format_value(r.dark.value)} | {format_value(r.live.value)} | "
            f"{r.change} | {r.units} | {r.dark.samples} / {r.live.samples} |"
            for r in rows
        ),
    ]


def _plot_links(plots: Sequence[tuple[str, str]]) -> list[str]:
    """Links to the chart files: in this run's artifacts on GitHub, else their paths."""
    if not plots:
        return []
    run = _run_url()
    lines = ["", "#### Plots", ""]
    lines += [
        f"- [{_md(label)}]({run or path.replace(' ', '%20')}) `{path}`" for label, path in plots
    ]
    if run:
        lines += ["", "(the chart files are in this run's artifacts)"]
    return lines


# -- Mermaid charts: GitHub draws them in the job summary, where the SVG files cannot be shown --

# Mermaid's xychart has no legend: a caption under each chart names the lines by colour, given
# here in the order they are drawn (the SVG charts' colours, so both read alike).
_COLOURS = {"dark": ("#7b2cbf", "purple"), "live": ("#1f77b4", "blue"), "limit": ("#c0392b", "red")}
Line = tuple[str, str, Sequence[float | None]]  # name, colour key, one value per interval


def _quoted(text: str) -> str:
    """A Mermaid string: no double quote inside, and no ``<`` that its HTML sanitiser could
    take for a tag."""
    text = text.replace('"', "'").replace("<=", "≤").replace(">=", "≥").replace("<", "‹")
    return f'"{text}"'


def _axis_top(value: float) -> float:
    """The y axis' end: a round number (one or two significant digits) at or above ``value``
    (> 0), so a limit of 50 gets an axis to 60, not 100."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value)


def _limit_lines(obj: Objective, live: Sequence[float | None]) -> list[Line]:
    """The objective's limits per interval: flat for ``upper``/``lower``, following live for
    ``max_increase``."""
    out: list[Line] = [
        (f"{kind} limit {value:g}", "limit", [value] * len(live))
        for kind, value in (("upper", obj.upper), ("lower", obj.lower))
        if value is not None
    ]
    inc = obj.max_increase
    if inc is not None:
        over = [
            None if v is None else v * (1 + inc.amount) if inc.relative else v + inc.amount
            for v in live
        ]
        out.append((f"limit live +{inc}", "limit", over))
    return out


def mermaid_chart(
    title: str, units: str, ends: Sequence[float], lines: Sequence[Line]
) -> list[str]:
    """A fenced ``xychart-beta`` block with one ``line`` per :data:`Line`, x being the end of
    each interval, then a caption naming the lines. A line with a missing value is left out
    and named in the caption: Mermaid cannot draw a gap, and a made-up value would lie."""
    drawn = [
        (name, key, [v for v in vs if v is not None]) for name, key, vs in lines if None not in vs
    ]
    missing = [name for name, _, vs in lines if None in vs]
    values = [v for _, _, vs in drawn for v in vs]
    low = min([0.0, *values])
    top = _axis_top(max([*values, 0.0]) * 1.05 or 1.0)
    caption = ", ".join(f"{_COLOURS[key][1]}: {name}" for name, key, _ in drawn)
    if missing:
        caption += "; not drawn (no data in some intervals): " + ", ".join(missing)
    return [
        "```mermaid",
        "---",
        "config:",
        "  themeVariables:",
        "    xyChart:",
        f'      plotColorPalette: "{", ".join(_COLOURS[key][0] for _, key, _ in drawn)}"',
        "---",
        "xychart-beta",
        f"  title {_quoted(title)}",
        '  x-axis "seconds since the experiment started" ['
        + ", ".join(f'"{e:g}"' for e in ends)
        + "]",
        f"  y-axis {_quoted(units or 'value')} {low:g} --> {top:g}",
        *(f"  line [{', '.join(f'{v:.6g}' for v in vs)}]" for _, _, vs in drawn),
        "```",
        "",
        f"<sub>{_md(caption)}</sub>",
        "",
    ]


def _trend_charts(darklaunch: DarklaunchSession) -> list[str]:
    """One chart per objective: its metric per interval for dark and live, and its limit."""
    spec, data = darklaunch.spec, darklaunch.data
    if data is None or not data.intervals:
        return []
    ends = [round(i.end - data.started_at, 1) for i in data.intervals]
    out = ["", "#### Trends per interval", ""]
    for obj in spec.objectives:
        dark, live = ([e.value for _, e in data.series(obj.metric, r)] for r in ("dark", "live"))
        lines: list[Line] = [("dark", "dark", dark), ("live", "live", live)]
        out += mermaid_chart(
            obj.label, spec.units_of(obj.metric), ends, [*lines, *_limit_lines(obj, live)]
        )
    return out


def _run_url() -> str:
    """This workflow run's artifacts, where the chart files end up once uploaded."""
    env = os.environ
    keys = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(env.get(k) for k in keys):
        return ""
    return "{}/{}/actions/runs/{}#artifacts".format(*(env[k] for k in keys))
