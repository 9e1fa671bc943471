"""What a verdict is made of: estimates with their intervals, the verdict, and its context."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.metrics import percentile_of
from pytest_darklaunch.core.sampler import Window
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.units import shown_units

PASS = "pass"


FAIL = "fail"


INCONCLUSIVE = "inconclusive"


UNDECIDED = "undecided"


@dataclass(frozen=True)
class Estimate:
    """A metric's value on one window and its confidence interval ``[lo, hi]``."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    samples: int = 0
    bucket: tuple[float, float] | None = None
    missing: str = ""


def estimate(
    window: Window, metric: str, confidence: float, with_interval: bool = True
) -> Estimate:
    """The value of ``metric`` on ``window`` with a ``confidence`` interval (without one, and
    much faster, when ``with_interval`` is false)."""
    if metric in window.custom:
        value = window.custom[metric]
        if value is None or math.isnan(value):
            return Estimate(None, missing=f"the query for {metric} returned no data")
        return Estimate(value, value, value, int(window.requests or 0))
    if window.requests is None:
        return Estimate(None, missing="no requests recorded")
    n = int(round(window.requests))
    if metric == "request-count":
        return Estimate(window.requests, window.requests, window.requests, n)
    if metric == "throughput":
        rate = window.requests / window.seconds if window.seconds > 0 else 0.0
        return Estimate(rate, rate, rate, n)
    errors = window.errors or 0.0
    if metric == "error-count":
        return Estimate(errors, errors, errors, n)
    if metric == "error-rate":
        if n == 0:
            return Estimate(None, missing="no requests recorded")
        if not with_interval:
            return Estimate(errors / n, samples=n)
        lo, hi = stats.binomial_interval(int(round(errors)), n, confidence)
        return Estimate(errors / n, lo, hi, n)
    count = window.latency_count or 0.0
    if count <= 0 or not window.buckets:
        return Estimate(None, samples=n, missing="no latency observations recorded")
    if metric == "mean-latency":
        mean = (window.latency_sum or 0.0) / count
        if not with_interval:
            return Estimate(mean, samples=int(count))
        lo, hi = stats.histogram_mean_interval(
            window.latency_sum or 0.0, count, window.buckets, confidence
        )
        return Estimate(mean, lo, hi, int(count))
    q = percentile_of(metric)
    if q is None:
        return Estimate(None, missing=f"unknown metric {metric!r}")
    value = stats.histogram_quantile(q, window.buckets)
    if not with_interval:
        return Estimate(value, samples=int(count))
    lo, hi = stats.quantile_interval(q, window.buckets, confidence)
    return Estimate(value, lo, hi, int(count), stats.quantile_bucket(q, window.buckets))


@dataclass(frozen=True)
class IntervalPoint:
    """One interval's value of the objective's metric, for dark and live."""

    end: float
    dark: float | None
    live: float | None
    outcome: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one objective with everything needed to explain it."""

    objective: Objective
    outcome: str
    reason: str
    value: float | None = None
    live_value: float | None = None
    lo: float | None = None
    hi: float | None = None
    samples: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    query: str = ""
    units: str = ""
    points: tuple[IntervalPoint, ...] = field(default=())
    error: bool = False

    @property
    def decided(self) -> bool:
        return self.outcome in (PASS, FAIL)


@dataclass(frozen=True)
class Context:
    """What a verdict needs besides the windows: the run's shape and checks."""

    confidence: float
    looks: int
    mirror_percent: float
    target_rps: float | None = None
    dark_timeout_s: float = 0.0
    query: str = ""
    # The planned sampling time (interval x iterations): the information fraction of a look is
    # its cumulative window over this. 0: unknown, so rate objectives use Bonferroni.
    planned_s: float = 0.0
    # The judged metric's units, from ``Spec.units_of`` so a custom metric's units reach the
    # message. Empty: the built-in rule (custom metrics never take a built-in name).
    units: str = ""
    # The route the windows cover ("": all traffic); its checks name it.
    route: str = ""


def bounds_text(obj: Objective, units: str = "") -> str:
    """``<= 50``, ``>= 10 and <= 50 ms``, ``<= +10% over live``."""
    unit = f" {shown_units(units)}" if shown_units(units) else ""
    parts = []
    if obj.lower is not None:
        parts.append(f">= {obj.lower:g}{unit}")
    if obj.upper is not None:
        parts.append(f"<= {obj.upper:g}{unit}")
    if obj.max_increase is not None:
        parts.append(f"<= +{obj.max_increase} over live")
    return " and ".join(parts)
