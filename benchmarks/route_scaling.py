"""How the number of routes changes provisioning and sampling on the local backend.

For 0, 1, 5 and 20 declared routes (``r<i>: {path: "^/r<i>/.*$"}``, the traffic on ``/r0/x``,
one p95 objective per route) it starts the real stack (live, dark, Envoy with a route and a
live/dark cluster pair per route, Prometheus, the generator), then samples 3 intervals of 1 s
with the package's own Runner against the real Prometheus, and prints:

- provisioning time (``provision()`` start to traffic started; median of ``--runs``) and the
  number of Envoy clusters;
- the sampler's Prometheus queries per look (the four grouped snapshot queries, four more for
  live's mirror-eligible requests, and the freshness queries), beside the count one query set
  per route and role would need;
- the wall time of one look's snapshot queries (median over the looks of all runs).

    python benchmarks/route_scaling.py [--runs 3] [--routes 0,1,5,20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from pytest_darklaunch.backends import RunContext
from pytest_darklaunch.backends.local import LocalBackend
from pytest_darklaunch.core.experiment import new_data
from pytest_darklaunch.core.loop import Runner
from pytest_darklaunch.core.prometheus import PrometheusClient, QueryResult
from pytest_darklaunch.core.spec import Sources, Spec, build_spec


def spec_for(routes: int) -> Spec:
    declared = {f"r{i}": {"path": f"^/r{i}/.*$"} for i in range(routes)}
    objectives: list[dict[str, Any]] = [{"metric": "95th-percentile-tail-latency", "upper": 100}]
    objectives += [{**objectives[0], "route": name} for name in declared]
    return build_spec(
        {
            "target": "default/sample-app",
            "traffic": {"rate": 100, "path": "/r0/x"},
            "duration": {"interval": "1s", "iterations": 3},
            "routes": declared or None,
            "objectives": objectives,
        },
        Sources("benchmark"),
    )


class CountingClient(PrometheusClient):
    """The real client, counting queries and the time spent in them per look."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.snapshot_queries = 0
        self.other_queries = 0
        self.seconds = 0.0

    def query(self, promql: str, at: float) -> QueryResult:
        started = time.perf_counter()
        try:
            return super().query(promql, at)
        finally:
            if promql.startswith("timestamp("):  # waiting for a fresh scrape
                self.other_queries += 1
            else:
                self.snapshot_queries += 1
                self.seconds += time.perf_counter() - started


def one_run(routes: int, workdir: str, index: int) -> dict[str, Any]:
    spec = spec_for(routes)
    backend = LocalBackend(spec, RunContext(f"routes-{routes}-{index}", workdir))
    try:
        env = backend.provision()
        clusters = 2 * (1 + len(spec.routes))
        client = CountingClient(env.prometheus_url)
        per_look: list[tuple[int, int, float]] = []

        def on_interval(*_: Any) -> None:
            per_look.append((client.snapshot_queries, client.other_queries, client.seconds))
            client.snapshot_queries = client.other_queries = 0
            client.seconds = 0.0

        data = new_data(spec, env.metric_source, env.labels, full_duration=True)
        Runner(
            spec, data, client, spec.objectives,
            traffic_started_at=float(env.details["traffic_started_at"]),
            template_values={}, on_interval=on_interval,
            scrape_interval_s=env.scrape_interval_s,
            counters_start_at_zero=env.counters_start_at_zero,
        ).run()
        client.close()
        if data.error:
            raise SystemExit(f"{routes} routes: the experiment failed: {data.error}")
        return {
            "provision_s": backend.timings["provision_s"],
            "clusters": clusters,
            "eligible": "eligible" in env.labels,
            # The first look also waits for Prometheus' first scrape: leave it out.
            "looks": per_look[1:],
        }
    finally:
        backend.teardown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--routes", default="0,1,5,20")
    args = parser.parse_args()
    counts = [int(n) for n in args.routes.split(",")]
    print(f"{'routes':>6} {'clusters':>8} {'provision s':>11} {'snapshot q/look':>15} "
          f"{'ungrouped':>9} {'freshness q/look':>16} {'snapshot ms/look':>16}")
    with tempfile.TemporaryDirectory(prefix="route-scaling-") as tmp:
        for routes in counts:
            runs = [one_run(routes, os.path.join(tmp, f"{routes}-{i}"), i)
                    for i in range(args.runs)]
            provision = statistics.median(r["provision_s"] for r in runs)
            looks = [look for r in runs for look in r["looks"]]
            snapshot = statistics.median(q for q, _, _ in looks)
            fresh = statistics.median(q for _, q, _ in looks)
            look_ms = statistics.median(s for _, _, s in looks) * 1000
            # Four queries per window key (each role, and each role on each route), plus four
            # for live's mirror-eligible requests when only some methods are mirrored.
            ungrouped = 4 * 2 * (1 + routes) + (4 if runs[0]["eligible"] else 0)
            print(f"{routes:>6} {runs[0]['clusters']:>8} {provision:>11.3f} {snapshot:>15g} "
                  f"{ungrouped:>9g} {fresh:>16g} {look_ms:>16.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
