"""What the backend asks the cluster's Prometheus before any measurement: its scrape interval,
and (the mirror probe) whether a mirrored request has reached dark.

The scrape interval, unless given (``--darklaunch-scrape-interval``), is the one Prometheus
reports for its active targets in the run's namespace (``/api/v1/targets``), else its most
common one; a store without that API (Mimir, Thanos) leaves the 15 s default.


The probe: a routing mistake (a rule that does not attach, a provider that ignores the mirror
filter, a sidecar missing on the traffic pod, a Prometheus that does not scrape the revisions'
sidecars) would otherwise run the whole experiment and end in "no data" or "mirror share
off". The probe
asks Prometheus for dark's ``istio_requests_total`` from the traffic Job's workload (so neither
Knative's autoscaler scrapes nor activator probes count) and turns a timeout into a
:class:`ProvisioningError` naming the likely causes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from pytest_darklaunch.core.metrics import selector
from pytest_darklaunch.errors import ProvisioningError

REQUESTS = "istio_requests_total"
DEFAULT_SCRAPE_INTERVAL_S = 15.0


def scrape_interval(targets: list[tuple[dict[str, str], float]], namespace: str) -> float | None:
    """The interval of the targets in ``namespace`` (pods the kubernetes-pods job scrapes),
    else the most common one; ``None`` without targets.

    >>> scrape_interval([({"namespace": "shop"}, 30.0), ({"namespace": "x"}, 15.0),
    ...                  ({"namespace": "y"}, 15.0)], "shop")
    30.0
    >>> scrape_interval([({}, 60.0), ({}, 15.0), ({}, 60.0)], "shop")
    60.0
    """
    own = [s for labels, s in targets if labels.get("namespace") == namespace]
    pool = own or [s for _, s in targets]
    if not pool:
        return None
    return max(sorted(set(pool)), key=pool.count)


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



def find_scrape_interval(prometheus_url: str, namespace: str) -> float | None:
    """:func:`scrape_interval` from the targets API; ``None`` when it cannot say."""
    from pytest_darklaunch.core.prometheus import PrometheusClient
    from pytest_darklaunch.errors import MetricsError

    with PrometheusClient(prometheus_url, source="the kubernetes backend") as client:
        try:
            return scrape_interval(client.scrape_intervals(), namespace)
        except MetricsError:
            return None  # not Prometheus itself (Mimir, Thanos): the default, or the option


def probe_prometheus(prometheus_url: str, labels: Mapping[str, str], timeout_s: float) -> None:
    """:func:`probe_mirror` against the Prometheus at ``prometheus_url``."""
    from pytest_darklaunch.core.prometheus import PrometheusClient

    with PrometheusClient(prometheus_url, source="the kubernetes backend") as client:
        probe_mirror(lambda promql, at: client.query(promql, at).scalar(), labels, timeout_s)
