"""A model of the mesh's data path for the API *emulator* (tests only): where Istio's sidecars
send a request and its mirrored copy, and what the destination sidecars count.

It reads the objects in the emulator's store, as istiod would, and applies the upstream rules
the review of the backend cites (``../shared/KUBERNETES-REVIEW.md``, findings 1 and 2):

- a sidecar matches a request against the VirtualServices it can see (``exportTo`` absent,
  ``*``, ``.`` in their own namespace, or naming its namespace; ``gateways`` absent or
  ``mesh``) by Host header, oldest first; without a match it passes the request through to
  the URL's destination. GAMMA HTTPRoutes match by the Service they are attached to;
- a mirrored copy keeps the Host header, with ``-shadow`` appended only when ``shadow_suffix``
  (Istio <= 1.27, or ``DISABLE_SHADOW_HOST_SUFFIX=false``; 1.28+ defaults to no suffix);
- Knative's local gateway routes by the VirtualServices bound to it, matching ``authority``
  prefixes in order;
- a revision's sidecar counts every inbound request (``reporter="destination"``), Knative's
  autoscaler scraping queue-proxy on 9090 once a second included, unless the pod's
  ``traffic.sidecar.istio.io/excludeInboundPorts`` names that port.

:meth:`Mesh.exposition` renders the counters a Prometheus would scrape after ``seconds`` of
the traffic Job's load, as ``istio_requests_total`` in the text format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import Emulator

LOCAL_GATEWAY_HOST = "knative-local-gateway.istio-system.svc.cluster.local"
LOCAL_GATEWAY = "knative-serving/knative-local-gateway"
AUTOSCALER = ("autoscaler", "knative-serving")
SCRAPE_PORT = "9090"


@dataclass(frozen=True)
class Delivery:
    """Where one request from the traffic pod ends: the workloads of the request and its copy."""

    primary: str | None
    mirror: str | None = None
    percent: float = 0.0


@dataclass
class Mesh:
    emulator: Emulator
    shadow_suffix: bool = False

    # -- routing ------------------------------------------------------------------------------

    def _objects(self, plural: str, group: str) -> list[dict[str, Any]]:
        items = self.emulator.objects(plural, group)
        return sorted(items, key=lambda o: int(o["metadata"]["resourceVersion"]))

    def _visible(self, vs: dict[str, Any], namespace: str) -> bool:
        export = vs["spec"].get("exportTo") or ["*"]
        own = vs["metadata"]["namespace"]
        return "*" in export or namespace in export or ("." in export and own == namespace)

    def _workload(self, host: str) -> str | None:
        """A revision's Service host (public or private) as its pods' workload."""
        name, _, rest = host.partition(".")
        namespace = rest.split(".")[0]
        revision = name.removesuffix("-private")
        rt = self.emulator.resource("revisions", "serving.knative.dev")
        if self.emulator.store.get(rt, namespace, revision) is None:
            return None
        return f"{revision}-deployment"

    def _gateway(self, authority: str) -> str | None:
        for vs in self._objects("virtualservices", "networking.istio.io"):
            spec = vs["spec"]
            if LOCAL_GATEWAY not in (spec.get("gateways") or []):
                continue
            if authority not in (spec.get("hosts") or []):
                continue
            for rule in spec.get("http") or []:
                prefixes = [m.get("authority", {}).get("prefix") for m in rule.get("match") or []]
                if not prefixes or any(p and authority.startswith(p) for p in prefixes):
                    return self._deliver(rule["route"][0]["destination"]["host"], authority)
        return None  # the gateway answers 404

    def _deliver(self, host: str, authority: str) -> str | None:
        if host == LOCAL_GATEWAY_HOST:
            return self._gateway(authority)
        return self._workload(host)

    def _mesh_rule(self, namespace: str, host: str, method: str) -> dict[str, Any] | None:
        for vs in self._objects("virtualservices", "networking.istio.io"):
            spec = vs["spec"]
            if "mesh" not in (spec.get("gateways") or ["mesh"]):
                continue
            if host in (spec.get("hosts") or []) and self._visible(vs, namespace):
                for rule in spec["http"]:  # the first rule whose match the request meets
                    matches = [m.get("method", {}).get("exact") for m in rule.get("match") or []]
                    if not matches or method in matches:
                        return dict(rule)
        return None

    def _gamma_route(
        self, namespace: str, service_host: str, method: str
    ) -> dict[str, Any] | None:
        service, _, rest = service_host.partition(".")
        for route in self._objects("httproutes", "gateway.networking.k8s.io"):
            own = route["metadata"]["namespace"]
            for parent in route["spec"].get("parentRefs") or []:
                if parent.get("kind") == "Service" and parent["name"] == service and (
                    rest.split(".")[0] == parent.get("namespace", own)
                ):
                    # a method match is more specific than none: it goes first
                    rules = sorted(route["spec"]["rules"], key=lambda r: not r.get("matches"))
                    for rule in rules:
                        methods = [m.get("method") for m in rule.get("matches") or []]
                        if not methods or method in methods:
                            return dict(rule)
        return None

    def send(
        self, namespace: str, url_host: str, host_header: str, method: str = "GET"
    ) -> Delivery:
        """Where a ``method`` request from a sidecar in ``namespace`` to ``url_host`` goes."""
        rule = self._mesh_rule(namespace, host_header, method)
        if rule is not None:
            primary = self._deliver(rule["route"][0]["destination"]["host"], host_header)
            if "mirror" not in rule:
                return Delivery(primary)
            shadow = f"{host_header}-shadow" if self.shadow_suffix else host_header
            percent = float((rule.get("mirrorPercentage") or {}).get("value", 100))
            return Delivery(primary, self._deliver(rule["mirror"]["host"], shadow), percent)
        route = self._gamma_route(namespace, url_host, method)
        if route is not None:
            ns = url_host.split(".")[1]
            primary = self._workload(f"{route['backendRefs'][0]['name']}.{ns}")
            for rule_filter in route.get("filters") or []:
                mirror = rule_filter.get("requestMirror")
                if mirror:
                    share = mirror.get("percent")
                    if share is None:
                        fraction = mirror["fraction"]
                        share = 100 * fraction["numerator"] / fraction.get("denominator", 100)
                    target = self._workload(f"{mirror['backendRef']['name']}.{ns}")
                    return Delivery(primary, target, float(share))
            return Delivery(primary)
        return Delivery(self._deliver(url_host, host_header))  # passthrough

    # -- the traffic Job and the counters -----------------------------------------------------

    def traffic_job(self) -> dict[str, Any]:
        (job,) = self.emulator.objects("jobs", "batch")
        return job

    def fortio_delivery(self) -> Delivery:
        """Where the traffic Job's requests go, from its Fortio arguments."""
        job = self.traffic_job()
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        url_host = args[-1].split("/")[2]
        headers = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
        hosts = [h.split(":", 1)[1] for h in headers if h.lower().startswith("host:")]
        host = hosts[0] if hosts else url_host
        method = args[args.index("-X") + 1] if "-X" in args else "GET"
        return self.send(job["metadata"]["namespace"], url_host, host, method)

    def counts(self, seconds: float) -> dict[tuple[str, str, str], float]:
        """``istio_requests_total`` after ``seconds`` of load, by (destination workload,
        source workload, source namespace), with every revision pod scraped once a second."""
        job = self.traffic_job()
        rate = float(self._arg(job, "-qps"))
        source = (job["metadata"]["name"], job["metadata"]["namespace"])
        delivery = self.fortio_delivery()
        out: dict[tuple[str, str, str], float] = {}

        def add(workload: str | None, who: tuple[str, str], n: float) -> None:
            if workload is not None:
                key = (workload, *who)
                out[key] = out.get(key, 0.0) + n

        add(delivery.primary, source, rate * seconds)
        add(delivery.mirror, source, rate * seconds * delivery.percent / 100)
        for pod in self.emulator.objects("pods", labels="serving.knative.dev/revision"):
            annotations = pod["metadata"].get("annotations") or {}
            excluded = annotations.get("traffic.sidecar.istio.io/excludeInboundPorts", "")
            has_proxy = any(
                c.get("name") == "istio-proxy"
                for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
            )
            if has_proxy and SCRAPE_PORT not in excluded.split(","):
                revision = pod["metadata"]["labels"]["serving.knative.dev/revision"]
                add(f"{revision}-deployment", AUTOSCALER, seconds)
        return out

    @staticmethod
    def _arg(job: dict[str, Any], flag: str) -> str:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        return str(args[args.index(flag) + 1])

    def exposition(self, seconds: float) -> str:
        """The counters in Prometheus's text format, as the sidecars' ``/stats/prometheus``."""
        namespace = self.traffic_job()["metadata"]["namespace"]
        lines = ["# TYPE istio_requests_total counter"]
        for (workload, source, source_ns), n in sorted(self.counts(seconds).items()):
            labels = (
                f'reporter="destination",destination_workload="{workload}",'
                f'destination_workload_namespace="{namespace}",source_workload="{source}",'
                f'source_workload_namespace="{source_ns}",response_code="200"'
            )
            lines.append(f"istio_requests_total{{{labels}}} {int(n)}")
        return "\n".join(lines) + "\n"
