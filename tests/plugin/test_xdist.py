"""pytest-xdist (issue 7): one provisioning, one experiment, one report, one teardown.

How the counts are taken. The inner project's conftest installs a Python audit hook
(``sys.addaudithook``) in every pytest process of the run, controller and workers alike: it
records each ``subprocess.Popen`` (argv) and each open of the JSON report for writing, with the
process's PID and xdist worker id. That counts what was *started* and *written* by anyone,
however the plugin is refactored. An inner census test cross-checks with the plugin's own
record: it reads ``<workdir>/stack/pids`` while the stack runs and classifies each PID by its
``/proc/<pid>/cmdline``. Every run has its own ``TMPDIR``, so the number of ``darklaunch-*``
workdirs in it is the number of provisionings, and afterwards no process may still carry that
``TMPDIR`` and no workdir may remain (the ``stack_tmp`` fixture).
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import tenacity

from tests.plugin.conftest import Spawned, spec_text
from tests.procfs import running

# Objectives that are decided after a few 1 s intervals, so the experiment stops early.
OBJECTIVES = ({"metric": "mean-latency", "upper": 50},
              {"metric": "95th-percentile-tail-latency", "upper": 100},
              {"metric": "error-rate", "upper": 0.05})

INNER_CONFTEST = r'''
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "out"
OUT.mkdir(exist_ok=True)
REPORT = str(HERE / "report.json")


def _write(kind, **fields):
    fields.update(kind=kind, pid=os.getpid(), worker=os.environ.get("PYTEST_XDIST_WORKER"))
    with open(OUT / f"audit-{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(fields) + "\n")


def _audit(event, args):
    if event == "subprocess.Popen":
        _write("popen", argv=[os.fsdecode(a) for a in args[1]])
    elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writing = "w" in (args[1] or "") or flags & (os.O_WRONLY | os.O_RDWR)
        if writing and os.path.abspath(os.fsdecode(args[0])) == REPORT:
            _write("report-write")


sys.addaudithook(_audit)
'''

INNER_TESTS = r'''
import glob
import json
import os
import uuid
from pathlib import Path

import pytest
import tenacity

OUT = Path(__file__).parent / "out"
METRICS = (("mean-latency", 50), ("95th-percentile-tail-latency", 100), ("error-rate", 0.05))


def role(argv):
    if os.path.basename(argv[0]) in ("envoy", "prometheus"):
        return os.path.basename(argv[0])
    if "pytest_darklaunch.sampleapp" in argv:
        return "sampleapp"
    if "pytest_darklaunch.backends.local.generator" in argv:
        return "generator"
    return "other: " + " ".join(argv)


def test_census():
    """While the stack runs: the workdirs under TMPDIR and the processes in their pids file."""
    # Provisioning runs in the background and adds each process to the pids file as it starts:
    # wait until the file names all five.
    def started():
        files = glob.glob(os.path.join(os.environ["TMPDIR"], "darklaunch-*", "stack", "pids"))
        return files and len(Path(files[0]).read_text().split()) >= 5

    tenacity.Retrying(
        stop=tenacity.stop_after_delay(30), wait=tenacity.wait_fixed(0.05),
        retry=tenacity.retry_if_result(lambda found: not found), reraise=True,
    )(started)
    dirs = sorted(glob.glob(os.path.join(os.environ["TMPDIR"], "darklaunch-*")))
    processes = []
    for d in dirs:
        for pid in Path(d, "stack", "pids").read_text().split():
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            processes.append({"pid": int(pid), "role": role(argv)})
    (OUT / "census.json").write_text(json.dumps({"dirs": dirs, "processes": processes}))
    assert len(dirs) == 1


def record(request, verdict):
    (OUT / f"value-{uuid.uuid4().hex}.json").write_text(json.dumps({
        "test": request.node.nodeid, "metric": verdict.objective.metric,
        "value": verdict.value, "live_value": verdict.live_value, "samples": verdict.samples,
        "window": list(verdict.window), "worker": os.environ.get("PYTEST_XDIST_WORKER"),
    }))


def test_objective(darklaunch, darklaunch_objective, request):
    record(request, darklaunch.assert_objective(darklaunch_objective))


@pytest.mark.parametrize("copy", range(4))
def test_objectives_again(darklaunch, copy, request):
    for metric, upper in METRICS:
        record(request, darklaunch.assert_objective(metric, upper=upper))
'''

# Collected first (test_a... < test_dl.py), so the replacement worker usually gets some of the
# crashed worker's tests.
CRASH_TEST = '''
import os


def test_worker_crash():
    os._exit(1)
'''

INNER_PASSED = 8  # census, 3 generated objectives, 4 copies


@pytest.fixture
def project(pytester: pytest.Pytester, stack_tmp: Path) -> Callable[..., Path]:
    """``project(name, mirror=40, crash=False)``: an inner project with its own TMPDIR."""

    def make(name: str, mirror: float = 40, crash: bool = False) -> Path:
        path = pytester.mkdir(name)
        (path / "tmp").mkdir()
        (path / "darklaunch.yaml").write_text(spec_text(mirror=mirror, objectives=OBJECTIVES))
        (path / "conftest.py").write_text(INNER_CONFTEST)
        (path / "test_dl.py").write_text(INNER_TESTS)
        if crash:
            (path / "test_a_crash.py").write_text(CRASH_TEST)
        return path

    return make


def run(spawn: Callable[..., Spawned], path: Path, *args: str) -> Spawned:
    return spawn(path, ["--darklaunch-report", "report.json", "-rfE", *args],
                 env={"TMPDIR": str(path / "tmp")})


def audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted((path / "out").glob("audit-*.jsonl"))
            for line in f.read_text().splitlines()]


def census(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "out" / "census.json").read_text())
    return data


def assert_one_stack_one_report(path: Path, controller_pid: int) -> None:
    """One workdir with one Envoy, one Prometheus, two apps and a generator; one Envoy and one
    Prometheus ever started, by the controller; the report written once, by the controller."""
    found = census(path)
    assert len(found["dirs"]) == 1, found
    assert Counter(p["role"] for p in found["processes"]) == {
        "envoy": 1, "prometheus": 1, "sampleapp": 2, "generator": 1}, found
    events = audit(path)
    started = [(e["pid"], os.path.basename(e["argv"][0])) for e in events if e["kind"] == "popen"]
    stack = [s for s in started if s[1] in ("envoy", "prometheus")]
    assert sorted(stack) == [(controller_pid, "envoy"), (controller_pid, "prometheus")], started
    writes = [(e["pid"], e["worker"]) for e in events if e["kind"] == "report-write"]
    assert writes == [(controller_pid, None)], writes


def assert_same_values(path: Path, min_workers: int) -> set[str | None]:
    """Every test that asserted a metric saw the same value, live value, samples and window,
    equal to the report's; the tests ran on at least ``min_workers`` processes."""
    records = [json.loads(f.read_text()) for f in (path / "out").glob("value-*.json")]
    assert len(records) == 3 + 4 * 3
    seen: dict[str, set[tuple[Any, ...]]] = {}
    for r in records:
        seen.setdefault(r["metric"], set()).add(
            (r["value"], r["live_value"], r["samples"], tuple(r["window"])))
    assert all(len(v) == 1 for v in seen.values()), seen
    report = json.loads((path / "report.json").read_text())
    assert {v["metric"]: (v["value"], v["live_value"], v["samples"], tuple(v["window"]))
            for v in report["verdicts"]} == {k: next(iter(v)) for k, v in seen.items()}
    workers = {r["worker"] for r in records}
    assert len(workers) >= min_workers, workers
    return workers


@pytest.mark.parametrize("args, workers", [
    (["-n", "2"], 2),
    (["-n", "2", "--dist", "loadgroup"], 2),
    (["-n", "0"], 1),
    (["-p", "no:xdist"], 1),
], ids=["n2", "n2-loadgroup", "n0", "no-xdist"])
def test_one_stack_same_values_one_report(
    project: Callable[..., Path], spawn: Callable[..., Spawned], args: Sequence[str],
    workers: int
) -> None:
    path = project("run")
    spawned = run(spawn, path, *args)
    spawned.result().assert_outcomes(passed=INNER_PASSED)
    assert_one_stack_one_report(path, spawned.pid)
    assert_same_values(path, workers)
    assert not any(running(p["pid"]) for p in census(path)["processes"])


def test_worker_crash_still_tears_everything_down(
    project: Callable[..., Path], spawn: Callable[..., Spawned]
) -> None:
    path = project("crash", crash=True)
    spawned = run(spawn, path, "-n", "2")
    result = spawned.result()
    result.assert_outcomes(passed=INNER_PASSED, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw?' crashed while running*test_worker_crash*"])
    assert_one_stack_one_report(path, spawned.pid)
    workers = assert_same_values(path, 2)  # a replacement worker (gw2), if it ran any, too
    print("objective tests ran on", sorted(map(str, workers)))
    alive = [p for p in census(path)["processes"] if running(p["pid"])]
    assert not alive
    assert not list((path / "tmp").glob("darklaunch-*"))
    # stack_tmp checks, after the test, that no process of the run is left at all.


def test_two_runs_side_by_side_both_pass(
    project: Callable[..., Path], spawn: Callable[..., Spawned]
) -> None:
    first, second = project("first"), project("second")
    runs = [run(spawn, first, "-n", "2"), run(spawn, second, "-n", "2")]
    for path, spawned in zip((first, second), runs, strict=False):
        spawned.result().assert_outcomes(passed=INNER_PASSED)
        assert_one_stack_one_report(path, spawned.pid)
        assert_same_values(path, 2)
    reports = [json.loads((p / "report.json").read_text()) for p in (first, second)]
    assert reports[0]["run_id"] != reports[1]["run_id"]
    pids = [{p["pid"] for p in census(path)["processes"]} for path in (first, second)]
    assert not pids[0] & pids[1]


def test_sigterm_to_the_controller_mid_experiment_tears_everything_down(
    project: Callable[..., Path], spawn: Callable[..., Spawned]
) -> None:
    # Mirror 0%: no objective is ever decided, so the experiment runs its full 10 s and the
    # signal certainly arrives while it runs (the census file says the stack is up).
    path = project("interrupted", mirror=0)
    spawned = run(spawn, path, "-n", "2")
    census_file = path / "out" / "census.json"
    tenacity.Retrying(
        stop=tenacity.stop_after_delay(60), wait=tenacity.wait_fixed(0.1),
        retry=tenacity.retry_if_result(lambda found: not found), reraise=True,
    )(census_file.exists)
    assert census_file.exists() and spawned.popen.poll() is None
    spawned.popen.send_signal(signal.SIGTERM)
    result = spawned.result()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not [p for p in census(path)["processes"] if running(p["pid"])]
    assert not list((path / "tmp").glob("darklaunch-*"))


def test_run_id_is_xdists_testrun_uid(
    project: Callable[..., Path], spawn: Callable[..., Spawned]
) -> None:
    """Issue 7: names and temp dirs carry the run id, "xdist's testrun_uid where present"
    (also promised by ``backends.RunContext``'s docstring), so that a CI job that sets
    ``--testrunuid`` finds its run's directories and labels. The run id may be a prefix of it.
    """
    uid = "5eed0123456789abcdef0123456789ab"
    path = project("uid")
    spawned = run(spawn, path, "-n", "2", "--testrunuid", uid)
    result = spawned.result()
    result.assert_outcomes(passed=INNER_PASSED)
    run_id = json.loads((path / "report.json").read_text())["run_id"]
    workdir = os.path.basename(census(path)["dirs"][0])
    assert len(run_id) >= 8 and uid.startswith(run_id), (run_id, uid)
    assert workdir.startswith(f"darklaunch-{run_id}-"), workdir
    # The header says it first: a run killed outright can still be found by it.
    assert f"darklaunch run id: {run_id}" in result.outlines
