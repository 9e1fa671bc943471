"""The kubernetes backend: provisions the rendered objects on a cluster and removes them by run id.

Provisioning first checks, before it changes anything, that the cluster serves the APIs the
run needs (Knative Serving, and the mirror provider's: Istio's VirtualService or the Gateway
API's HTTPRoute), that no other run claims the same mirror host, and that no revision of an
earlier run with the same names is still being deleted. It then applies (server-side, field
manager ``pytest-darklaunch``) the Knative Service with the live revision and waits for it and
its sidecar, applies it again with the dark revision and the 100/0 traffic split and waits
again, applies the mirroring rule, then the Fortio Job, waits for its pod to run with its
sidecar, and (:mod:`.probe`) waits for the first mirrored request to reach dark. Teardown
deletes by the run-id label only, mirroring rules first, then the Job (its pods with it),
then the Knative Service (its revisions with it).

>>> backend = KubernetesBackend(spec, RunContext(run_id="r1", workdir="/tmp/r1"))  # doctest: +SKIP
>>> env = backend.provision()  # doctest: +SKIP
>>> env.labels["dark"]["destination_workload"]  # doctest: +SKIP
'sample-app-v2-deployment'
>>> backend.teardown()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from pytest_darklaunch.backends.base import Environment, RunContext, TrafficStats
from pytest_darklaunch.backends.guardian import Guardian
from pytest_darklaunch.backends.kubernetes.api import (
    GATEWAY,
    HTTP_ROUTE,
    JOB,
    KNATIVE_SERVICE,
    POD,
    REVISION,
    VIRTUAL_SERVICE,
    Kind,
    KubeApi,
    RetryPolicy,
    credentials_source,
    load_api_client,
)
from pytest_darklaunch.backends.kubernetes.cleanup import delete_run
from pytest_darklaunch.backends.kubernetes.environment import (
    endpoints_of,
    series_labels,
    started_at,
)
from pytest_darklaunch.backends.kubernetes.names import RUN_ID_KEY
from pytest_darklaunch.backends.kubernetes.portforward import (
    PortForwarder,
    parse_service,
    resolve_service_pod,
)
from pytest_darklaunch.backends.kubernetes.preflight import (
    gateway_address,
    refuse_host_collision,
    require_apis,
    wait_for_leftover_revisions,
)
from pytest_darklaunch.backends.kubernetes.probe import (
    DEFAULT_SCRAPE_INTERVAL_S,
    find_scrape_interval,
    probe_prometheus,
)
from pytest_darklaunch.backends.kubernetes.render import (
    Schedule,
    mirror_provider,
    names_for,
    render,
)
from pytest_darklaunch.backends.kubernetes.routes_check import refuse_routes
from pytest_darklaunch.backends.kubernetes.waits import (
    describe_knative_service,
    describe_pods,
    job_pod_running,
    knative_service_ready,
    pod_names,
    require_sidecars,
    wait_for,
)
from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.errors import ConfigError, ProvisioningError


@dataclass(frozen=True)
class KubeSettings:
    """Deadlines, retries, the Prometheus to forward to and its scrape interval.

    ``prometheus_service`` is ``NAMESPACE/NAME[:PORT]``; ``scrape_interval_s`` is the cluster
    Prometheus's (Istio's addon scrapes every 15 s, kube-prometheus-stack every 30 s), which
    the sampler's windows must exceed. ``mirror_probe_s`` bounds the wait for the first
    mirrored request at dark (0: no probe; tests without a Prometheus use that).
    """

    ready_timeout_s: float = 300.0
    job_timeout_s: float = 300.0
    retry: RetryPolicy = RetryPolicy()
    prometheus_service: str = "istio-system/prometheus:9090"
    # None: as Prometheus's targets API reports it (else DEFAULT_SCRAPE_INTERVAL_S).
    scrape_interval_s: float | None = None
    mirror_probe_s: float | None = None

    def probe_timeout_s(self, scrape_interval_s: float) -> float:
        """The probe's deadline: a few scrapes (the first mirrored request must be scraped)."""
        if self.mirror_probe_s is not None:
            return self.mirror_probe_s
        return max(60.0, 4 * scrape_interval_s)


class KubernetesBackend:
    """The experiment on a cluster with Knative Serving (Istio networking) and Prometheus.

    ``api_client`` (a ``kubernetes.client.ApiClient``) replaces the kubeconfig/in-cluster
    lookup, e.g. to point at a test API emulator.
    """

    name = "kubernetes"

    def __init__(
        self,
        spec: Spec,
        run: RunContext,
        *,
        api_client: Any = None,
        settings: KubeSettings | None = None,
    ) -> None:
        self.spec = spec
        self.run = run
        self.settings = settings or KubeSettings()
        self.names = names_for(spec, run.run_id, run.namespace)
        self.provider, self.gateway = mirror_provider(spec)
        self.scrape_interval_s = self.settings.scrape_interval_s or DEFAULT_SCRAPE_INTERVAL_S
        self.schedule = Schedule(scrape_interval_s=self.scrape_interval_s)
        refuse_routes(spec)  # also without provisioning: the metrics have no route either way
        # Pure and cheap: a spec the cluster would refuse fails here, before any API call.
        self.manifests = (
            [] if run.provision == "none" else self._render(self.schedule)
        )
        try:
            parse_service(self.settings.prometheus_service)
        except ValueError:
            raise ConfigError(
                "prometheus service",
                self.settings.prometheus_service,
                "backend settings",
                "NAMESPACE/NAME[:PORT] such as istio-system/prometheus:9090",
            ) from None
        self._api_client = api_client
        self._api: KubeApi | None = None
        self._forwarder: PortForwarder | None = None
        self._guardian: Guardian | None = None
        self._touched = False

    @property
    def mirror_kind(self) -> Kind:
        return HTTP_ROUTE if self.provider == "gateway-api" else VIRTUAL_SERVICE

    # -- the protocol -------------------------------------------------------------------------

    def provision(self) -> Environment:
        """Check, apply everything, wait until it runs, probe the mirror, return the environment."""
        prometheus_url = self._prometheus_url()
        self._find_scrape_interval(prometheus_url)
        api = self._kube()
        if self.run.provision == "none":
            require_apis(api, [KNATIVE_SERVICE])
            for revision in (self.names.live_revision, self.names.dark_revision):
                self._require_revision_sidecar(api, revision)
            return self._environment(prometheus_url, {}, None)
        self._preflight(api)
        ksvc_live, ksvc_dark, *rest = self.manifests  # the mirroring rule, Secret?, Job
        self._start_guardian()
        self._touched = True
        self._apply_service(api, ksvc_live, self.names.live_revision)
        service = self._apply_service(api, ksvc_dark, self.names.dark_revision)
        for manifest in rest:
            api.apply(manifest)
        pods = self._wait_for_traffic(api)
        env = self._environment(prometheus_url, endpoints_of(service), started_at(pods))
        self._probe(env)
        return env

    def traffic_stats(self) -> TrafficStats | None:
        """``None``: Fortio reports its counters only in its pod log, at the end of its run."""
        return None

    def teardown(self) -> None:
        """Delete this run's objects by label (unless kept); safe to call twice."""
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        try:
            if self._touched and not self.run.keep:
                self._delete_all()
        finally:
            if self._guardian is not None:
                self._guardian.dismiss()
                self._guardian = None
            if self._api is not None:
                self._api.close()

    def keep_instructions(self) -> str:
        """What ``--darklaunch-keep`` left running and the command that removes it."""
        n = self.names
        if self.run.provision == "none":
            return f"nothing was created (provision none) in namespace {n.namespace}"
        return (
            f"kept Knative Service {n.namespace}/{n.service} (revisions {n.live_revision}, "
            f"{n.dark_revision}), {self.mirror_kind.kind} {n.mirror_route} and Job "
            f"{n.job} of run {n.run_id}; remove them with:\n  {n.delete_command()}"
        )

    # -- steps -------------------------------------------------------------------------------

    def _render(self, schedule: Schedule) -> list[dict[str, Any]]:
        return render(self.spec, self.run.run_id, namespace=self.run.namespace, schedule=schedule)

    def _kube(self) -> KubeApi:
        if self._api is None:
            client = self._api_client or load_api_client(self.run.kube_context)
            self._api = KubeApi(client, self.settings.retry, cache_dir=self.run.workdir)
        return self._api

    def _preflight(self, api: KubeApi) -> None:
        """Everything that can be known wrong before the first write (see :mod:`.preflight`)."""
        kinds = [KNATIVE_SERVICE, REVISION, self.mirror_kind, JOB]
        if self.gateway:
            kinds.append(GATEWAY)
        require_apis(api, kinds)
        if self.gateway:
            address = gateway_address(api, self.gateway)
            if address:
                self.schedule = Schedule(self.scrape_interval_s, address)
                self.manifests = self._render(self.schedule)
        if self._refuse_foreign_service(api) is None:
            wait_for_leftover_revisions(api, self.names, self.settings.ready_timeout_s)
        host_routed = self.provider == "istio" or self.gateway
        if host_routed:
            refuse_host_collision(api, self.names, self.mirror_kind, self.spec.mirror.host)

    def _refuse_foreign_service(self, api: KubeApi) -> dict[str, Any] | None:
        """Never take over a Knative Service another run (or a person) owns; returns ours."""
        n = self.names
        existing = api.get(KNATIVE_SERVICE, n.namespace, n.service)
        if existing is None:
            return None
        owner = ((existing.get("metadata") or {}).get("labels") or {}).get(RUN_ID_KEY)
        if owner == n.run_id:
            return existing
        whose = f"run {owner}" if owner else "no pytest-darklaunch run"
        raise ProvisioningError(
            f"Knative Service {n.namespace}/{n.service} already exists and belongs to {whose}; "
            "delete it, choose another --darklaunch-target or --darklaunch-namespace, or measure "
            "it as deployed with --darklaunch-provision none"
        )

    def _apply_service(
        self, api: KubeApi, manifest: dict[str, Any], revision: str
    ) -> dict[str, Any]:
        n = self.names
        applied = api.apply(manifest)
        generation = int((applied.get("metadata") or {}).get("generation") or 1)
        pods = f"serving.knative.dev/revision={revision}"
        items = wait_for(
            api,
            KNATIVE_SERVICE,
            n.namespace,
            what=f"Knative Service {n.namespace}/{n.service} (revision {revision})",
            field_selector=f"metadata.name={n.service}",
            check=knative_service_ready(
                revision, generation, lambda: api.get(REVISION, n.namespace, revision)
            ),
            describe=describe_knative_service,
            timeout_s=self.settings.ready_timeout_s,
            event_names=lambda items: [n.service, revision, *pod_names(api, n.namespace, pods)],
        )
        self._require_revision_sidecar(api, revision)
        return items[0]

    def _require_revision_sidecar(self, api: KubeApi, revision: str) -> None:
        require_sidecars(
            api,
            self.names.namespace,
            f"serving.knative.dev/revision={revision}",
            f"revision {revision}",
        )

    def _wait_for_traffic(self, api: KubeApi) -> list[dict[str, Any]]:
        n = self.names
        selector = f"{n.selector},job-name={n.job}"
        pods = wait_for(
            api,
            POD,
            n.namespace,
            what=f"traffic Job {n.namespace}/{n.job}",
            label_selector=selector,
            check=job_pod_running,
            describe=describe_pods,
            timeout_s=self.settings.job_timeout_s,
            event_names=lambda pods: [n.job] + [p["metadata"]["name"] for p in pods],
        )
        # Without its sidecar Fortio's requests bypass the mirroring rule altogether.
        require_sidecars(api, n.namespace, selector, f"traffic Job {n.job}")
        return pods

    def _find_scrape_interval(self, prometheus_url: str) -> None:
        """Unless given, the interval Prometheus reports for its targets; the Job's deadline
        and the sampler's windows follow it."""
        found = None
        if self.settings.scrape_interval_s is None:
            found = find_scrape_interval(prometheus_url, self.names.namespace)
        if found is not None:
            self.scrape_interval_s = found
            self.schedule = Schedule(found, self.schedule.gateway_address)
            if self.manifests:
                self.manifests = self._render(self.schedule)

    def _probe(self, env: Environment) -> None:
        timeout_s = self.settings.probe_timeout_s(self.scrape_interval_s)
        mirrored = any(t.method in self.spec.mirror.methods for t in self.spec.traffic.mix.targets)
        if timeout_s > 0 and self.spec.mirror.percent > 0 and mirrored:
            probe_prometheus(env.prometheus_url, env.labels["dark"], timeout_s)

    def _start_guardian(self) -> None:
        """Should pytest die before teardown (SIGKILL, the OOM killer), a guardian process runs
        ``python -m pytest_darklaunch delete`` for this run. Only with the kubeconfig or
        in-cluster credentials, which that command loads too (not with an injected client)."""
        if self.run.keep or self._api_client is not None:
            return
        n = self.names
        then = [sys.executable, "-m", "pytest_darklaunch", "delete", "--run-id", n.run_id,
                "--namespace", n.namespace]
        if self.run.kube_context:
            then += ["--context", self.run.kube_context]
        os.makedirs(self.run.workdir, mode=0o700, exist_ok=True)
        remove = [self.run.run_dir] if self.run.run_dir else []
        self._guardian = Guardian.start(
            os.path.join(self.run.workdir, "guardian.log"), then=then, remove=remove
        )

    def _delete_all(self) -> None:
        delete_run(self._kube(), self.names.namespace, self.names.run_id)

    def _prometheus_url(self) -> str:
        if self.run.prometheus_url:
            return self.run.prometheus_url
        if self._forwarder is None:
            namespace, name, port = parse_service(self.settings.prometheus_service)
            api = self._kube()
            pod, pod_port = resolve_service_pod(api, namespace, name, port)
            forwarder = PortForwarder(api.api_client, namespace, pod, pod_port)
            forwarder.start()
            self._forwarder = forwarder
        return self._forwarder.url

    def _labels(self) -> dict[str, dict[str, str]]:
        return series_labels(self.names, provisioned=self.run.provision != "none")

    def _environment(
        self, prometheus_url: str, endpoints: dict[str, str], traffic_started_at: float | None
    ) -> Environment:
        n = self.names
        details = {
            "scrape_interval": f"{self.scrape_interval_s:g}s",
            "namespace": n.namespace,
            "service": n.service,
            "live_revision": n.live_revision,
            "dark_revision": n.dark_revision,
            "provision": self.run.provision,
            "credentials": "injected client"
            if self._api_client is not None
            else credentials_source(self.run.kube_context),
            "prometheus": self.run.prometheus_url
            or f"port-forward to service {self.settings.prometheus_service}",
        }
        if traffic_started_at is not None:
            details["traffic_started_at"] = f"{traffic_started_at:.6f}"
        if self.run.provision != "none":
            details.update(
                job=n.job,
                mirror_provider=self.provider,
                mirror_rule=f"{self.mirror_kind.qualified}/{n.mirror_route}",
                delete_command=n.delete_command(),
            )
        return Environment(
            backend=self.name,
            run_id=n.run_id,
            prometheus_url=prometheus_url,
            metric_source="istio",
            labels=self._labels(),
            endpoints=endpoints,
            scrape_interval_s=self.scrape_interval_s,
            details=details,
        )
