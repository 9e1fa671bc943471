"""What an experiment measured: :class:`ExperimentData`, plain and JSON-serialisable, from which
every verdict is a pure function (so pytest-xdist workers can judge from a file).

Filled by the sampling loop (:class:`pytest_darklaunch.core.loop.Runner`). Not to be confused
with ``assertions.Experiment`` (the handle tests get), ``--darklaunch-experiment`` (an Iter8 YAML)
or ``judge="experiment"`` (judging the whole run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.core.metrics import (
    COMPARISON_NAMES,
    SOURCES,
    window_expression,
)
from pytest_darklaunch.core.reading import ELIGIBLE
from pytest_darklaunch.core.routes import split_key, window_key
from pytest_darklaunch.core.sampler import Window
from pytest_darklaunch.core.spec import Objective, Spec
from pytest_darklaunch.core.verdict import (
    INCONCLUSIVE,
    Context,
    Estimate,
    Verdict,
    estimate,
    judge,
    precheck,
)
from pytest_darklaunch.core.verdict.paired import Look, judge_comparison

if TYPE_CHECKING:
    pass



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
