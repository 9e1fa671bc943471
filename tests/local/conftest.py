"""Fixtures for the local backend's tests: real Envoy, real Prometheus, real processes.

Every backend a test creates is torn down at the end of the test, and the test errors if any
process that backend started is still alive afterwards (checked by PID).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.backends import RunContext
from pytest_darklaunch.backends.local import LocalBackend
from pytest_darklaunch.core.spec import Spec
from tests.local.helpers import pid_alive


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., LocalBackend]]:
    """Make LocalBackends whose workdir is under ``tmp_path``; all are torn down afterwards and
    none may leave a process behind."""
    made: list[LocalBackend] = []

    def factory(spec: Spec, name: str = "run", **run_options: Any) -> LocalBackend:
        run = RunContext(run_id=f"test-{name}", workdir=str(tmp_path / name), **run_options)
        backend = LocalBackend(spec, run)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.teardown()
    leaked = [
        pid
        for backend in made
        for pid in (*backend.started_pids, backend.guardian_pid or 0)
        if pid and pid_alive(pid)
    ]
    assert not leaked, f"processes left alive after teardown: {leaked}"
