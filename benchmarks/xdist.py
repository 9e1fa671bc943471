#!/usr/bin/env python
"""Wall time of the conformance example with ``-n 0`` and ``-n 4`` (issue 7; goal: ratio <= 1.1).

    python benchmarks/xdist.py [--rounds 3] [--workers 4]

Runs ``examples/conformance`` (a copy in a temporary directory, so the example's own report file
is left alone) alternately without and with pytest-xdist workers, ``--rounds`` times each, and
prints every run's wall time, how long its experiment ran (from the JSON report: the example
stops once every objective is decided, so this varies by an interval or two between runs) and the
rest (start-up, provisioning, warm-up, teardown, and for ``-n`` the workers). The ratio is of the
medians. Each run must pass; a failed run stops the benchmark with its output.

For scale, each round also times a project of two empty tests (the plugin installed but
inactive) with the same two settings: the difference is what starting pytest-xdist's workers
costs on this machine by itself, whatever the plugin does. The load average is printed too: on
a shared machine it moves the figures more than anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "conformance")
GOAL = 1.1


@dataclass(frozen=True)
class Run:
    workers: int
    wall_s: float
    experiment_s: float
    intervals: int

    @property
    def rest_s(self) -> float:
        return self.wall_s - self.experiment_s


def run_example(workdir: str, workers: int, experiment: bool = True) -> Run:
    report = os.path.join(workdir, "darklaunch-report.json")
    if os.path.exists(report):
        os.remove(report)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", str(workers)]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True)  # noqa: S603
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with {done.returncode}:\n{done.stdout}"
                         f"{done.stderr}")
    if not experiment:
        return Run(workers, wall, 0.0, 0)
    with open(report, encoding="utf-8") as fh:
        data = json.load(fh)
    intervals = len(data["series"]["request-count"]["dark"])
    return Run(workers, wall, data["finished_at"] - data["started_at"], intervals)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting (default 3)")
    parser.add_argument("--workers", type=int, default=4, help="xdist workers (default 4)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="darklaunch-xdist-bench-") as tmp:
        workdir = os.path.join(tmp, "conformance")
        shutil.copytree(EXAMPLE, workdir,
                        ignore=shutil.ignore_patterns("darklaunch-report.json", "__pycache__",
                                                      "*.png", "*.xml"))
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        with open(os.path.join(empty, "test_empty.py"), "w", encoding="utf-8") as fh:
            fh.write("def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
        print(f"examples/conformance, {os.cpu_count()} CPUs, {args.rounds} rounds of -n 0 and "
              f"-n {args.workers}; load average {_load()}")
        print(f"{'project':<9} {'setting':<8} {'wall s':>7} {'experiment s':>13} {'intervals':>9} "
              f"{'rest s':>7}")
        runs: list[Run] = []
        baseline: dict[int, list[float]] = {0: [], args.workers: []}
        for _ in range(args.rounds):
            for workers in (0, args.workers):
                run = run_example(workdir, workers)
                runs.append(run)
                print(f"{'example':<9} -n {run.workers:<5} {run.wall_s:>7.2f} "
                      f"{run.experiment_s:>13.2f} {run.intervals:>9} {run.rest_s:>7.2f}",
                      flush=True)
            for workers in (0, args.workers):
                wall = run_example(empty, workers, experiment=False).wall_s
                baseline[workers].append(wall)
                print(f"{'empty':<9} -n {workers:<5} {wall:>7.2f}", flush=True)
    serial = [r for r in runs if r.workers == 0]
    parallel = [r for r in runs if r.workers == args.workers]
    med = {k: statistics.median(getattr(r, k) for r in serial) for k in ("wall_s", "rest_s")}
    med_n = {k: statistics.median(getattr(r, k) for r in parallel) for k in ("wall_s", "rest_s")}
    ratio = med_n["wall_s"] / med["wall_s"]
    print(f"median wall: -n 0 {med['wall_s']:.2f} s, -n {args.workers} {med_n['wall_s']:.2f} s; "
          f"ratio {ratio:.3f} (goal <= {GOAL}): {'met' if ratio <= GOAL else 'MISSED'}")
    print(f"median rest (wall minus experiment): -n 0 {med['rest_s']:.2f} s, "
          f"-n {args.workers} {med_n['rest_s']:.2f} s")
    workers_cost = statistics.median(baseline[args.workers]) - statistics.median(baseline[0])
    print(f"two empty tests: -n 0 {statistics.median(baseline[0]):.2f} s, -n {args.workers} "
          f"{statistics.median(baseline[args.workers]):.2f} s: starting the workers costs "
          f"{workers_cost:.2f} s here by itself; the example's -n {args.workers} run beyond -n 0 "
          f"and that: {med_n['wall_s'] - med['wall_s'] - workers_cost:+.2f} s")
    print(f"load average at the end {_load()}")
    return 0 if ratio <= GOAL else 1


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
