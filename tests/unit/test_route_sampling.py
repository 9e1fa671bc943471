"""Sampling per route: one grouped query per kind, exact windows for every route and role."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pytest_darklaunch.core.experiment import ExperimentData, new_data
from pytest_darklaunch.core.loop import Runner
from pytest_darklaunch.core.metrics import SOURCES, freshness_selector, scrape_time_query
from pytest_darklaunch.core.prometheus import QueryResult, Sample
from pytest_darklaunch.core.routes import window_key
from pytest_darklaunch.core.sampler import GroupedSnapshotReader, grouped_queries
from pytest_darklaunch.core.spec import Objective, Sources, Spec, build_spec
from pytest_darklaunch.core.verdict import FAIL, INCONCLUSIVE, PASS
from tests.unit.test_experiment import START, FakeTime

ROLE, ROUTE = "darklaunch_role", "darklaunch_route"
ROUTES = ("detail", "upload")
RATES: dict[str | None, int] = {None: 90, "detail": 6, "upload": 4}
LE = (10.0, 100.0, 1000.0, math.inf)


@dataclass
class Cluster:
    """One Envoy cluster's cumulative counters over time: ``(at, ok, latencies_ms)``."""

    labels: dict[str, str]
    scrapes: list[tuple[float, int, list[float]]] = field(default_factory=list)

    def at(self, t: float) -> tuple[int, list[float]] | None:
        seen = [s for s in self.scrapes if s[0] <= t]
        return (seen[-1][1], seen[-1][2]) if seen else None


class GroupedProm:
    """Answers the grouped snapshot queries (and the freshness query) from clusters."""

    url = "http://prometheus.invalid"

    def __init__(self, clusters: list[Cluster], names: list[str]) -> None:
        self.clusters = clusters
        self.queries: list[str] = []
        self.kinds = {q: k for k, q in grouped_queries(SOURCES["envoy"], names).items()}
        self.fresh = scrape_time_query(freshness_selector(SOURCES["envoy"], {ROLE: "live"}))

    def last_scrape(self, selector: str, at: float) -> float | None:
        self.queries.append(selector)
        times = [s[0] for c in self.clusters for s in c.scrapes if s[0] <= at]
        return max(times) if times else None

    def query(self, promql: str, at: float) -> QueryResult:
        self.queries.append(promql)
        kind = self.kinds[promql]
        samples = []
        for cluster in self.clusters:
            state = cluster.at(at)
            if state is None:
                continue
            ok, lats = state
            if kind == "requests":
                samples.append(Sample({**cluster.labels, "envoy_response_code": "200"}, ok))
            elif kind == "buckets":
                for le in LE:
                    labels = {**cluster.labels, "le": "+Inf" if math.isinf(le) else repr(le)}
                    samples.append(Sample(labels, float(sum(x <= le for x in lats))))
            elif kind == "latency_sum":
                samples.append(Sample(cluster.labels, float(sum(lats))))
            else:
                samples.append(Sample(cluster.labels, float(len(lats))))
        return QueryResult(promql, at, "vector", tuple(samples))


def clusters_at_rates(
    rates: dict[str | None, int],
    dark_latency: dict[str | None, float],
    unmirrored: tuple[str, ...] = (),
) -> list[Cluster]:
    """Per route (``None``: the catch-all) live at ``rates`` per second, dark all of it (none
    of the ``unmirrored`` routes)."""
    out = []
    for route, rps in rates.items():
        for role in ("live", "dark"):
            labels = {ROLE: role, **({ROUTE: route} if route else {})}
            cluster = Cluster(labels)
            latency = dark_latency[route] if role == "dark" else 2.0
            rate = 0 if role == "dark" and route in unmirrored else rps
            for s in range(40):
                cluster.scrapes.append((START + s, s * rate, [latency] * (s * rate)))
            out.append(cluster)
    return out


def labels_by_key() -> dict[str, dict[str, str]]:
    out = {role: {ROLE: role} for role in ("dark", "live")}
    for route in ROUTES:
        for role in ("dark", "live"):
            out[window_key(role, route)] = {ROLE: role, ROUTE: route}
    return out


def test_grouped_reader_sums_each_keys_series() -> None:
    clusters = clusters_at_rates(RATES, {None: 3, "detail": 150, "upload": 3})
    prom = GroupedProm(clusters, [ROLE, ROUTE])
    reader = GroupedSnapshotReader(prom, SOURCES["envoy"], labels_by_key())
    snap = reader.read(START + 10)
    assert len(prom.queries) == 4
    assert snap["live"].codes == {"200": 1000.0}
    assert snap["dark~detail"].codes == {"200": 60.0}
    assert snap["dark~detail"].latency_sum == 60 * 150.0
    assert dict(snap["dark~detail"].buckets)[100.0] == 0.0
    assert dict(snap["dark"].buckets)[100.0] == 940.0  # everything but detail's 60 slow ones
    assert reader.read(START - 1)["dark~upload"].codes == {}  # no series: no data


def test_runner_makes_windows_per_route_with_four_queries_per_look() -> None:
    spec = build_spec(
        {
            "target": "default/sample-app",
            "mirror": {"percent": 100},
            "duration": {"interval": "2s", "iterations": 3},
        },
        Sources("test"),
    )
    clusters = clusters_at_rates(RATES, {None: 3, "detail": 150, "upload": 3})
    prom = GroupedProm(clusters, [ROLE, ROUTE])
    clock = FakeTime(START)
    data = new_data(spec, "envoy", labels_by_key(), full_duration=True)
    Runner(
        spec, data, prom, (), traffic_started_at=START, template_values={},
        stop=clock, clock=clock,
        counters_start_at_zero=True,
    ).run()
    assert data.error == "" and len(data.intervals) == 3
    last = data.intervals[-1]
    assert set(last.windows) == set(labels_by_key())
    assert last.windows["live~detail"].requests == 12  # 2 s at 6/s
    assert last.cumulative["dark~upload"].requests == 24
    assert last.cumulative["dark"].requests == 600
    snapshot_queries = [q for q in prom.queries if q in prom.kinds]
    assert len(snapshot_queries) == 4 * 3  # per look: four, whatever the number of routes


def routed_spec(objectives: list[dict[str, object]]) -> Spec:
    return build_spec(
        {
            "target": "default/sample-app",
            "mirror": {"percent": 100},
            "duration": {"interval": "2s", "iterations": 10},
            "routes": {"detail": {"path": "^/items/[0-9]+$"}, "upload": {"path": "^/upload$"}},
            "objectives": objectives,
        },
        Sources("test"),
    )


def run_routed(spec: Spec, clusters: list[Cluster]) -> ExperimentData:
    prom = GroupedProm(clusters, [ROLE, ROUTE])
    clock = FakeTime(START)
    data = new_data(spec, "envoy", labels_by_key(), full_duration=False)
    return Runner(
        spec, data, prom, spec.objectives, traffic_started_at=START, template_values={},
        stop=clock, clock=clock, counters_start_at_zero=True,
    ).run()


def test_a_slow_route_fails_its_objective_while_the_aggregate_passes() -> None:
    p95 = {"metric": "95th-percentile-tail-latency", "upper": 100}
    spec = routed_spec([p95, {**p95, "route": "detail"}, {**p95, "route": "upload"}])
    # detail: 2% of the traffic, dark 150 ms there.
    data = run_routed(spec, clusters_at_rates({None: 94, "detail": 2, "upload": 4},
                                              {None: 3, "detail": 150, "upload": 3}))
    aggregate, detail, upload = data.verdicts_for(spec.objectives)
    assert (aggregate.outcome, detail.outcome, upload.outcome) == (PASS, FAIL, PASS)
    assert detail.objective.label == "95th-percentile-tail-latency <= 100 on route detail"
    assert 'darklaunch_route="detail"' in detail.query
    assert detail.samples < aggregate.samples


def test_a_route_dark_never_sees_makes_only_its_objectives_inconclusive() -> None:
    p95 = {"metric": "95th-percentile-tail-latency", "upper": 100}
    spec = routed_spec([p95, {**p95, "route": "detail"}, {**p95, "route": "upload"}])
    data = run_routed(
        spec,
        clusters_at_rates({None: 92, "detail": 4, "upload": 4}, {None: 3, "detail": 3,
                                                                 "upload": 3}, ("upload",)),
    )
    aggregate, detail, upload = data.verdicts_for(spec.objectives)
    assert (detail.outcome, upload.outcome) == (PASS, INCONCLUSIVE)
    assert upload.reason.startswith("route upload: dark received 0 of 80 mirrored requests (")
    assert "this route's mirroring is broken" in upload.reason
    # The aggregate's share (96% of live's) is within its edge slack: the experiment goes on.
    assert aggregate.outcome == PASS


def test_an_objective_on_a_route_not_measured_says_which_are() -> None:
    spec = routed_spec([{"metric": "mean-latency", "upper": 50, "route": "detail"}])
    data = run_routed(spec, clusters_at_rates(RATES, {None: 3, "detail": 3, "upload": 3}))
    verdict = data.verdict(Objective("mean-latency", upper=50, route="other"))
    assert verdict is not None and verdict.outcome == INCONCLUSIVE
    assert verdict.reason.startswith("route other was not measured (measured: detail, upload)")


def test_custom_metrics_get_route_and_the_routes_cluster_only_when_they_use_route() -> None:
    spec = build_spec(
        {
            "target": "default/sample-app",
            "duration": {"interval": "2s", "iterations": 1},
            "routes": {"detail": {"path": "^/items/[0-9]+$"}, "upload": {"path": "^/upload$"}},
            "metrics": [
                {"name": "per-route", "query": 'sum(x{route="$route",cluster="$cluster"})'},
                {"name": "overall", "query": 'sum(y{version="$version"})'},
            ],
        },
        Sources("test"),
    )
    prom = GroupedProm(clusters_at_rates(RATES, {None: 3, "detail": 3, "upload": 3}),
                       [ROLE, ROUTE])
    asked: list[str] = []
    grouped_query = prom.query

    def query(promql: str, at: float) -> QueryResult:
        if promql in prom.kinds:
            return grouped_query(promql, at)
        asked.append(promql)
        return QueryResult(promql, at, "vector", (Sample({}, float(len(promql))),))

    prom.query = query  # type: ignore[method-assign]
    clock = FakeTime(START)
    data = new_data(spec, "envoy", labels_by_key(), full_duration=True)
    values = {"dark": {"version": "dark", "cluster": "dark"},
              "live": {"version": "live", "cluster": "live"}}
    Runner(spec, data, prom, (), traffic_started_at=START, template_values=values,
           stop=clock, clock=clock, counters_start_at_zero=True).run()
    windows = data.intervals[0].cumulative
    assert 'sum(x{route="detail",cluster="dark~detail"})' in asked
    assert 'sum(x{route="",cluster="dark"})' in asked  # all traffic: no route
    assert set(windows["dark~detail"].custom) == {"per-route"}
    assert set(windows["dark"].custom) == {"per-route", "overall"}
    # "overall" only for the two roles, on each interval's window and the cumulative one.
    assert sum(q.startswith("sum(y") for q in asked) == 2 * 2
    assert sum(q.startswith("sum(x") for q in asked) == 6 * 2


def test_reports_show_a_row_per_route_the_routes_mirror_check_and_the_junit_route() -> None:
    from pytest_darklaunch.report.assessment import metric_rows, route_mirror_facts
    from pytest_darklaunch.report.junit import junit_properties

    p95 = {"metric": "95th-percentile-tail-latency", "upper": 100}
    spec = routed_spec([p95, {**p95, "route": "upload"}])
    data = run_routed(
        spec,
        clusters_at_rates({None: 92, "detail": 4, "upload": 4}, {None: 3, "detail": 3,
                                                                 "upload": 3}, ("upload",)),
    )
    rows = [(r.metric, r.route) for r in metric_rows(spec, data)][:3]
    assert rows == [("request-count", None), ("request-count", "detail"),
                    ("request-count", "upload")]
    counts = {r.route: r.live.value for r in metric_rows(spec, data) if r.metric == "request-count"}
    assert counts["detail"] == counts["upload"] and counts[None] == 25 * counts["upload"]
    mirror = route_mirror_facts(spec, data)
    assert mirror["detail"]["ok"] is True
    assert mirror["upload"]["ok"] is False and mirror["upload"]["dark_requests"] == 0.0
    aggregate, upload = data.verdicts_for(spec.objectives)
    assert ("darklaunch_route", "upload") in junit_properties(upload)
    assert "darklaunch_route" not in dict(junit_properties(aggregate))


def test_a_routes_mirror_check_tells_a_broken_mirror_from_an_edge() -> None:
    from pytest_darklaunch.core.sampler import Window
    from pytest_darklaunch.core.verdict import Context
    from pytest_darklaunch.core.verdict.judge import precheck

    ctx = Context(0.95, 10, 40.0, None, 2.0, route="upload")
    # 2 live requests in 10 s: 0.8 expected on dark, fewer than the edge allows.
    few = precheck(Window(0, 10, 0.0), Window(0, 10, 2.0), ctx)
    assert few == ""
    many = precheck(Window(0, 10, 0.0), Window(0, 10, 212.0), ctx)
    assert many.startswith("route upload: dark received 0 of 85 mirrored requests (40% of live's")
    assert precheck(Window(0, 10, 80.0), Window(0, 10, 212.0), ctx) == ""
    none = precheck(Window(0, 10), Window(0, 10), ctx)
    assert none == "route upload: no data: no request on this route in 10.0 s (does the route " \
        "match the traffic?)"
