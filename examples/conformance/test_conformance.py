"""The seed tutorial's conformance checks, as pytest tests.

Run from this directory: ``pytest`` (the local backend: sample app, Envoy, Prometheus).
"""

import pytest_darklaunch


def test_objective(darklaunch, darklaunch_objective):
    """One test per objective in darklaunch.yaml: ``pytest -k error-rate`` selects one."""
    darklaunch.assert_objective(darklaunch_objective)


def test_dark_is_not_slower_than_live(darklaunch):
    """A bound relative to live, on the same mirrored requests: no peer tool offers this."""
    darklaunch.assert_objective("mean-latency", max_increase="50%")


def test_module_level_helper():
    pytest_darklaunch.assert_objective("error-count", upper=5)
