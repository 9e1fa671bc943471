#!/usr/bin/env python
"""Wall time of the conformance example with ``-n 0`` and ``-n 4`` (issue 7; goal: ratio <= 1.1).

    python benchmarks/xdist.py [--rounds 9] [--workers 4] [--python PATH]

The runs use a fresh virtual environment holding ``pytest-darklaunch[xdist]`` (this checkout)
and its dependencies and nothing else, as a project's CI would: whatever else is installed in
the interpreter at hand stays out of the figures. That matters more than it seems: every xdist
worker loads every installed pytest plugin and runs its end-of-session hooks, so a plugin that
does heavy work there (one found on the development machine imports its whole library in its
terminal-summary hook: about a second of CPU per process) costs the ``-n 4`` run several times
what it costs ``-n 0``. ``--python``
measures an existing interpreter instead (pytest-darklaunch and pytest-xdist installed); the
plugins it loads are printed either way.

Runs ``examples/conformance`` (a copy in a temporary directory, so the example's own report file
is left alone) alternately without and with pytest-xdist workers, ``--rounds`` times each, and
prints every run's wall time, how long its experiment ran (from the JSON report: the example
stops once every objective is decided, so this varies by an interval or two between runs) and the
rest (start-up, provisioning, warm-up, teardown, and for ``-n`` the workers). The ratio is of the
medians; a second ratio puts the median experiment length on both sides, so that an interval
more or less before the early stop does not move it. The example's early stop lands on one of
two looks by chance (whether the mirror has delivered enough clean requests by the fourth look,
~8.5 s, or only by the fifth, ~10.5 s: about one run in four stops at the fourth here), which is
why the default is 9 rounds: with 5, the two medians fall on different looks often enough to
move the first ratio by 0.15 either way. Each run must pass; a failed run stops
the benchmark with its output.

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "conformance")
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


def run_example(python: str, workdir: str, workers: int, experiment: bool = True) -> Run:
    report = os.path.join(workdir, "darklaunch-report.json")
    if os.path.exists(report):
        os.remove(report)
    argv = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", str(workers)]
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
    parser.add_argument("--rounds", type=int, default=9, help="runs per setting (default 9)")
    parser.add_argument("--workers", type=int, default=4, help="xdist workers (default 4)")
    parser.add_argument("--python", help="measure this interpreter instead of a fresh virtual "
                        "environment (pytest-darklaunch and pytest-xdist installed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="darklaunch-xdist-bench-") as tmp:
        python = args.python or fresh_environment(os.path.join(tmp, "venv"))
        print(f"interpreter {python}; pytest plugins: {', '.join(plugins(python))}")
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
                run = run_example(python, workdir, workers)
                runs.append(run)
                print(f"{'example':<9} -n {run.workers:<5} {run.wall_s:>7.2f} "
                      f"{run.experiment_s:>13.2f} {run.intervals:>9} {run.rest_s:>7.2f}",
                      flush=True)
            for workers in (0, args.workers):
                wall = run_example(python, empty, workers, experiment=False).wall_s
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
    # The experiment stops once every objective is decided, an interval sooner or later from
    # one run to the next: at equal experiment length only the rest differs.
    experiment = statistics.median(r.experiment_s for r in runs)
    same = (experiment + med_n["rest_s"]) / (experiment + med["rest_s"])
    print(f"at equal experiment length ({experiment:.2f} s, the median of all runs): ratio "
          f"{same:.3f}")
    workers_cost = statistics.median(baseline[args.workers]) - statistics.median(baseline[0])
    print(f"two empty tests: -n 0 {statistics.median(baseline[0]):.2f} s, -n {args.workers} "
          f"{statistics.median(baseline[args.workers]):.2f} s: starting the workers costs "
          f"{workers_cost:.2f} s here by itself; the example's -n {args.workers} rest beyond "
          f"-n 0's and that: {med_n['rest_s'] - med['rest_s'] - workers_cost:+.2f} s")
    print(f"load average at the end {_load()}")
    return 0 if ratio <= GOAL else 1


def fresh_environment(venv: str) -> str:
    """A virtual environment with this checkout's ``pytest-darklaunch[xdist]``; its python."""
    print(f"installing pytest-darklaunch[xdist] from {ROOT} into a fresh virtual environment",
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)  # noqa: S603
    python = os.path.join(venv, "bin", "python")
    done = subprocess.run(  # noqa: S603
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{ROOT}[xdist]"],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"pip install {ROOT}[xdist] failed:\n{done.stdout}{done.stderr}")
    return python


def plugins(python: str) -> list[str]:
    """The pytest plugins ``python`` loads from entry points (what every xdist worker loads)."""
    code = ("from importlib.metadata import entry_points as e; "
            "print(' '.join(sorted(p.name for p in e(group='pytest11'))))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True,  # noqa: S603
                          check=True)
    return done.stdout.split()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
