"""Whose listener answers on a port: the /proc lookup against real sockets and processes, and
a stack handed a port that another program already serves (it must never measure that one)."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from pytest_darklaunch.backends.local import LocalBackend, listeners
from pytest_darklaunch.backends.local.launch import wait_for_app
from pytest_darklaunch.backends.local.listeners import Owner, owner, refuse_foreign
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    PortInUse,
    wait_until,
)
from pytest_darklaunch.backends.local.prometheus import wait_for_prometheus
from tests.local.helpers import SAMPLEAPP, make_spec, pid_alive


class Impostor(http.server.ThreadingHTTPServer):
    """Another program's HTTP server on 127.0.0.1, answering everything at once; counts."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests.append(self.path)
                body = b"impostor\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    server = Impostor()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A real process of ours that listens on nothing."""
    proc = ManagedProcess.start("sleeper", ["sleep", "60"], log_path=str(tmp_path / "s.log"))
    yield proc
    proc.stop()


def test_listeners_finds_this_process_socket_by_inode() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert listeners.listeners(port) == []  # bound, not listening
        sock.listen()
        assert listeners.listeners(port) == [
            listeners.Listener(inode=os.fstat(sock.fileno()).st_ino, uid=os.getuid())
        ]
        assert owner(port, os.getpid()) is Owner.OURS
    assert owner(port, os.getpid()) is Owner.NONE


def test_dual_stack_ipv6_listener_counts_for_127_0_0_1() -> None:
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert [x.inode for x in listeners.listeners(port) or []] == [
            os.fstat(sock.fileno()).st_ino
        ]


def test_listener_of_another_process_is_foreign(sleeper: ManagedProcess) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert owner(sock.getsockname()[1], sleeper.pid) is Owner.FOREIGN


def test_listener_of_a_descendant_in_its_own_session_is_ours(
    tmp_path: Path, sleeper: ManagedProcess
) -> None:
    # sh (the leader) -> python, which leaves the group (setsid) and then listens.
    port_file = tmp_path / "port"
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, socket, time
            os.setsid()
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
            with open({str(port_file)!r} + ".tmp", "w") as f:
                f.write(f"{{s.getsockname()[1]}} {{os.getpid()}}")
            os.rename({str(port_file)!r} + ".tmp", {str(port_file)!r})
            time.sleep(60)
            """
        )
    )
    # "; :" keeps sh alive as the parent (no exec of its last command).
    leader = ManagedProcess.start(
        "wrapper", ["sh", "-c", f'"{sys.executable}" "{script}"; :'],
        log_path=str(tmp_path / "w.log"),
    )

    def read_port() -> list[int]:
        if not port_file.exists():
            raise NotReady("no port file yet")
        return [int(x) for x in port_file.read_text().split()]

    try:
        port, child = wait_until(read_port, what="child listening", deadline_s=15, process=leader)
        try:
            assert child in listeners.process_tree(leader.pid)
            assert owner(port, leader.pid) is Owner.OURS
            assert owner(port, sleeper.pid) is Owner.FOREIGN
        finally:
            os.kill(child, signal.SIGKILL)  # it left the group: leader.stop() cannot reach it
    finally:
        leader.stop()


def test_app_probe_refuses_an_impostor_without_sending_it_a_request(
    impostor: Impostor, sleeper: ManagedProcess
) -> None:
    with pytest.raises(PortInUse, match=rf"port {impostor.port} is taken by another program "
                                        rf"\(pid {os.getpid()} "):
        wait_for_app("dark", impostor.port, sleeper)
    with pytest.raises(PortInUse, match=f"port {impostor.port} is taken"):
        wait_for_prometheus(sleeper, impostor.port)
    assert impostor.requests == []


def test_our_app_exited_on_the_taken_port_says_so(tmp_path: Path, impostor: Impostor) -> None:
    app = ManagedProcess.start(
        "dark", [*SAMPLEAPP, "--port", str(impostor.port)], log_path=str(tmp_path / "d.log")
    )
    app.popen.wait(30)
    with pytest.raises(PortInUse) as raised:
        refuse_foreign(app, impostor.port)
    app.stop()
    assert "exited: port" in str(raised.value)
    assert "address already in use" in str(raised.value).lower()
    assert impostor.requests == []


# A server that waits for its port to be free instead of exiting (as some do), then is the
# sample app: without the ownership check the probe would take the impostor's answer for dark's.
PATIENT = """
import os, socket, sys, time
while True:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        time.sleep(0.05)  # the app's own bind retry, as such servers do
app = [sys.executable, "-m", "pytest_darklaunch.sampleapp", "--port", sys.argv[1]]
os.execv(sys.executable, app)
"""


def test_stack_handed_a_served_port_runs_its_own_dark_elsewhere(
    stack: Callable[..., LocalBackend], monkeypatch: pytest.MonkeyPatch, impostor: Impostor
) -> None:
    from pytest_darklaunch.backends.local import stack as stack_module

    handed_out: list[int] = []
    real_free_port = stack_module.free_port

    def racy_free_port() -> int:
        # The second port handed out is dark's: another program serves it already.
        port = impostor.port if len(handed_out) == 1 else real_free_port()
        handed_out.append(port)
        return port

    monkeypatch.setattr(stack_module, "free_port", racy_free_port)
    dark = {"command": [sys.executable, "-c", PATIENT, "{port}"]}
    backend = stack(make_spec(traffic={"rate": 20}, versions={"dark": dark}))
    env = backend.provision()

    assert handed_out.count(impostor.port) == 1
    assert int(env.endpoints["dark"].rsplit(":", 1)[1]) != impostor.port
    assert requests.get(env.endpoints["dark"], timeout=2).text == "dark\n"
    first, second = backend.started_pids[:5], backend.started_pids[5:]
    assert len(second) == 5 and [pid for pid in first if pid_alive(pid)] == []
    assert impostor.requests == []
