"""The mirroring rule of a run, for either routing provider: a pure function of the spec.

Both providers send the requests addressed to ``mirror.host`` to the live revision's private
Service and a copy of ``mirror.percent`` of them straight to the dark revision's private
Service. Nothing routes on the mirrored copy's Host header, so it does not matter whether the
proxy appends ``-shadow`` to it (Istio <= 1.27) or not (Istio >= 1.28 defaults
``DISABLE_SHADOW_HOST_SUFFIX`` to true). Knative's ``<revision>-private`` Service selects the
revision's pods on port 80 (queue-proxy); min-scale 1 keeps a pod behind it.

- ``istio``: a VirtualService on the ``mesh`` gateway only, exported to its own namespace
  (``exportTo: ["."]``), so only sidecars of that namespace (the traffic Job's) see it;
- ``gateway-api``: an HTTPRoute with a ``RequestMirror`` filter at ``percent``, its parent the
  live revision's private Service (mesh traffic, GAMMA) or a Gateway named in the spec.

>>> from pytest_darklaunch.backends.kubernetes.names import Names
>>> n = Names("default", "app", "app-v1", "app-v2", "r1")
>>> rule = virtual_service(n, "app.test", 40, 2.0)["spec"]["http"][0]
>>> rule["mirror"], rule["mirrorPercentage"]
({'host': 'app-v2-private.default.svc.cluster.local', 'port': {'number': 80}}, {'value': 40})
"""

from __future__ import annotations

import math
from typing import Any

from pytest_darklaunch.backends.kubernetes.names import Names
from pytest_darklaunch.core.units import format_duration

ISTIO_API = "networking.istio.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
PROVIDERS = ("istio", "gateway-api")
REVISION_PORT = 80


def _meta(name: str, names: Names) -> dict[str, Any]:
    return {"name": name, "namespace": names.namespace, "labels": dict(names.labels)}


def _percent(value: float) -> float | int:
    return int(value) if value == int(value) else value


def _destination(names: Names, revision: str) -> dict[str, Any]:
    return {"host": names.private_host(revision), "port": {"number": REVISION_PORT}}


def virtual_service(
    names: Names,
    host: str,
    percent: float,
    timeout_s: float,
    methods: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The Istio provider's rule: ``host`` to live, ``percent`` mirrored to dark.

    The route's ``timeout`` is the traffic timeout: Envoy gives a shadow request the route's
    timeout, so a hung dark is bounded as the live request is (there is no other bound on it
    but queue-proxy's 300 s revision timeout). With ``methods`` only requests of those methods
    are mirrored: a first rule matches them and mirrors, a second sends the rest (writes, by
    default) to live without a mirror.
    """
    route = [{"destination": _destination(names, names.live_revision)}]
    timeout = format_duration(timeout_s)
    mirrored: dict[str, Any] = {
        "route": route,
        "mirror": _destination(names, names.dark_revision),
        "mirrorPercentage": {"value": _percent(percent)},
        "timeout": timeout,
    }
    rules = [mirrored]
    if methods:
        mirrored = {"match": [{"method": {"exact": m}} for m in methods], **mirrored}
        rules = [mirrored, {"route": route, "timeout": timeout}]
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(names.mirror_route, names),
        "spec": {
            "hosts": [host],
            "gateways": ["mesh"],
            "exportTo": ["."],
            "http": rules,
        },
    }


def parse_gateway(value: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of a Gateway as ``(namespace, name)``; ``ValueError`` otherwise.

    >>> parse_gateway("istio-ingress/shared")
    ('istio-ingress', 'shared')
    """
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(value)
    return namespace, name


def _mirror_share(percent: float) -> dict[str, Any]:
    """``percent`` when whole, else the exact ``fraction`` (both standard since v1.3).

    >>> _mirror_share(40), _mirror_share(12.5)
    ({'percent': 40}, {'fraction': {'numerator': 1250, 'denominator': 10000}})
    """
    if percent == int(percent):
        return {"percent": int(percent)}
    return {"fraction": {"numerator": round(percent * 100), "denominator": 10000}}


def _gateway_duration(seconds: float) -> str:
    """A Gateway API Duration (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``): whole ms, rounded up.

    >>> _gateway_duration(2), _gateway_duration(2.5), _gateway_duration(600)
    ('2s', '2500ms', '600s')
    """
    ms = math.ceil(seconds * 1000 - 1e-9)
    if ms % 1000 == 0 or ms >= 100_000:
        return f"{math.ceil(ms / 1000)}s"
    return f"{ms}ms"


def http_route(
    names: Names,
    host: str,
    percent: float,
    timeout_s: float,
    gateway: str | None = None,
    methods: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The Gateway API provider's rule: an HTTPRoute with a percent ``RequestMirror`` filter.

    Without ``gateway`` its parent is the live revision's private Service on port 80, so it
    applies to mesh traffic addressed to that Service (the traffic Job's); with ``gateway``
    (``NAMESPACE/NAME``) it attaches to that Gateway for ``host``. With ``methods``, as for
    :func:`virtual_service`: the mirroring rule matches those methods (a method match is more
    specific than none, so it takes precedence), another rule sends the rest without a mirror.
    """
    live, dark = names.live_revision, names.dark_revision
    if gateway:
        namespace, name = parse_gateway(gateway)
        parent: dict[str, Any] = {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": namespace,
            "name": name,
        }
    else:
        parent = {
            "group": "",
            "kind": "Service",
            "name": names.private_service(live),
            "port": REVISION_PORT,
        }
    backend = [{"name": names.private_service(live), "port": REVISION_PORT, "weight": 1}]
    timeouts = {"request": _gateway_duration(timeout_s)}
    mirror_filter = {
        "type": "RequestMirror",
        "requestMirror": {
            "backendRef": {"name": names.private_service(dark), "port": REVISION_PORT},
            **_mirror_share(percent),
        },
    }
    mirrored: dict[str, Any] = {
        "backendRefs": backend,
        "filters": [mirror_filter],
        "timeouts": timeouts,
    }
    rules = [mirrored]
    if methods:
        mirrored = {"matches": [{"method": m} for m in methods], **mirrored}
        rules = [mirrored, {"backendRefs": backend, "timeouts": timeouts}]
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": rules}
    if gateway:
        spec["hostnames"] = [host]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _meta(names.mirror_route, names),
        "spec": spec,
    }
