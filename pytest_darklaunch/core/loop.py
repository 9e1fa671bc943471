"""The sampling loop: warm up, then sample every interval, decide as early as the data allows.

:class:`Runner` needs only a Prometheus client and the environment a backend returned; it fills
:class:`~pytest_darklaunch.core.experiment.ExperimentData`, plain and JSON-serialisable, from
which every verdict is a pure function (so pytest-xdist workers can judge from a file).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_result, wait_fixed

from pytest_darklaunch.core.experiment import ExperimentData, Interval, Stage
from pytest_darklaunch.core.metrics import SOURCES, freshness_selector, scrape_time_query
from pytest_darklaunch.core.reading import LookReader
from pytest_darklaunch.core.sampler import Snapshot
from pytest_darklaunch.core.units import format_duration
from pytest_darklaunch.core.verdict import FAIL, Verdict
from pytest_darklaunch.core.verdict.paired import Look
from pytest_darklaunch.errors import MetricsError

if TYPE_CHECKING:
    from pytest_darklaunch.core.compare import Summary
    from pytest_darklaunch.core.prometheus import PrometheusClient
    from pytest_darklaunch.core.spec import Objective, Spec

# Prometheus' first scrape of a new target lands about 5 s after it starts.
FIRST_SCRAPE_TIMEOUT_S = 30.0


class Runner:
    """Runs one experiment against Prometheus; ``stop`` ends it early from another thread.

    ``on_interval(data, interval, verdicts)`` is called after every interval (progress output).
    ``clock`` and ``wait`` are injectable so unit tests never sleep.
    """

    def __init__(
        self,
        spec: Spec,
        data: ExperimentData,
        client: PrometheusClient,
        objectives: Sequence[Objective],
        *,
        traffic_started_at: float,
        template_values: Mapping[str, Mapping[str, str]],
        on_interval: Callable[[ExperimentData, Interval, list[Verdict]], None] | None = None,
        traffic_stats: Callable[[], dict[str, Any] | None] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        scrape_interval_s: float = 1.0,
        counters_start_at_zero: bool = False,
        comparison: Callable[[], Summary | None] | None = None,
    ) -> None:
        self.spec = spec
        self.data = data
        self.client = client
        self.objectives = list(objectives)
        self.traffic_started_at = traffic_started_at
        self.template_values = template_values
        self.on_interval = on_interval
        self.traffic_stats = traffic_stats
        self.stop = stop or threading.Event()
        self.clock = clock
        self.scrape_interval_s = scrape_interval_s
        self.counters_start_at_zero = counters_start_at_zero
        # The backend's pairing so far (local backend); looks are taken at each interval's end.
        self.comparison = comparison
        self._comparison_baseline: Look | None = None
        self._seen_scrape = not counters_start_at_zero
        self.reader = LookReader(spec, data.source, data.labels, client, template_values)
        self._fresh_selector = freshness_selector(SOURCES[data.source], data.labels["live"])

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _wait_until(self, when: float) -> bool:
        """Wait for wall-clock ``when``; False when stopped meanwhile."""
        remaining = when - self.clock()
        return not (remaining > 0 and self.stop.wait(remaining))

    def _wait_fresh(self, at: float, timeout_s: float) -> float:
        """Wait until Prometheus holds a scrape at or after ``at``; return its timestamp."""

        def newest() -> float:
            if self.stop.is_set():
                return float("inf")
            value = self.client.last_scrape(self._fresh_selector, self.clock())
            return -1.0 if value is None else value

        started = self.clock()
        retrying = Retrying(
            # Deadline on the injected clock, so tests with a fake clock end too.
            stop=lambda state: self.clock() - started >= timeout_s,
            wait=wait_fixed(min(0.2, self.scrape_interval_s / 4)),
            retry=retry_if_result(lambda ts: ts < at),
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        )
        ts: float = retrying(newest)
        if ts < at:
            seen = "none yet" if ts < 0 else f"newest {at - ts:.1f} s before it"
            raise MetricsError(
                f"no Prometheus scrape within {format_duration(timeout_s)} after {at:.3f} ({seen})",
                url=self.client.url,
                query=scrape_time_query(self._fresh_selector),
            )
        return ts

    def _look(self, end: float, t0: float) -> None:
        """Record the comparison at ``end`` (the baseline when ``end`` is ``t0``)."""
        try:
            summary = self.comparison() if self.comparison is not None else None
        except Exception as exc:  # a user's comparison hook raised in the reader thread
            raise MetricsError(
                f"the response comparison stopped: {type(exc).__name__}: {exc}"
            ) from exc
        if summary is None:
            return
        look = Look.of(summary, end, end - t0)
        if self._comparison_baseline is None:
            self._comparison_baseline = look
        else:
            self.data.comparison_looks.append(look.minus(self._comparison_baseline))

    def run(self) -> ExperimentData:
        data = self.data
        data.stage = Stage.WARMING_UP
        try:
            self._run()
        except MetricsError as exc:
            data.error = str(exc)
            data.stage = Stage.FAILED
        finally:
            data.finished_at = self.clock()
            if self.traffic_stats is not None:
                data.generator = self.traffic_stats() or {}
        return data

    def _run(self) -> None:
        data, spec = self.data, self.spec
        baseline = self._baseline()
        if baseline is None:
            data.stage, data.stop_reason = Stage.STOPPED, "interrupted during warm-up"
            return
        t0, first = baseline
        data.started_at = t0
        self._look(t0, t0)
        data.stage = Stage.RUNNING
        previous, end = first, t0
        for k in range(1, spec.duration.iterations + 1):
            reached = self._interval_end(k, t0, end)
            if reached is None:
                data.stage, data.stop_reason = Stage.STOPPED, f"interrupted in interval {k}"
                return
            end = reached
            current = self.reader.snapshots(end)
            interval = self._interval(k, end, first, previous, current, t0)
            self._look(end, t0)
            data.intervals.append(interval)
            previous = current
            final = k == spec.duration.iterations
            verdicts = [v for v in (data.verdict(o, final=final) for o in self.objectives) if v]
            if self.on_interval is not None:
                self.on_interval(data, interval, verdicts)
            if data.full_duration or final or not verdicts:
                continue
            reason = self._early_stop(k, verdicts)
            if reason is not None:
                data.stage, data.stop_reason = Stage.COMPLETED, reason
                return
        data.stage = Stage.COMPLETED
        data.stop_reason = f"all {data.planned} intervals sampled"

    def _baseline(self) -> tuple[float, dict[str, Snapshot]] | None:
        """The first interval's start and the snapshots there; None when stopped before."""
        spec = self.spec
        if spec.traffic.warmup_s == 0 and self.counters_start_at_zero:
            # Every counter was zero when the traffic started: that is an exact baseline, and
            # Prometheus' first scrape (about 5 s after its start) delays nothing.
            t0 = self.traffic_started_at
            return t0, {key: Snapshot(t0) for key in self.reader.keys}
        warm_end = self.traffic_started_at + spec.traffic.warmup_s
        if not self._wait_until(warm_end):
            return None
        # The first interval starts at a real scrape after the warm-up: an exact baseline.
        t0 = self._wait_fresh(warm_end, FIRST_SCRAPE_TIMEOUT_S)
        if self.stop.is_set():
            return None
        return t0, self.reader.snapshots(t0)

    def _interval_end(self, k: int, t0: float, end: float) -> float | None:
        """When interval ``k`` ends (a scrape's own timestamp); None when stopped before."""
        # On schedule, but at least half a scrape after the previous end, so that every
        # window holds a scrape of its own.
        target = max(t0 + k * self.spec.duration.interval_s, end + self.scrape_interval_s / 2)
        if not self._wait_until(target):
            return None
        # The window ends exactly at the first scrape at or after its target: reading at a
        # scrape's own timestamp makes the snapshot that scrape, never the one before it.
        # Until Prometheus' first scrape has landed, allow for its start-up delay.
        reached = self._wait_fresh(
            target,
            max(5.0, 4 * self.scrape_interval_s) if self._seen_scrape else FIRST_SCRAPE_TIMEOUT_S,
        )
        self._seen_scrape = True
        return None if self.stop.is_set() else reached

    def _interval(
        self,
        k: int,
        end: float,
        first: dict[str, Snapshot],
        previous: dict[str, Snapshot],
        current: dict[str, Snapshot],
        t0: float,
    ) -> Interval:
        read = self.reader
        windows = {key: read.window(key, previous[key], current[key]) for key in read.keys}
        cumulative = {key: read.window(key, first[key], current[key], t0) for key in read.keys}
        return Interval(k, previous["dark"].at, end, windows, cumulative)

    def _early_stop(self, k: int, verdicts: list[Verdict]) -> str | None:
        """Why the experiment may stop after interval ``k``, if it may."""
        data = self.data
        if all(v.decided for v in verdicts):
            return f"all objectives decided after {k} of {data.planned} intervals"
        failed = [v.objective.subject for v in verdicts if v.outcome == FAIL]
        if data.fail_fast and failed:
            return f"fail-fast: {', '.join(failed)} breached after {k} of {data.planned} intervals"
        return None
