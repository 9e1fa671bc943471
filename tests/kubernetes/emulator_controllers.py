"""Simulated controllers of the Kubernetes API *emulator* (tests only).

They react to writes from their own thread, as real controllers do, so a client sees the
object first without status and then its status change through a watch:

- Knative (:mod:`emulator_knative`): revisions, their pods and statuses per outcome
  (``knative[revision]``: ready, pending, unschedulable, failed);
- Job: for a new Job, creates one pod from its template, Running, Pending with an image pull
  back-off, or Failed, per ``job_pods`` (default Running), and sets the Job's status;
- admission of pods: Istio's injection webhook adds the ``istio-proxy`` sidecar to a pod
  labelled ``sidecar.istio.io/inject: "true"`` unless its namespace says
  ``istio-injection=disabled`` (a container, or with ``native_sidecars`` an init container);
- the garbage collector: a Background delete returns at once and the owner's dependents go
  later, from this thread, as Kubernetes' GC does; ``hold_gc()`` keeps them (a revision that
  outlives its deleted Service), ``release_gc()`` lets them go.

Each non-ready outcome also records a Warning event about the object the real component
records it on (the pod, for the scheduler and the kubelet). :meth:`Controllers.settle` waits
until everything queued so far is done (a real signal: the queue's own accounting).
"""

from __future__ import annotations

import copy
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .emulator_knative import reconcile_service
from .emulator_store import ApiError, ResourceType, now

if TYPE_CHECKING:
    from .emulator import Emulator


@dataclass(frozen=True)
class Outcome:
    """What a controller makes of an object: ``ready``, ``pending``, ``unschedulable``,
    ``failed`` (or ``taken``: a revision name that exists)."""

    state: str = "ready"
    reason: str = ""
    message: str = ""


READY = Outcome()


def pending(message: str = 'Back-off pulling image "ghcr.io/acme/app:2"') -> Outcome:
    return Outcome("pending", "RevisionMissing", message)


def unschedulable(message: str = "0/3 nodes are available: 3 Insufficient cpu.") -> Outcome:
    return Outcome("unschedulable", "RevisionFailed", message)


def failed(message: str = "exit status 1") -> Outcome:
    return Outcome("failed", "RevisionFailed", message)


Item = tuple[str, ResourceType | None, Any]


class Controllers:
    """The controllers of one emulator; configure outcomes before provisioning."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.ready = READY
        self.knative: dict[str, Outcome] = {}
        self.job_pods: Outcome = READY
        self.native_sidecars = False
        self.errors: list[BaseException] = []
        self._gc_held = False
        self._held: list[str] = []
        self._queue: queue.Queue[Item | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        emulator.store.listeners.append(self._observe)
        emulator.store.collect = lambda uid: self._queue.put(("gc", None, uid))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emulator-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def settle(self) -> None:
        """Return once the controllers handled every change made so far (and what that
        caused); re-raise what a controller failed with."""
        self._queue.join()
        if self.errors:
            raise self.errors[0]

    def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile a Knative Service again (after a test changed its outcome)."""
        rt = self.rt("services", "serving.knative.dev")
        obj = self.emulator.store.get(rt, namespace, name)
        if obj is not None:
            self._queue.put(("ksvc-again", rt, obj))

    def hold_gc(self) -> None:
        self._queue.put(("gc-hold", None, True))

    def release_gc(self) -> None:
        self._queue.put(("gc-hold", None, False))

    def _observe(self, kind: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        if (rt.group, rt.plural) == ("serving.knative.dev", "services"):
            self._queue.put(("ksvc", rt, obj))
        elif (rt.group, rt.plural) == ("batch", "jobs") and kind == "ADDED":
            self._queue.put(("job", rt, obj))

    def _run(self) -> None:
        for item in iter(self._queue.get, None):
            try:
                self._handle(*item)
            except BaseException as exc:  # noqa: BLE001 - reported by settle()
                self.errors.append(exc)
            finally:
                self._queue.task_done()

    def _handle(self, what: str, rt: ResourceType | None, obj: Any) -> None:
        if what == "gc-hold":
            self._gc_held = bool(obj)
            if not self._gc_held:
                for uid in self._held:
                    self._queue.put(("gc", None, uid))
                self._held.clear()
        elif what == "gc":
            if self._gc_held:
                self._held.append(obj)
            else:
                self.emulator.store.delete_dependents(obj)
        elif what.startswith("ksvc"):
            assert rt is not None
            reconcile_service(self, rt, obj, again=what == "ksvc-again")
        else:
            assert rt is not None
            self._start_job(rt, obj)

    # -- helpers ----------------------------------------------------------------------------

    def rt(self, plural: str, group: str = "") -> ResourceType:
        return self.emulator.resource(plural, group)

    def event(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        self.emulator.store.create(
            self.rt("events"),
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
    def owner(obj: dict[str, Any]) -> list[dict[str, Any]]:
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

    def set_status(self, rt: ResourceType, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """Write ``status``; ``True`` when that changed the object."""
        store = self.emulator.store
        with store.lock:
            current = store.get(rt, obj["metadata"]["namespace"], obj["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != obj["metadata"]["uid"]:
                return False  # deleted meanwhile
            if current.get("status") == status:
                return False
            current["status"] = status
            store.replace(rt, current)
            return True

    def admit_pod(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        """Create ``pod`` as the API server would after Istio's injection webhook."""
        meta = pod["metadata"]
        ns = self.emulator.store.get(self.rt("namespaces"), "", meta["namespace"]) or {}
        ns_labels = (ns.get("metadata") or {}).get("labels") or {}
        wanted = (meta.get("labels") or {}).get("sidecar.istio.io/inject") == "true"
        if wanted and ns_labels.get("istio-injection") != "disabled":
            proxy = {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.3"}
            spec = pod.setdefault("spec", {})
            if self.native_sidecars:
                spec.setdefault("initContainers", []).append({**proxy, "restartPolicy": "Always"})
            else:
                spec.setdefault("containers", []).append(proxy)
        try:
            return self.emulator.store.create(self.rt("pods"), pod)
        except ApiError:
            return None  # the namespace or the owner vanished meanwhile

    # -- Jobs -------------------------------------------------------------------------------

    def _job_pod_status(self, container: str) -> dict[str, Any]:
        outcome = self.job_pods
        if outcome.state == "ready":
            return {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": container, "ready": True, "state": {"running": {"startedAt": now()}}}
                ],
            }
        if outcome.state == "failed":
            terminated = {"reason": "Error", "exitCode": 1, "message": outcome.message}
            return {
                "phase": "Failed",
                "containerStatuses": [
                    {"name": container, "ready": False, "state": {"terminated": terminated}}
                ],
            }
        waiting = {"reason": "ImagePullBackOff", "message": outcome.message}
        return {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [
                {"name": container, "ready": False, "state": {"waiting": waiting}}
            ],
        }

    def _start_job(self, rt: ResourceType, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        template = job["spec"]["template"]
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            "job-name": meta["name"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
        }
        outcome = self.job_pods
        pod = self.admit_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{meta['name']}-{uuid.uuid4().hex[:5]}",
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "annotations": (template.get("metadata") or {}).get("annotations", {}),
                    "ownerReferences": self.owner(job),
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": self._job_pod_status(template["spec"]["containers"][0]["name"]),
            }
        )
        if pod is None:
            return
        if outcome.state == "pending":
            self.event(pod, "Pod", "Failed", outcome.message)
        self.set_status(
            rt,
            job,
            {
                "active": 1 if outcome.state != "failed" else 0,
                "failed": 1 if outcome.state == "failed" else 0,
                "ready": 1 if outcome.state == "ready" else 0,
                "startTime": now(),
            },
        )
