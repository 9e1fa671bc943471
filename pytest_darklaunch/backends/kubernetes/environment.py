"""What the sampler needs to know of a provisioned run: its series' labels, its URLs, and
when its traffic started."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from pytest_darklaunch.backends.kubernetes.names import Names

# The traffic Job's generator: Fortio for one URL, k6 for a mix.
TRAFFIC_CONTAINERS = ("fortio", "k6")


def series_labels(names: Names, *, provisioned: bool) -> dict[str, dict[str, str]]:
    """Each revision's series: requests its sidecar received from the traffic Job only.

    ``source_workload`` is the Job's name (Istio names a Job's pods' workload after the Job),
    so Knative's autoscaler scrapes and activator probes never count, whatever the capture
    settings; ``--darklaunch-provision none`` has no Job and counts every source.

    >>> series_labels(Names("d", "a", "a-v1", "a-v2", "r1"), provisioned=False)["dark"]
    {'destination_workload': 'a-v2-deployment', 'destination_workload_namespace': 'd', \
'reporter': 'destination'}
    """
    labels = {}
    for role, revision in (("live", names.live_revision), ("dark", names.dark_revision)):
        labels[role] = {
            "destination_workload": f"{revision}-deployment",
            "destination_workload_namespace": names.namespace,
            "reporter": "destination",
        }
        if provisioned:
            labels[role]["source_workload"] = names.job
            labels[role]["source_workload_namespace"] = names.namespace
    return labels


def started_at(pods: list[dict[str, Any]]) -> float:
    """When the generator started: its container's ``startedAt`` as the cluster saw it, else
    now."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            started = ((status.get("state") or {}).get("running") or {}).get("startedAt")
            if status.get("name") in TRAFFIC_CONTAINERS and started:
                try:
                    return datetime.fromisoformat(str(started).replace("Z", "+00:00")).timestamp()
                except ValueError:
                    break
    return time.time()


def endpoints_of(service: dict[str, Any]) -> dict[str, str]:
    """The URLs Knative reports: the service's (live) and the ``dark`` tag's."""
    status = service.get("status") or {}
    out = {}
    if status.get("url"):
        out["live"] = str(status["url"])
    for target in status.get("traffic") or []:
        if target.get("tag") == "dark" and target.get("url"):
            out["dark"] = str(target["url"])
    return out
