"""What installing pytest-darklaunch costs a pytest run that does not use it.

Creates a temporary directory of 50 trivial tests and times ``python -m pytest --co -q
-p no:cacheprovider`` there, with the plugin and with ``-p no:darklaunch``, interleaved (ABBA
order, so drift in machine load hits both sides alike), after one discarded warm-up run of each.
Prints both medians, the difference in ms, and the command that reproduces it.

    python benchmarks/import_overhead.py            # 10 runs each
    python benchmarks/import_overhead.py --runs 30  # steadier on a busy machine

The plugin must be installed (``pip install -e .``): the script checks ``pytest --help`` lists
its options and stops otherwise. Goal: a difference under 30 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MS = 30.0
BASE_ARGS = ["-m", "pytest", "--co", "-q", "-p", "no:cacheprovider"]
WITHOUT = ["-p", "no:darklaunch"]


def make_tests(directory: Path, count: int) -> None:
    """``count`` trivial tests in files of ten, and an empty pytest.ini to pin the rootdir."""
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    per_file = 10
    for start in range(0, count, per_file):
        body = "".join(
            f"def test_{i}():\n    assert {i} == {i}\n\n\n"
            for i in range(start, min(start + per_file, count))
        )
        (directory / f"test_trivial_{start // per_file}.py").write_text(body, encoding="utf-8")


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that would configure or activate the plugin."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST_DARKLAUNCH_")
        and k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one pytest process; fails loudly unless it collected cleanly.

    CPU time (user + system of the child) is reported next to wall time because it barely
    moves with the load of a shared machine, while wall time does.
    """
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    cpu_ms = (_children_cpu_s() - cpu_before) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed_ms, cpu_ms


def import_times(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, int]:
    """Self import time in microseconds of every module one pytest run imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    times: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            times[match.group(2)] = int(match.group(1))
    return times


def attributable_imports(
    with_args: list[str], without_args: list[str], cwd: Path, env: dict[str, str], runs: int = 3
) -> tuple[float, list[tuple[str, float]]]:
    """Modules only the run with the plugin imports: median total and the costliest ones (ms)."""
    totals: list[float] = []
    per_module: dict[str, list[int]] = {}
    for _ in range(runs):
        without = import_times(without_args, cwd, env)
        extra = {m: t for m, t in import_times(with_args, cwd, env).items() if m not in without}
        totals.append(sum(extra.values()) / 1000)
        for module, us in extra.items():
            per_module.setdefault(module, []).append(us)
    top = sorted(
        ((m, statistics.median(v) / 1000) for m, v in per_module.items()), key=lambda item: -item[1]
    )
    return statistics.median(totals), top[:10]


def plugin_loaded(args: list[str], cwd: Path, env: dict[str, str]) -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--help"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return "--darklaunch-target" in proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per side (default 10)")
    parser.add_argument("--tests", type=int, default=50, help="trivial tests (default 50)")
    options = parser.parse_args(argv)

    env = clean_env()
    with tempfile.TemporaryDirectory(prefix="import-overhead-") as tmp:
        directory = Path(tmp)
        make_tests(directory, options.tests)
        if not plugin_loaded([], directory, env):
            print(
                "pytest-darklaunch is not installed here: run `pip install -e .` first",
                file=sys.stderr,
            )
            return 2
        if plugin_loaded(WITHOUT, directory, env):
            print("-p no:darklaunch did not disable the plugin", file=sys.stderr)
            return 2

        with_args, without_args = BASE_ARGS, BASE_ARGS + WITHOUT
        run_once(with_args, directory, env)  # warm-up: bytecode caches, page cache
        run_once(without_args, directory, env)
        with_runs: list[tuple[float, float]] = []
        without_runs: list[tuple[float, float]] = []
        for i in range(options.runs):
            order = [(with_args, with_runs), (without_args, without_runs)]
            for args, sink in order if i % 2 == 0 else reversed(order):
                sink.append(run_once(args, directory, env))
        imports_ms, costliest = attributable_imports(with_args, without_args, directory, env)

    with_ms = [wall for wall, _ in with_runs]
    without_ms = [wall for wall, _ in without_runs]

    med_with = statistics.median(with_ms)
    med_without = statistics.median(without_ms)
    diff = med_with - med_without
    cpu_with = statistics.median(cpu for _, cpu in with_runs)
    cpu_without = statistics.median(cpu for _, cpu in without_runs)
    loads = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"{options.tests} trivial tests, {options.runs} runs each, interleaved (ABBA)")
    print(
        f"with pytest-darklaunch : median {med_with:7.1f} ms  "
        f"(min {min(with_ms):.1f}, max {max(with_ms):.1f})"
    )
    print(
        f"with -p no:darklaunch  : median {med_without:7.1f} ms  "
        f"(min {min(without_ms):.1f}, max {max(without_ms):.1f})"
    )
    print(
        f"difference             : {diff:+7.1f} ms  (goal: under {GOAL_MS:g} ms; "
        f"difference of minima {min(with_ms) - min(without_ms):+.1f} ms)"
    )
    print(
        f"CPU time (user+sys)    : median {cpu_with:.1f} vs {cpu_without:.1f} ms, "
        f"difference {cpu_with - cpu_without:+.1f} ms"
    )
    print(
        f"imports only with it   : {imports_ms:.1f} ms of self import time (-X importtime, "
        f"median of 3); costliest:"
    )
    for module, ms in costliest:
        print(f"    {ms:6.2f} ms  {module}")
    if loads is not None:
        print(f"load average           : {loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f}")
    command = shlex.join([os.path.basename(sys.executable), *sys.argv])
    print(f"reproduce              : {command}")
    print(
        f"  (each run: {shlex.join(['python', *with_args])}  [+ {shlex.join(WITHOUT)}] "
        f"in a directory of {options.tests} trivial tests)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
