"""The guardian on real processes: when pytest's end of its pipe closes without ``done`` it stops
a run's process groups, runs the backend's command and removes the run's directories; told
``done``, it touches nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_darklaunch.backends import guardian
from tests.local.helpers import pid_alive, wait_for

# A process group whose leader ignores SIGTERM and has a child: the guardian must SIGKILL the
# whole group after its grace period.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[str]]]:
    """Process-group leaders started for a test; killed and reaped afterwards, whatever
    happened."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def start_group(
    groups: list[subprocess.Popen[str]], code: str, *args: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(  # noqa: S603 - argv list
        [sys.executable, "-c", code, *args],
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    groups.append(proc)
    return proc


def start_guardian(
    pids_file: Path, *remove: Path, grace_s: float = 0.5, then: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-I", "-S", guardian.__file__, "--pids", str(pids_file),
            "--grace", str(grace_s)]
    for directory in remove:
        argv += ["--remove", str(directory)]
    if then:
        argv += ["--then", *then]
    return subprocess.Popen(  # noqa: S603 - argv list
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
    )


def marker_command(path: Path) -> tuple[str, ...]:
    """A command that records that it ran, with its arguments, in ``path``."""
    code = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))"
    return (sys.executable, "-c", code, str(path), "--run-id", "r1")


def test_pipe_closed_without_done_stops_every_group_and_removes_the_dirs(
    tmp_path: Path, groups: list[subprocess.Popen[str]]
) -> None:
    polite = start_group(groups, "import time; time.sleep(60)")
    stubborn = start_group(groups, STUBBORN)
    assert stubborn.stdout is not None
    grandchild = int(stubborn.stdout.readline())
    run_dir = tmp_path / "darklaunch-run"
    (run_dir / "stack").mkdir(parents=True)
    pids_file = run_dir / "stack" / "pids"
    pids_file.write_text(f"{polite.pid}\n{stubborn.pid}\n", encoding="utf-8")
    watcher = start_guardian(pids_file, run_dir / "stack", run_dir)

    assert watcher.stdin is not None
    watcher.stdin.close()  # what pytest's death does to the pipe

    assert watcher.wait(timeout=10) == 0
    wait_for(lambda: polite.poll() is not None, "the process that obeys SIGTERM ended")
    wait_for(lambda: stubborn.poll() is not None, "the process that ignores SIGTERM ended")
    assert polite.returncode == -15 and stubborn.returncode == -9
    wait_for(lambda: not pid_alive(grandchild), "its child, in its group, ended too")
    assert not run_dir.exists()


def test_done_leaves_everything_alone(
    tmp_path: Path, groups: list[subprocess.Popen[str]]
) -> None:
    sleeper = start_group(groups, "import time; time.sleep(60)")
    pids_file = tmp_path / "pids"
    pids_file.write_text(f"{sleeper.pid}\n", encoding="utf-8")
    marker = tmp_path / "then-ran"
    watcher = start_guardian(pids_file, tmp_path, then=marker_command(marker))

    watcher.communicate(guardian.DONE, timeout=10)

    assert watcher.returncode == 0
    assert sleeper.poll() is None and pids_file.exists() and not marker.exists()


def test_done_is_enough_while_another_process_holds_the_pipe(tmp_path: Path) -> None:
    """A process forked by a test inherits pytest's end of the pipe: ``done`` must still end
    the guardian at teardown, without waiting for end of file."""
    watcher = start_guardian(tmp_path / "pids", tmp_path)
    assert watcher.stdin is not None
    held = os.dup(watcher.stdin.fileno())  # the forked process's copy
    try:
        watcher.stdin.write(guardian.DONE)
        watcher.stdin.flush()
        assert watcher.wait(timeout=10) == 0
    finally:
        os.close(held)
        watcher.stdin.close()
    assert tmp_path.exists()


# A pytest stand-in: starts a guardian for a process group, forks a process that lives on (as a
# test's multiprocessing worker would), and dies by SIGKILL.
FORKS_AND_DIES = (
    "import os, signal, sys, time\n"
    "from pytest_darklaunch.backends.guardian import Guardian\n"
    "started = Guardian.start(sys.argv[1], pids_file=sys.argv[2], remove=[sys.argv[3]])\n"
    "child = os.fork()\n"
    "if child == 0:\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "print(child, started.pid, flush=True)\n"
    "os.kill(os.getpid(), signal.SIGKILL)\n"
)


def test_a_forked_process_living_on_does_not_hold_the_guardian_back(
    tmp_path: Path, groups: list[subprocess.Popen[str]]
) -> None:
    """The forked child closes its copy of the pipe at once: pytest's death reaches the
    guardian while the child still runs."""
    sleeper = start_group(groups, "import time; time.sleep(60)")
    run_dir = tmp_path / "darklaunch-run"
    run_dir.mkdir()
    pids_file = run_dir / "pids"
    pids_file.write_text(f"{sleeper.pid}\n", encoding="utf-8")
    dying = start_group(
        groups, FORKS_AND_DIES, str(tmp_path / "guardian.log"), str(pids_file), str(run_dir)
    )
    assert dying.stdout is not None
    forked, watcher = (int(word) for word in dying.stdout.readline().split())
    try:
        assert dying.wait(timeout=10) == -9
        wait_for(lambda: sleeper.poll() is not None, "the run's process group stopped")
        wait_for(lambda: not run_dir.exists(), "the run's directory removed")
        wait_for(lambda: not pid_alive(watcher), "the guardian ended")
        assert pid_alive(forked), "the forked process was to live on"
    finally:
        if pid_alive(forked):
            os.kill(forked, signal.SIGKILL)


def test_then_runs_the_backends_command_before_removing_the_dirs(tmp_path: Path) -> None:
    """The kubernetes backend's cleanup is a command (``python -m pytest_darklaunch delete``)."""
    run_dir = tmp_path / "darklaunch-run"
    run_dir.mkdir()
    marker = tmp_path / "then-ran"
    watcher = start_guardian(run_dir / "pids", run_dir, then=marker_command(marker))

    watcher.communicate(b"", timeout=10)

    assert watcher.returncode == 0
    assert marker.read_text() == "--run-id r1"
    assert not run_dir.exists()


def test_launcher_dismisses_and_reaps(tmp_path: Path) -> None:
    """What a backend uses: start with a log, dismiss at teardown; nothing is touched."""
    marker = tmp_path / "then-ran"
    started = guardian.Guardian.start(
        str(tmp_path / "guardian.log"), then=marker_command(marker), remove=[str(tmp_path)]
    )
    assert pid_alive(started.pid)

    started.dismiss()

    assert started.popen.returncode == 0 and not pid_alive(started.pid)
    assert not marker.exists() and tmp_path.exists()
    assert (tmp_path / "guardian.log").stat().st_mode & 0o777 == 0o600


def test_missing_pids_file_still_removes_the_dirs(tmp_path: Path) -> None:
    """pytest may die before the first process was recorded."""
    run_dir = tmp_path / "darklaunch-run"
    run_dir.mkdir()
    watcher = start_guardian(run_dir / "pids", run_dir)

    watcher.communicate(b"", timeout=10)

    assert watcher.returncode == 0 and not run_dir.exists()


def test_read_pids_skips_what_is_not_a_pid(tmp_path: Path) -> None:
    path = tmp_path / "pids"
    path.write_text("12\n\nabc\n34\n", encoding="utf-8")
    assert guardian.read_pids(str(path)) == [12, 34]
    assert guardian.read_pids(str(tmp_path / "missing")) == []
