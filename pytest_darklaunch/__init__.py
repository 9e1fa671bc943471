"""pytest-darklaunch: gate releases on the behaviour of a dark version.

The public API is imported lazily, so importing the package (as pytest does for every run
once the plugin is installed) costs nothing until it is used.

>>> from pytest_darklaunch import assert_objective              # doctest: +SKIP
>>> def test_dark_latency():                                     # doctest: +SKIP
...     assert_objective("mean-latency", upper=50)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from pytest_darklaunch.assertions import Experiment, assert_objective
    from pytest_darklaunch.core.config import load_spec
    from pytest_darklaunch.core.spec import Objective, Spec
    from pytest_darklaunch.core.verdict import Verdict
    from pytest_darklaunch.errors import (
        ConfigError,
        DarklaunchError,
        MetricsError,
        ProvisioningError,
    )
    from pytest_darklaunch.version import __version__ as __version__

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

_LAZY = {
    "__version__": "pytest_darklaunch.version",
    "ConfigError": "pytest_darklaunch.errors",
    "DarklaunchError": "pytest_darklaunch.errors",
    "MetricsError": "pytest_darklaunch.errors",
    "ProvisioningError": "pytest_darklaunch.errors",
    "Experiment": "pytest_darklaunch.assertions",
    "assert_objective": "pytest_darklaunch.assertions",
    "Objective": "pytest_darklaunch.core.spec",
    "Spec": "pytest_darklaunch.core.spec",
    "Verdict": "pytest_darklaunch.core.verdict",
    "load_spec": "pytest_darklaunch.core.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_darklaunch' has no attribute {name!r}")
