"""GitHub Actions output: ``::error`` annotations and the job summary in Markdown."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    lines += [
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
    rows = metric_rows(spec, data)
    if rows:
        lines += [
            "",
            "#### Metrics assessment (cumulative window)",
            "",
            "| Metric | Dark | Live | Dark vs live | Units | Samples (dark / live) |",
            "| --- | ---: | ---: | ---: | --- | ---: |",
        ]
        lines += [
            f"| {_md(r.metric if r.route is None else f'{r.metric} (route {r.route})')} | "
            f"{format_value(r.dark.value)} | {format_value(r.live.value)} | "
            f"{r.change} | {r.units} | {r.dark.samples} / {r.live.samples} |"
            for r in rows
        ]
    if plots:
        run = _run_url()
        lines += ["", "#### Plots", ""]
        lines += [
            f"- [{_md(label)}]({run or path.replace(' ', '%20')}) `{path}`" for label, path in plots
        ]
        if run:
            lines += ["", "(the chart files are in this run's artifacts)"]
    return "\n".join(lines) + "\n\n"


def _run_url() -> str:
    """This workflow run's artifacts, where the chart files end up once uploaded."""
    env = os.environ
    keys = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(env.get(k) for k in keys):
        return ""
    return "{}/{}/actions/runs/{}#artifacts".format(*(env[k] for k in keys))
