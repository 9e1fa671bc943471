"""The metric catalogue: Iter8's Knative metric names, percentiles, throughput, custom PromQL.

Built-in metrics are all derived from two things Prometheus holds per version: a request
counter broken down by response code, and a latency histogram in milliseconds. The sampler
reads both at each interval boundary; every window is then an exact difference of two such
snapshots (no ``rate()`` extrapolation, no ``or vector(0)`` hiding missing data).

>>> q = snapshot_queries(SOURCES["envoy"], {"envoy_cluster_name": "dark"})
>>> q["requests"]
'sum by (envoy_response_code) (envoy_cluster_upstream_rq{envoy_cluster_name="dark"})'
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

BUILTIN_NAMES = (
    "request-count",
    "mean-latency",
    "95th-percentile-tail-latency",
    "error-count",
    "error-rate",
    "throughput",
)
# Computed from pairs of live's and dark's answers to the same requests (local backend), not
# from Prometheus: see core/compare and core/verdict/paired.py.
COMPARISON_NAMES = ("status-mismatch-rate", "response-mismatch-rate")
UNITS = {
    "request-count": "requests",
    "mean-latency": "ms",
    "95th-percentile-tail-latency": "ms",
    "error-count": "errors",
    "error-rate": "",
    "throughput": "requests/s",
}
_PERCENTILE = re.compile(r"^(?:latency-)?p(\d{1,2}(?:\.\d+)?)$")


def percentile_of(name: str) -> float | None:
    """The quantile (0..1) a percentile metric name stands for, else ``None``.

    >>> percentile_of("p99"), percentile_of("latency-p50")
    (0.99, 0.5)
    >>> percentile_of("95th-percentile-tail-latency")
    0.95
    """
    if name == "95th-percentile-tail-latency":
        return 0.95
    match = _PERCENTILE.fullmatch(name)
    if not match:
        return None
    value = float(match.group(1))
    return value / 100 if 0 < value < 100 else None


def is_latency(name: str) -> bool:
    """Whether ``name`` is a latency: the mean or a percentile.

    >>> is_latency("mean-latency"), is_latency("p99"), is_latency("error-rate")
    (True, True, False)
    """
    return name == "mean-latency" or percentile_of(name) is not None


def is_builtin(name: str) -> bool:
    return name in BUILTIN_NAMES or name in COMPARISON_NAMES or percentile_of(name) is not None


def units_of(name: str) -> str:
    return UNITS.get(name, "ms" if percentile_of(name) is not None else "")


@dataclass(frozen=True)
class MetricSource:
    """How one backend's telemetry names requests and latencies.

    ``code_label`` holds the response code ("503"). Knative's queue-proxy metrics are no
    source: their names changed with Knative 1.19 (OpenTelemetry), and Istio's destination
    reporter already sees every mirrored request.
    """

    name: str
    requests: str
    code_label: str
    latency: str


SOURCES: Mapping[str, MetricSource] = {
    # Envoy cluster stats per response code, local backend: the mirror cluster also records
    # the 503s Envoy answers itself when dark does not answer.
    "envoy": MetricSource(
        "envoy",
        "envoy_cluster_upstream_rq",
        "envoy_response_code",
        "envoy_cluster_upstream_rq_time",
    ),
    # Envoy's virtual cluster of the mirrored methods (local backend): live's requests a
    # mirror could copy, the base of the mirror check when only some methods are mirrored.
    "envoy-eligible": MetricSource(
        "envoy-eligible",
        "envoy_vhost_vcluster_upstream_rq",
        "envoy_response_code",
        "envoy_vhost_vcluster_upstream_rq_time",
    ),
    # Istio standard metrics; mirrored requests show up only with reporter="destination".
    "istio": MetricSource(
        "istio",
        "istio_requests_total",
        "response_code",
        "istio_request_duration_milliseconds",
    ),
}


def selector(labels: Mapping[str, str]) -> str:
    """PromQL label matchers: ``{a="x",b="y"}`` with values escaped."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def snapshot_queries(source: MetricSource, labels: Mapping[str, str]) -> dict[str, str]:
    """The instant queries that make one version's snapshot at a time ``T``."""
    sel = selector(labels)
    return {
        "requests": f"sum by ({source.code_label}) ({source.requests}{sel})",
        "buckets": f"sum by (le) ({source.latency}_bucket{sel})",
        "latency_sum": f"sum({source.latency}_sum{sel})",
        "latency_count": f"sum({source.latency}_count{sel})",
    }


def scrape_time_query(series: str) -> str:
    """The query whose samples are the scrape times of the series ``series`` selects."""
    return f"timestamp({series})"


def freshness_selector(source: MetricSource, labels: Mapping[str, str]) -> str:
    """A version's request counters, whose sample timestamps are the times of its scrapes."""
    return f"{source.requests}{selector(labels)}"


def is_error(code: str, errors: str) -> bool:
    """Whether a response code label value counts as an error under ``errors`` (5xx, ...)."""
    digit = code[:1]
    if errors == "5xx":
        return digit == "5"
    if errors == "4xx+5xx":
        return digit in ("4", "5")
    return digit != "2"  # non-2xx


def window_expression(source: MetricSource, labels: Mapping[str, str], metric: str) -> str:
    """The PromQL equivalent of what the sampler computes for ``metric``, for messages.

    The sampler reads the snapshot queries at each boundary and subtracts in Python; this is
    the same computation as one expression with ``@`` modifiers.
    """
    sel = selector(labels)
    req = f"sum({source.requests}{sel})"
    lat = source.latency
    if metric in ("request-count", "throughput"):
        return f"{req} - {req} @ $start"
    if metric in ("error-count", "error-rate"):
        return f"errors: {source.requests}{sel} by {source.code_label}, at $end minus at $start"
    if metric == "mean-latency":
        return (
            f"(sum({lat}_sum{sel}) - sum({lat}_sum{sel}) @ $start) / "
            f"(sum({lat}_count{sel}) - sum({lat}_count{sel}) @ $start)"
        )
    q = percentile_of(metric)
    return (
        f"histogram_quantile({q}, sum by (le) ({lat}_bucket{sel}) - "
        f"sum by (le) ({lat}_bucket{sel}) @ $start)"
    )


def render_template(query: str, values: Mapping[str, str]) -> str:
    """Fill a custom metric's ``$placeholders`` (``$revision``, ``$window``, ...)."""
    return string.Template(query).substitute(values)


def uses_route(query: str) -> bool:
    """Whether a custom metric's template selects by route (``$route`` or ``${route}``).

    >>> uses_route('sum(my_requests{route="$route"})'), uses_route("sum(x) $$route")
    (True, False)
    """
    return any(
        m.group("named") == "route" or m.group("braced") == "route"
        for m in string.Template.pattern.finditer(query)
    )
