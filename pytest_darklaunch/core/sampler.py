"""Snapshots of Prometheus at interval boundaries, and exact windows between them.

A :class:`Snapshot` is what Prometheus holds for one version at one instant: the request
counter per response code and the latency histogram. A :class:`Window` is the difference of two
snapshots, so its counts are exact for the scrapes that bound it (Prometheus' ``increase()``
would extrapolate). A series absent at the start of a window counts from zero; a series absent
at its end means *no data*, never zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.core.metrics import MetricSource, is_error, snapshot_queries

if TYPE_CHECKING:
    from pytest_darklaunch.core.prometheus import PrometheusClient

Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of one version at time ``at`` (``codes`` empty: no series)."""

    at: float
    codes: Mapping[str, float] = field(default_factory=dict)
    buckets: Buckets = ()
    latency_sum: float | None = None
    latency_count: float | None = None


@dataclass(frozen=True)
class Window:
    """What one version served in ``(start, end]``: ``requests is None`` means no data."""

    start: float
    end: float
    requests: float | None = None
    errors: float | None = None
    latency_sum: float | None = None
    latency_count: float | None = None
    buckets: Buckets = ()
    reset: bool = False
    custom: Mapping[str, float | None] = field(default_factory=dict)
    codes: Mapping[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["buckets"] = [[_json_le(le), c] for le, c in self.buckets]
        out["custom"] = {k: _json_num(v) for k, v in self.custom.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        values = dict(data)
        values["buckets"] = tuple((float(le), float(c)) for le, c in data.get("buckets", ()))
        values["custom"] = {
            k: (None if v is None else float(v)) for k, v in data.get("custom", {}).items()
        }
        values["codes"] = {k: float(v) for k, v in data.get("codes", {}).items()}
        return cls(**values)


def _json_le(le: float) -> Any:
    return "+Inf" if math.isinf(le) else le


def _json_num(value: float | None) -> Any:
    if value is None or math.isnan(value):
        return None
    return value


def window_between(first: Snapshot, last: Snapshot, errors: str, source: MetricSource) -> Window:
    """The exact difference ``last - first``; a negative difference flags a counter reset."""
    if not last.codes:
        return Window(first.at, last.at)
    reset = False
    requests = 0.0
    error_count = 0.0
    codes: dict[str, float] = {}
    for code, count in last.codes.items():
        delta = count - first.codes.get(code, 0.0)
        if delta < 0:
            reset = True
        requests += delta
        if delta:
            codes[code] = delta
        if is_error(code, errors):
            error_count += delta
    buckets: Buckets = ()
    lat_sum = lat_count = None
    if last.buckets:
        before = dict(first.buckets)
        buckets = tuple((le, c - before.get(le, 0.0)) for le, c in last.buckets)
        reset = reset or any(c < 0 for _, c in buckets)
    if last.latency_count is not None:
        lat_count = last.latency_count - (first.latency_count or 0.0)
        lat_sum = (last.latency_sum or 0.0) - (first.latency_sum or 0.0)
        reset = reset or lat_count < 0
    return Window(
        first.at, last.at, requests, error_count, lat_sum, lat_count, buckets, reset, {}, codes
    )


class SnapshotReader:
    """Reads :class:`Snapshot` s of one version from Prometheus.

    >>> labels = {"envoy_cluster_name": "dark"}
    >>> reader = SnapshotReader(client, SOURCES["envoy"], labels)  # doctest: +SKIP
    >>> reader.read(at=time.time()).codes  # doctest: +SKIP
    {'2': 412.0}
    """

    def __init__(
        self, client: PrometheusClient, source: MetricSource, labels: Mapping[str, str]
    ) -> None:
        self.client = client
        self.source = source
        self.queries = snapshot_queries(source, labels)

    def read(self, at: float) -> Snapshot:
        codes = self.client.query(self.queries["requests"], at).by_label(self.source.code_label)
        raw = self.client.query(self.queries["buckets"], at).by_label("le")
        buckets = tuple(sorted(((float(le), c) for le, c in raw.items()), key=lambda b: b[0]))
        lat_sum = self.client.query(self.queries["latency_sum"], at).scalar()
        lat_count = self.client.query(self.queries["latency_count"], at).scalar()
        return Snapshot(at, codes, buckets, lat_sum, lat_count)


class GroupedSnapshotReader:
    """Reads the snapshots of many label sets (one per route and role) with one query per
    kind, grouped by the labels that tell them apart, so the queries per look stay four
    however many routes there are.

    A key's snapshot sums the series whose labels hold all of the key's matchers: the key
    ``{darklaunch_role: live}`` sums every route of live, as the ungrouped query would.
    """

    def __init__(
        self,
        client: PrometheusClient,
        source: MetricSource,
        labels_by_key: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.client = client
        self.source = source
        self.labels_by_key = {k: dict(v) for k, v in labels_by_key.items()}
        names = sorted({n for labels in self.labels_by_key.values() for n in labels})
        self.queries = grouped_queries(source, names)

    def read(self, at: float) -> dict[str, Snapshot]:
        src = self.source
        rows = {kind: self.client.query(q, at).samples for kind, q in self.queries.items()}
        out = {}
        for key, labels in self.labels_by_key.items():

            def mine(sample: Any, labels: Mapping[str, str] = labels) -> bool:
                return all(sample.labels.get(k, "") == v for k, v in labels.items())

            codes: dict[str, float] = {}
            for s in filter(mine, rows["requests"]):
                code = s.labels.get(src.code_label, "")
                codes[code] = codes.get(code, 0.0) + s.value
            by_le: dict[float, float] = {}
            for s in filter(mine, rows["buckets"]):
                le = float(s.labels.get("le", "+Inf"))
                by_le[le] = by_le.get(le, 0.0) + s.value
            sums = [s.value for s in rows["latency_sum"] if mine(s)]
            counts = [s.value for s in rows["latency_count"] if mine(s)]
            out[key] = Snapshot(
                at,
                codes,
                tuple(sorted(by_le.items())),
                sum(sums) if sums else None,
                sum(counts) if counts else None,
            )
        return out


def grouped_queries(source: MetricSource, names: Sequence[str]) -> dict[str, str]:
    """The four snapshot queries grouped by ``names``, over every series carrying the first
    of them (Envoy's stats tags are on our clusters only)."""
    by = ", ".join(names)
    sel = "{" + f'{names[0]}!=""' + "}"
    lat = source.latency
    return {
        "requests": f"sum by ({by}, {source.code_label}) ({source.requests}{sel})",
        "buckets": f"sum by ({by}, le) ({lat}_bucket{sel})",
        "latency_sum": f"sum by ({by}) ({lat}_sum{sel})",
        "latency_count": f"sum by ({by}) ({lat}_count{sel})",
    }
