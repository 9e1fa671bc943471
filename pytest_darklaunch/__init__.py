"""pytest-darklaunch: gate releases on the behaviour of a dark version.

The public API is imported lazily, so importing the package (as pytest does for every run
once the plugin is installed) costs nothing until it is used.

>>> from pytest_darklaunch import assert_objective              # doctest: +SKIP
>>> def test_dark_latency():                                     # doctest: +SKIP
...     assert_objective("mean-latency", upper=50)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "DarklaunchError",
    "Experiment",
    "MetricsError",
    "Objective",
    "ProvisioningError",
    "Spec",
    "Verdict",
    "assert_objective",
    "load_spec",
]
__version__ = "0.1.0"

_LAZY = {
    "ConfigError": "pytest_darklaunch.errors",
    "DarklaunchError": "pytest_darklaunch.errors",
    "MetricsError": "pytest_darklaunch.errors",
    "ProvisioningError": "pytest_darklaunch.errors",
    "Experiment": "pytest_darklaunch.assertions",
    "Objective": "pytest_darklaunch.core.spec",
    "Spec": "pytest_darklaunch.core.spec",
    "Verdict": "pytest_darklaunch.core.verdict",
    "load_spec": "pytest_darklaunch.core.config",
}


def assert_objective(
    metric: Any,
    upper: Any = None,
    lower: Any = None,
    max_increase: Any = None,
    judge: str = "experiment",
    failure_limit: int = 0,
) -> Any:
    """Fail the calling test unless the session's dark version meets the objective.

    The same as the ``darklaunch`` fixture's method; skips when no experiment is configured.
    """
    __tracebackhide__ = True
    import pytest

    from pytest_darklaunch.assertions import NO_EXPERIMENT, Experiment
    from pytest_darklaunch.plugin import current_session

    session = current_session()
    if session is None or not session.resolved.active:
        pytest.skip(NO_EXPERIMENT)
    return Experiment(session).assert_objective(
        metric, upper, lower, max_increase, judge, failure_limit
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_darklaunch' has no attribute {name!r}")
