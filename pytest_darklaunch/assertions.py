"""What tests call: the ``darklaunch`` experiment object, ``assert_objective`` and the
``@pytest.mark.darklaunch`` objectives checked after a test.

``Experiment`` here is the handle tests get; the sampling loop is ``core.experiment``.

>>> def test_latency(darklaunch):                                   # doctest: +SKIP
...     darklaunch.assert_objective("mean-latency", upper=50)
...     darklaunch.assert_objective("95th-percentile-tail-latency", max_increase="10%")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_darklaunch.core.experiment import ExperimentData, unavailable_reason
from pytest_darklaunch.core.metrics import is_builtin
from pytest_darklaunch.core.routes import window_key
from pytest_darklaunch.core.spec import (
    Objective,
    Reader,
    Sources,
    Spec,
    known_metrics_hint,
    objective_from_mapping,
)
from pytest_darklaunch.core.verdict import FAIL, INCONCLUSIVE, PASS, Verdict
from pytest_darklaunch.core.verdict.paired import MISMATCH_METRICS, PAIRED_QUERY
from pytest_darklaunch.errors import ConfigError, DarklaunchError
from pytest_darklaunch.report.progress import format_points, progress_writer, uncaptured
from pytest_darklaunch.runstate import active_or_skip, session_of
from pytest_darklaunch.session import DarklaunchSession

Number = int | float | str


class Experiment:
    """The session's experiment: verdicts, per-interval series and assertions.

    Asking for anything waits until the experiment has finished (or decided every objective
    early); tests that run meanwhile are not held up.
    """

    def __init__(
        self, darklaunch: DarklaunchSession, write_progress: Callable[[str], None] | None = None
    ):
        self._darklaunch = darklaunch
        self._write_progress = write_progress

    @property
    def spec(self) -> Spec:
        """The effective experiment spec."""
        return self._darklaunch.spec

    @property
    def data(self) -> ExperimentData:
        """Everything measured: intervals, windows, generator figures."""
        try:
            return self._darklaunch.wait(self._write_progress)
        except DarklaunchError as exc:
            failure = f"darklaunch: {exc}"
        # Provisioning failed or the result never came: the message is the whole story (raised
        # outside the handler, so it is not shown twice).
        pytest.fail(failure, pytrace=False)

    @property
    def verdicts(self) -> list[Verdict]:
        """The verdicts on the spec's objectives."""
        data = self.data
        return [v for v in (data.verdict(o) for o in self.spec.objectives) if v is not None]

    def objective(
        self,
        metric: str,
        upper: Number | None = None,
        lower: Number | None = None,
        max_increase: Number | None = None,
        judge: str = "experiment",
        failure_limit: int = 0,
        route: str | None = None,
    ) -> Objective:
        """Build and validate an :class:`Objective` from keyword arguments."""
        custom = {m.name for m in self.spec.metrics}
        reader = Reader(Sources("assert_objective"))
        if metric not in custom and not is_builtin(metric):
            raise ConfigError(
                "metric", metric, "assert_objective", known_metrics_hint(metric, custom)
            )
        if route is not None and self.spec.route(route) is None:
            # Routes are measured from the start: the proxy splits only what the spec names.
            known = ", ".join(r.name for r in self.spec.routes) or "none"
            raise ConfigError(
                "route", route, "assert_objective",
                f"a route the spec measures ({known}): declare it under routes: or name it in "
                "an objective of the spec",
            )
        raw = {
            "upper": upper,
            "lower": lower,
            "max_increase": max_increase,
            "judge": judge,
            "failure_limit": failure_limit,
            "route": route,
        }
        return objective_from_mapping(raw, reader, (), metric)

    def verdict(self, metric: str | Objective, **bounds: Any) -> Verdict:
        """The verdict on one objective, given as an :class:`Objective` or metric + bounds."""
        obj = metric if isinstance(metric, Objective) else self.objective(metric, **bounds)
        data = self.data
        reason = unavailable_reason("", data)
        if reason:
            # A failed experiment is an error (never skipped); no interval, only inconclusive.
            units = self.spec.units_of(obj.metric)
            return Verdict(obj, INCONCLUSIVE, reason, units=units, error=bool(data.error))
        found = data.verdict(obj)
        assert found is not None  # there are intervals
        return found

    def series(
        self,
        metric: str,
        version: str = "dark",
        cumulative: bool = False,
        route: str | None = None,
    ) -> list[tuple[float, float | None]]:
        """``(interval end, value)`` per interval for ``version`` (``dark`` or ``live``), on
        all traffic or on one ``route``."""
        key = window_key(version, route)
        return [(i.end, e.value) for i, e in self.data.series(metric, key, cumulative)]

    def assert_objective(
        self,
        metric: str | Objective,
        upper: Number | None = None,
        lower: Number | None = None,
        max_increase: Number | None = None,
        judge: str = "experiment",
        failure_limit: int = 0,
        route: str | None = None,
    ) -> Verdict:
        """Fail the test, with the numbers, unless dark meets the objective.

        >>> darklaunch.assert_objective("error-rate", upper=0.01)        # doctest: +SKIP
        """
        __tracebackhide__ = True
        if isinstance(metric, Objective):
            obj = metric
        else:
            try:
                obj = self.objective(
                    metric, upper, lower, max_increase, judge, failure_limit, route
                )
            except ConfigError as exc:
                raise pytest.UsageError(str(exc)) from None
        verdict = self.verdict(obj)
        # Recorded before failing, so a failed test keeps its JUnit properties too.
        self._darklaunch.asserted.append(verdict)
        if verdict.outcome == PASS:
            return verdict
        message = explain(verdict, self.data)
        if (
            verdict.outcome == INCONCLUSIVE
            and not verdict.error
            and self._darklaunch.resolved.settings.inconclusive == "skip"
        ):
            pytest.skip(message)
        raise AssertionError(message)


def explain(verdict: Verdict, data: ExperimentData) -> str:
    """The failure message: metric, value, bound, outcome and reason, samples, window, PromQL,
    and the per-interval values for dark and live."""
    obj = verdict.objective
    head = "FAILED" if verdict.outcome == FAIL else "INCONCLUSIVE"
    lines = [
        f"darklaunch objective {head}: {obj.label}",
        f"  outcome: {verdict.outcome}: {verdict.reason}",
    ]
    if verdict.value is not None:
        lines.append(
            f"  dark value: {verdict.value:.6g} {verdict.units}".rstrip()
            + (
                ""
                if verdict.live_value is None
                else f"   live value: {verdict.live_value:.6g} {verdict.units}".rstrip()
            )
        )
    if data.started_at:
        lines.append(
            f"  samples: {verdict.samples}   window: {verdict.window[1] - verdict.window[0]:.1f} s"
            f" over {len(data.intervals)} of {data.planned} intervals"
            f" ({data.stop_reason or data.stage})"
        )
    codes = data.intervals[-1].cumulative["dark"].codes if data.intervals else {}
    if any(not code.startswith("2") for code in codes):
        shown = ", ".join(f"{code}: {count:.0f}" for code, count in sorted(codes.items()))
        lines.append(f"  dark responses by code: {shown}")
        if data.source == "envoy" and "503" in codes:
            lines.append(
                "    (a 503 is also Envoy's own answer when dark does not answer: dark down, "
                "refusing connections or stopped answering)"
            )
    if verdict.query:
        label = "source" if verdict.query == PAIRED_QUERY else "promql"
        lines.append(f"  {label}: {verdict.query}")
    lines += _diverging(verdict, data)
    if verdict.points:
        lines.append("  per interval (dark / live):")
        lines.extend("    " + line for line in format_points(verdict, data))
    return "\n".join(lines)


def _diverging(verdict: Verdict, data: ExperimentData) -> list[str]:
    """For a failed mismatch rate, the diverging requests (secrets hidden, bodies cut)."""
    metric = verdict.objective.metric
    if verdict.outcome != FAIL or metric not in MISMATCH_METRICS or not data.comparison:
        return []
    from pytest_darklaunch.core.compare import Summary
    from pytest_darklaunch.core.compare.render import failure_lines

    return ["  " + line for line in failure_lines(Summary.from_json(data.comparison), metric)]


def assert_objective(
    metric: str | Objective,
    upper: Number | None = None,
    lower: Number | None = None,
    max_increase: Number | None = None,
    judge: str = "experiment",
    failure_limit: int = 0,
    route: str | None = None,
) -> Verdict:
    """Fail the calling test unless the running session's dark version meets the objective.

    The same as the ``darklaunch`` fixture's method; skips when no experiment is configured.

    >>> from pytest_darklaunch import assert_objective              # doctest: +SKIP
    >>> assert_objective("mean-latency", upper=50)                  # doctest: +SKIP
    """
    __tracebackhide__ = True
    return Experiment(active_or_skip()).assert_objective(
        metric, upper, lower, max_increase, judge, failure_limit, route
    )


def check_markers(item: pytest.Item, markers: list[Any]) -> None:
    """Require each ``@pytest.mark.darklaunch(...)`` objective after the test body passed."""
    __tracebackhide__ = True
    darklaunch = session_of(item.config)
    assert darklaunch is not None  # the plugin checks markers only in an active run
    experiment = Experiment(darklaunch, uncaptured(item.config, progress_writer(item.config)))
    for mark in markers:
        if not mark.args:
            raise pytest.UsageError(
                f"invalid @pytest.mark.darklaunch on {item.nodeid}: expected a metric name "
                "first, such as @pytest.mark.darklaunch('p99', upper=200)"
            )
        experiment.assert_objective(*mark.args, **mark.kwargs)
