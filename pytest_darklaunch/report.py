"""Output: report header, live progress, the terminal summary and the JSON report."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import pytest

from pytest_darklaunch.core.config import OPTIONS, Resolved
from pytest_darklaunch.core.experiment import ExperimentData, Interval
from pytest_darklaunch.core.metrics import units_of
from pytest_darklaunch.core.verdict import Verdict, estimate

REPORT_VERSION = 1


def header_lines(resolved: Resolved, verbosity: int) -> list[str]:
    """``darklaunch: target=default/sample-app (--darklaunch-target), ...``"""
    if not resolved.active:
        return ["darklaunch: inactive (no target, spec file or Iter8 experiment)"] if verbosity > 0 else []
    parts = []
    for opt in OPTIONS:
        if opt.name in resolved.values:
            parts.append(f"{opt.name}={resolved.values[opt.name]} ({resolved.origin.get(opt.name, 'default')})")
    spec = resolved.spec
    assert spec is not None
    objectives = ", ".join(o.label for o in spec.objectives) or "none in the spec"
    return ["darklaunch: " + ", ".join(parts), f"darklaunch objectives: {objectives}"]


def _num(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def progress_line(data: ExperimentData, interval: Interval, verdicts: list[Verdict]) -> str:
    """One line per interval: iteration k/N, requests so far, each objective's dark/live value."""
    dark = interval.cumulative["dark"]
    live = interval.cumulative["live"]
    parts = [
        f"darklaunch: iteration {interval.index}/{data.planned}",
        f"requests live {_num(live.requests)} dark {_num(dark.requests)}",
    ]
    for v in verdicts:
        parts.append(f"{v.objective.metric} {_num(v.value)}/{_num(v.live_value)} {v.outcome}")
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
    out = []
    start = data.started_at
    for k, p in enumerate(verdict.points, 1):
        mark = f"  {p.outcome}" if p.outcome else ""
        out.append(f"#{k} t+{p.end - start:.1f}s: {_num(p.dark)} / {_num(p.live)}{mark}")
    return out


def terminal_summary(reporter: Any, state: Any) -> None:
    """The counterpart of ``iter8ctl describe``: overview, progress, objectives, metrics."""
    state._drain(reporter.write_line)
    reporter.write_sep("=", "darklaunch")
    spec = state.spec
    settings = state.resolved.settings
    if state.error:
        reporter.write_line(f"error: {state.error}", red=True)
        return
    data: Optional[ExperimentData] = state.data
    reporter.write_line(
        f"target {spec.target} | backend {settings.backend} | live {spec.versions.live.revision} | "
        f"dark {spec.versions.dark.revision} | mirror {spec.mirror.percent:g}% | "
        f"{spec.traffic.rate_rps:g} requests/s | {spec.duration.iterations} x "
        f"{spec.duration.interval_s:g} s"
    )
    if data is None:
        reporter.write_line("the experiment did not run")
        return
    reporter.write_line(
        f"stage {data.stage}: {len(data.intervals)} of {data.planned} intervals"
        + (f" ({data.stop_reason})" if data.stop_reason else "")
    )
    if data.error:
        reporter.write_line(f"error: {data.error}", red=True)
    for v in (data.verdict(o) for o in spec.objectives):
        if v is None:
            continue
        color = {"pass": "green", "fail": "red"}.get(v.outcome, "yellow")
        reporter.write_line(f"{v.objective.label:<45} {_num(v.value):>10} {v.outcome:<12} {v.reason}",
                            **{color: True})


def report_document(state: Any) -> dict[str, Any]:
    """The JSON report (keys documented in the README, kept stable)."""
    spec = state.spec
    data: Optional[ExperimentData] = state.data
    verdicts = []
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if data is not None:
        for o in spec.objectives:
            v = data.verdict(o)
            if v is None:
                continue
            verdicts.append({
                "metric": o.metric, "outcome": v.outcome, "value": v.value,
                "live_value": v.live_value, "upper": o.upper, "lower": o.lower,
                "max_increase": None if o.max_increase is None else str(o.max_increase),
                "reason": v.reason, "samples": v.samples, "query": v.query,
                "window": list(v.window), "units": units_of(o.metric),
            })
        metrics = {o.metric for o in spec.objectives} | {"request-count", "error-rate", "mean-latency"}
        for metric in sorted(metrics):
            series[metric] = {
                role: [{"start": i.start, "end": i.end,
                        "value": estimate(i.windows[role], metric, data.confidence).value}
                       for i in data.intervals]
                for role in ("dark", "live")
            }
    last = data.intervals[-1].cumulative if data and data.intervals else None
    observed = None
    if last and last["live"].requests:
        observed = 100.0 * (last["dark"].requests or 0.0) / last["live"].requests
    gen = (data.generator if data else {}) or {}
    return {
        "version": REPORT_VERSION,
        "spec": _spec_json(spec),
        "backend": state.resolved.settings.backend,
        "run_id": state.run_id,
        "started_at": data.started_at if data else None,
        "finished_at": data.finished_at if data else None,
        "stage": data.stage if data else "not started",
        "stop_reason": data.stop_reason if data else "",
        "error": state.error or (data.error if data else "") or None,
        "verdicts": verdicts,
        "series": series,
        "mirror": {"configured_percent": spec.mirror.percent, "observed_percent": observed},
        "generator": {
            "target_rps": spec.traffic.rate_rps,
            "achieved_rps": gen.get("achieved_rps"),
            "sent": gen.get("sent"),
            "errors": gen.get("errors"),
        },
    }


def _spec_json(spec: Any) -> dict[str, Any]:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(spec), default=str))


def write_reports(config: pytest.Config, state: Any) -> None:
    path = state.resolved.settings.report
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report_document(state), fh, indent=2)
