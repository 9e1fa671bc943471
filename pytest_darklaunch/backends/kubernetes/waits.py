"""Waiting for Kubernetes objects: list, then watch from that resourceVersion, with a deadline.

A wait ends when its check says so, raises at once when the check sees a terminal failure, and
otherwise fails at the deadline with the last observed state and the latest events, those of
the revision's pods included (the scheduler and the kubelet record theirs on the pod)::

    Knative Service default/sample-app (revision sample-app-v1) not ready after 300s:
    Ready=False (RevisionFailed: ... Unschedulable ...); events: Warning FailedScheduling:
    0/3 nodes are available: 3 Insufficient cpu.

Watches that break off (API server restarts, 410 Gone) are re-listed and resumed by tenacity
until the deadline.

>>> condition({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Ready")
{'type': 'Ready', 'status': 'True'}
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from pytest_darklaunch.backends.kubernetes.api import EVENT, POD, Kind, KubeApi
from pytest_darklaunch.backends.kubernetes.api_errors import (
    is_transient,
    status_of,
    translate,
    transport_errors,
)
from pytest_darklaunch.errors import ProvisioningError

Check = Callable[[list[dict[str, Any]]], bool]
Describe = Callable[[list[dict[str, Any]]], str]
# Knative's own signal that a revision will not come up without a change (image, crash, ...).
TERMINAL_KNATIVE_REASONS = frozenset({"RevisionFailed"})


class NotYet(Exception):
    """The awaited state was not reached within one list-and-watch round."""


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind``, or ``None``."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def format_condition(cond: Mapping[str, Any] | None, kind: str = "Ready") -> str:
    """``Ready=False (Reason: message)`` or ``no Ready condition yet``."""
    if not cond:
        return f"no {kind} condition yet"
    text = f"{cond.get('type', kind)}={cond.get('status')}"
    detail = ": ".join(str(cond[k]) for k in ("reason", "message") if cond.get(k))
    return f"{text} ({detail})" if detail else text


def recent_events(api: KubeApi, namespace: str, names: list[str], limit: int = 3) -> str:
    """The latest events about ``names``, as ``Type Reason: message; ...``."""
    found: list[dict[str, Any]] = []
    try:
        for name in names:
            items, _ = api.list(EVENT, namespace, field_selector=f"involvedObject.name={name}")
            found.extend(items)
    except ProvisioningError as exc:
        return f"events not readable ({exc})"
    if not found:
        return "no events"

    def stamp(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or "")

    found.sort(key=stamp)
    return "; ".join(
        f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}".strip()
        for e in found[-limit:]
    )


@dataclass
class _Watch:
    """One wait's state across list-and-watch rounds: what it selects and the objects seen."""

    api: KubeApi
    kind: Kind
    namespace: str
    selectors: dict[str, str | None]
    check: Check
    deadline: float
    clock: Callable[[], float]
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def objects(self) -> list[dict[str, Any]]:
        return list(self.seen.values())

    def one_round(self) -> list[dict[str, Any]]:
        """List, then watch from the list's resourceVersion; :class:`NotYet` if not done."""
        items, version = self.api.list(self.kind, self.namespace, **self.selectors)
        self.seen.clear()
        self.seen.update({item["metadata"]["name"]: item for item in items})
        if self.check(self.objects()):
            return self.objects()
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise NotYet()
        return self._follow(version, remaining)

    def _follow(self, version: str, remaining: float) -> list[dict[str, Any]]:
        for kind_of_event, obj in self.api.watch(
            self.kind,
            self.namespace,
            resource_version=version,
            timeout_s=max(1, math.ceil(remaining)),
            **self.selectors,
        ):
            self._record(kind_of_event, obj)
            if self.check(self.objects()):
                return self.objects()
            if self.clock() >= self.deadline:
                break
        raise NotYet()

    def _record(self, kind_of_event: str, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name", "")
        if kind_of_event == "DELETED":
            self.seen.pop(name, None)
        elif kind_of_event in ("ADDED", "MODIFIED"):
            self.seen[name] = obj


def wait_for(
    api: KubeApi,
    kind: Kind,
    namespace: str,
    *,
    what: str,
    check: Check,
    describe: Describe,
    timeout_s: float,
    label_selector: str | None = None,
    field_selector: str | None = None,
    event_names: Callable[[list[dict[str, Any]]], list[str]] = lambda items: [],
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Watch the objects selected by the selectors until ``check`` accepts them.

    ``check`` returns ``True`` when done, ``False`` to keep waiting, or raises
    :class:`ProvisioningError` for a terminal failure. Returns the last observed objects.
    """
    deadline = clock() + timeout_s
    selectors = {"label_selector": label_selector, "field_selector": field_selector}
    watch = _Watch(api, kind, namespace, selectors, check, deadline, clock)
    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception(_worth_another_round),
        reraise=True,
    )
    last_error = ""
    try:
        return retrying(watch.one_round)
    except NotYet:
        pass
    except transport_errors() as exc:
        if not _worth_another_round(exc):
            raise translate(exc, "watch", kind.qualified, namespace) from exc
        last_error = f"; last API error: {translate(exc, 'watch', kind.qualified, namespace)}"
    last = watch.objects()
    events = recent_events(api, namespace, event_names(last))
    raise ProvisioningError(
        f"{what} not ready after {timeout_s:g}s: {describe(last)}; events: {events}{last_error}"
    )


def _worth_another_round(exc: BaseException) -> bool:
    """Not there yet, a transient answer, or an expired watch (410 Gone): list and watch again."""
    return isinstance(exc, NotYet) or is_transient(exc) or status_of(exc) == 410


RevisionStatus = Callable[[], dict[str, Any] | None]


def knative_service_ready(revision: str, generation: int, read_revision: RevisionStatus) -> Check:
    """Ready once the controller saw ``generation`` and ``revision`` is its latest ready one.

    Terminal failures are read where Knative records them, not from the Service's ``Ready``
    reason alone (the route's ``RevisionMissing`` often overwrites it):

    - ``ConfigurationsReady=False`` (reason ``RevisionFailed``): terminal, unless the Revision
      says ``ResourcesAvailable=False`` reason ``Unschedulable``: a pod waiting for a node
      (cluster autoscaler, Karpenter, GKE Autopilot), which Knative recovers from, so the wait
      goes on until its deadline;
    - the Revision's ``ContainerHealthy=False`` (a crashing container): terminal at once.

    ``read_revision`` reads the Revision (``None`` when it does not exist yet).
    """

    def check(items: list[dict[str, Any]]) -> bool:
        if not items:
            return False
        svc = items[0]
        status = svc.get("status") or {}
        if int(status.get("observedGeneration") or 0) < generation:
            return False
        ready = condition(svc, "Ready")
        if (
            ready
            and ready.get("status") == "True"
            and status.get("latestReadyRevisionName") == revision
        ):
            return True
        config = condition(svc, "ConfigurationsReady") or ready
        config_failed = bool(config and config.get("status") == "False")
        if config_failed or (ready and ready.get("status") == "False"):
            _raise_if_terminal(svc, revision, config if config_failed else None, read_revision())
        return False

    return check


def _raise_if_terminal(
    svc: dict[str, Any],
    revision: str,
    config: dict[str, Any] | None,
    rev: dict[str, Any] | None,
) -> None:
    meta = svc["metadata"]
    where = f"Knative Service {meta.get('namespace')}/{meta['name']} (revision {revision})"
    resources = condition(rev, "ResourcesAvailable") if rev else None
    if resources and resources.get("status") == "False" and resources.get("reason") == (
        "Unschedulable"
    ):
        return  # waiting for a node: Knative recovers when one arrives
    revision_ready = condition(rev, "Ready") if rev else None
    if revision_ready and revision_ready.get("status") == "True":
        # The Service's status lags its Revision's: read after the Service, the Revision may
        # already have recovered (a node arrived), and the next Service update will say so.
        return
    healthy = condition(rev, "ContainerHealthy") if rev else None
    if healthy and healthy.get("status") == "False":
        raise ProvisioningError(f"{where} failed: {format_condition(healthy)}")
    if config and config.get("reason") in TERMINAL_KNATIVE_REASONS:
        raise ProvisioningError(f"{where} failed: {format_condition(config)}")


def pod_names(api: KubeApi, namespace: str, selector: str) -> list[str]:
    """Names of the pods matching ``selector`` (events about pods name the pod)."""
    try:
        items, _ = api.list(POD, namespace, label_selector=selector)
    except ProvisioningError:
        return []
    return [p["metadata"]["name"] for p in items]


SIDECAR = "istio-proxy"
NO_SIDECAR_HINT = (
    "the namespace disables injection (istio-injection=disabled), Istio is installed by "
    "revision without a default tag (label the namespace istio.io/rev=<revision>), or the "
    "mesh runs in ambient mode (not supported: the sampler reads the sidecars' "
    "istio_requests_total)"
)


def has_sidecar(pod: Mapping[str, Any]) -> bool:
    """Whether ``pod`` got Istio's sidecar, classic (a container) or native (an init container).

    >>> has_sidecar({"spec": {"initContainers": [{"name": "istio-proxy"}], "containers": []}})
    True
    """
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    return any(c.get("name") == SIDECAR for c in containers)


def require_sidecars(api: KubeApi, namespace: str, selector: str, what: str) -> None:
    """A :class:`ProvisioningError` when a pod matching ``selector`` lacks the sidecar."""
    items, _ = api.list(POD, namespace, label_selector=selector)
    if not items:
        raise ProvisioningError(f"{what} has no pod ({selector}) in namespace {namespace}")
    bare = [p["metadata"]["name"] for p in items if not has_sidecar(p)]
    if bare:
        raise ProvisioningError(
            f"{what}: pod {', '.join(bare)} in namespace {namespace} has no {SIDECAR} sidecar; "
            f"{NO_SIDECAR_HINT}"
        )


def describe_knative_service(items: list[dict[str, Any]]) -> str:
    if not items:
        return "the service does not exist"
    status = items[0].get("status") or {}
    return (
        f"{format_condition(condition(items[0], 'Ready'))}, "
        f"latestCreatedRevisionName={status.get('latestCreatedRevisionName')}, "
        f"latestReadyRevisionName={status.get('latestReadyRevisionName')}"
    )


def job_pod_running(items: list[dict[str, Any]]) -> bool:
    """True once a pod of the Job runs; a pod that already ended is a terminal failure."""
    for pod in items:
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Running":
            return True
        if phase in ("Failed", "Succeeded"):
            raise ProvisioningError(
                f"traffic pod {pod['metadata']['name']} ended ({phase}) before the experiment: "
                f"{describe_pods([pod])}; see kubectl logs -n {pod['metadata'].get('namespace')} "
                f"{pod['metadata']['name']}"
            )
    return False


def describe_pods(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no pod yet"
    parts = []
    for pod in items:
        status = pod.get("status") or {}
        states = []
        for cs in status.get("containerStatuses") or []:
            for state_name, state in (cs.get("state") or {}).items():
                reason = (state or {}).get("reason") or ""
                message = (state or {}).get("message") or ""
                states.append(f"{cs.get('name')} {state_name} {reason} {message}".strip())
        unready = [
            format_condition(c) for c in status.get("conditions") or [] if c.get("status") != "True"
        ]
        text = f"pod {pod['metadata']['name']} {status.get('phase', 'Unknown')}"
        if states:
            text += " [" + "; ".join(states) + "]"
        if unready:
            text += " (" + ", ".join(unready) + ")"
        parts.append(text)
    return "; ".join(parts)
