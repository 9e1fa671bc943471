"""A canned Prometheus for unit tests: answers the sampler's queries from scripted scrapes.

Each version has a list of scrapes ``(timestamp, codes, latencies_ms)``; an instant query at
time ``t`` sees the newest scrape at or before ``t``, as Prometheus does.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from pytest_darklaunch.core.metrics import (
    SOURCES,
    freshness_selector,
    scrape_time_query,
    snapshot_queries,
)
from pytest_darklaunch.core.prometheus import PrometheusClient, QueryResult, Sample

LE = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, math.inf)
LABELS = {"live": {"envoy_cluster_name": "live"}, "dark": {"envoy_cluster_name": "dark"}}


@dataclass
class Scrape:
    at: float
    codes: dict[str, float]
    latencies: list[float] = field(default_factory=list)  # every observation so far, in ms

    def buckets(self) -> list[tuple[float, float]]:
        return [(le, float(sum(1 for x in self.latencies if x <= le))) for le in LE]


class FakePrometheus:
    url = "http://prometheus.invalid"
    last_scrape = PrometheusClient.last_scrape  # the real method, over the fake's query()

    def __init__(self) -> None:
        self.scrapes: dict[str, list[Scrape]] = {"live": [], "dark": []}
        self.queries: list[tuple[str, float]] = []
        src = SOURCES["envoy"]
        self._by_query = {}
        for role, labels in LABELS.items():
            for kind, q in snapshot_queries(src, labels).items():
                self._by_query[q] = (role, kind)
        self.fresh = scrape_time_query(freshness_selector(src, LABELS["live"]))

    def add(self, role: str, at: float, codes: dict[str, float], latencies: list[float]) -> None:
        self.scrapes[role].append(Scrape(at, dict(codes), list(latencies)))

    def _at(self, role: str, at: float) -> Scrape | None:
        series = self.scrapes[role]
        i = bisect.bisect_right([s.at for s in series], at)
        return series[i - 1] if i else None

    def query(self, promql: str, at: float) -> QueryResult:
        self.queries.append((promql, at))
        if promql == self.fresh:
            scrape = self._at("live", at)
            samples = () if scrape is None else (Sample({}, scrape.at),)
            return QueryResult(promql, at, "vector", samples)
        role, kind = self._by_query[promql]
        scrape = self._at(role, at)
        if scrape is None or not scrape.codes:
            return QueryResult(promql, at, "vector", ())
        if kind == "requests":
            samples = tuple(
                Sample({"envoy_response_code": c}, v) for c, v in scrape.codes.items()
            )
        elif kind == "buckets":
            samples = tuple(
                Sample({"le": "+Inf" if math.isinf(le) else repr(le)}, c)
                for le, c in scrape.buckets()
            )
        elif kind == "latency_sum":
            samples = (Sample({}, float(sum(scrape.latencies))),)
        else:
            samples = (Sample({}, float(len(scrape.latencies))),)
        return QueryResult(promql, at, "vector", samples)


def steady(
    prom: FakePrometheus, start: float, seconds: int, live_rps: int, dark_share: float,
    dark_latency: float, dark_error_every: int = 0, live_latency: float = 3.0,
) -> None:
    """Scripted scrapes once a second: live at ``live_rps``, dark gets ``dark_share`` of it."""
    live_n = dark_n = dark_err = 0
    live_lat: list[float] = []
    dark_lat: list[float] = []
    for s in range(seconds + 1):
        t = start + s
        prom.add("live", t, {"2": float(live_n)}, live_lat)
        codes = {"2": float(dark_n - dark_err)}
        if dark_err:
            codes["5"] = float(dark_err)
        prom.add("dark", t, codes if dark_n else {}, dark_lat)
        live_n += live_rps
        live_lat = live_lat + [live_latency] * live_rps
        new_dark = int(round(live_rps * dark_share))
        for _ in range(new_dark):
            dark_n += 1
            if dark_error_every and dark_n % dark_error_every == 0:
                dark_err += 1
        dark_lat = dark_lat + [dark_latency] * new_dark
