"""The terminal: the report header, and the summary after the tests (the counterpart of
``iter8ctl describe``), one function per section.

Everything here reads the session after the fact, through ``assessment``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.core.config import OPTIONS, Resolved
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict import FAIL, PASS, Verdict
from pytest_darklaunch.report.assessment import (
    comparison_of,
    final_verdicts,
    generator_facts,
    limit_text,
    metric_rows,
    mirror_facts,
    mirror_sentence,
    redact_url,
    route_mirror_facts,
    shown_values,
    summary_counts,
    traffic_text,
)
from pytest_darklaunch.session import KEPT_FAILED_RUNS
from pytest_darklaunch.version import __version__

if TYPE_CHECKING:
    from pytest_darklaunch.core.experiment import ExperimentData
    from pytest_darklaunch.report.files import Outputs
    from pytest_darklaunch.session import DarklaunchSession

LINE_WIDTH = 100  # of a wrapped summary line
_COLOR = {PASS: "green", FAIL: "red"}

# write(line, **markup): the terminal reporter's write_line
Write = Callable[..., None]


def header_lines(resolved: Resolved, run_id: str = "") -> list[str]:
    """``darklaunch: target=default/sample-app (--darklaunch-target), ...``, the objectives and
    the run id (what names the temp dir and labels the Kubernetes objects), of an active run."""
    parts = []
    for opt in OPTIONS:
        if opt.name in resolved.values:
            value = resolved.values[opt.name]
            if opt.name == "prometheus-url":
                value = redact_url(value)
            parts.append(f"{opt.name}={value} ({resolved.origin.get(opt.name, 'default')})")
    spec = resolved.spec
    assert spec is not None
    objectives = ", ".join(o.label for o in spec.objectives) or "none in the spec"
    lines = [
        f"darklaunch version: {__version__}",
        "darklaunch: " + ", ".join(parts),
        f"darklaunch objectives: {objectives}",
    ]
    if run_id:
        lines.append(f"darklaunch run id: {run_id}")
    return lines


def terminal_summary(reporter: Any, darklaunch: DarklaunchSession, outputs: Outputs) -> None:
    """Overview, progress, objective and metrics assessment, mirror check, generator, files;
    then GitHub annotations for failed objectives."""
    darklaunch.flush_progress(reporter.write_line)
    verdicts = final_verdicts(darklaunch)
    reporter.write_sep("=", f"darklaunch: {summary_counts(verdicts)}")
    write: Write = reporter.write_line
    _overview(write, darklaunch)
    _progress(write, darklaunch)
    _objectives(write, darklaunch, verdicts)
    _metrics(write, darklaunch)
    _mirror(write, darklaunch)
    _comparison(write, darklaunch)
    _generator(write, darklaunch)
    _files(write, outputs)
    from pytest_darklaunch.report.github import github_annotations, in_github

    if in_github():
        for line in github_annotations(verdicts, darklaunch.resolved.settings.inconclusive):
            write(line)


def _wrap(text: str, indent: int) -> list[str]:
    return textwrap.wrap(
        text,
        LINE_WIDTH,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + 2),
        break_on_hyphens=False,
    )


def _field(write: Write, label: str, text: str, **markup: bool) -> None:
    """``  label         text``, wrapped under the text."""
    lines = _wrap(text, 16) or [""]
    write(f"  {label:<12}  {lines[0].lstrip()}", **markup)
    for extra in lines[1:]:
        write(extra, **markup)


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=False))
            ).rstrip()
        )

    return [line(headers), *(line(r) for r in rows)]


def _when(ts: float | None, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    if not ts:
        return "n/a"
    return datetime.fromtimestamp(ts, UTC).strftime(pattern)


def _window(data: ExperimentData | None) -> str:
    if data and data.intervals:
        return f" (cumulative window {data.intervals[-1].end - data.started_at:.1f} s)"
    return ""


def _overview(write: Write, darklaunch: DarklaunchSession) -> None:
    spec, data, env = darklaunch.spec, darklaunch.data, darklaunch.environment
    write("Overview", bold=True)
    _field(write, "target", str(spec.target))
    where = (
        f"Prometheus {redact_url(env.prometheus_url)}, {env.metric_source} metrics" if env else ""
    )
    backend = darklaunch.resolved.settings.backend
    _field(write, "backend", f"{backend}" + (f" ({where})" if where else ""))
    versions = f"live {spec.versions.live.revision}, dark {spec.versions.dark.revision}"
    _field(write, "versions", versions)
    methods = "" if spec.mirror.all_methods else " " + "/".join(spec.mirror.methods)
    mirror = f"{spec.mirror.percent:g}% of live's{methods} requests (host {spec.mirror.host})"
    _field(write, "mirror", mirror)
    _field(write, "traffic", traffic_text(spec))
    duration = spec.duration
    ran = ""
    if data and data.started_at:
        ran = f"; ran {_when(data.started_at)}..{_when(data.finished_at, '%H:%M:%S')} UTC"
    planned = f"{duration.iterations} x {duration.interval_s:g} s planned ({duration.total_s:g} s)"
    _field(write, "duration", planned + ran)


def _progress(write: Write, darklaunch: DarklaunchSession) -> None:
    data = darklaunch.data
    write("Progress", bold=True)
    if darklaunch.error:
        _field(write, "error", darklaunch.error, red=True)
    if darklaunch.kept_dir:
        _field(write, "logs", f"kept, as for the newest {KEPT_FAILED_RUNS} failed runs, in:")
        write(" " * 16 + darklaunch.kept_dir)  # whole, to be copied: never wrapped
    if data is None:
        _field(write, "stage", "the experiment did not run")
        return
    _field(write, "iterations", f"{len(data.intervals)} of {data.planned} completed")
    _field(write, "stage", data.stage)
    if data.stop_reason:
        _field(write, "stop reason", data.stop_reason)
    if data.error and data.error != darklaunch.error:  # a provisioning error is in both
        _field(write, "error", data.error, red=True)


def _objectives(write: Write, darklaunch: DarklaunchSession, verdicts: list[Verdict]) -> None:
    spec, data = darklaunch.spec, darklaunch.data
    write(f"Objective assessment{_window(data)}", bold=True)
    rows, colors = [], []
    for v in verdicts:
        units = spec.units_of(v.objective.metric)
        dark, live = shown_values(v, data)
        rows.append(
            [
                v.objective.subject,
                limit_text(v.objective, units),
                format_value(dark, units),
                format_value(live, units),
                str(v.samples),
                v.outcome.upper(),
            ]
        )
        colors.append(_COLOR.get(v.outcome, "yellow"))
    table = _table(["OBJECTIVE", "LIMIT", "DARK", "LIVE", "SAMPLES", "OUTCOME"], rows, (2, 3, 4))
    write(table[0])
    for line, v, color in zip(table[1:], verdicts, colors, strict=False):
        write(line, **{color: True})
        # The run's own error is under Progress already: shown once.
        own = darklaunch.error and v.reason == darklaunch.error
        for extra in _wrap("the error under Progress" if own else v.reason, 6):
            write(extra)
    if not verdicts:
        write("  the spec declares no objectives")


def _metrics(write: Write, darklaunch: DarklaunchSession) -> None:
    rows = metric_rows(darklaunch.spec, darklaunch.data)
    write(f"Metrics assessment{_window(darklaunch.data)}", bold=True)
    if not rows:
        write("  no interval was completed")
        return
    cells = [
        [
            r.metric if r.route is None else f"  route {r.route}",
            format_value(r.dark.value),
            format_value(r.live.value),
            r.change,
            r.units or "-",
            f"{r.dark.samples}/{r.live.samples}",
        ]
        for r in rows
    ]
    headers = ["METRIC", "DARK", "LIVE", "DARK VS LIVE", "UNITS", "SAMPLES DARK/LIVE"]
    for line in _table(headers, cells, (1, 2, 3, 5)):
        write(line)


def _mirror(write: Write, darklaunch: DarklaunchSession) -> None:
    write("Mirror check", bold=True)
    mirror = mirror_facts(darklaunch.spec, darklaunch.data)
    mismatch = mirror["observed_percent"] is not None and not mirror["ok"]
    _field(write, "share", mirror_sentence(mirror), **({"red": True} if mismatch else {}))
    for name, facts in route_mirror_facts(darklaunch.spec, darklaunch.data).items():
        _route_share(write, name, facts)


def _route_share(write: Write, name: str, facts: dict[str, Any]) -> None:
    """One route's mirrored share, as its objectives' check sees it."""
    if facts["observed_percent"] is None:
        _field(write, f"route {name}", "no requests on the route")
        return
    lo, hi = facts["interval_percent"]
    verdict = "ok" if facts["ok"] else "MISMATCH: this route's objectives are inconclusive"
    _field(
        write,
        f"route {name}",
        f"observed {facts['observed_percent']:.1f}% (dark {format_value(facts['dark_requests'])}"
        f" of live {format_value(facts['live_requests'])}; 99.9% interval {lo:.1f}..{hi:.1f}%):"
        f" {verdict}",
        **({} if facts["ok"] else {"red": True}),
    )


def _comparison(write: Write, darklaunch: DarklaunchSession) -> None:
    found = comparison_of(darklaunch)
    if found is None:
        return
    from pytest_darklaunch.core.compare.render import terminal_lines

    heading, *lines = terminal_lines(*found)
    write(heading, bold=True)
    for line in lines:
        indent = len(line) - len(line.lstrip())
        for part in _wrap(line.lstrip(), indent) if len(line) > LINE_WIDTH else [line]:
            write(part)


def _generator(write: Write, darklaunch: DarklaunchSession) -> None:
    write("Generator", bold=True)
    gen = generator_facts(darklaunch.spec, darklaunch.data)
    if not gen["generated"]:
        text = "not generated by this run (provision none): live's own traffic is mirrored"
        _field(write, "traffic", text)
    elif gen["sent"] is None:
        backend = darklaunch.resolved.settings.backend
        text = f"target {gen['target_rps']:g} requests/s; the {backend} backend "
        _field(write, "traffic", text + "reported no generator counters")
    else:
        lag = ""
        if gen["lag_p50_ms"] is not None:
            p50, p99 = (format_value(gen[k], "ms") for k in ("lag_p50_ms", "lag_p99_ms"))
            lag = f"; lag p50 {p50}, p99 {p99}"
        achieved = format_value(gen["achieved_rps"], "requests/s")
        _field(write, "rate", f"target {gen['target_rps']:g} requests/s, achieved {achieved}")
        counts = f"sent {gen['sent']}, errors {gen['errors']}, late {gen['late']}"
        _field(write, "requests", counts + lag)
        if gen["counted_by"] == "proxy":
            _field(write, "counted", "by the proxy (traffic.command sends the load)")
        _per_target(write, gen["targets"])


def _per_target(write: Write, targets: Mapping[str, Mapping[str, int]]) -> None:
    """Sent, errors and late per target of a mix, the busiest first (all in the JSON report)."""
    if len(targets) < 2:
        return
    shown = sorted(targets.items(), key=lambda item: -item[1]["sent"])
    for i, (name, c) in enumerate(shown[:MAX_TARGETS_SHOWN]):
        text = f"{name}: sent {c['sent']}, errors {c['errors']}, late {c['late']}"
        _field(write, "per target" if i == 0 else "", text)
    if len(shown) > MAX_TARGETS_SHOWN:
        _field(write, "", f"... {len(shown) - MAX_TARGETS_SHOWN} more in the JSON report")


MAX_TARGETS_SHOWN = 20


def _files(write: Write, outputs: Outputs) -> None:
    if not (outputs.written or outputs.errors):
        return
    write("Files", bold=True)
    for label, text in outputs.written:
        _field(write, label, text)
    for text in outputs.errors:
        _field(write, "error", text, red=True)
