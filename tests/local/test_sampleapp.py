"""The bundled sample app: each knob does what it says, as a flag and as an env variable."""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    free_port,
    wait_until,
)
from pytest_darklaunch.sampleapp import Knobs, parse_args
from tests.local.helpers import (
    SAMPLEAPP,
    binomial_acceptance,
    pid_alive,
    read_jsonl,
    start_sampleapp,
)

Serve = Callable[..., str]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start sample apps with the given flags and env; stop them after the test."""
    procs: list[ManagedProcess] = []

    def start(*flags: str, env: dict[str, str] | None = None) -> str:
        proc, url = start_sampleapp(str(tmp_path / f"app-{len(procs)}.log"), *flags, env=env)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        proc.stop()
    assert [p.pid for p in procs if pid_alive(p.pid)] == []


def timed_get(session: requests.Session, url: str) -> tuple[float, requests.Response]:
    start = time.perf_counter()
    response = session.get(url, timeout=5)
    return (time.perf_counter() - start) * 1000, response


def test_answers_its_version_name(serve: Serve) -> None:
    assert requests.get(serve(env={"T_VERSION": "blue"}), timeout=2).text == "blue\n"
    # A flag wins over its environment variable.
    url = serve("--version", "green", env={"T_VERSION": "blue"})
    assert requests.get(f"{url}/any/path?x=1", timeout=2).text == "green\n"


def test_fixed_latency_and_jitter(serve: Serve, tmp_path: Path) -> None:
    log = tmp_path / "latency.jsonl"
    url = serve("--latency-ms", "40", "--jitter-ms", "20", "--seed", "1", "--log", str(log))
    with requests.Session() as session:
        measured = [timed_get(session, url)[0] for _ in range(30)]

    logged = [line["latency_ms"] for line in read_jsonl(log)]
    assert len(logged) == 30
    assert min(logged) >= 40 and max(logged) < 40 + 20 + 15
    assert max(logged) - min(logged) > 5  # the jitter is there
    assert min(measured) >= 40
    assert 45 < statistics.mean(measured) < 40 + 10 + 25


def test_slow_tail_share(serve: Serve) -> None:
    url = serve(env={"SAMPLEAPP_SLOW_SHARE": "0.5", "SAMPLEAPP_SLOW_MS": "60",
                     "SAMPLEAPP_SEED": "11"})
    with requests.Session() as session:
        measured = [timed_get(session, url)[0] for _ in range(60)]

    slow = sum(1 for ms in measured if ms >= 60)
    assert 15 <= slow <= 45
    assert sum(1 for ms in measured if ms < 30) == 60 - slow


def test_slow_path_makes_only_matching_paths_slow(serve: Serve, tmp_path: Path) -> None:
    log = tmp_path / "paths.jsonl"
    url = serve(env={"SAMPLEAPP_SLOW_PATH": "^/upload(/.*)?$", "SAMPLEAPP_SLOW_MS": "60",
                     "SAMPLEAPP_LOG": str(log)})
    with requests.Session() as session:
        for path in ("/upload", "/upload/7?x=1", "/uploads", "/", "/items/upload"):
            timed_get(session, url + path)
    by_path = {line["path"]: line["latency_ms"] for line in read_jsonl(log)}
    assert by_path["/upload"] >= 60 and by_path["/upload/7"] >= 60
    assert max(by_path[p] for p in ("/uploads", "/", "/items/upload")) < 30


def test_error_share_and_status(serve: Serve, tmp_path: Path) -> None:
    always = serve(env={"SAMPLEAPP_ERROR_SHARE": "1", "SAMPLEAPP_ERROR_STATUS": "503"})
    with requests.Session() as session:
        assert {session.get(always, timeout=2).status_code for _ in range(20)} == {503}

    log = tmp_path / "errors.jsonl"
    some = serve("--error-share", "0.3", "--seed", "7", "--log", str(log))
    with requests.Session() as session:
        statuses = [session.get(some, timeout=2).status_code for _ in range(1000)]
    assert set(statuses) == {200, 500}
    low, high = binomial_acceptance(0.3, len(statuses))
    assert low <= statuses.count(500) / len(statuses) <= high
    assert [line["status"] for line in read_jsonl(log)] == statuses


def test_request_log_has_ground_truth_fields_and_skips_probes(
    serve: Serve, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    url = serve(env={"SAMPLEAPP_LOG": str(log)})
    requests.get(f"{url}/healthz", timeout=2).close()
    before = time.time()
    requests.get(f"{url}/x", headers={"x-request-id": "abc-1"}, timeout=2).close()
    body = bytes(range(256)) * 300  # 75 KiB, not text
    requests.put(f"{url}/up?a=1&b=2", data=body, timeout=2).close()

    lines = read_jsonl(log)
    assert len(lines) == 2
    line, put = lines
    assert set(line) == {
        "time", "arrived", "latency_ms", "status", "x-request-id", "host", "method", "path",
        "query", "body_bytes", "body_sha256",
    }
    assert line["x-request-id"] == "abc-1" and line["status"] == 200 and line["path"] == "/x"
    assert before <= line["arrived"] <= line["time"] <= time.time()
    assert (line["method"], line["body_bytes"]) == ("GET", 0)
    assert (put["method"], put["path"], put["query"]) == ("PUT", "/up", "a=1&b=2")
    assert (put["body_bytes"], put["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_binds_loopback_only_and_exits_cleanly_on_sigterm(serve: Serve, tmp_path: Path) -> None:
    port = int(serve().rsplit(":", 1)[1])
    listening = []
    with open("/proc/net/tcp", encoding="utf-8") as handle:
        for row in handle.readlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:  # 0A: LISTEN
                listening.append(local.split(":")[0])
    assert listening == ["0100007F"]  # 127.0.0.1, little-endian hex

    proc = ManagedProcess.start(
        "sampleapp", [*SAMPLEAPP, "--port", str(free_port())], log_path=str(tmp_path / "t.log")
    )
    wait_until(lambda: _connectable(proc), what="app up", deadline_s=15, process=proc)
    started = time.monotonic()
    proc.stop(grace_s=10)
    assert proc.popen.returncode == 0
    assert time.monotonic() - started < 3


def _connectable(proc: ManagedProcess) -> None:
    port = proc.argv[proc.argv.index("--port") + 1]
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
    except requests.ConnectionError as exc:
        raise NotReady(str(exc)) from exc


def test_bad_environment_value_is_a_usage_error(tmp_path: Path) -> None:
    proc = ManagedProcess.start(
        "sampleapp", [*SAMPLEAPP, "--port", str(free_port())], log_path=str(tmp_path / "bad.log"),
        env={**os.environ, "SAMPLEAPP_ERROR_SHARE": "1.5"},
    )
    proc.popen.wait(timeout=15)
    proc.stop()
    assert proc.popen.returncode == 2
    assert "invalid SAMPLEAPP_ERROR_SHARE='1.5' (for --error-share)" in proc.log_tail()


def test_parse_args_precedence() -> None:
    port, knobs = parse_args(
        ["--port", "8080", "--latency-ms", "5", "--error-status", "503"],
        {"SAMPLEAPP_LATENCY_MS": "50", "SAMPLEAPP_JITTER_MS": "3", "SAMPLEAPP_SEED": "9",
         "SAMPLEAPP_LOG": ""},
    )
    assert port == 8080
    assert knobs == Knobs(latency_ms=5.0, jitter_ms=3.0, error_status=503, seed=9)
