"""SIGINT and SIGTERM during a run, so that teardown runs whichever signal stops pytest.

While tests run, either signal raises ``KeyboardInterrupt`` (pytest's own path for Ctrl-C,
which runs teardown). Once the tests are over and teardown is under way, raising could escape
from any ``pytest_sessionfinish`` hook and leave processes behind: the signal is noted instead,
teardown finishes, and the run is reported as interrupted. pytest-free.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class SignalGuard:
    """The controller's signal handlers for one run (kept in ``config.stash``)."""

    def __init__(self) -> None:
        self._previous: list[tuple[int, Any]] = []
        self._tests_over = False
        self._late: list[int] = []

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (nothing when not on the main thread: pytest is embedded
        somewhere, whose handlers stay)."""
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous.append((signum, signal.signal(signum, self._interrupt)))
        except ValueError:
            pass

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self._tests_over:
            self._late.append(signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def tests_over(self) -> None:
        """From now on a signal lets teardown finish and marks the run interrupted."""
        self._tests_over = True

    @property
    def interrupted_late(self) -> bool:
        """True when a signal came after the tests were over."""
        return bool(self._late)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        while self._previous:
            signum, previous = self._previous.pop()
            try:
                signal.signal(signum, previous)
            except (ValueError, TypeError):
                pass
