"""SignalGuard with real signals sent to this process (pytest runs tests on the main thread,
where Python runs a handler as soon as the signal arrives)."""

from __future__ import annotations

import os
import signal

import pytest

from pytest_darklaunch.interrupts import SignalGuard


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_tests_interrupts_them(signum: int) -> None:
    before = signal.getsignal(signum)
    guard = SignalGuard()
    guard.install()
    try:
        with pytest.raises(KeyboardInterrupt, match=f"signal {signum}"):
            os.kill(os.getpid(), signum)
        assert not guard.interrupted_late
    finally:
        guard.restore()
    assert signal.getsignal(signum) is before


def test_a_signal_after_the_tests_lets_teardown_finish_and_is_noted() -> None:
    before = signal.getsignal(signal.SIGTERM)
    guard = SignalGuard()
    guard.install()
    try:
        guard.tests_over()
        os.kill(os.getpid(), signal.SIGTERM)  # no exception: teardown goes on
        assert guard.interrupted_late
    finally:
        guard.restore()
    assert signal.getsignal(signal.SIGTERM) is before
