"""Process lifecycle for the local backend: start, wait until ready, stop, reap.

Every process is started from an argv list (never a shell) in its own session, so that it and
anything it forks form one process group that is stopped as a whole: SIGTERM to the group, a
grace period, then SIGKILL, and the leader is always reaped. Its stdout and stderr go to one
log file whose tail goes into every error about it.

>>> proc = ManagedProcess.start("sleeper", ["sleep", "30"], log_path="s.log")  # doctest: +SKIP
>>> proc.alive()                                                             # doctest: +SKIP
True
>>> proc.stop()                                                              # doctest: +SKIP
>>> proc.alive()                                                             # doctest: +SKIP
False
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from pytest_darklaunch.backends.base import child_environment
from pytest_darklaunch.errors import ProvisioningError

T = TypeVar("T")

STOP_GRACE_S = 3.0
LOG_TAIL_LINES = 15
_IN_USE_MARKERS = ("address already in use", "errno 98", "eaddrinuse")


# Processes left running on purpose (--darklaunch-keep): their handles live as long as the
# interpreter, so that Python neither warns about them nor reaps them behind the user's back.
_DETACHED: list[subprocess.Popen[bytes]] = []


class PortInUse(ProvisioningError):
    """A server could not bind the port it was given: another process took it meanwhile."""


class ProcessExited(ProvisioningError):
    """A process ended while it was being waited for."""


class NotReady(Exception):
    """Raised (and retried) while a process does not answer yet; carries the last state."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice).

    For servers that need their port on the command line: the port is released before the
    server binds it, so the caller retries with another port when :class:`PortInUse` is raised.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_private_dir(path: str) -> str:
    """Create ``path`` (and parents) readable by the current user only (mode 0700)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that it is empty or missing."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16_384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc.strerror})"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(log is empty)"


_ERROR_MARKERS = ("[critical]", "[error]", "error:", "exception", "traceback")


def first_errors(path: str, limit: int = 3) -> list[str]:
    """The first lines of a log that name an error (a program may dump pages after its reason)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(262_144).decode("utf-8", errors="replace")
    except OSError:
        return []
    found = [
        line.strip()
        for line in text.splitlines()
        if any(marker in line.lower() for marker in _ERROR_MARKERS)
    ]
    return [line[:500] for line in found[:limit]]


@dataclass
class ManagedProcess:
    """One process this run started, as the leader of its own process group."""

    name: str
    argv: tuple[str, ...]
    log_path: str
    popen: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)
    _stopped: bool = False

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin_pipe: bool = False,
    ) -> ManagedProcess:
        """Start ``argv`` with stdout and stderr appended to ``log_path``.

        A missing or non-executable program is a :class:`ProvisioningError` naming it.
        """
        with open(log_path, "wb") as log:
            # The log is opened private; the child gets its own descriptor, ours closes here.
            os.chmod(log_path, 0o600)
            try:
                popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
                    list(argv),
                    stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=child_environment(env),
                    cwd=cwd,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise ProvisioningError(
                    f"could not start {name}: {argv[0]!r}: {exc.strerror or exc}"
                ) from exc
        return cls(name, tuple(argv), log_path, popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process still runs. Does not reap it: its PID and group stay reserved
        until :meth:`stop`, so a signal sent there can never reach an unrelated process."""
        if self._stopped:
            return False
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def exit_code(self) -> int | None:
        """The exit status once it has ended (negative: killed by that signal), else ``None``."""
        if self.alive():
            return None
        if self._stopped:
            return self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.popen.returncode
        if info is None:
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def failure(self, what: str) -> ProvisioningError:
        """An error saying ``what`` went wrong with this process, with its log tail."""
        status = self.exit_code()
        state = "still running" if status is None else f"exited with status {status}"
        last = self.log_tail()
        errors = [line for line in first_errors(self.log_path) if line not in last]
        reason = "first error lines:\n" + "\n".join(errors) + "\n" if errors else ""
        message = (
            f"{self.name} {what} ({state}; pid {self.pid}; command: {' '.join(self.argv)}); "
            f"log {self.log_path}, {reason}last lines:\n{last}"
        )
        if status is not None and any(m in self.log_tail().lower() for m in _IN_USE_MARKERS):
            return PortInUse(message)
        return ProcessExited(message) if status is not None else ProvisioningError(message)

    def detach(self) -> None:
        """Leave the process running beyond this run (``--darklaunch-keep``)."""
        if not self._stopped and self.popen not in _DETACHED:
            _DETACHED.append(self.popen)
            if self.popen.stdin is not None:
                self.popen.stdin.close()

    def terminate(self) -> None:
        """Send SIGTERM to the process group, without waiting (see :meth:`stop`)."""
        if not self._stopped:
            self._signal_group(signal.SIGTERM)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the group, up to ``grace_s`` to exit, then SIGKILL; always reaps.

        Idempotent. Children left in the group after the leader exited are killed too.
        """
        if self._stopped:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.popen.wait()
        finally:
            self._stopped = True
        # Stragglers that ignored SIGTERM: the group id outlives the leader while it has members.
        self._signal_group(signal.SIGKILL)
        if self.popen.stdin is not None:
            self.popen.stdin.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return  # the group is gone: nothing left to signal
        except PermissionError:
            return  # the group id now belongs to another user's process: not ours to signal


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while stopping processes, so a second Ctrl-C cannot leave orphans;
    a signal that arrived meanwhile is raised again right after, with the usual handler.

    Works by swapping the Python-level handlers (a signal mask would not do: any other thread
    may take the signal), so only in the main thread; elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: installed outside Python, cannot be restored
            previous[sig] = handler
            signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


def wait_until(
    probe: Callable[[], T],
    *,
    what: str,
    deadline_s: float,
    process: ManagedProcess | None = None,
    interval_s: float = 0.02,
    max_interval_s: float = 0.2,
) -> T:
    """Call ``probe`` until it returns instead of raising :class:`NotReady` (or ``OSError``).

    Stops at once, with the log tail, when ``process`` exits meanwhile; after ``deadline_s``
    raises a :class:`ProvisioningError` that carries the last observed state.
    """
    last: dict[str, Any] = {"state": "never probed"}

    def attempt() -> T:
        if process is not None and not process.alive():
            raise process.failure(f"exited before {what}")
        try:
            return probe()
        except (NotReady, OSError) as exc:
            last["state"] = f"{type(exc).__name__}: {exc}"
            raise NotReady(last["state"]) from exc

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotReady),
        stop=tenacity.stop_after_delay(deadline_s),
        wait=tenacity.wait_exponential(multiplier=interval_s, min=interval_s, max=max_interval_s),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except tenacity.RetryError as exc:
        message = f"{what}: not within {deadline_s:g} s; last state: {last['state']}"
        if process is not None:
            raise process.failure(f"timed out waiting: {message}") from exc
        raise ProvisioningError(message) from exc


def stop_all(processes: Sequence[ManagedProcess], grace_s: float = STOP_GRACE_S) -> None:
    """Stop ``processes`` in order: all are sent SIGTERM first, then each is waited for."""
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.stop(grace_s)
