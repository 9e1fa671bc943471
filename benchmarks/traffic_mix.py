"""Benchmark of the generator on a large mix with bodies, next to the single target.

Prints, for a 10,000-entry mix (POST and PUT to distinct paths with a query, weights 1-10,
bodies log-uniform from 100 B to 64 KiB, ~100 MB in all) and for the single target (GET /),
through Envoy (40% mirrored to dark, every method) to two sample apps, at 200, 1000 and 2000
requests/s: the achieved rate, the scheduling lag p50/p99, late and failed requests, the
generator's CPU (share of one core over its life) and its peak RSS (VmHWM).

Reproduce with::

    python benchmarks/traffic_mix.py [--seconds 10] [--rates 200,1000,2000] [--entries 10000]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
from typing import Any

import requests
from generator_run import read_stats, start_generator, wait_measured, with_cpu_share

from pytest_darklaunch.backends.local.envoy import start_envoy, wait_for_envoy
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    free_port,
    stop_all,
    wait_until,
)
from pytest_darklaunch.core.spec import Sources, build_spec
from pytest_darklaunch.core.traffic.model import HTTP_METHODS, Target, dump_targets

SPEC = build_spec(
    {"target": "default/sample-app", "mirror": {"percent": 40, "host": "customdomain.com"}},
    Sources("benchmark"),
)


def make_mix(entries: int, seed: int = 7) -> list[Target]:
    rng = random.Random(seed)
    low, high = math.log(100), math.log(64 * 1024)
    return [
        Target(
            f"item-{i}",
            rng.choice(("POST", "PUT")),
            f"/items/{i}?v={rng.randrange(1000)}",
            (("content-type", "application/octet-stream"),),
            rng.randbytes(int(math.exp(rng.uniform(low, high)))),
            weight=rng.randint(1, 10),
        )
        for i in range(entries)
    ]


def _answers(url: str) -> None:
    try:
        requests.get(f"{url}/healthz", timeout=1).close()
    except requests.ConnectionError as exc:
        raise NotReady(str(exc)) from exc


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(rate: float, seconds: float, targets_path: str | None) -> dict[str, Any]:
    """One generator run through a fresh stack; its final stats plus CPU share and peak RSS."""
    workdir = tempfile.mkdtemp(prefix="darklaunch-mix-")
    procs: list[ManagedProcess] = []
    try:
        ports = {role: free_port() for role in ("live", "dark")}
        for role, port in ports.items():
            argv = [sys.executable, "-m", "pytest_darklaunch.sampleapp", "--port", str(port)]
            procs.append(ManagedProcess.start(role, argv, log_path=f"{workdir}/{role}.log"))
        envoy, admin_path = start_envoy(
            SPEC, workdir, live_port=ports["live"], dark_port=ports["dark"],
            mirror_methods=HTTP_METHODS,
        )
        procs.append(envoy)
        addresses = wait_for_envoy(envoy, admin_path)
        for role, port in ports.items():
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda url=url: _answers(url), what=role, deadline_s=15)  # type: ignore[misc]
        generator, stats_path = start_generator(
            addresses.ingress_url, rate, workdir, host="customdomain.com",
            targets_path=targets_path)
        procs.append(generator)
        wait_measured(stats_path, seconds, process=generator, deadline_s=seconds + 60)
        rss = peak_rss_mib(generator.pid)
        generator.stop()
        return {**with_cpu_share(read_stats(stats_path)), "peak_rss_mib": rss}
    finally:
        stop_all(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="200,1000,2000")
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f}; {os.cpu_count()} cores")
    mix = make_mix(args.entries)
    mix_dir = tempfile.mkdtemp(prefix="darklaunch-mixfile-")
    try:
        path = os.path.join(mix_dir, "targets.json")
        dump_targets(mix, path)
        total = sum(len(t.body) for t in mix)
        sizes = sorted(len(t.body) for t in mix)
        print(
            f"mix: {len(mix)} entries, bodies {sizes[0]} B..{sizes[-1]} B "
            f"(median {sizes[len(sizes) // 2]} B, {total / 2**20:.1f} MiB in all)"
        )
        header = (f"{'traffic':<14}{'rate':>6}{'achieved':>10}{'lag p50 ms':>11}"
                  f"{'lag p99 ms':>11}{'late':>6}{'errors':>8}{'CPU':>6}{'peak RSS MiB':>13}")
        print(header)
        for rate in (float(r) for r in args.rates.split(",")):
            for label, targets in (("single GET /", None), (f"mix {len(mix)}", path)):
                d = run(rate, args.seconds, targets)
                print(
                    f"{label:<14}{rate:>6g}{d['achieved_rps']:>10.2f}{d['lag_p50_ms']:>11.2f}"
                    f"{d['lag_p99_ms']:>11.2f}{d['late']:>6}{d['errors']:>8}"
                    f"{d['cpu_share'] * 100:>5.0f}%{d['peak_rss_mib']:>13.0f}"
                )
    finally:
        shutil.rmtree(mix_dir, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print(f"command: python benchmarks/traffic_mix.py --seconds {args.seconds:g} "
          f"--rates {args.rates} --entries {args.entries}")


if __name__ == "__main__":
    main()
