"""The metric catalogue: Iter8's Knative metric names, percentiles, throughput, custom PromQL."""

from __future__ import annotations

import re

BUILTIN_NAMES = (
    "request-count",
    "mean-latency",
    "95th-percentile-tail-latency",
    "error-count",
    "error-rate",
    "throughput",
)
_PERCENTILE = re.compile(r"^(?:latency-)?p(\d{1,2}(?:\.\d+)?)$")


def percentile_of(name: str) -> float | None:
    """The quantile (0..1) a percentile metric name stands for, else ``None``.

    >>> percentile_of("p99"), percentile_of("latency-p50"), percentile_of("95th-percentile-tail-latency")
    (0.99, 0.5, 0.95)
    """
    if name == "95th-percentile-tail-latency":
        return 0.95
    match = _PERCENTILE.match(name)
    if not match:
        return None
    value = float(match.group(1))
    return value / 100 if 0 < value < 100 else None


def is_builtin(name: str) -> bool:
    return name in BUILTIN_NAMES or percentile_of(name) is not None
