"""Helpers for pytester runs of the plugin on the real local stack.

Every stack a test starts lives under the test's own ``TMPDIR`` (the ``stack_tmp`` fixture):
the plugin's workdir is a ``tempfile.mkdtemp`` there, and every process of the run inherits
``TMPDIR``. So afterwards "nothing is left" is checkable exactly: no ``darklaunch-*`` directory
under it and no live process whose environment carries it. Leftovers are killed, then reported
as the test's error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.procfs import cmdline, processes_whose_environ

SEED_OBJECTIVES = (
    {"metric": "mean-latency", "upper": 50},
    {"metric": "95th-percentile-tail-latency", "upper": 100},
    {"metric": "error-rate", "upper": 0.01},
)
WELL_BEHAVED = {"SAMPLEAPP_LATENCY_MS": "5", "SAMPLEAPP_JITTER_MS": "2"}
RUN_TIMEOUT_S = 120.0


def spec_text(
    *,
    dark: Mapping[str, str] = WELL_BEHAVED,
    live: Mapping[str, str] = WELL_BEHAVED,
    mirror: float = 40,
    rate: float = 100,
    iterations: int = 10,
    objectives: Sequence[Mapping[str, Any]] = SEED_OBJECTIVES,
) -> str:
    """A darklaunch.yaml for the bundled sample app: 1 s intervals, 1 s warm-up."""
    return yaml.safe_dump({
        "target": "default/sample-app",
        "versions": {"live": {"env": dict(live)}, "dark": {"env": dict(dark)}},
        "mirror": {"percent": mirror, "host": "customdomain.com"},
        "traffic": {"rate": rate, "warmup": "1s"},
        "duration": {"interval": "1s", "iterations": iterations},
        "objectives": [dict(o) for o in objectives],
    }, sort_keys=False)


def processes_under(tmp: Path) -> list[int]:
    """PIDs of live (non-zombie) processes whose ``TMPDIR`` is ``tmp`` or below it."""
    prefix = f"\0TMPDIR={tmp}".encode()

    def under(environ: bytes) -> bool:
        at = environ.find(prefix)
        return at >= 0 and environ[at + len(prefix): at + len(prefix) + 1] in (b"\0", b"/")

    return list(processes_whose_environ(under))


def leftovers(tmp: Path) -> list[str]:
    """What runs under ``TMPDIR=tmp`` (or below) left: processes and darklaunch directories."""
    left = [f"pid {pid}: {cmdline(pid)}" for pid in processes_under(tmp)]
    left += [f"directory {p}" for p in sorted(tmp.rglob("darklaunch-*")) if p.is_dir()]
    return left


class Spawned:
    """A pytest run in a subprocess, started without waiting (several can run at once)."""

    def __init__(self, cwd: Path, args: Sequence[str], env: Mapping[str, str] | None = None):
        self.cwd = cwd
        self.out_path = cwd / "pytest-output.txt"
        # The outer run's xdist variables would make the inner processes look like workers.
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
        environ.update(env or {})
        self._started = time.monotonic()
        self._result: pytest.RunResult | None = None
        with open(self.out_path, "wb") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - argv list
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=environ,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def result(self, timeout_s: float = RUN_TIMEOUT_S) -> pytest.RunResult:
        """Wait for the run; its output (stdout and stderr merged) as a RunResult."""
        if self._result is None:
            ret = self.popen.wait(timeout=timeout_s)
            lines = self.out_path.read_text(errors="replace").splitlines()
            duration = time.monotonic() - self._started
            print(f"--- {self.cwd}: exit {ret} after {duration:.1f} s", *lines, sep="\n")
            self._result = pytest.RunResult(ret, lines, [], duration)
        return self._result

    def stop(self) -> None:
        """End a run still going as Ctrl-C would (its teardown runs), SIGKILL after 30 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def stack_tmp(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``TMPDIR`` for the pytest subprocesses of this test; nothing may be left afterwards."""
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    yield tmp
    left = leftovers(tmp)
    for pid in processes_under(tmp):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "the run left these behind (now killed):\n" + "\n".join(left)


@pytest.fixture
def spawn(stack_tmp: Path) -> Iterator[Callable[..., Spawned]]:
    """Start pytest runs (``spawn(cwd, args, env=None)``); any still going at the end of the
    test is interrupted, before ``stack_tmp`` checks what was left."""
    started: list[Spawned] = []

    def start(cwd: Path, args: Sequence[str], env: Mapping[str, str] | None = None) -> Spawned:
        started.append(Spawned(cwd, args, env))
        return started[-1]

    yield start
    for run in started:
        run.stop()
