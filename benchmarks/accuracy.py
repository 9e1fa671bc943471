#!/usr/bin/env python
"""How right are the plugin's numbers? Dark's metrics against dark's own request log (issue 4).

    python benchmarks/accuracy.py [--rate 200] [--interval 2s] [--iterations 10]

Runs the real local stack (sample app, Envoy, Prometheus, generator) through the plugin's own
session API (``DarklaunchSession``: the same provisioning, sampler and estimates a pytest run
uses) for two latency distributions of dark, with its per-request log on (``SAMPLEAPP_LOG``):

- fixed: 50 ms for every request;
- long-tailed: 20 ms + up to 10 ms, and 10% of requests 150 ms + up to 10 ms;

both with 2% of requests answered 500. It then prints, for the cumulative window of the
experiment, mean, p50, p95, p99, error rate and request count as the plugin reports them next
to the truth from the log, with the relative error (absolute, in percentage points, for the
error rate).

Which requests are "the same"? The report gives each window as ``[start, end]``. The truth is
taken from the log over that window by the log's timestamps (when the app answered). Besides
that, before teardown the benchmark asks Prometheus which scrape each boundary's snapshot really
came from and what Envoy's counters held in it, which gives two more honest windows:

- *scrape window*: log entries between the two scrapes' timestamps; this is what Envoy's request
  counters cover, so request counts and error rates must match it exactly (up to a request that
  completed in the millisecond a scrape took);
- *histogram's requests*: Envoy flushes its latency histograms once a second, so at a scrape
  they hold the requests up to the last flush, not up to the scrape. Their count at each
  boundary (``..._rq_time_count``) says exactly which requests they hold: the N-th to M-th in
  completion order. The log taken by that rank range is the truth for mean and percentiles.

Latency is measured at different points: the app logs the time its handler took; Envoy measures
from sending the request upstream to receiving the response, which adds the hop through the
loopback and aiohttp's request parsing and response writing, and records whole milliseconds.
The "hop" line shows that difference of the means on the same requests; it is part of what
Envoy (and Istio in a cluster) reports, so it is not subtracted.

Percentile truth is the nearest-rank order statistic of the log (the ceil(q*n)-th smallest).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_darklaunch.backends.local.envoy import bin_edges_ms, upstream_time_buckets
from pytest_darklaunch.core.config import Resolved, Settings
from pytest_darklaunch.core.experiment import ExperimentData
from pytest_darklaunch.core.metrics import SOURCES, freshness_selector, snapshot_queries
from pytest_darklaunch.core.prometheus import PrometheusClient
from pytest_darklaunch.core.spec import Sources, build_spec
from pytest_darklaunch.core.stats import histogram_quantile
from pytest_darklaunch.core.verdict import estimate
from pytest_darklaunch.session import DarklaunchSession

DISTRIBUTIONS: dict[str, dict[str, str]] = {
    "fixed": {"SAMPLEAPP_LATENCY_MS": "50"},
    "long-tailed": {"SAMPLEAPP_LATENCY_MS": "20", "SAMPLEAPP_JITTER_MS": "10",
                    "SAMPLEAPP_SLOW_SHARE": "0.1", "SAMPLEAPP_SLOW_MS": "150"},
}
ERROR_SHARE = "0.02"
LATENCY_METRICS = (("mean", "mean-latency"), ("p50", "p50"), ("p95", "p95"), ("p99", "p99"))
DARK = {"envoy_cluster_name": "dark"}
HOP_ALLOWANCE_MS = 10.0


@dataclass(frozen=True)
class Entry:
    time: float
    latency_ms: float
    status: int


@dataclass(frozen=True)
class Boundary:
    """What Prometheus held for dark at one window boundary, asked at the boundary's time."""

    at: float
    scrape_at: float
    requests: float
    latency_count: float
    scrape_s: float  # how long that scrape took: Envoy's counters were read within it


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (default 200)")
    parser.add_argument("--interval", default="2s", help="sampling interval (default 2s)")
    parser.add_argument("--iterations", type=int, default=10, help="intervals (default 10)")
    args = parser.parse_args(argv)
    print(f"pytest-darklaunch accuracy benchmark: {args.rate:g} requests/s, 40% mirrored, "
          f"{args.iterations} x {args.interval}, dark answers {float(ERROR_SHARE):.0%} with 500; "
          f"code {_revision()}")
    misses = 0
    for name, env in DISTRIBUTIONS.items():
        misses += run_one(name, env, args.rate, args.interval, args.iterations)
    print(f"\n{'all goals met' if not misses else f'{misses} goal(s) missed'}")
    return 0 if not misses else 1


def run_one(name: str, env: dict[str, str], rate: float, interval: str, iterations: int) -> int:
    tmp = tempfile.mkdtemp(prefix="darklaunch-accuracy-")
    try:
        log_path = os.path.join(tmp, "dark.jsonl")
        spec = build_spec({
            "target": "default/sample-app",
            "versions": {"live": {"env": env},
                         "dark": {"env": {**env, "SAMPLEAPP_ERROR_SHARE": ERROR_SHARE,
                                          "SAMPLEAPP_SEED": "7", "SAMPLEAPP_LOG": log_path}}},
            "mirror": {"percent": 40},
            "traffic": {"rate": rate, "warmup": "1s"},
            "duration": {"interval": interval, "iterations": iterations},
        }, Sources("benchmarks/accuracy.py"))
        session = DarklaunchSession(Resolved(spec, Settings(full_duration=True)))
        try:
            session.start()
            data = session.wait()
            if data.error:
                raise RuntimeError(f"the experiment failed: {data.error}")
            assert session.environment is not None
            client = PrometheusClient(session.environment.prometheus_url)
            times = [data.intervals[0].start] + [i.end for i in data.intervals]
            bounds = [boundary(client, t, first=(k == 0)) for k, t in enumerate(times)]
        finally:
            session.teardown()  # stops the app, which flushes and closes its log
        entries = read_log(log_path)
        return compare(name, env, data, bounds, entries)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def boundary(client: PrometheusClient, at: float, first: bool = False) -> Boundary:
    """``first``: the experiment may start at the traffic's start, before Prometheus' first
    scrape, from counters known to be zero (a fresh Envoy); no series then means zero."""
    source = SOURCES["envoy"]
    queries = snapshot_queries(source, DARK)
    scrape_at = client.last_scrape(freshness_selector(source, DARK), at)
    requests = sum(client.query(queries["requests"], at).by_label(source.code_label).values())
    latency_count = client.query(queries["latency_count"], at).scalar()
    if first and scrape_at is None:
        return Boundary(at, at, 0.0, 0.0, 0.0)
    if scrape_at is None or latency_count is None:
        raise RuntimeError(f"Prometheus held no dark series at {at:.3f}")
    took = client.query('max(scrape_duration_seconds{job="envoy"})', scrape_at).scalar()
    return Boundary(at, scrape_at, requests, latency_count, took or 0.0)


def read_log(path: str) -> list[Entry]:
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return sorted((Entry(r["time"], r["latency_ms"], r["status"]) for r in rows),
                  key=lambda e: e.time)


def between(entries: list[Entry], start: float, end: float) -> list[Entry]:
    return [e for e in entries if start < e.time <= end]


def truth(entries: list[Entry]) -> dict[str, float]:
    latencies = sorted(e.latency_ms for e in entries)
    n = len(latencies)

    def rank(q: float) -> float:
        return latencies[max(0, math.ceil(q * n) - 1)] if n else math.nan

    errors = sum(1 for e in entries if e.status >= 500)
    return {
        "mean": sum(latencies) / n if n else math.nan,
        "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99),
        "error rate": errors / n if n else math.nan,
        "requests": float(n),
    }


def bucketed(entries: list[Entry]) -> dict[str, float]:
    """The percentiles a perfect histogram pipeline would report for the app's own latencies:
    Envoy's buckets (a bucket below edge E counts the requests faster than E ms) and
    Prometheus' interpolation. Against the log, this is the error of the histogram alone."""
    latencies = sorted(e.latency_ms for e in entries)
    counts, i = [], 0
    for edge in bin_edges_ms():
        while i < len(latencies) and latencies[i] < edge:
            i += 1
        counts.append(float(i))
    buckets = list(zip(upstream_time_buckets(), counts, strict=False))
    buckets.append((math.inf, float(len(latencies))))
    out = {label: histogram_quantile(q, buckets)
           for label, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))}
    out["mean"] = sum(latencies) / len(latencies)  # Envoy's sum is not bucketed
    return out


def cut_offsets_ms(entries: list[Entry], bound: Boundary) -> tuple[float, float]:
    """Where, relative to the scrape's timestamp, the log must be cut so that the requests
    answered before the cut are exactly Envoy's counter: any offset in ``[lo, hi)`` ms."""
    n = int(bound.requests)
    lo = entries[n - 1].time - bound.scrape_at if n >= 1 else -math.inf
    hi = entries[n].time - bound.scrape_at if n < len(entries) else math.inf
    return lo * 1000, hi * 1000


def plugin_values(data: ExperimentData) -> dict[str, float]:
    window = data.intervals[-1].cumulative["dark"]
    out = {label: _value(estimate(window, metric, data.confidence).value)
           for label, metric in LATENCY_METRICS}
    out["error rate"] = _value(estimate(window, "error-rate", data.confidence).value)
    out["requests"] = _value(estimate(window, "request-count", data.confidence).value)
    return out


def _value(value: float | None) -> float:
    return math.nan if value is None else value


def _err(label: str, got: float, want: float) -> str:
    if label == "error rate":
        return f"{(got - want) * 100:+.3f} pp"
    if label == "requests":
        return f"{got - want:+.0f}"
    return f"{(got - want) / want * 100:+.2f}%" if want else "n/a"


def _within(got: float, want: float, share: float = 0.03) -> bool:
    return abs(got / want - 1) <= share


def _fmt(label: str, value: float) -> str:
    if label == "error rate":
        return f"{value * 100:.3f}%"
    if label == "requests":
        return f"{value:.0f}"
    return f"{value:.3f}"


def compare(name: str, env: dict[str, str], data: ExperimentData, bounds: list[Boundary],
            entries: list[Entry]) -> int:
    first, last = bounds[0], bounds[-1]
    plugin = plugin_values(data)
    by_window = truth(between(entries, first.at, last.at))
    by_scrape = truth(between(entries, first.scrape_at, last.scrape_at))
    # The histogram holds the (latency_count at start + 1)-th .. (latency_count at end)-th
    # requests in completion order.
    same_requests = entries[int(first.latency_count): int(last.latency_count)]
    same = truth(same_requests)
    histogram_only = bucketed(same_requests)
    knobs = ", ".join(f"{k.removeprefix('SAMPLEAPP_').lower()}={v}" for k, v in env.items())
    print(f"\n== {name} ({knobs}); window {last.at - first.at:.1f} s; "
          f"{len(entries)} requests in dark's log")
    print(f"{'':12}{'plugin':>10} | {'log: histogram requests':>24} {'err':>9} | "
          f"{'log: report window':>19} {'err':>9} | {'log: scrape window':>19} {'err':>9}")
    for label in ("mean", "p50", "p95", "p99", "error rate", "requests"):
        got = plugin[label]
        cells = [f"{label:<12}{_fmt(label, got):>10}"]
        for ref, width in ((same, 24), (by_window, 19), (by_scrape, 19)):
            cells.append(f"{_fmt(label, ref[label]):>{width}} {_err(label, got, ref[label]):>9}")
        print(" | ".join(cells))
    print("histogram alone (the app's own latencies through Envoy's buckets and Prometheus' "
          "interpolation, against the same log): "
          + ", ".join(f"{k} {histogram_only[k]:.3f} ({_err(k, histogram_only[k], same[k])})"
                      for k in ("p50", "p95", "p99")))
    hop = plugin["mean"] - same["mean"]
    print(f"hop: Envoy's mean latency is {hop:+.3f} ms over the app's own on the same requests")
    print(f"windows: report {first.at:.3f}..{last.at:.3f}; scrapes {first.scrape_at:.3f}.."
          f"{last.scrape_at:.3f} (start {first.scrape_at - first.at:+.3f} s, end "
          f"{last.scrape_at - last.at:+.3f} s)")
    print(f"latency samples: plugin {data.intervals[-1].cumulative['dark'].latency_count:.0f}, "
          f"requests {plugin['requests']:.0f} (histograms lag the counters by up to one flush)")
    # Envoy counts a request when the app's answer reaches it, a hop after the app logged it,
    # and renders its counters some time within the scrape: so the cut lies in
    # [-HOP_ALLOWANCE_MS, scrape duration] around the scrape's timestamp if nothing is lost,
    # double-counted or extrapolated.
    cuts = [cut_offsets_ms(entries, b) for b in bounds]
    fits = [
        a < b.scrape_s * 1000 and z > -HOP_ALLOWANCE_MS
        for (a, z), b in zip(cuts, bounds, strict=False)
    ]
    consistent = all(fits)
    print(f"counters: at each of the {len(bounds)} boundaries Envoy's dark counter equals the "
          "requests the app answered up to the scrape's timestamp + an offset in (ms) "
          + ", ".join(f"[{a:.1f}, {z:.1f}){'' if ok else ' !'}"
                      for (a, z), ok in zip(cuts, fits, strict=False))
          + f"; scrapes took {min(b.scrape_s for b in bounds[1:]) * 1000:.1f}.."
          f"{max(b.scrape_s for b in bounds) * 1000:.1f} ms")
    mismatches = interval_counts(data, bounds, entries)
    misses = 0
    for label, ok, what in (
        ("p95 within 3%", _within(plugin["p95"], same["p95"]), "app's log, same requests"),
        ("p99 within 3%", _within(plugin["p99"], same["p99"]), "app's log, same requests"),
        ("request count exact", consistent and plugin["requests"] == last.requests - first.requests,
         f"app's log, cut within [-{HOP_ALLOWANCE_MS:g} ms, scrape duration] of each scrape"),
        ("error rate within 0.1 pp", abs(plugin["error rate"] - by_scrape["error rate"]) <= 0.001,
         "app's log, scrape window"),
    ):
        misses += not ok
        print(f"goal {label:<25} {'met' if ok else 'MISSED'} (against the {what})")
    for label in ("p95", "p99"):
        ok = _within(histogram_only[label], same[label])
        print(f"     {label} within 3%, histogram alone: {'met' if ok else 'MISSED'} "
              f"({_err(label, histogram_only[label], same[label])}; the rest is the hop)")
    print(f"per-interval request counts equal to the log's by timestamp: {mismatches[0]} of "
          f"{len(data.intervals)} on the scrape windows, {mismatches[1]} on the report's windows")
    return misses


def interval_counts(data: ExperimentData, bounds: list[Boundary],
                    entries: list[Entry]) -> tuple[int, int]:
    by_scrape = by_window = 0
    for k, interval in enumerate(data.intervals):
        got = interval.windows["dark"].requests
        a, b = bounds[k], bounds[k + 1]
        by_scrape += got == len(between(entries, a.scrape_at, b.scrape_at))
        by_window += got == len(between(entries, a.at, b.at))
    return by_scrape, by_window


def _revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "describe", "--always", "--dirty"],  # noqa: S603,S607
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev


if __name__ == "__main__":
    sys.exit(main())
