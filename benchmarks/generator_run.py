"""The built-in generator as the benchmarks start it, and the wait for its measured phase.

Imported by the benchmark scripts beside it (run as ``python benchmarks/<name>.py``, their
folder is first on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pytest_darklaunch.backends.local.processes import ManagedProcess, NotReady, wait_until


def start_generator(
    url: str, rate: float, workdir: str, *, host: str | None = None,
    targets_path: str | None = None,
) -> tuple[ManagedProcess, str]:
    """The generator offering ``rate`` requests/s to ``url`` (1 s of warm-up, as many
    connections as the local backend gives it); the process and its stats file."""
    stats_path = os.path.join(workdir, "stats.json")
    argv = [
        sys.executable, "-m", "pytest_darklaunch.backends.local.generator",
        "--url", url, "--rate", f"{rate:g}", "--warmup", "1", "--stats", stats_path,
        "--connections", str(max(64, min(1024, int(rate * 0.5)))),
    ]
    if host:
        argv += ["--host", host]
    if targets_path:
        argv += ["--targets", targets_path]
    process = ManagedProcess.start("generator", argv,
                                   log_path=os.path.join(workdir, "generator.log"))
    return process, stats_path


def read_stats(stats_path: str) -> dict[str, Any]:
    with open(stats_path, encoding="utf-8") as handle:
        details: dict[str, Any] = json.load(handle)
    return details


def wait_measured(
    stats_path: str, seconds: float, *, process: ManagedProcess, deadline_s: float
) -> dict[str, Any]:
    """The generator's stats once it has measured ``seconds`` after its warm-up."""

    def measured() -> dict[str, Any]:
        try:
            details = read_stats(stats_path)
        except FileNotFoundError:
            raise NotReady("no stats yet") from None
        if details["measured_s"] < seconds:
            raise NotReady(f"measured {details['measured_s']} s")
        return details

    return wait_until(measured, what="traffic measured", deadline_s=deadline_s,
                      max_interval_s=0.2, process=process)


def with_cpu_share(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` with ``cpu_share``: the generator's CPU over its wall time."""
    wall = details["updated_at"] - details["started_at"]
    return {**details, "cpu_share": details["cpu_s"] / wall if wall > 0 else float("nan")}
