"""Backends run the experiment's moving parts; all of them implement :class:`Backend`.

A backend turns a :class:`~pytest_darklaunch.core.spec.Spec` into a running
:class:`Environment` (the app's live and dark versions, mirroring, traffic and a Prometheus to
read), and removes all of it again. Backends never import pytest. The shared types live in
:mod:`.base`; backends import them from there, and this face re-exports them.
"""

from __future__ import annotations

from dataclasses import replace

from pytest_darklaunch.backends.base import (
    BACKENDS,
    CREDENTIAL_VARIABLES,
    Backend,
    Environment,
    RunContext,
    TrafficStats,
    child_environment,
    with_package_path,
)
from pytest_darklaunch.core.spec import Spec

__all__ = [
    "BACKENDS",
    "CREDENTIAL_VARIABLES",
    "Backend",
    "Environment",
    "RunContext",
    "TrafficStats",
    "child_environment",
    "create_backend",
    "with_package_path",
]


def create_backend(name: str, spec: Spec, run: RunContext) -> Backend:
    """The backend called ``name``; its modules are imported only here, never at plugin import."""
    if name == "local":
        from pytest_darklaunch.backends.local import LocalBackend

        return LocalBackend(spec, run)
    if name == "kubernetes":
        from pytest_darklaunch.backends.kubernetes import KubernetesBackend, KubeSettings

        settings = KubeSettings()
        if run.prometheus_service:
            settings = replace(settings, prometheus_service=run.prometheus_service)
        if run.scrape_interval_s is not None:
            settings = replace(settings, scrape_interval_s=run.scrape_interval_s)
        return KubernetesBackend(spec, run, settings=settings)
    raise ValueError(name)
