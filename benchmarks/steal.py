"""The host's CPU steal: what a virtual machine's host gave to others while a benchmark ran.

No mode of a benchmark causes it and every figure suffers from it, so the benchmarks print it
beside their rounds. Imported by the benchmark scripts beside it (run as ``python
benchmarks/<name>.py``, their folder is first on ``sys.path``).
"""

from __future__ import annotations

import os
import time


def steal_mark() -> tuple[float, float]:
    """Now: the CPU seconds stolen so far (all cores, from ``/proc/stat``), and the time."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()
    ticks = int(fields[8]) if len(fields) > 8 else 0
    return ticks / os.sysconf("SC_CLK_TCK"), time.monotonic()


def steal_share(mark: tuple[float, float]) -> float:
    """The share of the machine's CPU (all cores) stolen since ``mark``."""
    stolen, now = steal_mark()
    elapsed = now - mark[1]
    return (stolen - mark[0]) / elapsed / (os.cpu_count() or 1) if elapsed > 0 else 0.0
