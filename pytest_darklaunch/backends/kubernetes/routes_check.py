"""Per-route objectives are refused on Kubernetes: Istio's standard metrics carry no route.

Mirrored requests show only in ``reporter="destination"`` metrics, and those have no path
label (Istio #17118). Adding one means a ``Telemetry`` tag from a request header set on every
request, mirrored copies included, by the traffic Job and by every other client of the run,
and a tag per route multiplies the mesh's series for everyone sharing the cluster's
Prometheus. The backend therefore refuses ``routes:`` and ``route:`` with a one-line error that
says how to get per-route numbers through a custom metric instead.
"""

from __future__ import annotations

from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.errors import ConfigError

HOW = (
    "no route with the kubernetes backend (Istio's metrics carry no route label): declare a "
    "custom metric whose PromQL selects the route by a label your mesh adds (for example an "
    "Istio Telemetry tagOverride from a request header), one metric per route, or judge "
    "routes on the local backend"
)


def refuse_routes(spec: Spec) -> None:
    """Raise the one-line :class:`ConfigError` when the spec has routes or route objectives."""
    for i, objective in enumerate(spec.objectives):
        if objective.route is not None:
            raise ConfigError(f"objectives[{i}].route", objective.route, "spec", HOW)
    if spec.routes:
        raise ConfigError(f"routes.{spec.routes[0].name}", spec.routes[0].describe(), "spec", HOW)
