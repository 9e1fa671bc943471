"""Manifests of the kubernetes backend, as plain dicts: a pure function of the spec and run id.

The objects follow the Iter8 mirroring tutorial (``../shared/seed``), generalised:

1. the Knative Service applied twice, as the seed's ``service.yaml`` does: first with the live
   revision as its template, then with the dark one and ``traffic`` pinning live at 100% and
   keeping dark routable at 0% with the tag ``dark`` (an untagged 0% revision would be
   "unreachable" and scale to zero, so cold starts would dominate its latency);
2. a VirtualService on the mesh and ingress gateways that routes the custom host to Knative's
   local gateway and mirrors ``mirror.percent`` of it (``mirrorPercentage``, not the deprecated
   ``mirrorPercent``);
3. a VirtualService on the local gateway that routes ``<host>-shadow`` (Envoy's name for mirrored
   requests) to the dark revision and ``<host>`` to the live one;
4. a Fortio Job, injected with the Istio sidecar through its pod label, sending an open-loop
   load at ``traffic.rate_rps``, bounded by ``activeDeadlineSeconds``.

Every object carries the run labels; names that must be unique per run end in a short
run suffix.

>>> from pytest_darklaunch.core.spec import Sources, build_spec
>>> spec = build_spec({"target": "default/sample-app", "versions": {
...     "live": {"image": "ghcr.io/acme/app:1"}, "dark": {"image": "ghcr.io/acme/app:2"}}},
...     Sources("test"))
>>> [m["kind"] for m in render(spec, "run1")]
['Service', 'Service', 'VirtualService', 'VirtualService', 'Job']
>>> names_for(spec, "run1").job
'sample-app-traffic-run1'
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from pytest_darklaunch.backends.kubernetes.routes_check import refuse_routes
from pytest_darklaunch.core.spec import Spec, Version
from pytest_darklaunch.core.units import DNS1123_HINT, format_duration, is_dns1123_label
from pytest_darklaunch.errors import ConfigError

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY = "pytest-darklaunch"
RUN_ID_KEY = "darklaunch.dev/run-id"
ROLE_KEY = "darklaunch.dev/role"

KNATIVE_API = "serving.knative.dev/v1"
ISTIO_API = "networking.istio.io/v1"
# Knative Serving's Istio networking layer (net-istio) names, as in the seed.
INGRESS_GATEWAY = "knative-serving/knative-ingress-gateway"
LOCAL_GATEWAY = "knative-serving/knative-local-gateway"
LOCAL_GATEWAY_HOST = "knative-local-gateway.istio-system.svc.cluster.local"
FORTIO_IMAGE = "fortio/fortio:1.69.5"
# Fortio connections: enough that live may take this long per request before a connection is
# still busy when its next send is due (open loop), at least 2, at most 256.
OPEN_LOOP_LATENCY_BUDGET_S = 0.25
# Time the Job may take beyond the experiment itself: image pull, sidecar start, slow sampler.
JOB_SLACK_S = 120

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
RUN_ID_HINT = (
    "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
)


@dataclass(frozen=True)
class Names:
    """Names, namespace and labels of one run's objects.

    >>> n = Names("default", "sample-app", "sample-app-v1", "sample-app-v2", "r1")
    >>> n.selector
    'app.kubernetes.io/managed-by=pytest-darklaunch,darklaunch.dev/run-id=r1'
    """

    namespace: str
    service: str
    live_revision: str
    dark_revision: str
    run_id: str

    @property
    def suffix(self) -> str:
        return run_suffix(self.run_id)

    @property
    def mirror_vs(self) -> str:
        return _suffixed(self.service, "mirror", self.suffix)

    @property
    def routing_vs(self) -> str:
        return _suffixed(self.service, "routing", self.suffix)

    @property
    def job(self) -> str:
        return _suffixed(self.service, "traffic", self.suffix)

    @property
    def labels(self) -> dict[str, str]:
        return run_labels(self.run_id)

    @property
    def selector(self) -> str:
        return run_selector(self.run_id)

    def delete_command(self) -> str:
        return delete_command(self.namespace, self.run_id)


def run_labels(run_id: str) -> dict[str, str]:
    """The labels on every object of run ``run_id``."""
    return {MANAGED_BY_KEY: MANAGED_BY, RUN_ID_KEY: run_id}


def run_selector(run_id: str) -> str:
    """The label selector of every object of run ``run_id`` (and of nothing else)."""
    return ",".join(f"{k}={v}" for k, v in run_labels(run_id).items())


def delete_command(namespace: str, run_id: str) -> str:
    """The kubectl command that removes every object of a run, mirroring rules first."""
    kinds = "virtualservices.networking.istio.io,jobs.batch,services.serving.knative.dev"
    return f"kubectl delete {kinds} -n {namespace} -l {RUN_ID_KEY}={run_id}"


def run_suffix(run_id: str) -> str:
    """A short DNS-safe form of ``run_id`` for object names.

    Short ids that are already DNS-1123 labels are used as they are; anything else becomes the
    first 8 hex digits of its SHA-256, so different run ids give different names.

    >>> run_suffix("r1"), run_suffix("0f3c9a5e2b7d4c1a9e8f7a6b5c4d3e2f")
    ('r1', 'ea1382f3')
    """
    if len(run_id) <= 10 and is_dns1123_label(run_id):
        return run_id
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def _suffixed(base: str, part: str, suffix: str) -> str:
    tail = f"-{part}-{suffix}"
    return base[: 63 - len(tail)].rstrip("-") + tail


def check_run_id(run_id: str, source: str = "run context") -> str:
    """``run_id`` if it can be a label value, else a :class:`ConfigError`."""
    if not run_id or len(run_id) > 63 or not _LABEL_VALUE.match(run_id):
        raise ConfigError("run id", run_id, source, RUN_ID_HINT)
    return run_id


def names_for(
    spec: Spec, run_id: str, namespace: Optional[str] = None, *, source: str = "run context"
) -> Names:
    """The :class:`Names` of a run; ``namespace`` overrides the target's namespace."""
    check_run_id(run_id, source)
    ns = namespace or spec.target.namespace
    if not is_dns1123_label(ns):
        raise ConfigError("namespace", ns, source, DNS1123_HINT)
    return Names(
        ns, spec.target.name, spec.versions.live.revision, spec.versions.dark.revision, run_id
    )


def render(spec: Spec, run_id: str, *, namespace: Optional[str] = None) -> list[dict[str, Any]]:
    """Every object the backend applies, in apply order.

    Raises :class:`ConfigError` for a spec that suits the local backend but not Kubernetes
    (a version without an image, a revision name Knative would refuse).
    """
    names = names_for(spec, run_id, namespace)
    for version in (spec.versions.live, spec.versions.dark):
        _check_version(spec, version)
    refuse_routes(spec)
    return [
        knative_service(spec, names, "live"),
        knative_service(spec, names, "dark"),
        mirror_virtual_service(spec, names),
        routing_virtual_service(spec, names),
        traffic_job(spec, names),
    ]


def render_yaml(spec: Spec, run_id: str, *, namespace: Optional[str] = None) -> str:
    """:func:`render` as one multi-document YAML stream, like ``helm template`` prints.

    >>> from pytest_darklaunch.core.spec import Sources, build_spec
    >>> spec = build_spec({"target": "shop/cart", "versions": {
    ...     "live": {"image": "a:1"}, "dark": {"image": "a:2"}}}, Sources("test"))
    >>> text = render_yaml(spec, "r1")
    >>> text.count("\\n---\\n"), len(list(yaml.safe_load_all(text)))
    (5, 5)
    """
    names = names_for(spec, run_id, namespace)
    docs = render(spec, run_id, namespace=namespace)
    header = (
        f"# pytest-darklaunch run {run_id}: {spec.target.name} in namespace {names.namespace}.\n"
        "# Apply in order (the Knative Service twice: live revision, then dark); remove with:\n"
        f"# {names.delete_command()}\n"
    )
    body = "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)
    return header + "---\n" + body


def _check_version(spec: Spec, version: Version) -> None:
    field = f"versions.{version.role}"
    if version.image is None:
        raise ConfigError(
            f"{field}.image",
            "",
            "spec",
            "a container image for each version with the kubernetes backend "
            "(for example gcr.io/knative-samples/knative-route-demo:blue)",
        )
    prefix = f"{spec.target.name}-"
    if not version.revision.startswith(prefix):
        raise ConfigError(
            f"{field}.revision",
            version.revision,
            "spec",
            f"a revision name starting with {prefix!r} (Knative requires it of named revisions)",
        )


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
                # Both revisions stay warm: dark must not pay cold starts on mirrored requests.
                "annotations": {"autoscaling.knative.dev/min-scale": "1"},
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


def _percent(value: float) -> float | int:
    return int(value) if value == int(value) else value


def mirror_virtual_service(spec: Spec, names: Names) -> dict[str, Any]:
    """Routes the custom host to the local gateway and mirrors ``mirror.percent`` of it."""
    host = spec.mirror.host
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(names.mirror_vs, names),
        "spec": {
            "gateways": ["mesh", INGRESS_GATEWAY],
            "hosts": [host],
            "http": [
                {
                    "rewrite": {"authority": host},
                    "route": [{"destination": {"host": LOCAL_GATEWAY_HOST}}],
                    "mirror": {"host": LOCAL_GATEWAY_HOST},
                    "mirrorPercentage": {"value": _percent(spec.mirror.percent)},
                }
            ],
        },
    }


def _revision_route(names: Names, revision: str) -> dict[str, Any]:
    return {
        "destination": {
            "host": f"{revision}.{names.namespace}.svc.cluster.local",
            "port": {"number": 80},
        },
        "headers": {
            "request": {
                "set": {
                    "Knative-Serving-Namespace": names.namespace,
                    "Knative-Serving-Revision": revision,
                }
            }
        },
    }


def routing_virtual_service(spec: Spec, names: Names) -> dict[str, Any]:
    """On the local gateway: ``<host>-shadow`` to dark, ``<host>`` to live.

    The seed listed ``hosts: ["*"]``; naming the two hosts keeps concurrent runs (and the rest
    of the cluster's traffic on that gateway) apart. The shadow rule comes first because a
    prefix match on ``<host>`` also matches ``<host>-shadow``.
    """
    host = spec.mirror.host
    shadow = f"{host}-shadow"
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(names.routing_vs, names),
        "spec": {
            "gateways": [LOCAL_GATEWAY],
            "hosts": [host, shadow],
            "http": [
                {
                    "match": [{"authority": {"prefix": shadow}}],
                    "route": [_revision_route(names, names.dark_revision)],
                },
                {
                    "match": [{"authority": {"prefix": host}}],
                    "route": [_revision_route(names, names.live_revision)],
                },
            ],
        },
    }


def fortio_args(spec: Spec) -> list[str]:
    """Fortio's ``load`` arguments: the spec's rate, spread uniformly, for the whole run.

    >>> from pytest_darklaunch.core.spec import Sources, build_spec
    >>> spec = build_spec({"target": "default/app", "traffic": {"rate": 40, "warmup": "1s"}},
    ...                   Sources("test"))
    >>> " ".join(fortio_args(spec))  # doctest: +NORMALIZE_WHITESPACE
    'load -qps 40 -t 102s -c 10 -uniform -timeout 2s -allow-initial-errors
     -H Host:app.default.example.com http://knative-local-gateway.istio-system.svc.cluster.local/'
    """
    traffic = spec.traffic
    seconds = math.ceil(traffic.warmup_s + spec.duration.total_s + 1)
    connections = min(256, max(2, math.ceil(traffic.rate_rps * OPEN_LOOP_LATENCY_BUDGET_S)))
    args = [
        "load",
        "-qps",
        f"{traffic.rate_rps:g}",
        "-t",
        f"{seconds}s",
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
    args += ["-H", f"Host:{spec.mirror.host}"]
    for key, value in traffic.headers.items():
        args += ["-H", f"{key}:{value}"]
    # The sidecar routes by Host header, so the URL only has to resolve in the cluster.
    args.append(f"http://{LOCAL_GATEWAY_HOST}{traffic.path}")
    return args


def traffic_job(spec: Spec, names: Names) -> dict[str, Any]:
    """The Fortio Job, sidecar-injected through its pod label (not ``istioctl kube-inject``)."""
    args = fortio_args(spec)
    run_s = int(args[args.index("-t") + 1].rstrip("s"))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(names.job, names),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": run_s + JOB_SLACK_S,
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
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "fortio", "image": FORTIO_IMAGE, "args": args},
                    ],
                },
            },
        },
    }
