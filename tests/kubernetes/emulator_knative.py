"""The emulator's Knative Serving controller (tests only): what Knative does with a Service.

For a Service it creates the Revision named by ``spec.template.metadata.name`` (owned by the
Service, as Knative's Configuration would) and one pod for it (owned through the Revision,
sidecar-injected by :meth:`Controllers.admit_pod` like Istio's webhook), and sets the status of
the Revision and the Service per outcome (``Controllers.knative[revision]``), as the upstream
controllers do (knative/serving ``knative-v1.23.0``):

- ``ready``: everything True;
- ``pending`` (an image still being pulled): ``Ready=Unknown``; the pod waits in
  ImagePullBackOff and the kubelet's event is on the pod;
- ``unschedulable`` (no node yet: cluster autoscaler, Karpenter): the Revision's
  ``ResourcesAvailable=False`` reason ``Unschedulable`` at once, which the Configuration reports
  as ``RevisionFailed`` (``reconcile_resources.go:105-111``, ``configuration.go:116``); the
  scheduler's FailedScheduling event is on the pod; Knative recovers once a node comes;
- ``failed`` (a crashing container): ``ContainerHealthy=False``; ``ConfigurationsReady`` says
  ``RevisionFailed`` but the Service's ``Ready`` carries the route's ``RevisionMissing``
  (``service.go:96,122``: the route's status is propagated last);
- a template name that exists and belongs to no Service of this name (a Revision of a deleted
  Service not yet garbage-collected): ``RevisionFailed`` "... already exists"
  (``configuration.go:242-251``).
"""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING, Any

from .emulator_store import ResourceType, now

if TYPE_CHECKING:
    from .emulator_controllers import Controllers, Outcome

KNATIVE = "serving.knative.dev"


def _conditions(*rows: tuple[str, str, str, str]) -> list[dict[str, Any]]:
    return [
        {
            "type": t,
            "status": s,
            **({"reason": r} if r else {}),
            **({"message": m} if m else {}),
            "lastTransitionTime": now(),
        }
        for t, s, r, m in rows
    ]


def _pod_status(outcome: Outcome) -> dict[str, Any]:
    if outcome.state == "ready":
        return {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "user-container", "ready": True, "state": {"running": {}}}
            ],
        }
    if outcome.state == "unschedulable":
        return {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": outcome.message,
                }
            ],
        }
    state = (
        {"waiting": {"reason": "ImagePullBackOff", "message": outcome.message}}
        if outcome.state == "pending"
        else {"waiting": {"reason": "CrashLoopBackOff", "message": outcome.message}}
    )
    return {
        "phase": "Pending" if outcome.state == "pending" else "Running",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{"name": "user-container", "ready": False, "state": state}],
    }


def _revision_conditions(outcome: Outcome) -> list[dict[str, Any]]:
    if outcome.state == "ready":
        return _conditions(
            ("ContainerHealthy", "True", "", ""),
            ("Ready", "True", "", ""),
            ("ResourcesAvailable", "True", "", ""),
        )
    if outcome.state == "unschedulable":
        return _conditions(
            ("ContainerHealthy", "Unknown", "", ""),
            ("Ready", "False", "Unschedulable", outcome.message),
            ("ResourcesAvailable", "False", "Unschedulable", outcome.message),
        )
    if outcome.state == "failed":
        message = f"Container failed with: {outcome.message}"
        return _conditions(
            ("ContainerHealthy", "False", "ExitCode1", message),
            ("Ready", "False", "ExitCode1", message),
            ("ResourcesAvailable", "Unknown", "Deploying", ""),
        )
    return _conditions(
        ("ContainerHealthy", "Unknown", "Deploying", ""),
        ("Ready", "Unknown", "Deploying", ""),
        ("ResourcesAvailable", "Unknown", "Deploying", ""),
    )


def _service_conditions(outcome: Outcome, name: str, revision: str) -> list[dict[str, Any]]:
    if outcome.state == "ready":
        return _conditions(
            ("ConfigurationsReady", "True", "", ""),
            ("Ready", "True", "", ""),
            ("RoutesReady", "True", "", ""),
        )
    if outcome.state in ("unschedulable", "taken"):
        text = (
            f'Revision "{revision}" failed with message: {outcome.message}.'
            if outcome.state == "unschedulable"
            else f"Revision creation failed with message: {outcome.message}."
        )
        return _conditions(
            ("ConfigurationsReady", "False", "RevisionFailed", text),
            ("Ready", "False", "RevisionFailed", text),
            ("RoutesReady", "True", "", ""),
        )
    if outcome.state == "failed":
        text = f'Revision "{revision}" failed with message: Container failed with: '
        missing = f'Revision "{revision}" failed to become ready.'
        return _conditions(
            ("ConfigurationsReady", "False", "RevisionFailed", text + outcome.message + "."),
            ("Ready", "False", "RevisionMissing", missing),
            ("RoutesReady", "False", "RevisionMissing", missing),
        )
    text = f'Configuration "{name}" is waiting for a Revision to become ready.'
    return _conditions(
        ("ConfigurationsReady", "Unknown", "RevisionMissing", text),
        ("Ready", "Unknown", "RevisionMissing", text),
        ("RoutesReady", "Unknown", "", ""),
    )


def _ensure_revision(
    ctrl: Controllers, svc: dict[str, Any], revision: str
) -> tuple[dict[str, Any] | None, bool]:
    """The Revision and its pod, created if missing; ``(None, True)`` when the name is taken
    by a Revision this Service does not control."""
    store, meta = ctrl.emulator.store, svc["metadata"]
    template = svc["spec"].get("template") or {}
    rev_rt = ctrl.rt("revisions", KNATIVE)
    existing = store.get(rev_rt, meta["namespace"], revision)
    if existing is not None:
        owners = existing["metadata"].get("ownerReferences") or []
        return (existing, False) if any(o["uid"] == meta["uid"] for o in owners) else (None, True)
    labels = {
        **((template.get("metadata") or {}).get("labels") or {}),
        "serving.knative.dev/service": meta["name"],
        "serving.knative.dev/configuration": meta["name"],
    }
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    rev = store.create(
        rev_rt,
        {
            "apiVersion": f"{KNATIVE}/v1",
            "kind": "Revision",
            "metadata": {
                "name": revision,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": ctrl.owner(svc),
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        },
    )
    ctrl.admit_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{revision}-deployment-{uuid.uuid4().hex[:5]}",
                "namespace": meta["namespace"],
                "labels": {**labels, "serving.knative.dev/revision": revision},
                "annotations": annotations,
                "ownerReferences": ctrl.owner(rev),
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
            "status": {"phase": "Pending"},
        }
    )
    return rev, False


def _update_pods(ctrl: Controllers, rev: dict[str, Any], outcome: Outcome) -> None:
    """The revision's pods get the outcome's status; the kubelet's or scheduler's event is
    recorded on the pod, as on a cluster."""
    pods_rt = ctrl.rt("pods")
    selector = f"serving.knative.dev/revision={rev['metadata']['name']}"
    for pod in ctrl.emulator.store.list(pods_rt, rev["metadata"]["namespace"], selector):
        if ctrl.set_status(pods_rt, pod, _pod_status(outcome)) and outcome.state != "ready":
            reason = {"unschedulable": "FailedScheduling", "pending": "Failed"}.get(
                outcome.state, "BackOff"
            )
            ctrl.event(pod, "Pod", reason, outcome.message)


def reconcile_service(
    ctrl: Controllers, rt: ResourceType, svc: dict[str, Any], again: bool = False
) -> None:
    from .emulator_controllers import Outcome

    store, meta = ctrl.emulator.store, svc["metadata"]
    name, ns, generation = meta["name"], meta["namespace"], meta["generation"]
    current = store.get(rt, ns, name)
    if current is None or current["metadata"]["generation"] != generation:
        return  # a newer write is queued
    if (current.get("status") or {}).get("observedGeneration") == generation and not again:
        return  # our own status write
    template = current["spec"].get("template") or {}
    revision = (template.get("metadata") or {}).get("name") or f"{name}-{generation:05d}"
    rev, taken = _ensure_revision(ctrl, current, revision)
    outcome = ctrl.knative.get(revision, ctrl.ready)
    if taken:
        outcome = Outcome(
            "taken", "RevisionFailed", f'revisions.{KNATIVE} "{revision}" already exists'
        )
    previous = current.get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "latestCreatedRevisionName": revision,
        "latestReadyRevisionName": previous.get("latestReadyRevisionName"),
        "url": f"http://{name}.{ns}.example.com",
        "conditions": _service_conditions(outcome, name, revision),
    }
    if rev is not None:
        ctrl.set_status(
            ctrl.rt("revisions", KNATIVE), rev, {"conditions": _revision_conditions(outcome)}
        )
        _update_pods(ctrl, rev, outcome)
    if outcome.state == "ready":
        status["latestReadyRevisionName"] = revision
        traffic = current["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]
        status["traffic"] = [
            {
                **t,
                "revisionName": t.get("revisionName") or revision,
                **({"url": f"http://{t['tag']}-{name}.{ns}.example.com"} if t.get("tag") else {}),
            }
            for t in traffic
        ]
    ctrl.set_status(rt, current, status)
