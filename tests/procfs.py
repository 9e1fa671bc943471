"""What ``/proc`` says about processes: the tests' leak checks find what a run left this way."""

from __future__ import annotations

import os
from collections.abc import Callable


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent PID, start time in clock ticks)`` of ``pid``; ``None`` when it does not
    exist (a zombie exists, in state ``Z``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def processes_whose_environ(match: Callable[[bytes], bool]) -> dict[int, int]:
    """PID -> start time of every running process whose environment matches: ``match`` gets it
    as ``b"\\0NAME=value\\0NAME=value..."`` (a leading NUL, so ``b"\\0NAME="`` finds a name)."""
    found: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = b"\0" + handle.read()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        stat = proc_stat(int(entry))
        if match(environ) and stat is not None and stat[0] not in ("Z", "X"):
            found[int(entry)] = stat[2]
    return found


def processes_with_env(name: str, value: str) -> list[int]:
    """Running processes whose environment has ``name=value``."""
    needle = f"\0{name}={value}\0".encode()
    return list(processes_whose_environ(lambda environ: needle in environ))
