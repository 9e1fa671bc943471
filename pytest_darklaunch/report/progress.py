"""Live progress: one line per interval while the experiment runs, and the per-interval values
a failed objective shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_darklaunch.core.metrics import COMPARISON_NAMES
from pytest_darklaunch.core.reading import ELIGIBLE
from pytest_darklaunch.core.routes import window_key
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict import INCONCLUSIVE, Verdict, estimate

if TYPE_CHECKING:
    import pytest

    from pytest_darklaunch.core.experiment import ExperimentData, Interval


def progress_line(data: ExperimentData, interval: Interval, verdicts: list[Verdict]) -> str:
    """One line per interval: iteration k/N, requests so far, each objective's dark/live value.

    ``darklaunch 3/10 t+6s | requests live 600, dark 231 (38.5%) | mean-latency dark 7.6 ms
    live 7.3 ms pass | ...`` (values on the cumulative window, as the verdicts use them; the share
    is of live's mirrored methods when some of its requests are not mirrored).
    """
    dark, live = interval.cumulative["dark"], interval.cumulative["live"]
    share = ""
    base, of = live.requests, ""
    eligible = interval.cumulative.get(ELIGIBLE)
    if eligible is not None and eligible.requests is not None and live.requests is not None:
        if eligible.requests < live.requests:  # some of live's requests are never mirrored
            base, of = eligible.requests, " of mirrored methods"
    if base and dark.requests is not None:
        share = f" ({100 * dark.requests / base:.1f}%{of})"
    parts = [
        f"darklaunch {interval.index}/{data.planned} t+{interval.end - data.started_at:.0f}s",
        f"requests live {format_value(live.requests)}, dark {format_value(dark.requests)}{share}",
    ]
    final = interval.index >= data.planned
    for v in verdicts:
        metric, route = v.objective.metric, v.objective.route
        if metric in COMPARISON_NAMES:  # judged on pairs, not on Prometheus' windows
            parts.append(f"{metric} {format_value(v.value)} over {v.samples} pairs {v.outcome}")
            continue
        windows = [interval.cumulative.get(window_key(r, route)) for r in ("dark", "live")]
        dark_value, live_value = (
            None if w is None else estimate(w, metric, data.confidence).value for w in windows
        )
        units = v.units  # the judge's, as in the assertion message
        # Before the last interval nothing is inconclusive yet: the experiment goes on.
        outcome = "undecided" if v.outcome == INCONCLUSIVE and not final else v.outcome
        parts.append(
            f"{v.objective.subject} dark {format_value(dark_value, units)} "
            f"live {format_value(live_value, units)} {outcome}"
        )
    return " | ".join(parts)


def progress_writer(config: pytest.Config) -> Callable[[str], None] | None:
    """Writes progress lines on their own line, or nothing under ``-q``."""
    if config.get_verbosity() < 0:
        return lambda line: None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    return reporter.write_line  # type: ignore[no-any-return]


def uncaptured(
    config: pytest.Config, write: Callable[[str], None] | None
) -> Callable[[str], None] | None:
    """``write`` with pytest's output capture suspended, so progress reaches the terminal
    while a test waits for the experiment (as live logging does)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if write is None or capman is None:
        return write

    def write_uncaptured(line: str) -> None:
        with capman.global_and_fixture_disabled():
            write(line)

    return write_uncaptured


def format_points(verdict: Verdict, data: ExperimentData) -> list[str]:
    """``#3 t+6.0s: 7.3 / 7.1  pass``: each interval's dark / live value of the objective."""
    out = []
    start = data.started_at
    for k, p in enumerate(verdict.points, 1):
        mark = f"  {p.outcome}" if p.outcome else ""
        out.append(
            f"#{k} t+{p.end - start:.1f}s: {format_value(p.dark)} / {format_value(p.live)}{mark}"
        )
    return out
