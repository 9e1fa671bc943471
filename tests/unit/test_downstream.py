"""DownstreamWatch on canned Envoy counters and an injected clock (no I/O, no sleeps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_darklaunch.backends.local.external import (
    COMPLETED,
    OK_2XX,
    TOTAL,
    DownstreamWatch,
    command_environment,
)


class Command:
    """Stands in for the user's process: only whether it still runs is asked."""

    def __init__(self) -> None:
        self.status: int | None = None

    def alive(self) -> bool:
        return self.status is None

    def exit_code(self) -> int | None:
        return self.status


def watch(tmp_path: Path, samples: list[tuple[float, int, int, int]], warmup_s: float = 0.0):
    """A watch whose reads return ``(time, total, completed, 2xx)`` samples in turn."""
    feed = iter(samples)
    now = {"t": 0.0}

    def read(_admin: str) -> dict[str, int]:
        t, total, completed, ok = next(feed)
        now["t"] = t
        return {TOTAL: total, COMPLETED: completed, OK_2XX: ok}

    command = Command()
    w = DownstreamWatch(
        "127.0.0.1:1",
        str(tmp_path / "traffic.json"),
        50.0,
        warmup_s,
        command,  # type: ignore[arg-type]
        read=read,
        clock=lambda: now["t"],
    )
    return w, command


def stats_file(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "traffic.json").read_text())
    return data


def test_rate_is_the_count_between_two_samples_over_their_time(tmp_path: Path) -> None:
    # Warm-up 1 s: the first sample at or after t=1 is the base (t=1.1, 60 requests so far).
    w, _ = watch(
        tmp_path,
        [(0.0, 5, 5, 5), (0.5, 30, 30, 30), (1.1, 60, 59, 59), (3.1, 160, 158, 150)],
        warmup_s=1.0,
    )
    w.poll()
    w.poll()
    w.poll()
    stats = w.stats()
    assert (stats["measured_since"], stats["measured_until"]) == (1.1, 3.1)
    assert stats["sent"] == 100 and stats["achieved_rps"] == 50.0
    assert stats["errors"] == 99 - 91  # completed without a 2xx, as the generator counts
    assert stats["warmup"] == {"sent": 55} and stats["source"] == "proxy"


def test_the_command_exiting_is_the_stop_reason_and_the_file_is_kept(tmp_path: Path) -> None:
    w, command = watch(tmp_path, [(0.0, 0, 0, 0), (1.0, 40, 40, 40), (2.0, 80, 80, 80)])
    w.poll()
    command.status = 3
    w.poll()
    assert stats_file(tmp_path)["stop_reason"] == "the command exited with status 3"
    assert stats_file(tmp_path)["sent"] == 80


def test_command_environment_names() -> None:
    env = command_environment("http://127.0.0.1:9", "shop.example.com", 2.5, 629.6)
    assert env == {
        "DARKLAUNCH_URL": "http://127.0.0.1:9",
        "DARKLAUNCH_HOST": "shop.example.com",
        "DARKLAUNCH_RATE": "2.5",
        "DARKLAUNCH_DURATION_S": "630",
    }
