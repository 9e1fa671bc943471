"""Cleans up after a pytest run that ended without tearing down (SIGKILL, the OOM killer).

A backend starts the guardian before anything else (:meth:`Guardian.start`). pytest holds the
write end of the guardian's stdin and nothing else does. Teardown writes ``done``
(:meth:`Guardian.dismiss`): the guardian exits without touching anything. End of file without
``done`` means pytest is gone, and the guardian does what a teardown would have done:

- ``--pids FILE``: SIGTERM to the process group of every PID in the file, SIGKILL to what is
  left after ``--grace`` seconds (the local backend's apps, Envoy, Prometheus and generator);
- ``--then COMMAND...``: runs the command (the kubernetes backend's
  ``python -m pytest_darklaunch delete --run-id ...``);
- ``--remove DIR``: removes the run's directories, last.

A process forked from pytest without exec (``multiprocessing`` with the fork start method, a
test's own ``os.fork``) closes its inherited copy of the write end at once, so that pytest's
death still reaches the guardian while such a process lives on.

The guardian runs in its own session (a Ctrl-C in the terminal does not reach it). Its process
half (:func:`main`) needs only the standard library and runs as a script, ``python -I -S
guardian.py``, which starts in a few milliseconds (as a module of this package it would load
the package first):

    python -I -S .../backends/guardian.py --pids DIR/pids --remove DIR [--then COMMAND...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence

DONE = b"done"
GRACE_S = 3.0
THEN_TIMEOUT_S = 300.0
_POLL_S = 0.05

# Guardians this process started and has not dismissed; see _close_in_forked_child.
_LIVE: weakref.WeakSet[Guardian] = weakref.WeakSet()
_FORK_HOOK: list[bool] = []  # one element once the at-fork hook is registered


class Guardian:
    """A run's guardian process, as the backend that started it sees it."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    @classmethod
    def start(
        cls,
        log_path: str,
        *,
        pids_file: str | None = None,
        then: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> Guardian:
        """Start a guardian with what it must do should pytest die; its output goes to
        ``log_path``. It inherits this process's environment without the plugin's credentials,
        and this package on ``PYTHONPATH`` for a ``then`` command of the package's own."""
        from pytest_darklaunch.backends.base import child_environment, with_package_path

        argv = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
        if pids_file:
            argv += ["--pids", pids_file]
        for directory in remove:
            argv += ["--remove", directory]
        if then:
            argv += ["--then", *then]
        with open(log_path, "wb") as log:
            os.chmod(log_path, 0o600)
            popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
                argv,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=with_package_path(child_environment(None)),
                start_new_session=True,
                close_fds=True,
            )
        started = cls(popen)
        if not _FORK_HOOK:
            os.register_at_fork(after_in_child=_close_in_forked_child)
            _FORK_HOOK.append(True)
        _LIVE.add(started)
        return started

    @property
    def pid(self) -> int:
        return self.popen.pid

    def dismiss(self) -> None:
        """Tell the guardian the run was torn down; it exits without acting, and is reaped."""
        _LIVE.discard(self)
        stdin = self.popen.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):  # it may be gone already
                stdin.write(DONE)
                stdin.close()
        try:
            self.popen.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _close_in_forked_child() -> None:
    """In a child forked from this process: close the copies of the guardians' pipes, which
    would otherwise keep a guardian waiting for this child after pytest is gone."""
    for started in list(_LIVE):
        if started.popen.stdin is not None:
            with contextlib.suppress(OSError):
                started.popen.stdin.close()
    _LIVE.clear()


# -- the guardian process ----------------------------------------------------------------------


def read_pids(path: str) -> list[int]:
    """The PIDs in ``path`` (one per line); none when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [int(word) for word in handle.read().split() if word.isdigit()]
    except OSError:
        return []


def stop_groups(pids: Sequence[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM to each PID's process group, up to ``grace_s`` for all to end, then SIGKILL."""
    left = [pid for pid in pids if _signal_group(pid, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while left and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        left = [pid for pid in left if _signal_group(pid, 0)]
    for pid in left:
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> bool:
    """Signal the group ``pid`` leads; False when it no longer exists or is not ours."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _told_done() -> bool:
    """Read stdin until ``done`` (True) or end of file (False: pytest is gone)."""
    said = b""
    while DONE not in said:
        chunk = os.read(0, 64)
        if not chunk:
            return False
        said += chunk
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pids", help="file of the run's PIDs, one per line")
    parser.add_argument("--remove", action="append", default=[], help="directory to remove")
    parser.add_argument("--grace", type=float, default=GRACE_S, help="seconds before SIGKILL")
    parser.add_argument("--then", nargs=argparse.REMAINDER, default=[], help="command to run")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _told_done():
        return 0
    print("pytest ended without teardown: cleaning up", flush=True)
    status = 0
    if args.pids:
        stop_groups(read_pids(args.pids), args.grace)
    if args.then:
        try:
            status = subprocess.run(  # noqa: S603 - argv list from the backend
                args.then, stdin=subprocess.DEVNULL, timeout=THEN_TIMEOUT_S, check=False
            ).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"{' '.join(args.then)}: {exc}", flush=True)
            status = 1
    for directory in args.remove:
        shutil.rmtree(directory, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
