"""The open-loop generator: holds its rate, measures from the due time, counts what fails."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.backends.local.counters import LogHistogram
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    free_port,
)
from tests.local.helpers import pid_alive, start_sampleapp, wait_for

GENERATOR = [sys.executable, "-m", "pytest_darklaunch.backends.local.generator"]


class Run:
    """One generator process and its stats file."""

    def __init__(self, proc: ManagedProcess, stats_path: Path) -> None:
        self.proc = proc
        self.stats_path = stats_path

    def stats(self) -> dict[str, Any]:
        with open(self.stats_path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return data

    def wait_measured(self, seconds: float) -> None:
        def enough() -> bool:
            return self.stats_path.exists() and self.stats()["measured_s"] >= seconds

        wait_for(enough, f"{seconds} s of measured traffic", deadline_s=seconds + 15)

    def stop(self) -> dict[str, Any]:
        self.proc.stop(grace_s=5)
        assert self.proc.popen.returncode == 0, self.proc.log_tail()
        return self.stats()


class Procs:
    """``app(*flags)`` starts a sample app and returns its URL; ``generator(url, rate, *flags)``
    starts a generator against it."""

    def __init__(self, app: Callable[..., str], generator: Callable[..., Run]) -> None:
        self.app = app
        self.generator = generator


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started: list[ManagedProcess] = []

    def app(*flags: str) -> str:
        proc, url = start_sampleapp(str(tmp_path / "app.log"), *flags)
        started.append(proc)
        return url

    def generator(url: str, rate: float, *flags: str) -> Run:
        stats = tmp_path / f"stats-{len(started)}.json"
        argv = [*GENERATOR, "--url", url, "--rate", str(rate), "--stats", str(stats), *flags]
        proc = ManagedProcess.start("generator", argv, log_path=str(tmp_path / "gen.log"))
        started.append(proc)
        return Run(proc, stats)

    yield Procs(app, generator)
    for proc in started:
        proc.stop()
    assert [p.pid for p in started if pid_alive(p.pid)] == []


def test_holds_200_rps_within_2_percent(procs: Procs) -> None:
    url = procs.app()
    run = procs.generator(url, 200, "--warmup", "0.5")
    run.wait_measured(3.0)
    stats = run.stop()

    assert abs(stats["achieved_rps"] - 200) / 200 < 0.02
    assert stats["sent"] == stats["ok"] >= 600
    assert stats["errors"] == stats["late"] == 0
    assert stats["warmup"]["sent"] == pytest.approx(100, abs=2)
    assert stats["lag_p99_ms"] < 20
    assert stats["stop_reason"] == "SIGTERM" and stats["running"] is False


def test_open_loop_rate_does_not_depend_on_server_latency(procs: Procs) -> None:
    """A closed loop with 64 connections would manage ~213 rps against 300 ms; open loop sends
    what is due, and the latency it reports includes the wait for a free connection."""
    url = procs.app("--latency-ms", "300")
    run = procs.generator(url, 100, "--connections", "64")
    run.wait_measured(2.5)
    stats = run.stop()

    assert abs(stats["achieved_rps"] - 100) / 100 < 0.02
    assert stats["errors"] == 0 and stats["late"] == 0
    assert stats["latency_p50_ms"] >= 300


def test_latency_from_due_time_includes_queueing(procs: Procs) -> None:
    """Two connections, 100 ms each, 50 requests/s due: the server can do 20/s, so requests
    queue; each one's latency counts from when it was due (no coordinated omission)."""
    url = procs.app("--latency-ms", "100")
    run = procs.generator(url, 50, "--connections", "2", "--timeout", "30")
    run.wait_measured(2.0)
    stats = run.stop()

    assert stats["latency_p99_ms"] > 1000  # a closed loop would report ~100 ms
    assert stats["errors"] == 0


def test_counts_connection_errors_and_timeouts(procs: Procs) -> None:
    refused = procs.generator(f"http://127.0.0.1:{free_port()}", 100)
    slow = procs.generator(procs.app("--latency-ms", "2000"), 50, "--timeout", "0.2")
    refused.wait_measured(1.0)
    slow.wait_measured(1.5)
    refused_stats, slow_stats = refused.stop(), slow.stop()

    assert refused_stats["sent"] >= 100
    assert refused_stats["errors"] == refused_stats["connection_errors"] == refused_stats["sent"]
    assert slow_stats["timeouts"] >= 50
    assert slow_stats["errors"] == slow_stats["timeouts"]  # cancelled at stop: not errors
    assert slow_stats["ok"] == 0


def test_stops_itself_at_max_duration_and_when_parent_is_gone(
    procs: Procs, tmp_path: Path
) -> None:
    url = procs.app()
    bounded = procs.generator(url, 50, "--max-duration", "0.5")
    bounded.proc.popen.wait(timeout=15)
    assert bounded.stats()["stop_reason"] == "max duration reached"
    assert bounded.stats()["warmup"]["sent"] + bounded.stats()["sent"] == 25

    orphan = procs.generator(url, 50, "--parent-pid", str(os.getpid() + 10_000_000))
    orphan.proc.popen.wait(timeout=15)
    assert orphan.stats()["stop_reason"] == "parent process exited"


def test_url_from_stdin_and_sigint(tmp_path: Path, procs: Procs) -> None:
    url = procs.app()
    stats = tmp_path / "stdin.json"
    proc = ManagedProcess.start(
        "generator", [*GENERATOR, "--url", "-", "--rate", "20", "--stats", str(stats)],
        log_path=str(tmp_path / "stdin.log"), stdin_pipe=True,
    )
    try:
        assert proc.popen.stdin is not None
        proc.popen.stdin.write(f"{url}\n".encode())
        proc.popen.stdin.close()
        wait_for(lambda: stats.exists() and json.loads(stats.read_text())["ok"] >= 5, "5 answers")
        os.kill(proc.pid, signal.SIGINT)
        proc.popen.wait(timeout=10)
    finally:
        proc.stop()
    final = json.loads(stats.read_text())
    assert final["stop_reason"] == "SIGINT" and final["url"] == url + "/"
    assert proc.popen.returncode == 0


def test_log_histogram_percentiles_within_one_percent() -> None:
    hist = LogHistogram()
    values = [0.0] * 10 + [0.05 * i for i in range(1, 991)]
    for value in values:
        hist.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        truth = ordered[int(q * len(values)) - 1]
        assert hist.percentile(q) == pytest.approx(truth, rel=0.011)
    assert hist.percentile(0.001) == 0.0
    assert LogHistogram().percentile(0.5) is None
