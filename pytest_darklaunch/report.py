"""Output: report header, live progress, the terminal summary, JUnit properties.

The JSON report is in ``report_json``, GitHub Actions output in ``report_github``, charts in
``plots``.

Everything here reads the session's :class:`ExperimentData` after the fact; nothing judges on
its own. The objective outcomes shown are the ones the tests saw (:func:`final_verdicts`).
The JSON report's keys are documented in ``docs/report.md`` and kept stable.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import pytest

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.config import OPTIONS, Resolved
from pytest_darklaunch.core.experiment import ExperimentData, Interval
from pytest_darklaunch.core.metrics import units_of
from pytest_darklaunch.core.spec import Objective, Spec
from pytest_darklaunch.core.units import format_value as fmt
from pytest_darklaunch.core.verdict import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Estimate,
    Verdict,
    bounds_text,
    estimate,
)

REPORT_VERSION = 1
# The metrics assessment always shows these, then custom metrics and other objective metrics.
BUILTIN_ROWS = (
    "request-count",
    "throughput",
    "mean-latency",
    "95th-percentile-tail-latency",
    "p99",
    "error-count",
    "error-rate",
)
WIDTH = 100
HIDDEN = "***"
_SENSITIVE = re.compile(
    r"auth|cookie|token|secret|passw|api[-_]?key|credential|session", re.IGNORECASE
)
_OUTPUTS = pytest.StashKey[dict[str, Any]]()


def redact_url(url: str) -> str:
    """The URL without ``user:password@`` (imported lazily: ``requests`` is not needed for a
    report header, and inactive runs must stay cheap)."""
    from pytest_darklaunch.core.prometheus import redact_url as redact

    return redact(url)


# -- header and progress --------------------------------------------------------------------------


def header_lines(resolved: Resolved, verbosity: int, run_id: str = "") -> list[str]:
    """``darklaunch: target=default/sample-app (--darklaunch-target), ...``, the objectives and
    the run id (what names the temp dir and labels the Kubernetes objects)."""
    if not resolved.active:
        return (
            ["darklaunch: inactive (no target, spec file or Iter8 experiment)"]
            if verbosity > 0
            else []
        )
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
    lines = ["darklaunch: " + ", ".join(parts), f"darklaunch objectives: {objectives}"]
    if run_id:
        lines.append(f"darklaunch run id: {run_id}")
    return lines


def progress_line(data: ExperimentData, interval: Interval, verdicts: list[Verdict]) -> str:
    """One line per interval: iteration k/N, requests so far, each objective's dark/live value.

    ``darklaunch 3/10 t+6s | requests live 600, dark 231 (38.5%) | mean-latency dark 7.6 ms
    live 7.3 ms pass | ...`` (values on the cumulative window, as the verdicts use them).
    """
    dark, live = interval.cumulative["dark"], interval.cumulative["live"]
    share = ""
    if live.requests and dark.requests is not None:
        share = f" ({100 * dark.requests / live.requests:.1f}%)"
    parts = [
        f"darklaunch {interval.index}/{data.planned} t+{interval.end - data.started_at:.0f}s",
        f"requests live {fmt(live.requests)}, dark {fmt(dark.requests)}{share}",
    ]
    final = interval.index >= data.planned
    for v in verdicts:
        metric = v.objective.metric
        d, lv = (estimate(w, metric, data.confidence).value for w in (dark, live))
        units = units_of(metric)
        # Before the last interval nothing is inconclusive yet: the experiment goes on.
        outcome = "undecided" if v.outcome == INCONCLUSIVE and not final else v.outcome
        parts.append(f"{metric} dark {fmt(d, units)} live {fmt(lv, units)} {outcome}")
    return " | ".join(parts)


def progress_writer(config: pytest.Config) -> Optional[Callable[[str], None]]:
    """Writes progress lines on their own line, or nothing under ``-q``."""
    if config.get_verbosity() < 0:
        return lambda line: None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    return reporter.write_line  # type: ignore[no-any-return]


def format_points(verdict: Verdict, data: ExperimentData) -> list[str]:
    """``#3 t+6.0s: 7.3 / 7.1  pass``: each interval's dark / live value of the objective."""
    out = []
    start = data.started_at
    for k, p in enumerate(verdict.points, 1):
        mark = f"  {p.outcome}" if p.outcome else ""
        out.append(f"#{k} t+{p.end - start:.1f}s: {fmt(p.dark)} / {fmt(p.live)}{mark}")
    return out


# -- the assessment, shared by every output -------------------------------------------------------


def final_verdicts(state: Any) -> list[Verdict]:
    """One verdict per spec objective, as the tests see them (a failed run is inconclusive)."""
    spec: Spec = state.spec
    data: Optional[ExperimentData] = state.data
    problem = ""
    if state.error:
        problem = state.error
    elif data is None:
        problem = "the experiment did not run"
    elif data.error:
        problem = f"the experiment failed: {data.error}"
    elif not data.intervals:
        problem = f"no interval was completed ({data.stop_reason or data.stage})"
    if problem:
        return [
            Verdict(o, INCONCLUSIVE, problem, units=units_of(o.metric), error=True)
            for o in spec.objectives
        ]
    assert data is not None
    return data.verdicts_for(spec.objectives)


def metric_units(spec: Spec, metric: str) -> str:
    custom = {m.name: m.units for m in spec.metrics}
    return custom[metric] if metric in custom else units_of(metric)


def limit_text(obj: Objective, units: str = "") -> str:
    """The objective's bounds, and how they are judged when not on the whole experiment."""
    text = bounds_text(obj, units)
    if obj.judge == "interval":
        text += f" per interval ({obj.failure_limit} may fail)"
    return text


@dataclass(frozen=True)
class MetricRow:
    """One metric on the cumulative window, for dark and live."""

    metric: str
    units: str
    dark: Estimate
    live: Estimate


def metric_rows(spec: Spec, data: Optional[ExperimentData]) -> list[MetricRow]:
    """The built-in metrics, custom metrics and any other objective metric, cumulative."""
    if data is None or not data.intervals:
        return []
    names = list(
        dict.fromkeys(
            [*BUILTIN_ROWS, *(m.name for m in spec.metrics), *(o.metric for o in spec.objectives)]
        )
    )
    last = data.intervals[-1].cumulative
    return [
        MetricRow(
            n,
            metric_units(spec, n),
            estimate(last["dark"], n, data.confidence),
            estimate(last["live"], n, data.confidence),
        )
        for n in names
    ]


def mirror_facts(spec: Spec, data: Optional[ExperimentData]) -> dict[str, Any]:
    """Configured vs observed mirrored share on the cumulative window."""
    out: dict[str, Any] = {
        "configured_percent": spec.mirror.percent,
        "observed_percent": None,
        "dark_requests": None,
        "live_requests": None,
        "ok": None,
        "interval_percent": None,
    }
    if data is None or not data.intervals:
        return out
    last = data.intervals[-1].cumulative
    dark, live = last["dark"].requests, last["live"].requests
    out.update(dark_requests=dark, live_requests=live)
    if dark is None or not live:
        return out
    ok, lo, hi, observed = stats.mirror_share_check(round(dark), round(live), spec.mirror.percent)
    # As the verdicts do: requests in flight at the window's edges may be counted later on dark.
    slack = spec.mirror.percent / 100 * (data.target_rps or 0.0) * data.timeout_s
    ok = ok or abs(dark - spec.mirror.percent / 100 * live) <= slack
    out.update(observed_percent=100 * observed, ok=ok, interval_percent=[100 * lo, 100 * hi])
    return out


def generator_facts(spec: Spec, data: Optional[ExperimentData]) -> dict[str, Any]:
    gen = (data.generator if data else None) or {}
    keys = ("achieved_rps", "sent", "errors", "late", "lag_p50_ms", "lag_p99_ms")
    out = {"target_rps": spec.traffic.rate_rps, **{k: gen.get(k) for k in keys}}
    out["generated"] = data is None or data.target_rps is not None
    return out


def _summary_counts(verdicts: Sequence[Verdict]) -> str:
    counts = {o: sum(v.outcome == o for v in verdicts) for o in (PASS, FAIL, INCONCLUSIVE)}
    words = {PASS: "passed", FAIL: "failed", INCONCLUSIVE: "inconclusive"}
    return ", ".join(f"{n} {words[o]}" for o, n in counts.items() if n) or "no objectives"


def _when(ts: Optional[float], pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    if not ts:
        return "n/a"
    return datetime.fromtimestamp(ts, timezone.utc).strftime(pattern)


def shown_values(
    v: Verdict, data: Optional[ExperimentData]
) -> tuple[Optional[float], Optional[float]]:
    """Dark and live values to show for a verdict: its own, else the cumulative ones (an
    inconclusive verdict may carry none, yet what was measured is worth seeing)."""
    if v.value is not None or data is None or not data.intervals:
        return v.value, v.live_value
    last = data.intervals[-1].cumulative
    metric = v.objective.metric
    return tuple(
        estimate(last[r], metric, data.confidence).value  # type: ignore[return-value]
        for r in ("dark", "live")
    )


def _change(row: MetricRow) -> str:
    d, lv = row.dark.value, row.live.value
    if d is None or lv is None or not lv:
        return ""
    return f"{100 * (d - lv) / abs(lv):+.1f}%"


# -- terminal -------------------------------------------------------------------------------------


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
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()
        )

    return [line(headers), *(line(r) for r in rows)]


def _wrap(text: str, indent: int) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + 2),
        break_on_hyphens=False,
    )


_COLOR = {PASS: "green", FAIL: "red"}


def terminal_summary(reporter: Any, state: Any) -> None:
    """The counterpart of ``iter8ctl describe``: overview, progress, objective and metrics
    assessment, mirror check, generator; then GitHub annotations for failed objectives."""
    state._drain(reporter.write_line)
    spec: Spec = state.spec
    data: Optional[ExperimentData] = state.data
    settings = state.resolved.settings
    verdicts = final_verdicts(state)
    reporter.write_sep("=", f"darklaunch: {_summary_counts(verdicts)}")
    write = reporter.write_line

    def kv(label: str, text: str, **markup: bool) -> None:
        lines = _wrap(text, 16) or [""]
        write(f"  {label:<12}  {lines[0].lstrip()}", **markup)
        for extra in lines[1:]:
            write(extra, **markup)

    env = state.environment
    write("Overview", bold=True)
    kv("target", str(spec.target))
    where = (
        f"Prometheus {redact_url(env.prometheus_url)}, {env.metric_source} metrics" if env else ""
    )
    kv("backend", f"{settings.backend}" + (f" ({where})" if where else ""))
    kv("versions", f"live {spec.versions.live.revision}, dark {spec.versions.dark.revision}")
    kv("mirror", f"{spec.mirror.percent:g}% of live's requests (host {spec.mirror.host})")
    kv(
        "traffic",
        f"{spec.traffic.rate_rps:g} requests/s, {spec.traffic.method} {spec.traffic.path}",
    )
    d = spec.duration
    ran = ""
    if data and data.started_at:
        ran = f"; ran {_when(data.started_at)}..{_when(data.finished_at, '%H:%M:%S')} UTC"
    kv("duration", f"{d.iterations} x {d.interval_s:g} s planned ({d.total_s:g} s){ran}")

    write("Progress", bold=True)
    if state.error:
        kv("error", state.error, red=True)
    if data is None:
        kv("stage", "the experiment did not run")
    else:
        kv("iterations", f"{len(data.intervals)} of {data.planned} completed")
        kv("stage", data.stage)
        if data.stop_reason:
            kv("stop reason", data.stop_reason)
        if data.error:
            kv("error", data.error, red=True)

    window = ""
    if data and data.intervals:
        window = f" (cumulative window {data.intervals[-1].end - data.started_at:.1f} s)"
    write(f"Objective assessment{window}", bold=True)
    rows, colors = [], []
    for v in verdicts:
        units = metric_units(spec, v.objective.metric)
        dark, live = shown_values(v, data)
        rows.append(
            [
                v.objective.metric,
                limit_text(v.objective, units),
                fmt(dark, units),
                fmt(live, units),
                str(v.samples),
                v.outcome.upper(),
            ]
        )
        colors.append(_COLOR.get(v.outcome, "yellow"))
    table = _table(["OBJECTIVE", "LIMIT", "DARK", "LIVE", "SAMPLES", "OUTCOME"], rows, (2, 3, 4))
    write(table[0])
    for line, v, color in zip(table[1:], verdicts, colors):
        write(line, **{color: True})
        for extra in _wrap(v.reason, 6):
            write(extra)
    if not verdicts:
        write("  the spec declares no objectives")

    mrows = metric_rows(spec, data)
    write(f"Metrics assessment{window}", bold=True)
    if mrows:
        for line in _table(
            ["METRIC", "DARK", "LIVE", "DARK VS LIVE", "UNITS", "SAMPLES DARK/LIVE"],
            [
                [
                    r.metric,
                    fmt(r.dark.value),
                    fmt(r.live.value),
                    _change(r),
                    r.units or "-",
                    f"{r.dark.samples}/{r.live.samples}",
                ]
                for r in mrows
            ],
            (1, 2, 3, 5),
        ):
            write(line)
    else:
        write("  no interval was completed")

    write("Mirror check", bold=True)
    m = mirror_facts(spec, data)
    if m["observed_percent"] is None:
        kv("share", f"configured {m['configured_percent']:g}%, observed n/a (no requests)")
    else:
        lo, hi = m["interval_percent"]
        verdict = "ok" if m["ok"] else "MISMATCH: the routing is wrong, no other number holds"
        kv(
            "share",
            f"configured {m['configured_percent']:g}%, observed "
            f"{m['observed_percent']:.1f}% (dark {fmt(m['dark_requests'])} of live "
            f"{fmt(m['live_requests'])} requests; 99.9% interval {lo:.1f}..{hi:.1f}%): {verdict}",
            **({} if m["ok"] else {"red": True}),
        )

    write("Generator", bold=True)
    g = generator_facts(spec, data)
    if not g["generated"]:
        kv("traffic", "not generated by this run (provision none): live's own traffic is mirrored")
    elif g["sent"] is None:
        kv(
            "traffic",
            f"target {g['target_rps']:g} requests/s; the {settings.backend} backend "
            "reported no generator counters",
        )
    else:
        lag = ""
        if g["lag_p50_ms"] is not None:
            lag = f"; lag p50 {fmt(g['lag_p50_ms'], 'ms')}, p99 {fmt(g['lag_p99_ms'], 'ms')}"
        kv(
            "rate",
            f"target {g['target_rps']:g} requests/s, achieved "
            f"{fmt(g['achieved_rps'], 'requests/s')}",
        )
        kv("requests", f"sent {g['sent']}, errors {g['errors']}, late {g['late']}{lag}")

    outputs = reporter.config.stash.get(_OUTPUTS, {})
    if outputs.get("written") or outputs.get("errors"):
        write("Files", bold=True)
        for label, text in outputs.get("written", []):
            kv(label, text)
        for text in outputs.get("errors", []):
            kv("error", text, red=True)
    from pytest_darklaunch.report_github import _in_github, github_annotations

    if _in_github():
        for line in github_annotations(verdicts, settings.inconclusive):
            write(line)


# -- JUnit XML ------------------------------------------------------------------------------------


def _prop(value: Optional[float]) -> str:
    return "" if value is None else repr(float(value))


def junit_properties(verdict: Verdict) -> list[tuple[str, str]]:
    """The ``--junitxml`` properties of one asserted objective (empty string: not set)."""
    obj = verdict.objective
    props = [
        ("darklaunch_metric", obj.metric),
        ("darklaunch_value", _prop(verdict.value)),
        ("darklaunch_upper", _prop(obj.upper)),
        ("darklaunch_lower", _prop(obj.lower)),
        ("darklaunch_outcome", verdict.outcome),
        ("darklaunch_live_value", _prop(verdict.live_value)),
        ("darklaunch_samples", str(verdict.samples)),
        ("darklaunch_reason", verdict.reason),
    ]
    if obj.max_increase is not None:
        props.append(("darklaunch_max_increase", str(obj.max_increase)))
    return props


@contextmanager
def junit_recording(item: pytest.Item) -> Iterator[None]:
    """While ``item`` runs, every asserted objective adds its :func:`junit_properties`."""
    from pytest_darklaunch.assertions import _RECORDER

    def record(obj: Objective, verdict: Verdict) -> None:
        item.user_properties.extend(junit_properties(verdict))

    _RECORDER.append(record)
    try:
        yield
    finally:
        _RECORDER.remove(record)


# -- writing everything ---------------------------------------------------------------------------


def write_reports(config: pytest.Config, state: Any) -> None:
    """Plots, the JSON report and the GitHub step summary, as configured; what was written (or
    could not be) is shown in the terminal summary."""
    from pytest_darklaunch.report_github import markdown_summary
    from pytest_darklaunch.report_json import report_document

    settings = state.resolved.settings
    verdicts = final_verdicts(state)
    outputs: dict[str, Any] = {"written": [], "errors": []}
    config.stash[_OUTPUTS] = outputs
    plots: dict[str, str] = {}
    if settings.plots:
        from pytest_darklaunch.plots import write_plots

        try:
            plots = write_plots(settings.plots, state, verdicts)
            outputs["written"].append(("plots", f"{len(plots)} SVG charts in {settings.plots}"))
        except OSError as exc:
            outputs["errors"].append(f"could not write the plots to {settings.plots}: {exc}")
    if settings.report:
        path = settings.report
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(report_document(state, plots), fh, indent=2, allow_nan=False)
            outputs["written"].append(("report", path))
        except OSError as exc:
            outputs["errors"].append(f"could not write the JSON report to {path}: {exc}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        labels = {ident: obj.label for ident, obj in _ids(state.spec)}
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(
                    markdown_summary(
                        state, verdicts, [(labels.get(k, k), p) for k, p in plots.items()]
                    )
                )
            outputs["written"].append(("job summary", f"appended to {summary}"))
        except OSError as exc:
            outputs["errors"].append(f"could not append to GITHUB_STEP_SUMMARY {summary}: {exc}")


def _ids(spec: Spec) -> list[tuple[str, Objective]]:
    from pytest_darklaunch.fixtures import objective_ids

    return list(zip(objective_ids(spec.objectives), spec.objectives))
