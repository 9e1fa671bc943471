"""Simulated controllers of the Kubernetes API *emulator* (tests only).

They react to writes from their own thread, as real controllers do, so a client sees the
object first without status and then its status change through a watch:

- Knative: for a Service, creates the revision named by ``spec.template.metadata.name`` (with
  a pod for it, owned through the revision) and sets the Service's status: Ready, failed
  (``RevisionFailed``) or pending (``Ready=Unknown``), per revision (``knative[revision]``);
- Job: for a new Job, creates one pod from its template, Running, Pending with an image pull
  back-off, or Failed, per ``job_pods`` (default Running), and sets the Job's status.

Each non-ready outcome also records a Warning event about the object, as the real ones do.
"""

from __future__ import annotations

import copy
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .emulator_store import ApiError, ResourceType, now

if TYPE_CHECKING:
    from .emulator import Emulator


@dataclass(frozen=True)
class Outcome:
    """What a controller makes of an object: ``ready``, ``pending`` or ``failed``."""

    state: str = "ready"
    reason: str = ""
    message: str = ""


READY = Outcome()


def pending(message: str = "0/1 nodes are available: 1 Insufficient cpu.") -> Outcome:
    return Outcome("pending", "RevisionMissing", message)


def failed(message: str = 'Back-off pulling image "ghcr.io/acme/app:broken"') -> Outcome:
    return Outcome("failed", "RevisionFailed", message)


class Controllers:
    """The Knative and Job controllers of one emulator; configure outcomes before provisioning."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.knative: dict[str, Outcome] = {}
        self.job_pods: Outcome = READY
        self._queue: queue.Queue[Optional[tuple[str, ResourceType, dict[str, Any]]]] = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        emulator.store.listeners.append(self._observe)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emulator-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile a Knative Service again (after a test changed its outcome)."""
        rt = self._rt("services", "serving.knative.dev")
        obj = self.emulator.store.get(rt, namespace, name)
        if obj is not None:
            self._queue.put(("ksvc-again", rt, obj))

    def _observe(self, kind: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        if (rt.group, rt.plural) == ("serving.knative.dev", "services"):
            self._queue.put(("ksvc", rt, obj))
        elif (rt.group, rt.plural) == ("batch", "jobs") and kind == "ADDED":
            self._queue.put(("job", rt, obj))

    def _run(self) -> None:
        for item in iter(self._queue.get, None):
            what, rt, obj = item
            if what.startswith("ksvc"):
                self._reconcile_service(rt, obj, again=what == "ksvc-again")
            else:
                self._start_job(rt, obj)

    # -- helpers ----------------------------------------------------------------------------

    def _rt(self, plural: str, group: str = "") -> ResourceType:
        return self.emulator.resource(plural, group)

    def _event(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        self.emulator.store.create(
            self._rt("events"),
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{uuid.uuid4().hex[:8]}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": {
                    "kind": kind,
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta.get("uid"),
                },
                "type": "Warning",
                "reason": reason,
                "message": message,
                "lastTimestamp": now(),
                "count": 1,
            },
        )

    @staticmethod
    def _owner(obj: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    def _set_status(self, rt: ResourceType, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        store = self.emulator.store
        with store.lock:
            current = store.get(rt, obj["metadata"]["namespace"], obj["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != obj["metadata"]["uid"]:
                return False  # deleted meanwhile
            if current.get("status") == status:
                return True
            current["status"] = status
            store.replace(rt, current)
            return True

    # -- Knative ----------------------------------------------------------------------------

    def _reconcile_service(
        self, rt: ResourceType, svc: dict[str, Any], again: bool = False
    ) -> None:
        store, meta = self.emulator.store, svc["metadata"]
        name, ns, generation = meta["name"], meta["namespace"], meta["generation"]
        with store.lock:
            current = store.get(rt, ns, name)
        if current is None or current["metadata"]["generation"] != generation:
            return  # a newer write is queued
        if (current.get("status") or {}).get("observedGeneration") == generation and not again:
            return  # our own status write
        template = current["spec"].get("template") or {}
        revision = (template.get("metadata") or {}).get("name") or f"{name}-{generation:05d}"
        rev_rt = self._rt("revisions", "serving.knative.dev")
        if store.get(rev_rt, ns, revision) is None:
            labels = {
                **((template.get("metadata") or {}).get("labels") or {}),
                "serving.knative.dev/service": name,
                "serving.knative.dev/configuration": name,
            }
            rev = store.create(
                rev_rt,
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Revision",
                    "metadata": {
                        "name": revision,
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": self._owner(current),
                    },
                    "spec": copy.deepcopy(template.get("spec") or {}),
                },
            )
            store.create(
                self._rt("pods"),
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{revision}-deployment-{uuid.uuid4().hex[:5]}",
                        "namespace": ns,
                        "labels": {**labels, "serving.knative.dev/revision": revision},
                        "ownerReferences": self._owner(rev),
                    },
                    "spec": copy.deepcopy(template.get("spec") or {}),
                    "status": {"phase": "Running"},
                },
            )
        outcome = self.knative.get(revision, READY)
        previous = current.get("status") or {}
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "latestCreatedRevisionName": revision,
            "latestReadyRevisionName": previous.get("latestReadyRevisionName"),
            "url": f"http://{name}.{ns}.example.com",
        }
        if outcome.state == "ready":
            status["latestReadyRevisionName"] = revision
            conditions = [
                ("ConfigurationsReady", "True", "", ""),
                ("Ready", "True", "", ""),
                ("RoutesReady", "True", "", ""),
            ]
            traffic = current["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]
            status["traffic"] = [
                {
                    **t,
                    "revisionName": t.get("revisionName") or revision,
                    **(
                        {"url": f"http://{t['tag']}-{name}.{ns}.example.com"}
                        if t.get("tag")
                        else {}
                    ),
                }
                for t in traffic
            ]
        elif outcome.state == "failed":
            text = f'Revision "{revision}" failed with message: {outcome.message}.'
            conditions = [
                ("ConfigurationsReady", "False", outcome.reason, text),
                ("Ready", "False", outcome.reason, text),
                ("RoutesReady", "True", "", ""),
            ]
        else:
            text = f'Configuration "{name}" is waiting for a Revision to become ready.'
            conditions = [
                ("ConfigurationsReady", "Unknown", outcome.reason, text),
                ("Ready", "Unknown", outcome.reason, text),
                ("RoutesReady", "Unknown", "", ""),
            ]
        status["conditions"] = [
            {
                "type": t,
                "status": s,
                **({"reason": r} if r else {}),
                **({"message": m} if m else {}),
                "lastTransitionTime": now(),
            }
            for t, s, r, m in conditions
        ]
        if outcome.state != "ready":
            rev = store.get(rev_rt, ns, revision)
            if rev is not None:
                self._event(
                    rev,
                    "Revision",
                    "InternalError" if outcome.state == "failed" else "FailedScheduling",
                    outcome.message,
                )
        self._set_status(rt, current, status)

    # -- Jobs -------------------------------------------------------------------------------

    def _start_job(self, rt: ResourceType, job: dict[str, Any]) -> None:
        meta, store = job["metadata"], self.emulator.store
        template = job["spec"]["template"]
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            "job-name": meta["name"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
        }
        outcome = self.job_pods
        container = template["spec"]["containers"][0]["name"]
        if outcome.state == "ready":
            pod_status = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": container, "ready": True, "state": {"running": {"startedAt": now()}}}
                ],
            }
        elif outcome.state == "failed":
            pod_status = {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "state": {
                            "terminated": {
                                "reason": "Error",
                                "exitCode": 1,
                                "message": outcome.message,
                            }
                        },
                    }
                ],
            }
        else:
            pod_status = {
                "phase": "Pending",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
                ],
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": outcome.message}
                        },
                    }
                ],
            }
        try:
            pod = store.create(
                self._rt("pods"),
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{meta['name']}-{uuid.uuid4().hex[:5]}",
                        "namespace": meta["namespace"],
                        "labels": labels,
                        "annotations": (template.get("metadata") or {}).get("annotations", {}),
                        "ownerReferences": self._owner(job),
                    },
                    "spec": copy.deepcopy(template["spec"]),
                    "status": pod_status,
                },
            )
        except ApiError:
            return  # the namespace or the Job vanished meanwhile
        if outcome.state == "pending":
            self._event(pod, "Pod", "Failed", outcome.message)
        self._set_status(
            rt,
            job,
            {
                "active": 1 if outcome.state != "failed" else 0,
                "failed": 1 if outcome.state == "failed" else 0,
                "ready": 1 if outcome.state == "ready" else 0,
                "startTime": now(),
            },
        )
