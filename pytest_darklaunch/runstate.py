"""Where the pytest layer keeps the state of one run, and how a test finds it.

Every piece of per-run state lives in ``config.stash`` under a typed key: :data:`SESSION` holds
the run's :class:`~pytest_darklaunch.session.DarklaunchSession` (the experiment engine; the
fixture and every variable that holds it are named ``darklaunch``), :data:`SIGNALS` the
:class:`~pytest_darklaunch.interrupts.SignalGuard` of the controller.

One registry is process-wide, ``_ACTIVE``. It exists because the public module-level
``pytest_darklaunch.assert_objective`` is called with no config to find the run by; and it is a
stack because pytester runs pytest inside pytest, in one process, so the innermost run started
last and is the one a test calls from. ``plugin`` pushes in ``pytest_configure`` and removes in
``pytest_unconfigure``; only :func:`current` reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_darklaunch.interrupts import SignalGuard
    from pytest_darklaunch.session import DarklaunchSession

SESSION: pytest.StashKey[DarklaunchSession] = pytest.StashKey()
SIGNALS: pytest.StashKey[SignalGuard] = pytest.StashKey()
_ACTIVE: list[DarklaunchSession] = []

INACTIVE = "darklaunch: inactive (no target, spec file or Iter8 experiment)"  # header, -v
NO_EXPERIMENT = (
    "darklaunch: no experiment configured (give --darklaunch-target NS/NAME, a darklaunch.yaml "
    "in the rootdir, --darklaunch-spec PATH or --darklaunch-experiment PATH)"
)


def session_of(config: pytest.Config) -> DarklaunchSession | None:
    """The run's experiment, or ``None`` before ``pytest_configure`` stored it."""
    return config.stash.get(SESSION, None)


def activate(config: pytest.Config, darklaunch: DarklaunchSession) -> None:
    """Store ``darklaunch`` as the run's experiment, innermost of the runs in this process."""
    config.stash[SESSION] = darklaunch
    _ACTIVE.append(darklaunch)


def deactivate(darklaunch: DarklaunchSession) -> None:
    if darklaunch in _ACTIVE:
        _ACTIVE.remove(darklaunch)


def current() -> DarklaunchSession | None:
    """The innermost running experiment (for the module-level ``assert_objective``)."""
    return _ACTIVE[-1] if _ACTIVE else None


def active_or_skip(config: pytest.Config | None = None) -> DarklaunchSession:
    """The experiment of ``config`` (else the innermost run's); skips the calling test with
    :data:`NO_EXPERIMENT` when none is configured."""
    darklaunch = current() if config is None else session_of(config)
    if darklaunch is None or not darklaunch.resolved.active:
        pytest.skip(NO_EXPERIMENT)
    return darklaunch
