"""Repository-level conftest: the plugin's own test suite runs its examples with pytester."""

from __future__ import annotations

import signal

import pytest

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job with SIGINT ignored, and the setting survives exec: Python
    # then installs no KeyboardInterrupt handler, and the tests that press Ctrl-C (in this
    # process, or in a pytest run they start) would see nothing happen. Python's own handler,
    # taken back here, is reset to the default on exec, so every child sees Ctrl-C as a user's
    # terminal delivers it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
