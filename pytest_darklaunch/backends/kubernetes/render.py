"""Manifests of the kubernetes backend, as plain dicts: a pure function of the spec and run id.

The objects follow the Iter8 mirroring tutorial (``../shared/seed``), generalised:

1. the Knative Service applied twice, as the seed's ``service.yaml`` does: first with the live
   revision as its template, then with the dark one and ``traffic`` pinning live at 100% and
   keeping dark at 0% with the tag ``dark`` (a revision named in ``traffic`` is routable and
   honours min-scale, 0% or not; the tag gives dark a URL of its own);
2. the mirroring rule (:mod:`.routing`): an Istio VirtualService (``mirror.provider: istio``,
   the default) or a Gateway API HTTPRoute (``gateway-api``), sending ``mirror.host`` to live's
   private Service and a copy of ``mirror.percent`` straight to dark's;
3. when ``traffic.headers`` carries credentials (Authorization, Cookie, ...), a Secret with
   their values, which the Job reads through ``$(VAR)`` expansion: they never appear in the
   Job, in ``render``'s output or in our messages;
4. a Fortio Job, injected with the Istio sidecar through its pod label, sending an open-loop
   load at ``traffic.rate_rps`` until teardown deletes it.

Both revision templates ask their sidecar for finer latency buckets and leave Knative's
autoscaler/queue-proxy metrics ports out of inbound capture (see :func:`revision_annotations`).

>>> from pytest_darklaunch.core.spec import Sources, build_spec
>>> spec = build_spec({"target": "default/sample-app", "versions": {
...     "live": {"image": "ghcr.io/acme/app:1"}, "dark": {"image": "ghcr.io/acme/app:2"}}},
...     Sources("test"))
>>> [m["kind"] for m in render(spec, "run1")]
['Service', 'Service', 'VirtualService', 'Job']
>>> names_for(spec, "run1").job
'sample-app-traffic-run1'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from pytest_darklaunch.backends.kubernetes.k6 import k6_pod_parts, mix_secret, uses_k6
from pytest_darklaunch.backends.kubernetes.names import (
    ROLE_KEY,
    Names,
    check_run_id,
    names_for,
)
from pytest_darklaunch.backends.kubernetes.routes_check import refuse_routes
from pytest_darklaunch.backends.kubernetes.routing import http_route, virtual_service
from pytest_darklaunch.backends.local.envoy import upstream_time_buckets
from pytest_darklaunch.core.spec import Sources, Spec, check_for_kubernetes
from pytest_darklaunch.core.traffic.model import SECRET_HEADERS
from pytest_darklaunch.core.units import format_duration

__all__ = ["Names", "check_run_id", "names_for", "render", "render_yaml"]

KNATIVE_API = "serving.knative.dev/v1"
FORTIO_IMAGE = "fortio/fortio:1.69.5"
# Fortio connections: enough that live may take this long per request before a connection is
# still busy when its next send is due (open loop), at least 2, at most 256.
OPEN_LOOP_LATENCY_BUDGET_S = 0.25
# The Job's deadline beyond the effective schedule: image pull, sidecar start, slow sampler.
# Only a safety net: teardown deletes the Job, and Fortio runs until then (-t 0).
JOB_SLACK_S = 120
# How long the sampler waits for the first scrape after the warm-up (core/loop.py).
FIRST_SCRAPE_WAIT_S = 30
# Knative's autoscaler scrapes queue-proxy on 9090 every second (and 9091 serves its request
# metrics): through the sidecar, istio_requests_total{reporter="destination"} would count each
# scrape as a sub-millisecond 200 of the revision.
QUEUE_METRICS_PORTS = "9090,9091"
# Knative wants revision names to be DNS-1035 labels (no leading digit), stricter than 1123.


def revision_annotations() -> dict[str, str]:
    """Pod annotations of both revisions (Knative copies them from the template to the pods).

    >>> sorted(revision_annotations())  # doctest: +NORMALIZE_WHITESPACE
    ['autoscaling.knative.dev/min-scale', 'sidecar.istio.io/statsHistogramBuckets',
     'traffic.sidecar.istio.io/excludeInboundPorts']
    """
    return {
        # Both revisions stay warm: dark must not pay cold starts on mirrored requests.
        "autoscaling.knative.dev/min-scale": "1",
        "traffic.sidecar.istio.io/excludeInboundPorts": QUEUE_METRICS_PORTS,
        # Istio's default buckets (0.5, 1, 5, 10, 25, 50, 100, 250 ms, ...) leave most
        # percentile bounds undecidable; these are the local backend's Envoy buckets (1 ms
        # wide to 100 ms, then at most 10%), "istiocustom" being the standard metrics' prefix.
        "sidecar.istio.io/statsHistogramBuckets": json.dumps(
            {"istiocustom": upstream_time_buckets()}, separators=(",", ":")
        ),
    }


@dataclass(frozen=True)
class Schedule:
    """What the Job needs to know of the sampler's timing: Prometheus's scrape interval."""

    scrape_interval_s: float = 15.0
    # The Gateway's in-cluster address (read from its status when provisioning).
    gateway_address: str | None = None


def mirror_provider(spec: Spec) -> tuple[str, str | None]:
    """``(provider, gateway)`` of the spec's ``mirror`` section."""
    return spec.mirror.provider, spec.mirror.gateway


def render(
    spec: Spec, run_id: str, *, namespace: str | None = None, schedule: Schedule = Schedule()
) -> list[dict[str, Any]]:
    """Every object the backend applies, in apply order.

    Raises :class:`ConfigError` for a spec that suits the local backend but not Kubernetes
    (a version without an image, a revision name Knative would refuse).
    """
    names = names_for(spec, run_id, namespace)
    check_for_kubernetes(spec, Sources("spec"))
    refuse_routes(spec)
    if uses_k6(spec):
        secret: dict[str, Any] | None = mix_secret_for(spec, names, schedule)
    else:
        secret = header_secret(spec, names)
    return [
        knative_service(spec, names, "live"),
        knative_service(spec, names, "dark"),
        mirror_rule(spec, names),
        *([secret] if secret else []),
        traffic_job(spec, names, schedule),
    ]


def render_yaml(
    spec: Spec, run_id: str, *, namespace: str | None = None, schedule: Schedule = Schedule()
) -> str:
    """:func:`render` as one multi-document YAML stream, like ``helm template`` prints.

    >>> from pytest_darklaunch.core.spec import Sources, build_spec
    >>> spec = build_spec({"target": "shop/cart", "versions": {
    ...     "live": {"image": "a:1"}, "dark": {"image": "a:2"}}}, Sources("test"))
    >>> text = render_yaml(spec, "r1")
    >>> text.count("\\n---\\n"), len(list(yaml.safe_load_all(text)))
    (4, 4)
    """
    names = names_for(spec, run_id, namespace)
    docs = [_withheld(d) for d in render(spec, run_id, namespace=namespace, schedule=schedule)]
    header = (
        f"# pytest-darklaunch run {run_id}: {spec.target.name} in namespace {names.namespace}.\n"
        "# Apply in order (the Knative Service twice: live revision, then dark); remove with:\n"
        f"# {names.delete_command()}\n"
    )
    body = "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)
    return header + "---\n" + body


WITHHELD = "(withheld: the run sets it from the spec)"


def _withheld(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as ``render`` may print it: a Secret's values withheld."""
    if doc["kind"] != "Secret":
        return doc
    return {**doc, "stringData": {key: WITHHELD for key in doc["stringData"]}}


def mix_secret_for(spec: Spec, names: Names, schedule: Schedule) -> dict[str, Any]:
    """The k6 pod's Secret (script and mix), named like the Job."""
    _, host = traffic_target(spec, names, schedule)
    return mix_secret(spec, _meta(names.job, names), host)


def _secret_headers(spec: Spec) -> list[str]:
    """The names of ``traffic.headers`` whose values are credentials, in spec order."""
    return [k for k in spec.traffic.headers if k.lower() in SECRET_HEADERS]


def header_secret(spec: Spec, names: Names) -> dict[str, Any] | None:
    """The Secret holding the credential headers' values, ``None`` without any."""
    secret = _secret_headers(spec)
    if not secret:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names.header_secret, names),
        "type": "Opaque",
        "stringData": {f"h{i}": spec.traffic.headers[k] for i, k in enumerate(secret)},
    }


def _meta(name: str, names: Names, **extra_labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": names.namespace,
        "labels": {**names.labels, **extra_labels},
    }


def knative_service(spec: Spec, names: Names, role: str) -> dict[str, Any]:
    """The Knative Service with ``role``'s revision as its template (applied live, then dark)."""
    version = spec.versions.live if role == "live" else spec.versions.dark
    container: dict[str, Any] = {"image": version.image}
    if version.env:
        container["env"] = [{"name": k, "value": v} for k, v in version.env.items()]
    service_spec: dict[str, Any] = {
        "template": {
            "metadata": {
                "name": version.revision,
                # The sidecar reports the Istio metrics the sampler reads (reporter=destination);
                # asking per pod spares users from labelling their namespace for injection.
                "labels": {**names.labels, ROLE_KEY: role, "sidecar.istio.io/inject": "true"},
                "annotations": revision_annotations(),
            },
            "spec": {"containers": [container]},
        },
    }
    if role == "dark":
        service_spec["traffic"] = [
            {"revisionName": names.live_revision, "percent": 100},
            {"revisionName": names.dark_revision, "percent": 0, "tag": "dark"},
        ]
    return {
        "apiVersion": KNATIVE_API,
        "kind": "Service",
        "metadata": _meta(names.service, names),
        "spec": service_spec,
    }


def mirror_rule(spec: Spec, names: Names) -> dict[str, Any]:
    """The provider's mirroring object: a VirtualService (istio) or an HTTPRoute."""
    provider, gateway = mirror_provider(spec)
    host, percent, timeout_s = spec.mirror.host, spec.mirror.percent, spec.traffic.timeout_s
    # None: every method is mirrored, one rule; else writes go on a rule without the mirror.
    methods = None if spec.mirror.all_methods else spec.mirror.methods
    if provider == "gateway-api":
        return http_route(names, host, percent, timeout_s, gateway, methods)
    return virtual_service(names, host, percent, timeout_s, methods)


def gateway_service_host(gateway: str) -> str:
    """Istio's Service for a Gateway it deploys (``<name>-<gatewayClassName>``, class istio).

    >>> gateway_service_host("istio-ingress/shared")
    'shared-istio.istio-ingress.svc.cluster.local'
    """
    namespace, _, name = gateway.partition("/")
    return f"{name}-istio.{namespace}.svc.cluster.local"


def traffic_target(spec: Spec, names: Names, schedule: Schedule) -> tuple[str, str | None]:
    """Fortio's address and Host header.

    The mesh rules act in Fortio's own sidecar: the URL is live's private Service (so a rule
    that does not apply still reaches live, and the mirror probe tells), and for the Istio
    provider the Host header is ``mirror.host``, the VirtualService's host. Through a Gateway
    the URL is the Gateway's address and the Host header selects the route.
    """
    provider, gateway = mirror_provider(spec)
    if provider == "gateway-api" and gateway:
        return schedule.gateway_address or gateway_service_host(gateway), spec.mirror.host
    address = names.private_host(names.live_revision)
    return address, (spec.mirror.host if provider == "istio" else None)


def fortio_args(spec: Spec, names: Names, schedule: Schedule = Schedule()) -> list[str]:
    """Fortio's ``load`` arguments: the spec's rate, spread uniformly, until the Job is deleted.

    ``-t 0`` runs until stopped: the sampler's windows end on scrapes, so the experiment lasts
    longer than its nominal duration, and a fixed ``-t`` would stop the load before the last
    intervals. Teardown deletes the Job; its deadline is only a safety net.

    >>> from pytest_darklaunch.core.spec import Sources, build_spec
    >>> spec = build_spec({"target": "default/app", "traffic": {"rate": 40, "warmup": "1s"}},
    ...                   Sources("test"))
    >>> " ".join(fortio_args(spec, names_for(spec, "r1")))  # doctest: +NORMALIZE_WHITESPACE
    'load -qps 40 -t 0 -c 10 -uniform -timeout 2s -allow-initial-errors
     -H Host:app.default.example.com http://app-v1-private.default.svc.cluster.local/'
    """
    traffic = spec.traffic
    connections = min(256, max(2, math.ceil(traffic.rate_rps * OPEN_LOOP_LATENCY_BUDGET_S)))
    args = [
        "load",
        "-qps",
        f"{traffic.rate_rps:g}",
        "-t",
        "0",
        "-c",
        str(connections),
        "-uniform",
        "-timeout",
        format_duration(traffic.timeout_s),
        # Errors are data here (the sampler counts them), never a reason to stop the load.
        "-allow-initial-errors",
    ]
    if traffic.method != "GET":
        args += ["-X", traffic.method]
    address, host = traffic_target(spec, names, schedule)
    if host:
        args += ["-H", f"Host:{host}"]
    secret = _secret_headers(spec)
    for key, value in traffic.headers.items():
        if key in secret:  # Kubernetes expands $(VAR) from the container's env (the Secret)
            value = f"$({_HEADER_ENV}{secret.index(key)})"
        args += ["-H", f"{key}:{value}"]
    args.append(f"http://{address}{traffic.path}")
    return args


def job_deadline_s(spec: Spec, schedule: Schedule) -> int:
    """The Job's ``activeDeadlineSeconds``: the effective schedule plus slack.

    Each window ends at the first scrape after its nominal end, so an interval lasts at least
    one scrape interval; the first window waits for a first scrape after the warm-up.

    >>> from pytest_darklaunch.core.spec import Sources, build_spec
    >>> spec = build_spec({"target": "default/app"}, Sources("test"))  # 10 x 10 s
    >>> job_deadline_s(spec, Schedule(scrape_interval_s=15))
    300
    """
    duration = spec.duration
    interval = max(duration.interval_s, schedule.scrape_interval_s)
    effective = spec.traffic.warmup_s + FIRST_SCRAPE_WAIT_S + duration.iterations * interval
    return math.ceil(effective + JOB_SLACK_S)


_HEADER_ENV = "DARKLAUNCH_HEADER_"


def _header_env(spec: Spec, names: Names) -> dict[str, Any]:
    secret = _secret_headers(spec)
    if not secret:
        return {}
    return {
        "env": [
            {
                "name": f"{_HEADER_ENV}{i}",
                "valueFrom": {"secretKeyRef": {"name": names.header_secret, "key": f"h{i}"}},
            }
            for i in range(len(secret))
        ]
    }


def _traffic_pod(spec: Spec, names: Names, schedule: Schedule) -> dict[str, Any]:
    """Fortio for one bodiless URL, k6 for a mix (:mod:`.k6`)."""
    if not uses_k6(spec):
        container = {
            "name": "fortio",
            "image": FORTIO_IMAGE,
            "args": fortio_args(spec, names, schedule),
            **_header_env(spec, names),
        }
        return {"restartPolicy": "Never", "containers": [container]}
    address, _ = traffic_target(spec, names, schedule)
    rate = spec.traffic.rate_rps
    vus = min(256, max(2, math.ceil(rate * OPEN_LOOP_LATENCY_BUDGET_S)))
    container, volumes = k6_pod_parts(
        spec, names.job, f"http://{address}", job_deadline_s(spec, schedule), vus
    )
    return {"restartPolicy": "Never", "containers": [container], "volumes": volumes}


def traffic_job(spec: Spec, names: Names, schedule: Schedule = Schedule()) -> dict[str, Any]:
    """The traffic Job, sidecar-injected through its pod label (not ``istioctl kube-inject``)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(names.job, names),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": job_deadline_s(spec, schedule),
            # A safety net when teardown never ran (kill -9): the cluster removes it later.
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {
                    "labels": {
                        **names.labels,
                        ROLE_KEY: "traffic",
                        "sidecar.istio.io/inject": "true",
                    },
                    "annotations": {
                        # Fortio must not send before the sidecar can route its requests.
                        "proxy.istio.io/config": json.dumps(
                            {"holdApplicationUntilProxyStarts": True}
                        ),
                    },
                },
                "spec": _traffic_pod(spec, names, schedule),
            },
        },
    }
