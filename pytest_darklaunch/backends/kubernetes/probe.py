"""The mirror probe: before any measurement, wait until a mirrored request has reached dark.

A routing mistake (a rule that does not attach, a provider that ignores the mirror filter, a
sidecar missing on the traffic pod, a Prometheus that does not scrape the revisions' sidecars)
would otherwise run the whole experiment and end in "no data" or "mirror share off". The probe
asks Prometheus for dark's ``istio_requests_total`` from the traffic Job's workload (so neither
Knative's autoscaler scrapes nor activator probes count) and turns a timeout into a
:class:`ProvisioningError` naming the likely causes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Callable

from pytest_darklaunch.core.metrics import selector
from pytest_darklaunch.errors import ProvisioningError

REQUESTS = "istio_requests_total"


def probe_query(labels: Mapping[str, str]) -> str:
    """The count of requests dark recorded from the traffic Job.

    >>> probe_query({"destination_workload": "app-v2-deployment", "reporter": "destination"})
    'sum(istio_requests_total{destination_workload="app-v2-deployment",reporter="destination"})'
    """
    return f"sum({REQUESTS}{selector(labels)})"


def probe_mirror(
    query: Callable[[str, float], float | None],
    labels: Mapping[str, str],
    timeout_s: float,
    *,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until dark's request count from the Job is above zero; returns that count.

    ``query(promql, at)`` evaluates an instant query (``None``: no series). A Prometheus that
    cannot be queried is not the mirror's fault: its :class:`MetricsError` propagates.
    """
    promql = probe_query(labels)
    deadline = clock() + timeout_s
    while True:
        value = query(promql, time.time())
        if value is not None and value > 0:
            return value
        if clock() >= deadline:
            break
        sleep(min(poll_s, max(0.0, deadline - clock())))
    seen = "no series" if value is None else f"{value:g}"
    raise ProvisioningError(
        f"no mirrored request reached dark within {timeout_s:g}s ({promql}: {seen}): the "
        "mirroring rule did not apply to the traffic pod (istioctl analyze; the traffic pod's "
        "sidecar), the provider ignored the mirror, or Prometheus does not scrape the "
        "revision pods' sidecars (their port 15020 /stats/prometheus)"
    )

