"""Nothing leaked: a Prometheus token, a server on a public address, a readable temp dir.

Runs real pytest sessions on the local stack (the helpers of ``test_reliability``). What the
package scan in ``tests/test_package_hygiene.py`` covers (no ``shell=True``, no string-built
command lines, names validated) is not repeated here.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.test_reliability import (
    FIXTURE_TESTS,
    PROGRESS,
    Project,
    Run,
    cmdline,
    project_at,
)

TOKEN_VAR = "PYTEST_DARKLAUNCH_PROMETHEUS_TOKEN"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    yield from project_at(tmp_path)


# -- a Prometheus that answers badly, and echoes the credentials it got -----------------------


@dataclass
class FakePrometheus:
    """Answers every request the way ``mode`` says, quoting the Authorization header back (as
    a careless proxy or server might), and records what it was sent."""

    mode: str
    authorizations: list[str] = field(default_factory=list)
    server: Any = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, authorization: str) -> tuple[int, str, str]:
        echo = f"credentials {authorization!r} refused"
        if self.mode == "bad_data":
            body = json.dumps({"status": "error", "errorType": "bad_data", "error": echo})
            return 400, "application/json", body
        if self.mode == "unauthorized":
            return 401, "text/plain", echo
        if self.mode == "not-prometheus":
            return 200, "text/html", f"<html><body>login page: {echo}</body></html>"
        return 503, "text/plain", f"overloaded; {echo}"  # unavailable: retried, then fails


@pytest.fixture
def fake_prometheus(request: pytest.FixtureRequest) -> Iterator[FakePrometheus]:
    fake = FakePrometheus(request.param)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            authorization = self.headers.get("Authorization", "")
            fake.authorizations.append(authorization)
            status, kind, body = fake.answer(authorization)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, *args: Any) -> None:
            pass

    fake.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(5)


@pytest.mark.parametrize(
    "fake_prometheus",
    ["bad_data", "unauthorized", "not-prometheus", "unavailable"],
    indirect=True,
)
def test_prometheus_token_is_never_shown(project: Project, fake_prometheus: FakePrometheus) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    project.spec(iterations=6)
    project.write("test_dark.py", FIXTURE_TESTS)

    # Tracebacks with locals, every report: as much output as a user can ask for.
    run, code = project.run(
        f"--darklaunch-prometheus-url={fake_prometheus.url}",
        "--showlocals",
        "--tb=long",
        "-vv",
        env={TOKEN_VAR: token},
    )

    # The token was used...
    assert fake_prometheus.authorizations
    assert set(fake_prometheus.authorizations) == {f"Bearer {token}"}
    # ...the run failed because of the answers, naming the URL...
    assert code == 1 and "INTERNALERROR" not in run.output
    failed = run.outcomes()["test_objective[error-rate]"]
    assert failed.outcome == "failed"
    assert f"url={fake_prometheus.url}/api/v1/query" in failed.message
    # ...and the token appears nowhere: terminal, JSON report, JUnit XML.
    assert token not in run.output
    assert token not in (project.dir / "report.json").read_text(encoding="utf-8")
    assert token not in (project.dir / "junit.xml").read_text(encoding="utf-8")
    run.assert_nothing_left()


# -- the running stack ------------------------------------------------------------------------

_LISTEN = "0A"


def _listening_sockets() -> dict[int, str]:
    """inode -> local address of every listening TCP socket (IPv4 and IPv6)."""
    found: dict[int, str] = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(table, encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != _LISTEN:
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc/net/tcp* print each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found[int(fields[9])] = f"{socket.inet_ntop(family, raw)}:{int(hex_port, 16)}"
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        found = re.fullmatch(r"socket:\[(\d+)\]", target)
        if found:
            inodes.add(int(found.group(1)))
    return inodes


def _environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, str]]:
    """One run in mid-experiment (real Prometheus) with a Prometheus token in its environment,
    inspected by the tests below while its experiment goes on."""
    token = f"tok-{uuid.uuid4().hex}"
    stack = Project(tmp_path_factory.mktemp("running-stack"))
    stack.spec(iterations=12)
    stack.write("test_dark.py", FIXTURE_TESTS)
    run = stack.start("--darklaunch-full-duration", env={TOKEN_VAR: token})
    try:
        run.wait_for_pids()
        run.wait_for_line(PROGRESS % 12)
        yield run, token
        run.finish()
        run.assert_nothing_left()
    finally:
        if run.popen.poll() is None or run.leftovers():
            run.kill()


def test_every_server_of_the_run_listens_on_loopback_only(running_stack: tuple[Run, str]) -> None:
    run, _ = running_stack
    listening = _listening_sockets()
    by_process: dict[str, list[str]] = {}
    for pid in run.pids:
        name = os.path.basename(cmdline(pid).split()[0])
        if "python" in name:  # the apps and the generator: name them by module or script
            name = next((a for a in cmdline(pid).split()[1:] if not a.startswith("-")), name)
        addresses = [listening[i] for i in _socket_inodes(pid) if i in listening]
        by_process[f"{pid} {name}"] = addresses

    servers = {p: a for p, a in by_process.items() if a}
    # live, dark, Envoy (admin and listener) and Prometheus listen; the generator does not.
    assert len(servers) == 4, by_process
    assert sum(len(a) for a in servers.values()) >= 5, by_process
    public = {
        p: [a for a in addrs if not a.startswith("127.0.0.1:")] for p, addrs in servers.items()
    }
    assert not any(public.values()), f"listening beyond 127.0.0.1: {public}"


def test_credentials_stay_in_the_pytest_process(running_stack: tuple[Run, str]) -> None:
    """The apps under test (dark is new code), Envoy, Prometheus and the generator need no
    Prometheus credential: none of them may inherit it."""
    run, token = running_stack
    holders = [f"{pid} {cmdline(pid)[:80]}" for pid in run.pids if token.encode() in _environ(pid)]
    assert holders == [], f"processes given {TOKEN_VAR}: {holders}"


def test_the_run_directory_is_private(running_stack: tuple[Run, str]) -> None:
    run, _ = running_stack
    assert len(run.workdirs) == 1
    workdir = Path(next(iter(run.workdirs)))
    for path in (workdir, workdir / "stack"):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, f"{path}: {oct(info.st_mode)}"
        assert info.st_uid == os.getuid()
    logs = sorted((workdir / "stack").glob("*.log"))
    assert len(logs) >= 5
    for log in logs:
        assert stat.S_IMODE(log.stat().st_mode) & 0o077 == 0, f"{log}: {oct(log.stat().st_mode)}"
