"""Stops a local run's processes when pytest dies without tearing down (SIGKILL, OOM killer).

pytest holds the write end of this process's stdin and nothing else does. A teardown writes
``done`` and closes it: the guardian exits without touching anything. End of file without
``done`` means pytest is gone: SIGTERM to the process group of every PID in the run's ``pids``
file, SIGKILL to what is left after a grace period, then the run's directories are removed.

The guardian runs in its own session (a Ctrl-C in the terminal does not reach it). It needs
only the standard library and is run as a script, ``python -I -S guardian.py``, which starts in
a few milliseconds (as a module of this package it would load the whole local backend first):

    python -I -S .../backends/local/guardian.py --pids DIR/pids --remove DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence

DONE = b"done"
GRACE_S = 3.0
_POLL_S = 0.05


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pids", required=True, help="file of the run's PIDs, one per line")
    parser.add_argument("--remove", action="append", default=[], help="directory to remove")
    parser.add_argument("--grace", type=float, default=GRACE_S, help="seconds before SIGKILL")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    said = sys.stdin.buffer.read()  # until pytest closes the pipe, or dies
    if said.strip() == DONE:
        return 0
    stop_groups(read_pids(args.pids), args.grace)
    for directory in args.remove:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"pytest ended without teardown: stopped the processes in {args.pids}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
