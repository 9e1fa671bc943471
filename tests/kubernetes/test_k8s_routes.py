"""Routes on Kubernetes: refused with a one-line error that says how to get per-route numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_darklaunch.backends.base import RunContext
from pytest_darklaunch.backends.kubernetes.backend import KubernetesBackend
from pytest_darklaunch.backends.kubernetes.render import render
from pytest_darklaunch.errors import ConfigError

from .conftest import make_spec

ROUTES = {"detail": {"path": "^/items/[0-9]+$"}}


def test_an_objective_with_a_route_is_refused_before_any_manifest() -> None:
    spec = make_spec(
        routes=ROUTES,
        objectives=[
            {"metric": "mean-latency", "upper": 50},
            {"metric": "mean-latency", "upper": 50, "route": "detail"},
        ],
    )
    with pytest.raises(ConfigError) as info:
        render(spec, "run-a")
    message = str(info.value)
    assert message.startswith(
        "invalid objectives[1].route 'detail' (from spec): expected no route with the "
        "kubernetes backend (Istio's metrics carry no route label): declare a custom metric"
    )
    assert "\n" not in message and "Telemetry tagOverride" in message


def test_declared_routes_alone_are_refused_too_even_without_provisioning(tmp_path: Path) -> None:
    spec = make_spec(routes=ROUTES)
    with pytest.raises(ConfigError, match=r"^invalid routes.detail 'any method \^/items/"):
        render(spec, "run-a")
    run = RunContext(run_id="run-a", workdir=str(tmp_path), provision="none")
    with pytest.raises(ConfigError, match="no route with the kubernetes backend"):
        KubernetesBackend(spec, run)

