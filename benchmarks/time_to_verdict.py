"""Time to verdict on the local backend: how fast the seed's objectives are decided.

Each run is a fresh ``python -m pytest`` process in a temporary project directory holding a
``darklaunch.yaml`` (the seed's three objectives: mean-latency <= 50 ms,
95th-percentile-tail-latency <= 100 ms, error-rate <= 1%; 100 requests/s, 40% mirrored) and a
one-test file using the ``darklaunch_objective`` fixture. Three dark versions:

(a) good: latency like live (5 ms + 0..2 ms jitter); every objective must pass;
(b) slow: +60 ms; run with ``--darklaunch-fail-fast``; mean-latency must fail;
(c) failing: 3% errors (``SAMPLEAPP_ERROR_SHARE=0.03``), ``--darklaunch-fail-fast``;
    error-rate must fail;
(r) a slow route: a mix of ``list`` (96%) and ``upload`` (4%), dark 150 ms on upload only
    (``SAMPLEAPP_SLOW_PATH``), objectives p95 <= 100 ms on all traffic and on route upload,
    ``--darklaunch-fail-fast``; the route's objective must fail (``--scenarios r``).

For every schedule (interval x iterations = the planned looks) it reports the median of
``--runs`` runs of the whole ``pytest`` process's wall time and of the experiment's time to
decision (``finished_at - started_at`` of the JSON report), the stop reasons, and the wrong
verdicts over ``--wrong-runs`` runs of (a) (wrong: any objective not ``pass``; in (b)/(c) a
missed breach or a breach on another objective). A run that produced no report (pytest
crashed) is counted apart, never as a verdict. The seed's Iter8 schedule (10 s x 10, no early
stop: 100 s of sampling) is the reference row; ``--seed-run`` measures it once per scenario
with ``--darklaunch-full-duration``. At the end the schedules are ranked: sound first, then
goals met, then the sum of the medians.

Before running, it prints what the decision rule predicts for each schedule (a model of the
look schedule and of the error-rate decision in (a)/(c), using the package's own
``core.stats``). See docs/time-to-verdict.md for the figures.

    python benchmarks/time_to_verdict.py                 # 5 runs, 10 of (a), 4 schedules
    python benchmarks/time_to_verdict.py --quick         # 1 run of everything
    python benchmarks/time_to_verdict.py --schedules 2sx10 --runs 5 --json out.json
    python benchmarks/time_to_verdict.py --pool out.json more.json   # pool earlier runs

Runs are sequential (timings are the point) and interleaved across schedules and scenarios,
so a change in the machine's load spreads over all cells instead of biasing one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

RATE_RPS = 100.0
MIRROR_PERCENT = 40.0
OBJECTIVES = (
    ("mean-latency", 50.0),
    ("95th-percentile-tail-latency", 100.0),
    ("error-rate", 0.01),
)
SEED_SCHEDULE = (10.0, 10)  # Iter8's seed experiment: intervalSeconds 10 x iterationsPerLoop 10
DEFAULT_SCHEDULES = "1sx20,2sx10,3sx6,4sx5"
# Every process a run starts inherits this variable: leftovers are found by it, not by name.
MARKER = "TIME_TO_VERDICT_BENCHMARK"
# Total wall time of the pytest process, seconds.
GOALS = {"a": 20.0, "b": 12.0, "c": 12.0, "r": 15.0}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    dark_env: dict[str, str]
    fail_fast: bool
    # metric (or metric@route) -> outcome that must be seen ('pass' for all in (a))
    expected: dict[str, str]
    objectives: tuple[tuple[str, float, str | None], ...] = tuple(
        (m, bound, None) for m, bound in OBJECTIVES
    )
    traffic: str = f"{{rate: {RATE_RPS:g}, path: /, method: GET}}"


SCENARIOS = {
    "a": Scenario(
        "a",
        "good dark (5 ms + 2 jitter)",
        {"SAMPLEAPP_LATENCY_MS": "5", "SAMPLEAPP_JITTER_MS": "2"},
        False,
        {m: "pass" for m, _ in OBJECTIVES},
    ),
    "b": Scenario(
        "b",
        "dark +60 ms",
        {"SAMPLEAPP_LATENCY_MS": "65", "SAMPLEAPP_JITTER_MS": "2"},
        True,
        {"mean-latency": "fail"},
    ),
    "c": Scenario(
        "c",
        "dark 3% errors",
        {"SAMPLEAPP_LATENCY_MS": "5", "SAMPLEAPP_JITTER_MS": "2", "SAMPLEAPP_ERROR_SHARE": "0.03"},
        True,
        {"error-rate": "fail"},
    ),
    "r": Scenario(
        "r",
        "dark +145 ms on a 4% route",
        {"SAMPLEAPP_LATENCY_MS": "5", "SAMPLEAPP_JITTER_MS": "2",
         "SAMPLEAPP_SLOW_PATH": "^/upload$", "SAMPLEAPP_SLOW_MS": "150"},
        True,
        {"95th-percentile-tail-latency@upload": "fail"},
        (("95th-percentile-tail-latency", 100.0, None),
         ("95th-percentile-tail-latency", 100.0, "upload")),
        f"{{rate: {RATE_RPS:g}, targets: [{{name: list, path: /items, weight: 96}}, "
        "{name: upload, path: /upload, weight: 4}]}",
    ),
}

TEST_FILE = '''"""One test per objective of darklaunch.yaml (the darklaunch_objective fixture)."""


def test_objective(darklaunch, darklaunch_objective):
    darklaunch.assert_objective(darklaunch_objective)
'''


@dataclass
class Run:
    scenario: str
    schedule: str
    index: int
    wall_s: float
    exit_code: int
    load1: float
    setup_s: float | None = None  # process start -> first window (started_at)
    decision_s: float | None = None  # finished_at - started_at
    teardown_s: float | None = None  # finished_at -> process exit
    stage: str = ""
    stop_reason: str = ""
    outcomes: dict[str, str] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def crashed(self) -> bool:
        """No verdicts at all: pytest did not get to run the experiment (not a verdict)."""
        return not self.outcomes

    def wrong(self, scenario: Scenario) -> list[str]:
        """Objectives whose outcome is wrong for this scenario (none when it crashed)."""
        bad = [m for m, want in scenario.expected.items() if self.outcomes.get(m) != want]
        # A breach reported on an objective the dark version meets is wrong too.
        bad += [
            m for m, got in self.outcomes.items()
            if got == "fail" and m not in scenario.expected
        ]
        return bad


def parse_duration(text: str) -> float:
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000.0
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


def parse_schedule(text: str) -> tuple[float, int]:
    interval, _, iterations = text.lower().partition("x")
    if not iterations:
        raise argparse.ArgumentTypeError(f"schedule {text!r}: expected INTERVALxN, e.g. 2sx10")
    return parse_duration(interval), int(iterations)


def schedule_name(interval_s: float, iterations: int) -> str:
    if interval_s < 1:
        return f"{interval_s * 1000:g}ms x {iterations}"
    return f"{interval_s:g}s x {iterations}"


def spec_yaml(scenario: Scenario, interval_s: float, iterations: int) -> str:
    def env(values: dict[str, str]) -> str:
        return "{" + ", ".join(f'{k}: "{v}"' for k, v in values.items()) + "}"

    live = {"T_VERSION": "blue", "SAMPLEAPP_LATENCY_MS": "5", "SAMPLEAPP_JITTER_MS": "2"}
    dark = {"T_VERSION": "green", **scenario.dark_env}
    objectives = "\n".join(
        f"  - {{metric: {m}, upper: {bound:g}{f', route: {route}' if route else ''}}}"
        for m, bound, route in scenario.objectives
    )
    return f"""# time_to_verdict.py scenario ({scenario.key}) {scenario.title}
target: default/sample-app
versions:
  live:
    revision: sample-app-v1
    env: {env(live)}
  dark:
    revision: sample-app-v2
    env: {env(dark)}
mirror: {{percent: {MIRROR_PERCENT:g}, host: customdomain.com}}
traffic: {scenario.traffic}
duration: {{interval: {interval_s * 1000:g}ms, iterations: {iterations}}}
objectives:
{objectives}
"""


def child_env() -> dict[str, str]:
    """The caller's environment without settings that would change the experiment."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("PYTEST_DARKLAUNCH_") and k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")
    }
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env[MARKER] = str(os.getpid())
    return env


def leftover_processes() -> list[str]:
    """``pid args`` of live processes whose environment carries :data:`MARKER`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if f"{MARKER}=".encode() not in fh.read():
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        found.append(f"{pid} {args}")
    return found


def package_version() -> str:
    """The commit of the checkout the plugin is imported from, and whether it is modified."""
    import pytest_darklaunch

    root = os.path.dirname(os.path.dirname(os.path.abspath(pytest_darklaunch.__file__)))
    git = ["git", "-C", root]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "pytest_darklaunch"],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not head:
        return f"pytest_darklaunch from {root} (not a git checkout)"
    return f"{root} at {head}" + (" with uncommitted changes in pytest_darklaunch" if dirty else "")


def load1() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_once(
    scenario: Scenario,
    interval_s: float,
    iterations: int,
    index: int,
    full_duration: bool = False,
    keep_dir: bool = False,
    verbose: bool = False,
    conftest: str | None = None,
    pytest_args: tuple[str, ...] = (),
    reports_dir: str | None = None,
) -> Run:
    workdir = tempfile.mkdtemp(prefix=f"ttv-{scenario.key}-")
    report = os.path.join(workdir, "report.json")
    with open(os.path.join(workdir, "darklaunch.yaml"), "w", encoding="utf-8") as fh:
        fh.write(spec_yaml(scenario, interval_s, iterations))
    with open(os.path.join(workdir, "pytest.ini"), "w", encoding="utf-8") as fh:
        fh.write("[pytest]\n")
    with open(os.path.join(workdir, "test_ttv.py"), "w", encoding="utf-8") as fh:
        fh.write(TEST_FILE)
    if conftest:
        shutil.copy(conftest, os.path.join(workdir, "conftest.py"))
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
           f"--darklaunch-report={report}", *pytest_args]
    if scenario.fail_fast:
        cmd.append("--darklaunch-fail-fast")
    if full_duration:
        cmd.append("--darklaunch-full-duration")
    timeout = interval_s * iterations + 120.0
    before = load1()
    launched = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGINT first: the plugin tears its processes down on it.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    exited = launched + wall
    run = Run(scenario.key, schedule_name(interval_s, iterations), index, wall,
              proc.returncode, before)
    text = out.decode("utf-8", "replace")
    if verbose:
        print(text)
    try:
        with open(report, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        run.error = f"no report ({exc}); output tail: {text[-600:]}"
    else:
        started, finished = data.get("started_at") or 0.0, data.get("finished_at") or 0.0
        if started and finished:
            run.setup_s = started - launched
            run.decision_s = finished - started
            run.teardown_s = exited - finished
        run.stage = data.get("stage", "")
        run.stop_reason = data.get("stop_reason", "")
        run.error = data.get("error") or ""
        for v in data.get("verdicts", []):
            name = v["metric"] + (f"@{v['route']}" if v.get("route") else "")
            run.outcomes[name] = v["outcome"]
            run.samples[name] = int(v.get("samples") or 0)
    if reports_dir and os.path.exists(report):
        os.makedirs(reports_dir, exist_ok=True)
        name = f"{scenario.key}-{interval_s:g}sx{iterations}-{index}.json"
        shutil.copy(report, os.path.join(reports_dir, name))
    if keep_dir:
        print(f"    kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return run


# --- What the statistics predict ------------------------------------------------------------


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(1 for _ in range(n) if rng.random() < p) if p > 0 else 0


def predict(interval_s: float, iterations: int, paths: int = 400) -> dict[str, Any]:
    """What the package's decision rule predicts for one schedule (a model; nothing runs).

    Traffic starts at t0 = 0 at exactly 100 requests/s; each request reaches dark with
    probability 40% and, in (c), fails with probability 3%. Prometheus' first scrape lands at
    F ~ U(4, 5.5) s after t0 (its ~5 s discovery throttle; 4.1-5.8 s measured here), then one
    every second. As ``core.loop.Runner`` does, look k targets
    ``max(k x interval, previous end + 0.5 s)`` and its window ends at the first scrape at or
    after that target (so every look before F collapses into one at F). Latency objectives
    count as decided at the first look ((b) fails there; measured: it does); error-rate is
    judged as ``core.verdict`` does: the exact sequential test of
    ``core.stats.sequential_rate_boundaries`` over the looks so far, spending by the share of
    the planned sampling time, all of it at the last planned look.
    """
    from pytest_darklaunch.core import stats

    rng = random.Random(20240601)
    share = MIRROR_PERCENT / 100
    planned_s = interval_s * iterations

    def one(p_err: float, latency_breach: bool) -> tuple[float, int]:
        first = rng.uniform(4.0, 5.5)
        end = seen = 0.0
        e = 0
        trials: list[int] = []
        fractions: list[float] = []
        for k in range(1, iterations + 1):
            target = max(k * interval_s, end + 0.5)
            end = first if target <= first else first + math.ceil(target - first - 1e-9)
            live = int(RATE_RPS * end)
            m = _binomial(rng, int(live - seen), share)
            seen = live
            trials.append((trials[-1] if trials else 0) + m)
            fractions.append(1.0 if k == iterations else end / planned_s)
            e += _binomial(rng, m, p_err)
            if latency_breach:
                return end, trials[-1]
            looks = stats.sequential_rate_boundaries(0.01, trials, fractions, 0.05)
            assert looks is not None
            if e <= looks[-1].pass_at_most or e >= looks[-1].fail_at_least:
                return end, trials[-1]
        return float("inf"), trials[-1]

    def median(p_err: float, breach: bool) -> tuple[float, int]:
        ends = sorted(one(p_err, breach) for _ in range(paths))
        return ends[len(ends) // 2]

    clean_s, clean_requests = median(0.0, False)
    return {
        "needed": clean_requests,
        "a_s": clean_s,
        "b_s": median(0.0, True)[0],
        "c_s": median(0.03, False)[0],
    }


# --- Output ---------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _p90(values: list[float]) -> float:
    """The 90th percentile by the nearest-rank method (the largest value below 10 runs)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _fmt(value: float | None, width: int = 6) -> str:
    return f"{value:{width}.1f}" if value is not None else " " * (width - 3) + "n/a"


def _short(reason: str) -> str:
    for old, new in (("all objectives decided after ", "all decided @"),
                     ("fail-fast: ", "ff "), (" breached after ", " @"),
                     (" intervals sampled", " sampled"), (" intervals", "")):
        reason = reason.replace(old, new)
    return reason


def _valid(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.crashed]


def table(runs: list[Run], schedules: list[tuple[float, int]], nruns: int) -> list[str]:
    lines = [
        "| schedule | dark | goal | wall s: median (p90) | decision s: median (p90) "
        "| setup s | teardown s "
        "| exit | stop reasons | wrong | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for interval_s, iterations in schedules:
        name = schedule_name(interval_s, iterations)
        for key, scenario in SCENARIOS.items():
            cell = [r for r in runs if r.schedule == name and r.scenario == key]
            valid = _valid(cell)
            if not valid:
                if cell:
                    lines.append(f"| {name} | ({key}) {scenario.title} | | no run produced a "
                                 f"report ({len(cell)} crashed) | | | | | | | |")
                continue
            timed = valid[:nruns]
            wall = _median([r.wall_s for r in timed])
            goal = GOALS[key]
            met = "met" if wall is not None and wall < goal else "MISSED"
            reasons: dict[str, int] = {}
            for r in timed:
                reason = _short(r.stop_reason or r.error or "?")
                reasons[reason] = reasons.get(reason, 0) + 1
            wrong = sum(1 for r in valid if r.wrong(scenario))
            codes = sorted({r.exit_code for r in timed})
            crashed = len(cell) - len(valid)
            lines.append(
                f"| {name} | ({key}) {scenario.title} | < {goal:g} s {met} "
                f"| {_fmt(wall)} ({_p90([r.wall_s for r in timed]):.1f}) "
                f"| {_fmt(_median([r.decision_s for r in timed]))} "
                f"({_p90([r.decision_s for r in timed if r.decision_s is not None]):.1f}) "
                f"| {_fmt(_median([r.setup_s for r in timed]), 4)} "
                f"| {_fmt(_median([r.teardown_s for r in timed]), 4)} "
                f"| {','.join(map(str, codes))} "
                f"| {'; '.join(f'{n}x {k}' for k, n in sorted(reasons.items()))} "
                f"| {wrong}/{len(valid)} "
                f"| {len(timed)}/{len(valid)}{f' (+{crashed} crashed)' if crashed else ''} |"
            )
    return lines


def summarize(
    runs: list[Run],
    seed_runs: list[Run],
    schedules: list[tuple[float, int]],
    keys: list[str],
    nruns: int,
    wrong_runs: int,
) -> None:
    """Print the results table, the seed row and the schedules ranked."""
    what = f"median of {nruns} runs" if nruns < 10**6 else "all runs pooled"
    print(f"\n## Results ({what}; wrong verdicts over all runs of a cell: (a) any objective not "
          f"'pass', (b)/(c) the breach missed or a breach on another objective)\n")
    for line in table(runs, schedules, nruns):
        print(line)
    seed = schedule_name(*SEED_SCHEDULE)
    for run in seed_runs:
        print(f"| {seed} full duration (seed) | ({run.scenario}) {SCENARIOS[run.scenario].title} "
              f"| | {run.wall_s:.1f} (1 run) | {_fmt(run.decision_s)} | {_fmt(run.setup_s, 4)} "
              f"| {_fmt(run.teardown_s, 4)} | {run.exit_code} | {_short(run.stop_reason)} "
              f"| {len(run.wrong(SCENARIOS[run.scenario]))} | 1 |")
    if not seed_runs:
        print(f"| {seed} (seed, Iter8) | all | | >= 100 s of sampling | 100 | | | | "
              "never stops early | | |")

    # Sound first (no wrong verdict), then the most goals met, then the least total time.
    ranking = []
    for interval_s, iterations in schedules:
        name = schedule_name(interval_s, iterations)
        cell = _valid([r for r in runs if r.schedule == name])
        if not cell:
            continue
        wrong = sum(1 for r in cell if r.wrong(SCENARIOS[r.scenario]))
        walls = {k: _median([r.wall_s for r in cell if r.scenario == k][:nruns]) for k in keys}
        met = sum(1 for k, w in walls.items() if w is not None and w < GOALS[k])
        total = sum(w for w in walls.values() if w is not None)
        ranking.append((wrong, -met, total, name, walls))
    if ranking:
        ranking.sort(key=lambda t: t[:3])
        print("\nschedules, sound first, then goals met (median wall time), then the sum of the "
              "medians:")
        for wrong, met, total, name, walls in ranking:
            print(f"  {name:>9}: {wrong} wrong, {-met}/{len(walls)} goals met, "
                  f"sum {total:.1f} s (" + ", ".join(
                      f"({k}) {_fmt(w).strip()} s" for k, w in walls.items()) + ")")


def pooled(paths: list[str]) -> tuple[list[Run], list[Run], list[tuple[float, int]]]:
    """Runs from earlier ``--json`` files: (runs, seed runs, schedules in first-seen order)."""
    runs: list[Run] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            runs += [Run(**r) for r in json.load(fh)["runs"]]
    seed = schedule_name(*SEED_SCHEDULE)
    names: list[str] = []
    for r in runs:
        if r.schedule != seed and r.schedule not in names:
            names.append(r.schedule)
    by_name = {schedule_name(*parse_schedule(s)): parse_schedule(s)
               for s in DEFAULT_SCHEDULES.split(",")}
    schedules = []
    for name in names:
        if name not in by_name:  # e.g. "5s x 2": rebuild it from its name
            interval, _, count = name.partition(" x ")
            by_name[name] = (parse_duration(interval), int(count))
        schedules.append(by_name[name])
    return ([r for r in runs if r.schedule != seed], [r for r in runs if r.schedule == seed],
            schedules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--wrong-runs", type=int, default=10,
                        help="runs of (a) per schedule counted for wrong verdicts (>= --runs)")
    parser.add_argument("--quick", action="store_true", help="1 run of everything")
    parser.add_argument("--schedules", default=DEFAULT_SCHEDULES,
                        help=f"comma-separated INTERVALxN (default {DEFAULT_SCHEDULES})")
    parser.add_argument("--scenarios", default="abc", help="subset of a, b, c, r (default abc)")
    parser.add_argument("--seed-run", action="store_true",
                        help="also run each scenario once on the seed's 10s x 10, full duration")
    parser.add_argument("--no-predict", action="store_true", help="skip the statistics preview")
    parser.add_argument("--json", metavar="PATH", help="write every run's figures here")
    parser.add_argument("--conftest", metavar="FILE",
                        help="copy FILE into every run's project as conftest.py, e.g. to "
                             "measure a candidate change of the package by monkeypatching it")
    parser.add_argument("--reports", metavar="DIR",
                        help="keep every run's JSON report in DIR (SCENARIO-SCHEDULE-RUN.json)")
    parser.add_argument("--pytest-args", default="",
                        help="extra pytest arguments for every run, e.g. "
                             "'-p no:hypothesispytest' to leave out an unrelated plugin")
    parser.add_argument("--verbose", action="store_true", help="print each pytest's output")
    parser.add_argument("--pool", nargs="+", metavar="JSON",
                        help="run nothing: pool the runs of earlier --json files and print "
                             "their table (medians over all runs of each cell)")
    args = parser.parse_args(argv)
    if args.pool:
        old_runs, old_seed_runs, old_schedules = pooled(args.pool)
        print(f"# pooled from {', '.join(args.pool)}")
        summarize(old_runs, old_seed_runs, old_schedules, list("abc"), 10**9, 10**9)
        return 0
    if args.quick:
        args.runs = args.wrong_runs = 1
    args.wrong_runs = max(args.wrong_runs, args.runs)
    schedules = [parse_schedule(s) for s in args.schedules.split(",") if s.strip()]
    keys = [k for k in "abcr" if k in args.scenarios]
    extra = tuple(shlex.split(args.pytest_args))

    command = "python benchmarks/time_to_verdict.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"# time to verdict, local backend, {RATE_RPS:g} requests/s, {MIRROR_PERCENT:g}% "
          f"mirrored; {os.cpu_count()} CPUs; load {os.getloadavg()}")
    print(f"# reproduce: {command.strip()}")
    print(f"# package: {package_version()}")

    predictions: dict[str, Any] = {}
    if not args.no_predict:
        print("\n## What the decision rule predicts (a model, nothing runs: see predict())\n")
        print("| schedule | clean dark requests at the (a) decision (median) "
              "| decided at (median, s after the traffic starts): (a) / (b) / (c) |")
        print("|---|---|---|")
        for interval_s, iterations in schedules + [SEED_SCHEDULE]:
            name = schedule_name(interval_s, iterations)
            p = predictions[name] = predict(interval_s, iterations)
            print(f"| {name} | {p['needed']} | "
                  + " / ".join(f"{p[k]:.1f}" for k in ("a_s", "b_s", "c_s")) + " |")
        print("\n(the seed row as if it stopped early; Iter8 samples all 100 s)")

    plan: list[tuple[str, float, int, int]] = []
    for i in range(args.wrong_runs):
        for interval_s, iterations in schedules:
            for key in keys:
                if i < args.runs or key == "a":
                    plan.append((key, interval_s, iterations, i))
    runs: list[Run] = []
    print(f"\n## Runs ({len(plan)} pytest processes, sequential)\n")
    for n, (key, interval_s, iterations, i) in enumerate(plan, 1):
        run = run_once(SCENARIOS[key], interval_s, iterations, i, verbose=args.verbose,
                       conftest=args.conftest, pytest_args=extra,
                       reports_dir=args.reports)
        runs.append(run)
        wrong = run.wrong(SCENARIOS[key])
        print(f"  [{n}/{len(plan)}] ({key}) {run.schedule:>9} #{i}: wall {run.wall_s:5.1f} s, "
              f"decision {_fmt(run.decision_s, 4)} s, exit {run.exit_code}, "
              f"{run.stop_reason or run.error[:200]!s}; "
              f"{' '.join(f'{m}={o}' for m, o in run.outcomes.items())}"
              f"{'  WRONG: ' + ', '.join(wrong) if wrong else ''}  (load {run.load1:.2f})",
              flush=True)
    seed_runs: list[Run] = []
    if args.seed_run:
        for key in keys:
            run = run_once(SCENARIOS[key], *SEED_SCHEDULE, 0, full_duration=True,
                           verbose=args.verbose, conftest=args.conftest, pytest_args=extra,
                           reports_dir=args.reports)
            seed_runs.append(run)
            print(f"  seed ({key}): wall {run.wall_s:.1f} s, decision {_fmt(run.decision_s)} s, "
                  f"{run.stop_reason}; {run.outcomes}", flush=True)

    summarize(runs, seed_runs, schedules, keys, args.runs, args.wrong_runs)

    mine = leftover_processes()
    if mine:
        print("\nWARNING: processes started by these runs are still running:\n  "
              + "\n  ".join(mine))
    else:
        print("\nno process started by these runs is left running")
    print(f"\n# load at the end {os.getloadavg()}; package: {package_version()}")
    print(f"# reproduce: {command.strip()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"command": command.strip(), "package": package_version(),
                       "predictions": predictions,
                       "runs": [asdict(r) for r in runs + seed_runs]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
