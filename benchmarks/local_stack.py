"""Benchmark of the local backend: start-up time, the generator's accuracy, and wrk beside it.

Prints, on this machine:

1. time from ``provision()`` start to "stack ready" (live, dark, Envoy and Prometheus
   answering), to ``provision()`` returning (traffic started), and to the first Prometheus
   sample holding dark's requests (the first scrape lands ~5 s after Prometheus starts);
2. the open-loop generator through the whole stack (Envoy, live, 40% mirrored to dark) at
   200, 1000 and 2000 requests/s: achieved rate, scheduling lag p50/p99, late and failed
   requests, and the CPU it used;
   and the same against one sample app directly, the generator's own ceiling;
3. ``wrk`` (closed loop, as a reference for the ceiling) on the same Envoy endpoint and on
   the sample app directly.

Reproduce with::

    python benchmarks/local_stack.py [--runs 5] [--seconds 4] [--rates 200,1000,2000]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import requests
from generator_run import read_stats, start_generator, wait_measured, with_cpu_share

from pytest_darklaunch.backends import RunContext
from pytest_darklaunch.backends.local import LocalBackend
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    free_port,
    stop_all,
    wait_until,
)
from pytest_darklaunch.core.spec import Sources, Spec, build_spec

DARK = '{envoy_cluster_name="dark"}'


def spec_for(rate: float, warmup_s: float = 1.0) -> Spec:
    return build_spec(
        {
            "target": "default/sample-app",
            "mirror": {"percent": 40, "host": "customdomain.com"},
            "traffic": {"rate": rate, "warmup": f"{warmup_s}s"},
            "duration": {"interval": "10s", "iterations": 10},
        },
        Sources("benchmark"),
    )


def first_sample_s(prometheus_url: str, started: float) -> float:
    """Seconds from ``started`` until Prometheus holds a non-zero request count for dark."""

    def probe() -> float:
        response = requests.get(
            f"{prometheus_url}/api/v1/query",
            params={"query": f"sum(envoy_cluster_upstream_rq_xx{DARK})"}, timeout=2,
        )
        result = response.json()["data"]["result"]
        if not result or float(result[0]["value"][1]) <= 0:
            raise NotReady(f"no sample yet: {result}")
        return time.monotonic() - started

    return wait_until(probe, what="first sample with data", deadline_s=30, max_interval_s=0.05)


def startup(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ready": [], "provision": [], "first_sample": []}
    for i in range(runs):
        workdir = tempfile.mkdtemp(prefix="darklaunch-bench-")
        backend = LocalBackend(spec_for(100), RunContext(f"bench-{i}", os.path.join(workdir, "s")))
        try:
            started = time.monotonic()
            env = backend.provision()
            out["ready"].append(backend.timings["stack_ready_s"])
            out["provision"].append(backend.timings["provision_s"])
            out["first_sample"].append(first_sample_s(env.prometheus_url, started))
        finally:
            backend.teardown()
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def generator_at(rate: float, seconds: float) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="darklaunch-bench-")
    run = RunContext(f"bench-{rate:g}", os.path.join(workdir, "s"))
    backend = LocalBackend(spec_for(rate), run)
    try:
        backend.provision()

        def measured() -> None:
            details = backend.traffic_details() or {}
            if details.get("measured_s", 0) < seconds:
                raise NotReady(f"measured {details.get('measured_s')} s")

        wait_until(measured, what="traffic measured", deadline_s=seconds + 30, max_interval_s=0.2)
        backend.stop_traffic()
        details = backend.traffic_details() or {}
        wall = details["updated_at"] - details["started_at"]
        # CPU of the generator process over its life (interpreter start-up included).
        details["cpu_share"] = details["cpu_s"] / wall if wall > 0 else float("nan")
        return details
    finally:
        backend.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


def generator_direct(rate: float, seconds: float) -> dict[str, Any]:
    """The generator alone against one sample app (no Envoy, no mirror): its own ceiling."""
    workdir = tempfile.mkdtemp(prefix="darklaunch-bench-")
    procs: list[ManagedProcess] = []
    try:
        port = free_port()
        app = ManagedProcess.start(
            "app", [sys.executable, "-m", "pytest_darklaunch.sampleapp", "--port", str(port)],
            log_path=os.path.join(workdir, "app.log"),
        )
        procs.append(app)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), what="app", deadline_s=15, process=app)
        generator, stats_path = start_generator(url, rate, workdir)
        procs.append(generator)
        wait_measured(stats_path, seconds, process=generator, deadline_s=seconds + 30)
        generator.stop()
        return with_cpu_share(read_stats(stats_path))
    finally:
        stop_all(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(url: str) -> None:
    try:
        requests.get(f"{url}/healthz", timeout=1).close()
    except requests.ConnectionError as exc:
        raise NotReady(str(exc)) from exc


def wrk(url: str, seconds: float, host: str | None = None) -> tuple[float, str]:
    """Requests/s of ``wrk -t2 -c64`` on ``url`` and the command used."""
    argv = ["wrk", "-t2", "-c64", f"-d{seconds:g}s"]
    if host:
        argv += ["-H", f"Host: {host}"]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 30)
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not match:
        raise RuntimeError(f"unexpected wrk output: {done.stdout}")
    return float(match.group(1)), shlex.join(argv[:-1]) + " URL"


def wrk_figures(seconds: float) -> list[tuple[str, float, str]]:
    workdir = tempfile.mkdtemp(prefix="darklaunch-bench-")
    backend = LocalBackend(spec_for(1), RunContext("bench-wrk", os.path.join(workdir, "s")))
    try:
        env = backend.provision()
        backend.stop_traffic()
        rows = []
        for name, url, host in (
            ("Envoy ingress (live + 40% mirrored to dark)", env.endpoints["ingress"],
             "customdomain.com"),
            ("sample app directly (live)", env.endpoints["live"], None),
        ):
            rps, command = wrk(url, seconds, host)
            rows.append((name, rps, command))
        return rows
    finally:
        backend.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f} s "
            f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="start-up runs")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured load per rate")
    parser.add_argument("--rates", default="200,1000,2000", help="generator rates, req/s")
    args = parser.parse_args(argv)
    print(f"# {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"# machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average before: {_load()}")

    times = startup(args.runs)
    print("\n## Start-up (provision() from the start)")
    print(f"stack ready (live, dark, Envoy, Prometheus answering): {spread(times['ready'])}")
    print(f"provision() returned (traffic sending):                {spread(times['provision'])}")
    print(f"first Prometheus sample with dark's requests:          {spread(times['first_sample'])}")

    print(f"\n## Open-loop generator through the stack ({args.seconds:g} s measured per rate,"
          " after 1 s warm-up)")
    print(f"{'target':>7} {'achieved':>9} {'error':>7} {'lag p50':>8} {'lag p99':>8} "
          f"{'lag max':>8} {'late':>5} {'errors':>6} {'lat p99':>8} {'CPU':>6}")
    print("(lag: due time to request start; lat p99: due time to response, the client's view;"
          " CPU: the generator's share of one core)")
    rates = [float(r) for r in args.rates.split(",")]
    for rate in rates:
        print(_row(rate, generator_at(rate, args.seconds)))
    print("\n## The generator alone against one sample app (no Envoy, no mirror): its own ceiling")
    for rate in rates:
        print(_row(rate, generator_direct(rate, args.seconds)))

    if shutil.which("wrk"):
        print(f"\n## wrk, closed loop ({args.seconds:g} s each): maximum throughput, for reference")
        for name, rps, command in wrk_figures(args.seconds):
            print(f"{name:<45} {rps:>9.0f} req/s   ({command})")
    else:
        print("\n(wrk not installed: apt-get install -y wrk for the closed-loop reference)")
    print(f"\n# load average after: {_load()} (other work on the machine skews every figure)")
    return 0


def _row(rate: float, d: dict[str, Any]) -> str:
    off = (d["achieved_rps"] - rate) / rate * 100
    return (f"{rate:>7g} {d['achieved_rps']:>9.1f} {off:>+6.2f}% {d['lag_p50_ms']:>6.2f}ms "
            f"{d['lag_p99_ms']:>6.2f}ms {d['lag_max_ms']:>6.1f}ms {d['late']:>5} "
            f"{d['errors']:>6} {d['latency_p99_ms']:>6.1f}ms {d['cpu_share'] * 100:>5.0f}%")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
