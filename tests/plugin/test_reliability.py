"""Faults survived: each one on the real local stack, in a real pytest run, in a subprocess.

Every test writes a small project (a ``darklaunch.yaml`` with 1 s intervals, a test file,
sometimes a conftest or a misbehaving app script), runs ``python -m pytest`` on it with
``TMPDIR`` pointing at a directory of its own, and checks what a user sees: the outcome of each
test (from the JUnit XML), the messages, the JSON report, the exit code. Then it checks that the
run left nothing behind, by PID: every process named in the run's ``pids`` file (read while the
run was going) and every process whose environment carries the run's tag must be gone (a
zombie is gone: it no longer runs), and no ``darklaunch-*`` directory may remain in ``TMPDIR``.

Waits poll with a deadline (tenacity); nothing sleeps. Markers of progress are observable
facts: the ``pids`` file exists (provisioning is underway), a progress line was printed (the
experiment runs), a misbehaving app wrote a file when it got SIGTERM (teardown is underway).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tenacity
import yaml

from pytest_darklaunch.session import FAILED_MARK
from tests.local.helpers import wait_for
from tests.procfs import cmdline, proc_stat, processes_whose_environ

TAG_VAR = "DARKLAUNCH_RELIABILITY_RUN"
RUN_DEADLINE_S = 90.0
GONE_WITHIN_S = 10.0
# A progress line of the running experiment: "darklaunch 3/10 t+3s | ..." (N is the plan).
PROGRESS = r"^darklaunch:? (?:iteration )?\d+/%d\b"
WELL_BEHAVED = {"SAMPLEAPP_LATENCY_MS": "5", "SAMPLEAPP_JITTER_MS": "2"}

# -- apps that misbehave on purpose ---------------------------------------------------------------

# Serves HTTP like an app, then dies without warning on the request after `budget` requests
# (health checks excluded): the dark version crashing in the middle of the experiment. At most
# `budget` requests get an answer.
CRASHING_APP = """
import http.server, os, sys, threading

port, budget = int(sys.argv[1]), int(sys.argv[2])
lock = threading.Lock()
served = 0

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global served
        if self.path != "/healthz":
            with lock:
                served += 1
                if served > budget:
                    print(f"dark: crashing after {budget} requests", flush=True)
                    os._exit(70)
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

# Accepts connections and answers the health check, but never answers a real request.
HANGING_APP = """
import http.server, sys, threading

port = int(sys.argv[1])
never = threading.Event()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/healthz":
            never.wait()
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

# A well-behaved app that shuts down slowly: it notes SIGTERM in a file and carries on, so the
# teardown must wait for it (then SIGKILL it) - a window in which to interrupt the teardown.
SLOW_TO_STOP_APP = """
import http.server, pathlib, signal, sys

port, marker = int(sys.argv[1]), pathlib.Path(sys.argv[2])

def noted(signum, frame):
    marker.write_text("SIGTERM\\n")

signal.signal(signal.SIGTERM, noted)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

# Never binds its port: provisioning waits for it until interrupted or timed out.
NEVER_READY_APP = "import signal; signal.pause()"

FIXTURE_TESTS = """
def test_objective(darklaunch, darklaunch_objective):
    darklaunch.assert_objective(darklaunch_objective)


def test_unrelated():
    assert 1 + 1 == 2
"""


# -- processes --------------------------------------------------------------------------------


def tagged_pids(tag: str) -> dict[int, int]:
    """PID -> start time of every running process whose environment has ``TAG_VAR=tag`` (the
    pytest run and everything it started inherit it)."""
    needle = f"\0{TAG_VAR}={tag}\0".encode()
    return processes_whose_environ(lambda environ: needle in environ)


def poll(check: Callable[[], Any], what: str, deadline_s: float, interval_s: float = 0.02) -> Any:
    """:func:`tests.local.helpers.wait_for`, polling faster: these tests watch live runs."""
    return wait_for(check, what, deadline_s, interval_s)


# -- a project and its run --------------------------------------------------------------------


@dataclass
class Outcome:
    outcome: str  # passed, failed, error, skipped
    message: str


@dataclass
class Run:
    """One ``python -m pytest`` in a project: output read as it comes, PIDs recorded."""

    project: Path
    tmpdir: Path
    tag: str
    popen: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    pids: dict[int, int] = field(default_factory=dict)  # from the pids file, with start times
    workdirs: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0
    _done: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def begin(self) -> None:
        for stream, sink in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            reader = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            reader.start()
            self._threads.append(reader)
        watcher = threading.Thread(target=self._watch_pids, daemon=True)
        watcher.start()
        self._threads.append(watcher)

    @staticmethod
    def _read(stream: Any, sink: list[str]) -> None:
        # The reader owns its stream and closes it at end of file: processes the run started
        # (xdist workers after a SIGKILL of the controller) may hold the pipe after pytest ends.
        with stream:
            for line in stream:
                sink.append(line.rstrip("\n"))

    def _watch_pids(self) -> None:
        """Record every PID of the run's ``pids`` file (and its start time) while it exists."""
        while not self._done.wait(0.005):
            self.scan_pids_file()

    def scan_pids_file(self) -> None:
        for path in self.tmpdir.glob("darklaunch-*/stack/pids"):
            self.workdirs.add(str(path.parent.parent))
            try:
                lines = path.read_text(encoding="utf-8").split()
            except OSError:
                continue
            for line in lines:
                pid = int(line)
                stat = proc_stat(pid)
                if pid not in self.pids and stat is not None:
                    self.pids[pid] = stat[2]

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)

    def wait_for_line(self, pattern: str, deadline_s: float = 30.0) -> str:
        regex = re.compile(pattern)

        def found() -> str | None:
            if self.popen.poll() is not None and not any(t.is_alive() for t in self._threads[:2]):
                pytest.fail(f"the run ended before printing {pattern!r}:\n{self.output}")
            return next((line for line in list(self.stdout) if regex.search(line)), None)

        line: str = poll(found, f"a line matching {pattern!r} in the run's output", deadline_s)
        return line

    def wait_for_pids(self, count: int = 5, deadline_s: float = 30.0) -> dict[int, int]:
        """Until the pids file named ``count`` processes that are all running."""

        def all_running() -> dict[int, int] | None:
            self.scan_pids_file()
            if self.popen.poll() is not None:
                pytest.fail(f"the run ended before starting its processes:\n{self.output}")
            # A copy: the watcher thread adds to self.pids meanwhile.
            running = {p: s for p, s in dict(self.pids).items() if alive(p, s)}
            return dict(running) if len(running) >= count else None

        pids: dict[int, int] = poll(
            all_running, f"{count} processes of the run running", deadline_s
        )
        return pids

    def finish(self, deadline_s: float = RUN_DEADLINE_S) -> int:
        """Wait for the run to end (killing it after ``deadline_s``); its exit code."""
        try:
            code = self.popen.wait(timeout=max(0.0, self.started + deadline_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {deadline_s:g} s:\n{self.output}")
        self.elapsed_s = time.monotonic() - self.started
        self._done.set()
        self._close()
        print(f"--- run in {self.project} ({self.elapsed_s:.1f} s, exit {code})\n{self.output}")
        return code

    def kill(self) -> None:
        """Last resort after a failed check: kill the run and everything tagged with it."""
        for pid in tagged_pids(self.tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()
        self._done.set()
        self._close()

    def _close(self) -> None:
        """Wait a while for the output to end; a reader still waiting for the processes that
        hold the pipe closes its stream itself when they end."""
        for thread in self._threads:
            thread.join(5)

    def kept(self) -> list[Path]:
        """Directories the run kept on purpose: a failed run's, for the logs its error names."""
        return sorted(p.parent for p in self.tmpdir.glob(f"darklaunch-*/{FAILED_MARK}"))

    def leftovers(self) -> list[str]:
        """Processes of the run still running, and its directories still present (but those it
        kept on purpose, see :meth:`kept`)."""
        candidates = dict(self.pids)
        candidates.update(tagged_pids(self.tag))
        candidates.pop(os.getpid(), None)
        left = [
            f"pid {pid}: {cmdline(pid)}"
            for pid, start in sorted(candidates.items())
            if alive(pid, start)
        ]
        kept = self.kept()
        left += [
            f"directory {p}" for p in sorted(self.tmpdir.glob("darklaunch-*")) if p not in kept
        ]
        left += [
            f"directory {p} (named in the pids file)"
            for p in self.workdirs
            if os.path.exists(p) and Path(p) not in kept
        ]
        return left

    def assert_nothing_left(self, deadline_s: float = 0.0) -> None:
        if deadline_s:
            tenacity.Retrying(
                retry=tenacity.retry_if_result(bool),
                stop=tenacity.stop_after_delay(deadline_s),
                wait=tenacity.wait_fixed(0.05),
                retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            )(self.leftovers)
        left = self.leftovers()
        assert not left, "the run left these behind:\n" + "\n".join(left)

    def outcomes(self) -> dict[str, Outcome]:
        """Test name -> outcome and message, from the run's JUnit XML."""
        tree = ET.parse(self.project / "junit.xml")
        out: dict[str, Outcome] = {}
        for case in tree.iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                if node is not None:
                    outcome = {"failure": "failed"}.get(kind, kind)
                    message = f"{node.get('message', '')}\n{node.text or ''}"
                    break
            out[case.get("name", "")] = Outcome(outcome, message)
        return out

    def report(self) -> dict[str, Any]:
        with open(self.project / "report.json", encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return data


def alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not) and is the process that had ``start``."""
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start is None or stat[2] == start


class Project:
    """A throwaway pytest project with a darklaunch.yaml."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "project"
        self.dir.mkdir()
        self.tmpdir = root / "tmp"
        self.tmpdir.mkdir()
        self.runs: list[Run] = []
        (self.dir / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def spec(
        self,
        *,
        objectives: Sequence[Mapping[str, Any]] = ({"metric": "error-rate", "upper": 0.01},),
        iterations: int = 6,
        rate: float = 100,
        live: Mapping[str, Any] | None = None,
        dark: Mapping[str, Any] | None = None,
        traffic: Mapping[str, Any] | None = None,
    ) -> None:
        raw = {
            "target": "default/sample-app",
            "versions": {
                "live": dict(live or {"env": WELL_BEHAVED}),
                "dark": dict(dark or {"env": WELL_BEHAVED}),
            },
            "mirror": {"percent": 40, "host": "customdomain.com"},
            "traffic": {"rate": rate, **(traffic or {})},
            "duration": {"interval": "1s", "iterations": iterations},
            "objectives": [dict(o) for o in objectives],
        }
        self.write("darklaunch.yaml", yaml.safe_dump(raw, sort_keys=False))

    def script(self, name: str, text: str) -> list[str]:
        """Write an app script; returns the start of its command line."""
        return [sys.executable, str(self.write(name, text))]

    def start(
        self, *args: str, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()
    ) -> Run:
        tag = uuid.uuid4().hex
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        environ.update(
            TMPDIR=str(self.tmpdir), PYTHONUNBUFFERED="1", **{TAG_VAR: tag}, **(env or {})
        )
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--junitxml={self.dir / 'junit.xml'}",
            f"--darklaunch-report={self.dir / 'report.json'}",
            "-rA",
            *args,
        ]
        popen = subprocess.Popen(  # noqa: S603 - argv list
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            text=True,
            errors="replace",
        )
        run = Run(self.dir, self.tmpdir, tag, popen)
        run.begin()
        self.runs.append(run)
        return run

    def run(self, *args: str, **kwargs: Any) -> tuple[Run, int]:
        run = self.start(*args, **kwargs)
        return run, run.finish()


def project_at(root: Path) -> Iterator[Project]:
    """A :class:`Project` under ``root``; afterwards no run of it may still be going."""
    made = Project(root)
    yield made
    for run in made.runs:  # a failed test must not leave a run going
        if run.popen.poll() is None or run.leftovers():
            run.kill()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    yield from project_at(tmp_path)


def assert_clean_exit(run: Run, code: int, expected: int = 1) -> None:
    assert "INTERNALERROR" not in run.output
    assert code == expected, f"exit code {code}, expected {expected}"


# -- faults of the dark version ---------------------------------------------------------------


def test_dark_crashing_mid_run_fails_error_rate_on_envoys_503s(project: Project) -> None:
    budget = 40  # about 1 s of the 40 requests/s dark gets
    crash = project.script("crashing_app.py", CRASHING_APP)
    project.spec(
        dark={"command": [*crash, "{port}", str(budget)]},
        objectives=[{"metric": "error-rate", "upper": 0.01}],
        iterations=12,
    )
    project.write("test_dark.py", FIXTURE_TESTS)

    run, code = project.run()

    assert_clean_exit(run, code)
    outcomes = run.outcomes()
    assert outcomes["test_unrelated"].outcome == "passed"
    failed = outcomes["test_objective[error-rate]"]
    assert failed.outcome == "failed"
    assert "darklaunch objective FAILED: error-rate <= 0.01" in failed.message
    # Every request dark did not answer is an error: Envoy's own 503 once dark was gone.
    report = run.report()
    verdict = report["verdicts"][0]
    assert verdict["outcome"] == "fail" and verdict["live_value"] == 0.0
    answered = verdict["samples"] - round(verdict["value"] * verdict["samples"])
    assert budget - 3 <= answered <= budget, verdict
    assert verdict["samples"] > 2 * budget
    # ...and the message says what those errors were: Envoy's 503s, dark stopped answering.
    assert "503" in failed.message, failed.message
    # Live was never affected: the client saw no error.
    assert report["generator"]["errors"] == 0
    # The run ended by itself, promptly, and left nothing behind.
    assert run.elapsed_s < 40
    run.assert_nothing_left()


def test_dark_hanging_times_out_requests_as_errors_and_ends_on_time(project: Project) -> None:
    hang = project.script("hanging_app.py", HANGING_APP)
    iterations = 10
    project.spec(
        dark={"command": [*hang, "{port}"]},
        traffic={"timeout": "500ms"},
        objectives=[{"metric": "error-rate", "upper": 0.01}],
        iterations=iterations,
    )
    project.write("test_dark.py", FIXTURE_TESTS)

    run, code = project.run()

    assert_clean_exit(run, code)
    outcomes = run.outcomes()
    assert outcomes["test_unrelated"].outcome == "passed"
    failed = outcomes["test_objective[error-rate]"]
    assert failed.outcome == "failed"
    assert "darklaunch objective FAILED: error-rate <= 0.01" in failed.message
    report = run.report()
    verdict = report["verdicts"][0]
    assert verdict["outcome"] == "fail"
    # Every mirrored request timed out and was counted within the 500 ms: all of dark's
    # requests are errors, and (a verdict at all means the mirror check passed) dark's count
    # kept up with its share of live's.
    assert verdict["value"] == 1.0 and verdict["samples"] >= 20
    assert verdict["live_value"] == 0.0 and report["generator"]["errors"] == 0
    # On time: within the planned intervals plus Prometheus' first scrape (about 5 s).
    assert report["stage"] == "completed"
    assert report["finished_at"] - report["started_at"] < iterations * 1.0 + 8.0
    assert run.elapsed_s < 40
    run.assert_nothing_left()


# -- faults of the stack ----------------------------------------------------------------------


def test_live_never_ready_fails_provisioning_before_any_traffic(project: Project) -> None:
    crash = "import sys; print('live: cannot open database', file=sys.stderr); sys.exit(3)"
    dark_log = project.dir / "dark-requests.jsonl"
    project.spec(
        live={"command": [sys.executable, "-c", crash, "{port}"]},
        dark={"env": {**WELL_BEHAVED, "SAMPLEAPP_LOG": str(dark_log)}},
    )
    project.write("test_dark.py", FIXTURE_TESTS)

    run, code = project.run()

    assert_clean_exit(run, code)
    outcomes = run.outcomes()
    assert outcomes["test_unrelated"].outcome == "passed"
    # The tests that need the experiment cannot run: they error, with the provisioning error.
    errored = outcomes["test_objective[error-rate]"]
    assert errored.outcome == "error", errored
    first = errored.message.strip().splitlines()[0]
    assert re.search(r"provisioning failed: live exited before live answering on port \d+", first)
    assert "exited with status 3" in errored.message
    assert "live: cannot open database" in errored.message  # the tail of live's log
    # The terminal summary says it too.
    assert any(
        line.strip().startswith("error") and "provisioning failed: live exited" in line
        for line in run.stdout
    )
    # Before any traffic: dark never saw a request, the generator never sent one.
    assert not dark_log.exists() or dark_log.read_text(encoding="utf-8") == ""
    assert run.report()["generator"]["sent"] in (None, 0)
    assert len(run.pids) == 5  # everything had been started...
    run.assert_nothing_left()  # ...and is gone again
    assert_logs_kept_where_named(run, errored.message)


def test_prometheus_killed_mid_run_fails_dependent_tests_with_metrics_error(
    project: Project,
) -> None:
    project.spec(objectives=[{"metric": "error-rate", "upper": 0.01}], iterations=10)
    project.write(
        "test_dark.py",
        FIXTURE_TESTS
        + textwrap.dedent(
            """

            import pytest_darklaunch

            def test_module_helper():
                pytest_darklaunch.assert_objective("mean-latency", upper=1000)
            """
        ),
    )
    # Even where inconclusive objectives are skipped, a failed experiment must fail its tests.
    run = project.start("--darklaunch-full-duration", "--darklaunch-inconclusive=skip")
    run.wait_for_pids()
    run.wait_for_line(PROGRESS % 10)
    prometheus = [p for p in run.pids if "prometheus" in cmdline(p).split()[0]]
    assert len(prometheus) == 1, {p: cmdline(p) for p in run.pids}
    os.kill(prometheus[0], signal.SIGKILL)
    code = run.finish()

    assert_clean_exit(run, code)
    outcomes = run.outcomes()
    assert outcomes["test_unrelated"].outcome == "passed"
    for name in ("test_objective[error-rate]", "test_module_helper"):
        failed = outcomes[name]
        assert failed.outcome == "failed", (name, failed)
        message = failed.message
        assert "Prometheus did not answer within the 10 s retry deadline" in message
        assert re.search(r"url=http://127\.0\.0\.1:\d+/api/v1/query", message)
        assert "query='" in message and "envoy_" in message
        assert re.search(r"last error: ConnectionError", message)
    report = run.report()
    assert report["stage"] == "failed"
    assert "Prometheus did not answer" in (report["error"] or "")
    run.assert_nothing_left()


# Breaks the config the plugin generates, as a bug in the renderer would. Envoy refuses each
# differently: an unknown enum value is named at the end of its log, an out-of-range duration
# in the first line, before a dump of the whole config (some 900 lines).
ENVOY_BREAKER = """
import pytest_darklaunch.backends.local.envoy as envoy

real = envoy.envoy_config


def broken(*args, **kwargs):
    config = real(*args, **kwargs)
    {edit}
    return config


envoy.envoy_config = broken
"""
ENVOY_BREAKS = {
    "unknown-enum": (
        'config["static_resources"]["clusters"][1]["type"] = "NO_SUCH_TYPE"',
        r"unknown enum value: 'NO_SUCH_TYPE'",
    ),
    "duration-out-of-range": (
        'config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]'
        '["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]'
        '["timeout"] = "1000000000000s"',
        r"duration\s+out\s+of\s+range",  # Envoy pads its words with spaces here
    ),
}


@pytest.mark.parametrize("break_", list(ENVOY_BREAKS))
def test_envoy_rejecting_its_config_fails_provisioning_with_its_reason(
    project: Project, break_: str
) -> None:
    """A generated config Envoy refuses: a provisioning error that says why (Envoy's own
    words, wherever they are in its log), before any traffic, nothing left behind."""
    edit, reason = ENVOY_BREAKS[break_]
    project.spec()
    project.write("conftest.py", ENVOY_BREAKER.replace("{edit}", edit))
    project.write("test_dark.py", FIXTURE_TESTS)

    run, code = project.run()

    assert_clean_exit(run, code)
    outcomes = run.outcomes()
    assert outcomes["test_unrelated"].outcome == "passed"
    errored = outcomes["test_objective[error-rate]"]
    assert "provisioning failed: envoy exited before Envoy ready" in errored.message
    assert re.search(reason, errored.message), errored.message[-1500:]
    assert errored.outcome == "error", errored
    assert run.report()["generator"]["sent"] in (None, 0)
    run.assert_nothing_left()
    assert_logs_kept_where_named(run, errored.message)


def assert_logs_kept_where_named(run: Run, message: str) -> Path:
    """The failed run's directory is kept, and the log its error names is in it."""
    (kept,) = run.kept()
    named = re.findall(r"log (\S+\.log), ", message)
    assert named and all(Path(p).is_file() and Path(p).is_relative_to(kept) for p in named)
    logs = f"  logs          kept, as for the newest 3 failed runs, in:\n{' ' * 16}{kept}\n"
    assert logs in run.output
    return kept


# Lets a version that never listens fail fast: the real deadline, shortened for the test.
READY_DEADLINE = """
import pytest_darklaunch.backends.local.launch as launch

launch.APP_READY_DEADLINE_S = 3.0
"""


def test_dark_never_listening_is_reported_once_and_its_log_kept(project: Project) -> None:
    """The first failure a newcomer meets: the setup error says it once (no chained second
    copy), the summary's Progress once, and the log it names is there afterwards."""
    never = "import sys, time; print('dark: warming caches', file=sys.stderr, flush=True); "
    project.spec(dark={"command": [sys.executable, "-c", never + "time.sleep(300)", "{port}"]})
    project.write("conftest.py", READY_DEADLINE)
    project.write("test_dark.py", FIXTURE_TESTS)

    run, code = project.run()

    assert_clean_exit(run, code)
    errored = run.outcomes()["test_objective[error-rate]"]
    assert errored.outcome == "error", errored
    assert re.search(r"dark answering on port \d+: not within 3 s", errored.message)
    assert "dark: warming caches" in errored.message  # the tail of dark's log
    # once per erroring test, never twice within one; pytest's own short summary repeats each
    # error's first line, cut to the terminal's width unless CI is set, so it is left out here
    shown = run.output.split("short test summary info", 1)[0]
    assert shown.count("provisioning failed") == 2  # the setup error, then Progress
    assert "During handling of the above exception" not in run.output
    progress = run.output.split("\nProgress\n", 1)[1].split("\nObjective assessment", 1)[0]
    assert progress.count("provisioning failed") == 1
    kept = assert_logs_kept_where_named(run, errored.message)
    assert (kept / "stack" / "dark.log").read_text().startswith("dark: warming caches")
    run.assert_nothing_left()  # every process is gone


def test_only_the_newest_failed_runs_are_kept(tmp_path: Path) -> None:
    """Failed runs' directories beside a new one: the oldest go, running runs' stay."""
    from pytest_darklaunch.session import KEPT_FAILED_RUNS, keep_failed_run

    failed = []
    for k in range(KEPT_FAILED_RUNS + 2):
        path = tmp_path / f"darklaunch-old{k}-x"
        path.mkdir()
        (path / FAILED_MARK).write_text("old failure\n")
        os.utime(path / FAILED_MARK, ns=(k * 10**9, k * 10**9))  # oldest first
        failed.append(path)
    running = tmp_path / "darklaunch-running-x"
    running.mkdir()
    unrelated = tmp_path / "other-dir"
    unrelated.mkdir()
    (tmp_path / "darklaunch-new-x").mkdir()

    keep_failed_run(str(tmp_path / "darklaunch-new-x"), "provisioning failed: ...")

    assert (tmp_path / "darklaunch-new-x" / FAILED_MARK).read_text() == "provisioning failed: ...\n"
    left = sorted(p.name for p in tmp_path.iterdir())
    newest = [p.name for p in failed[-(KEPT_FAILED_RUNS - 1) :]]
    assert left == sorted([*newest, "darklaunch-new-x", "darklaunch-running-x", "other-dir"])


def _generator_staleness(run: Run, observe_s: float) -> float:
    """The longest time, over ``observe_s`` seconds of the run, that the generator's stats file
    (``stack/traffic.json``) went without being replaced."""
    stats = Path(next(iter(run.workdirs))) / "stack" / "traffic.json"
    poll(stats.exists, "the generator's stats file", 20.0)
    worst = 0.0
    started = time.monotonic()

    def observed_long_enough() -> bool:
        nonlocal worst
        try:
            updated_at = json.loads(stats.read_text(encoding="utf-8"))["updated_at"]
        except (OSError, ValueError, KeyError):  # replaced meanwhile, or the run has ended
            return time.monotonic() - started >= observe_s
        worst = max(worst, time.time() - updated_at)
        return time.monotonic() - started >= observe_s

    poll(observed_long_enough, "observing the generator's stats file", observe_s + 5.0, 0.05)
    return worst


def test_generator_missing_its_rate_makes_objectives_inconclusive(project: Project) -> None:
    """On one CPU the generator cannot send 20000 requests/s: no objective may pass, each is
    inconclusive and says achieved vs target."""
    cpu = max(os.sched_getaffinity(0))
    project.spec(
        rate=20000,
        objectives=[
            {"metric": "error-rate", "upper": 0.5},
            {"metric": "mean-latency", "upper": 10000},
        ],
        iterations=6,
    )
    project.write("test_dark.py", FIXTURE_TESTS)

    run = project.start(prefix=("taskset", "-c", str(cpu)))
    run.wait_for_pids()
    staleness = _generator_staleness(run, observe_s=3.0)
    code = run.finish()

    assert_clean_exit(run, code)
    # Overloaded, the generator must still keep its books: its stats file is replaced about
    # every 0.5 s (and its SIGTERM handler runs), so what the reports show is current.
    assert staleness < 2.0, f"the generator's stats went {staleness:.1f} s without an update"
    outcomes = run.outcomes()
    assert outcomes["test_unrelated"].outcome == "passed"
    for metric in ("error-rate", "mean-latency"):
        result = outcomes[f"test_objective[{metric}]"]
        assert result.outcome == "failed", result
        assert "darklaunch objective INCONCLUSIVE" in result.message
        found = re.search(
            r"the generator achieved ([0-9.]+) requests/s of the 20000 requests/s target",
            result.message,
        )
        assert found, result.message
        assert float(found.group(1)) < 0.9 * 20000
    report = run.report()
    assert {v["outcome"] for v in report["verdicts"]} == {"inconclusive"}
    # The generator's own figures must be true too: it sent at least every request dark got.
    generator = report["generator"]
    dark_requests = max(v["samples"] for v in report["verdicts"])
    assert dark_requests > 0
    assert generator["sent"] >= dark_requests, generator
    assert 0 < generator["achieved_rps"] < 0.9 * 20000, generator
    run.assert_nothing_left()


# -- termination ------------------------------------------------------------------------------


def _interrupt_during_provisioning(project: Project) -> Run:
    never = project.script("never_ready.py", NEVER_READY_APP)
    project.spec(live={"command": [*never, "{port}"]})
    project.write("test_dark.py", FIXTURE_TESTS)
    run = project.start()
    run.wait_for_pids()  # everything started; provisioning waits for live to answer
    return run


def _interrupt_mid_experiment(project: Project) -> Run:
    project.spec(iterations=10)
    project.write("test_dark.py", FIXTURE_TESTS)
    run = project.start("--darklaunch-full-duration")
    run.wait_for_pids()
    run.wait_for_line(PROGRESS % 10)
    return run


def _interrupt_during_teardown(project: Project) -> Run:
    slow = project.script("slow_to_stop.py", SLOW_TO_STOP_APP)
    marker = project.dir / "dark-got-sigterm"
    project.spec(dark={"command": [*slow, "{port}", str(marker)]}, iterations=2)
    project.write("test_dark.py", FIXTURE_TESTS)
    run = project.start()
    run.wait_for_pids()
    poll(marker.exists, "dark receiving SIGTERM from the teardown", 40.0)
    return run


# Where to interrupt, and the stage the JSON report then records (None: no report, the
# session had not started when provisioning was interrupted).
POINTS: dict[str, tuple[Callable[[Project], Run], str | None]] = {
    "provisioning": (_interrupt_during_provisioning, None),
    "mid-experiment": (_interrupt_mid_experiment, "stopped"),
    "teardown": (_interrupt_during_teardown, "completed"),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", list(POINTS))
def test_signal_leaves_nothing_behind(project: Project, point: str, sig: int) -> None:
    reach, stage = POINTS[point]
    run = reach(project)
    pids = dict(run.pids)
    assert len(pids) == 5

    sent_at = time.monotonic()
    run.popen.send_signal(sig)
    run.assert_nothing_left(deadline_s=GONE_WITHIN_S)
    code = run.finish(deadline_s=sent_at - run.started + GONE_WITHIN_S)

    assert not [p for p, start in pids.items() if alive(p, start)]
    assert "INTERNALERROR" not in run.output
    assert code == 2, f"exit code {code}, expected 2 (interrupted)"
    assert "Traceback" not in run.output
    if stage is not None:
        assert run.report()["stage"] == stage
    run.assert_nothing_left()


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_of_pytest_leaves_nothing_behind(project: Project, point: str) -> None:
    """pytest killed outright (SIGKILL, the OOM killer) runs no teardown at all: the run's
    guardian sees pytest's end of its pipe close, stops every process of the ``pids`` file,
    itself last, and removes the run's directories."""
    reach, _ = POINTS[point]
    run = reach(project)
    pids = dict(run.pids)
    assert len(pids) == 5

    run.popen.kill()
    code = run.finish()
    run.assert_nothing_left(deadline_s=GONE_WITHIN_S)

    assert code == -signal.SIGKILL
    assert not [p for p, start in pids.items() if alive(p, start)]


def test_sigkill_of_the_xdist_controller_leaves_nothing_behind(project: Project) -> None:
    """With ``-n 2`` the controller owns the stack and its guardian; killed outright, the
    guardian cleans up and the workers, which lose their channel to it, end too (they carry the
    run's tag, so the leftover check counts them)."""
    project.spec(iterations=10)
    project.write("test_dark.py", FIXTURE_TESTS)
    run = project.start("-n", "2", "--darklaunch-full-duration")
    run.wait_for_pids()
    run.wait_for_line(PROGRESS % 10)
    # Besides pytest and the stack: the guardian and the two workers.
    others = set(tagged_pids(run.tag)) - set(run.pids) - {run.popen.pid}
    assert len(others) == 3, [cmdline(pid) for pid in others]

    run.popen.kill()
    code = run.finish()
    run.assert_nothing_left(deadline_s=GONE_WITHIN_S)

    assert code == -signal.SIGKILL
