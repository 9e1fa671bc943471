"""A small client for Prometheus' HTTP API: instant queries at an explicit time, readiness, scrapes.

Every query names its evaluation time, so a window is read as of a known instant and never as
of "whenever the request arrived". An empty result, a NaN and a value stay distinct. Transient
trouble (connection errors, timeouts, HTTP 5xx and 429) is retried with exponential backoff up
to a deadline; anything else, Prometheus' own error payloads included, fails at once with a
:class:`~pytest_darklaunch.errors.MetricsError` that names the URL, the query and the response.

Credentials come from the environment only and never appear in a message, a repr or an error:
``PYTEST_DARKLAUNCH_PROMETHEUS_TOKEN`` (bearer) or ``PYTEST_DARKLAUNCH_PROMETHEUS_USER`` plus
``PYTEST_DARKLAUNCH_PROMETHEUS_PASSWORD`` (basic); ``PYTEST_DARKLAUNCH_PROMETHEUS_HEADERS`` adds
headers such as ``X-Scope-OrgID: tenant`` (Mimir, Cortex, Thanos), their values hidden as
credentials are. ``PYTEST_DARKLAUNCH_PROMETHEUS_INSECURE=1``
turns TLS verification off.

>>> client = PrometheusClient("http://127.0.0.1:9090")  # doctest: +SKIP
>>> client.query('sum(envoy_cluster_upstream_rq_total)', at=1.7e9).scalar()  # doctest: +SKIP
1234.0

:mod:`.client` queries, :mod:`.auth` reads credentials and hides them, :mod:`.results` holds
what a query returns.
"""

from __future__ import annotations

from pytest_darklaunch.core.prometheus.auth import (
    ENV_HEADERS,
    ENV_INSECURE,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    redact_url,
)
from pytest_darklaunch.core.prometheus.client import (
    PrometheusClient,
)
from pytest_darklaunch.core.prometheus.results import (
    QueryResult,
    Sample,
)
from pytest_darklaunch.core.redaction import HIDDEN

__all__ = [
    "ENV_HEADERS",
    "ENV_INSECURE",
    "ENV_PASSWORD",
    "ENV_TOKEN",
    "ENV_USER",
    "HIDDEN",
    "PrometheusClient",
    "QueryResult",
    "Sample",
    "redact_url",
]
