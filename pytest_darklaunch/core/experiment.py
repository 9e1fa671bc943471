"""The experiment loop: warm up, then sample every interval, decide as early as the data allows.

Not to be confused with ``assertions.Experiment`` (the handle tests get),
``--darklaunch-experiment`` (an Iter8 YAML) or ``judge="experiment"`` (judging the whole run).
:class:`Runner` needs only a Prometheus client and the environment a backend returned; it fills
:class:`ExperimentData`, plain and JSON-serialisable, from which every verdict is a pure
function (so pytest-xdist workers can judge from a file).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_result, wait_fixed

from pytest_darklaunch.core.metrics import (
    COMPARISON_NAMES,
    SOURCES,
    freshness_selector,
    scrape_time_query,
    window_expression,
)
from pytest_darklaunch.core.reading import ELIGIBLE, LookReader
from pytest_darklaunch.core.routes import split_key, window_key
from pytest_darklaunch.core.sampler import Snapshot, Window
from pytest_darklaunch.core.spec import Objective, Spec
from pytest_darklaunch.core.units import format_duration
from pytest_darklaunch.core.verdict import (
    FAIL,
    INCONCLUSIVE,
    Context,
    Estimate,
    Verdict,
    estimate,
    judge,
    precheck,
)
from pytest_darklaunch.core.verdict.paired import Look, judge_comparison
from pytest_darklaunch.errors import MetricsError

if TYPE_CHECKING:
    from pytest_darklaunch.core.compare import Summary
    from pytest_darklaunch.core.prometheus import PrometheusClient

# Prometheus' first scrape of a new target lands about 5 s after it starts.
FIRST_SCRAPE_TIMEOUT_S = 30.0


class Stage:
    """The values of :attr:`ExperimentData.stage` (also the JSON report's ``stage``)."""

    PENDING = "pending"
    WARMING_UP = "warming up"
    RUNNING = "running"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Interval:
    """One sampled interval: its own windows and the cumulative ones since the start."""

    index: int
    start: float
    end: float
    windows: Mapping[str, Window]
    cumulative: Mapping[str, Window]


@dataclass
class ExperimentData:
    """Everything the experiment measured; verdicts are computed from it."""

    source: str
    labels: Mapping[str, Mapping[str, str]]
    interval_s: float
    planned: int
    confidence: float
    mirror_percent: float
    target_rps: float | None
    timeout_s: float
    full_duration: bool
    fail_fast: bool = False
    # The custom metrics' declared units (Spec.units_of), so that verdicts judged from the
    # result file on an xdist worker show them too; built-in metrics follow the built-in rule.
    custom_units: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    stage: str = Stage.PENDING
    stop_reason: str = ""
    error: str = ""
    intervals: list[Interval] = field(default_factory=list)
    generator: dict[str, Any] = field(default_factory=dict)
    # Pairing (local backend): the comparison's counts at each interval's end, measured phase
    # only, and the whole run's comparison (Summary.to_json) once the traffic stopped.
    comparison_looks: list[Look] = field(default_factory=list)
    comparison: dict[str, Any] | None = None

    @property
    def looks(self) -> int:
        return 1 if self.full_duration else self.planned

    def context(self, metric: str, route: str | None = None) -> Context:
        src = SOURCES[self.source]
        return Context(
            self.confidence,
            self.looks,
            self.mirror_percent,
            # A route gets a share of the rate; the generator check is the aggregate's.
            self.target_rps if route is None else None,
            self.timeout_s,
            window_expression(src, self.labels.get(window_key("dark", route), {}), metric),
            planned_s=self.interval_s * self.planned,
            units=self.custom_units.get(metric, ""),
            route=route or "",
        )

    def verdict(self, obj: Objective, final: bool = True) -> Verdict | None:
        """The verdict on ``obj``, or ``None`` before the first interval.

        An objective with a route is judged on that route's windows only: each route's
        objective is its own decision, as each objective is.
        """
        if not self.intervals:
            return None
        last = self.intervals[-1]
        dark, live = window_key("dark", obj.route), window_key("live", obj.route)
        if dark not in last.cumulative:
            measured = sorted({split_key(k)[1] or "" for k in last.cumulative} - {""})
            return Verdict(
                obj,
                INCONCLUSIVE,
                f"route {obj.route} was not measured (measured: "
                f"{', '.join(measured) or 'no route'}); name it in an objective of the spec "
                "or declare it under routes:",
                error=True,
            )
        if obj.route is None and (self.comparison_looks or obj.metric in COMPARISON_NAMES):
            # Mismatch rates always, latency bounds relative to live whenever pairs exist (all
            # traffic: pairs are not split by route); a run whose mirror or load is wrong stays
            # inconclusive as every other verdict does.
            ctx = self.context(obj.metric, obj.route)
            why = precheck(last.cumulative[dark], last.cumulative[live], ctx,
                           last.cumulative.get(ELIGIBLE))
            paired = judge_comparison(obj, self.comparison_looks, ctx, final, why)
            if paired is not None:
                return paired
        pairs = [(i.windows[dark], i.windows[live]) for i in self.intervals]
        return judge(
            obj,
            (last.cumulative[dark], last.cumulative[live]),
            pairs,
            self.context(obj.metric, obj.route),
            final,
            eligible=last.cumulative.get(ELIGIBLE),
        )

    def verdicts_for(self, objectives: Sequence[Objective]) -> list[Verdict]:
        """The final verdicts on ``objectives`` (empty before the first interval)."""
        return [v for v in (self.verdict(o) for o in objectives) if v is not None]

    def series(
        self, metric: str, role: str, cumulative: bool = False
    ) -> list[tuple[Interval, Estimate]]:
        """Each interval with ``role``'s estimate of ``metric`` on its own window (or on the
        cumulative window up to its end)."""
        windows = [(i, (i.cumulative if cumulative else i.windows)[role]) for i in self.intervals]
        return [(i, estimate(w, metric, self.confidence)) for i, w in windows]

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("intervals", "comparison_looks")}
        out["comparison_looks"] = [look.to_json() for look in self.comparison_looks]
        out["intervals"] = [
            {
                "index": i.index,
                "start": i.start,
                "end": i.end,
                "windows": {r: w.to_json() for r, w in i.windows.items()},
                "cumulative": {r: w.to_json() for r, w in i.cumulative.items()},
            }
            for i in self.intervals
        ]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExperimentData:
        values = {k: v for k, v in data.items() if k not in ("intervals", "comparison_looks")}
        out = cls(**values)
        out.comparison_looks = [Look.from_json(look) for look in data.get("comparison_looks", [])]
        out.intervals = [
            Interval(
                i["index"],
                i["start"],
                i["end"],
                {r: Window.from_json(w) for r, w in i["windows"].items()},
                {r: Window.from_json(w) for r, w in i["cumulative"].items()},
            )
            for i in data.get("intervals", [])
        ]
        return out

    def save(self, path: str) -> None:
        """Write atomically, so a reader never sees half a file."""
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> ExperimentData:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(json.load(fh))


def unavailable_reason(error: str, data: ExperimentData | None) -> str:
    """Why there can be no verdict on any objective (``""`` when there can be): the run's own
    ``error`` (provisioning failed, say), no experiment, a failed one, or no interval completed."""
    if error:
        return error
    if data is None:
        return "the experiment did not run"
    if data.error:
        return f"the experiment failed: {data.error}"
    if not data.intervals:
        return f"no interval was completed ({data.stop_reason or data.stage})"
    return ""


def new_data(
    spec: Spec,
    source: str,
    labels: Mapping[str, Mapping[str, str]],
    full_duration: bool,
    generated: bool = True,
    fail_fast: bool = False,
) -> ExperimentData:
    return ExperimentData(
        source=source,
        labels={r: dict(v) for r, v in labels.items()},
        interval_s=spec.duration.interval_s,
        planned=spec.duration.iterations,
        confidence=spec.confidence,
        mirror_percent=spec.mirror.percent,
        target_rps=spec.traffic.planned_rps if generated else None,
        timeout_s=spec.traffic.timeout_s,
        full_duration=full_duration,
        fail_fast=fail_fast,
        custom_units={m.name: m.units for m in spec.metrics},
    )


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
        if spec.traffic.warmup_s == 0 and self.counters_start_at_zero:
            # Every counter was zero when the traffic started: that is an exact baseline, and
            # Prometheus' first scrape (about 5 s after its start) delays nothing.
            t0 = self.traffic_started_at
            first = previous = {key: Snapshot(t0) for key in self.reader.keys}
        else:
            warm_end = self.traffic_started_at + spec.traffic.warmup_s
            if not self._wait_until(warm_end):
                data.stage, data.stop_reason = Stage.STOPPED, "interrupted during warm-up"
                return
            # The first interval starts at a real scrape after the warm-up: an exact baseline.
            t0 = self._wait_fresh(warm_end, FIRST_SCRAPE_TIMEOUT_S)
            if self.stop.is_set():
                data.stage, data.stop_reason = Stage.STOPPED, "interrupted during warm-up"
                return
            first = previous = self.reader.snapshots(t0)
        data.started_at = t0
        self._look(t0, t0)
        data.stage = Stage.RUNNING
        end = t0
        for k in range(1, spec.duration.iterations + 1):
            # On schedule, but at least half a scrape after the previous end, so that every
            # window holds a scrape of its own.
            target = max(t0 + k * spec.duration.interval_s, end + self.scrape_interval_s / 2)
            if not self._wait_until(target):
                data.stage, data.stop_reason = Stage.STOPPED, f"interrupted in interval {k}"
                return
            # The window ends exactly at the first scrape at or after its target: reading at a
            # scrape's own timestamp makes the snapshot that scrape, never the one before it.
            # Until Prometheus' first scrape has landed, allow for its start-up delay.
            end = self._wait_fresh(
                target,
                max(5.0, 4 * self.scrape_interval_s)
                if self._seen_scrape
                else FIRST_SCRAPE_TIMEOUT_S,
            )
            self._seen_scrape = True
            if self.stop.is_set():
                data.stage, data.stop_reason = Stage.STOPPED, f"interrupted in interval {k}"
                return
            current = self.reader.snapshots(end)
            read = self.reader
            windows = {key: read.window(key, previous[key], current[key]) for key in read.keys}
            cumulative = {key: read.window(key, first[key], current[key], t0) for key in read.keys}
            interval = Interval(k, previous["dark"].at, end, windows, cumulative)
            self._look(end, t0)
            data.intervals.append(interval)
            previous = current
            final = k == spec.duration.iterations
            verdicts = [v for v in (data.verdict(o, final=final) for o in self.objectives) if v]
            if self.on_interval is not None:
                self.on_interval(data, interval, verdicts)
            if data.full_duration or final or not verdicts:
                continue
            if all(v.decided for v in verdicts):
                data.stage = Stage.COMPLETED
                data.stop_reason = f"all objectives decided after {k} of {data.planned} intervals"
                return
            failed = [v.objective.subject for v in verdicts if v.outcome == FAIL]
            if data.fail_fast and failed:
                data.stage = Stage.COMPLETED
                data.stop_reason = (
                    f"fail-fast: {', '.join(failed)} breached after {k} of {data.planned} intervals"
                )
                return
        data.stage = Stage.COMPLETED
        data.stop_reason = f"all {data.planned} intervals sampled"
