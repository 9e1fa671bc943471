"""The kubernetes backend: provisions the rendered objects on a cluster and removes them by run id.

Provisioning applies (server-side, field manager ``pytest-darklaunch``) the Knative Service with
the live revision and waits for it, applies it again with the dark revision and the 100/0
traffic split and waits again, applies the two VirtualServices, then the Fortio Job, and waits
for its pod to run. Teardown deletes by the run-id label only, mirroring rules first, then the
Job (its pods with it), then the Knative Service (its revisions with it).

>>> backend = KubernetesBackend(spec, RunContext(run_id="r1", workdir="/tmp/r1"))  # doctest: +SKIP
>>> env = backend.provision()  # doctest: +SKIP
>>> env.labels["dark"]["destination_workload"]  # doctest: +SKIP
'sample-app-v2-deployment'
>>> backend.teardown()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from pytest_darklaunch.backends.base import Environment, RunContext, TrafficStats
from pytest_darklaunch.backends.guardian import Guardian
from pytest_darklaunch.backends.kubernetes.api import (
    JOB,
    KNATIVE_SERVICE,
    POD,
    VIRTUAL_SERVICE,
    KubeApi,
    RetryPolicy,
    load_api_client,
)
from pytest_darklaunch.backends.kubernetes.portforward import (
    PortForwarder,
    parse_service,
    resolve_service_pod,
)
from pytest_darklaunch.backends.kubernetes.render import (
    RUN_ID_KEY,
    delete_command,
    names_for,
    render,
    run_selector,
)
from pytest_darklaunch.backends.kubernetes.routes_check import refuse_routes
from pytest_darklaunch.backends.kubernetes.waits import (
    describe_knative_service,
    describe_pods,
    job_pod_running,
    knative_service_ready,
    wait_for,
)
from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.errors import ConfigError, ProvisioningError


@dataclass(frozen=True)
class KubeSettings:
    """Deadlines, retries and the Prometheus to forward to.

    ``prometheus_service`` is ``NAMESPACE/NAME[:PORT]``; ``scrape_interval_s`` is the cluster
    Prometheus's (Istio's addon scrapes every 15 s), which the sampler's windows must exceed.
    """

    ready_timeout_s: float = 300.0
    job_timeout_s: float = 300.0
    retry: RetryPolicy = RetryPolicy()
    prometheus_service: str = "istio-system/prometheus:9090"
    scrape_interval_s: float = 15.0


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
        settings: Optional[KubeSettings] = None,
    ) -> None:
        self.spec = spec
        self.run = run
        self.settings = settings or KubeSettings()
        self.names = names_for(spec, run.run_id, run.namespace)
        refuse_routes(spec)  # also without provisioning: the metrics have no route either way
        # Pure and cheap: a spec the cluster would refuse fails here, before any API call.
        self.manifests = (
            [] if run.provision == "none" else render(spec, run.run_id, namespace=run.namespace)
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
        self._api: Optional[KubeApi] = None
        self._forwarder: Optional[PortForwarder] = None
        self._guardian: Optional[Guardian] = None
        self._touched = False

    # -- the protocol -------------------------------------------------------------------------

    def provision(self) -> Environment:
        """Apply everything, wait until it runs, and return the environment to measure."""
        prometheus_url = self._prometheus_url()
        if self.run.provision == "none":
            return self._environment(prometheus_url, {}, None)
        ksvc_live, ksvc_dark, mirror_vs, routing_vs, job = self.manifests
        api = self._kube()
        self._refuse_foreign_service(api)
        self._start_guardian()
        self._touched = True
        self._apply_service(api, ksvc_live, self.names.live_revision)
        service = self._apply_service(api, ksvc_dark, self.names.dark_revision)
        api.apply(mirror_vs)
        api.apply(routing_vs)
        api.apply(job)
        n = self.names
        pods = wait_for(
            api,
            POD,
            n.namespace,
            what=f"traffic Job {n.namespace}/{n.job}",
            label_selector=f"{n.selector},job-name={n.job}",
            check=job_pod_running,
            describe=describe_pods,
            timeout_s=self.settings.job_timeout_s,
            event_names=lambda pods: [n.job] + [p["metadata"]["name"] for p in pods],
        )
        return self._environment(prometheus_url, _endpoints(service), _started_at(pods))

    def traffic_stats(self) -> Optional[TrafficStats]:
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
            f"{n.dark_revision}), VirtualServices {n.mirror_vs} and {n.routing_vs} and Job "
            f"{n.job} of run {n.run_id}; remove them with:\n  {n.delete_command()}"
        )

    # -- steps -------------------------------------------------------------------------------

    def _kube(self) -> KubeApi:
        if self._api is None:
            client = self._api_client or load_api_client(self.run.kube_context)
            self._api = KubeApi(client, self.settings.retry, cache_dir=self.run.workdir)
        return self._api

    def _refuse_foreign_service(self, api: KubeApi) -> None:
        """Never take over a Knative Service another run (or a person) owns."""
        n = self.names
        existing = api.get(KNATIVE_SERVICE, n.namespace, n.service)
        if existing is None:
            return
        owner = ((existing.get("metadata") or {}).get("labels") or {}).get(RUN_ID_KEY)
        if owner == n.run_id:
            return
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
        items = wait_for(
            api,
            KNATIVE_SERVICE,
            n.namespace,
            what=f"Knative Service {n.namespace}/{n.service} (revision {revision})",
            field_selector=f"metadata.name={n.service}",
            check=knative_service_ready(revision, generation),
            describe=describe_knative_service,
            timeout_s=self.settings.ready_timeout_s,
            event_names=lambda items: [n.service, revision],
        )
        return items[0]

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

    def _environment(
        self, prometheus_url: str, endpoints: dict[str, str], traffic_started_at: Optional[float]
    ) -> Environment:
        n = self.names
        labels = {
            role: {
                "destination_workload": f"{revision}-deployment",
                "destination_workload_namespace": n.namespace,
                "reporter": "destination",
            }
            for role, revision in (("live", n.live_revision), ("dark", n.dark_revision))
        }
        details = {
            "namespace": n.namespace,
            "service": n.service,
            "live_revision": n.live_revision,
            "dark_revision": n.dark_revision,
            "provision": self.run.provision,
            "prometheus": self.run.prometheus_url
            or f"port-forward to service {self.settings.prometheus_service}",
        }
        if traffic_started_at is not None:
            details["traffic_started_at"] = f"{traffic_started_at:.6f}"
        if self.run.provision != "none":
            details.update(
                job=n.job,
                virtual_services=f"{n.mirror_vs},{n.routing_vs}",
                delete_command=n.delete_command(),
            )
        return Environment(
            backend=self.name,
            run_id=n.run_id,
            prometheus_url=prometheus_url,
            metric_source="istio",
            labels=labels,
            endpoints=endpoints,
            scrape_interval_s=self.settings.scrape_interval_s,
            details=details,
        )


def delete_run(api: KubeApi, namespace: str, run_id: str) -> None:
    """Delete every object of run ``run_id`` in ``namespace``, by its label only: the
    VirtualServices first (mirroring stops), then the Job once its pods are gone, then the
    Knative Service (its revisions follow). What cannot be deleted is reported once the rest
    is gone, with the command that removes it."""
    selector = run_selector(run_id)
    failures = []
    for kind, propagation in (
        (VIRTUAL_SERVICE, "Background"),
        # Foreground: the Job goes only once its pods are gone.
        (JOB, "Foreground"),
        (KNATIVE_SERVICE, "Background"),
    ):
        try:
            api.delete_collection(kind, namespace, selector, propagation)
        except ProvisioningError as exc:
            failures.append(str(exc))
    if failures:
        raise ProvisioningError(
            f"teardown of run {run_id} incomplete: {' | '.join(failures)}; "
            f"remove the rest with: {delete_command(namespace, run_id)}"
        )


def _started_at(pods: list[dict[str, Any]]) -> float:
    """When Fortio started: its container's ``startedAt`` as the cluster saw it, else now."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            started = ((status.get("state") or {}).get("running") or {}).get("startedAt")
            if status.get("name") == "fortio" and started:
                try:
                    return datetime.fromisoformat(str(started).replace("Z", "+00:00")).timestamp()
                except ValueError:
                    break
    return time.time()


def _endpoints(service: dict[str, Any]) -> dict[str, str]:
    """The URLs Knative reports: the service's (live) and the ``dark`` tag's."""
    status = service.get("status") or {}
    out = {}
    if status.get("url"):
        out["live"] = str(status["url"])
    for target in status.get("traffic") or []:
        if target.get("tag") == "dark" and target.get("url"):
            out["dark"] = str(target["url"])
    return out
