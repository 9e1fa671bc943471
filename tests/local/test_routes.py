"""Per-route proxy config on a real Envoy: each route's clusters count exactly its requests."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_darklaunch.backends.local import LocalBackend
from pytest_darklaunch.backends.local.envoy import (
    EnvoyAddresses,
    envoy_binary,
    envoy_config,
    upstream_time_buckets,
    wait_for_envoy,
)
from pytest_darklaunch.backends.local.processes import ManagedProcess
from pytest_darklaunch.backends.local.routes_envoy import (
    route_labels,
    virtual_host,
    with_routes,
)
from pytest_darklaunch.core.metrics import selector
from pytest_darklaunch.core.routes import parse_routes, route_of, target_route, window_key
from pytest_darklaunch.core.spec import HTTP_METHODS, Route, Sources, build_spec
from tests.local.helpers import (
    envoy_stats,
    make_spec,
    pid_alive,
    prom_query,
    read_jsonl,
    start_sampleapp,
    wait_for,
    wait_for_sent,
)

ROUTES = (
    target_route("list", [("GET", "/items?page=2")]),
    *parse_routes(
        {
            "detail": {"path": "^/items/[0-9]+$", "methods": ["GET"]},
            "writes": {"methods": ["POST", "PUT", "PATCH", "DELETE"]},
        },
        Sources("test"),
    ),
)
# (method, path, route or None for the catch-all, how many)
PLAN = [
    ("GET", "/items/17", "detail", 23),
    ("GET", "/items/4?full=1", "detail", 7),
    ("POST", "/items", "writes", 11),
    ("DELETE", "/items/17", "writes", 5),
    ("GET", "/items?page=2", "list", 13),
    ("GET", "/items?page=3", None, 3),
    ("HEAD", "/items/17", None, 4),
    ("GET", "/", None, 6),
]


def expected_counts() -> Counter[str | None]:
    out: Counter[str | None] = Counter()
    for _, _, route, count in PLAN:
        out[route] += count
    return out


def metric_samples(admin_url: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Envoy's Prometheus samples of metric ``name``: (labels, value)."""
    text = requests.get(f"{admin_url}/stats/prometheus", timeout=5).text
    out = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            out.append((labels, float(match.group(2))))
    return out


def selected(samples: list[tuple[dict[str, str], float]], labels: dict[str, str]) -> float:
    """What ``sum(metric{labels})`` gives in Prometheus (Envoy's labels are what it scrapes)."""
    return sum(v for ls, v in samples if all(ls.get(k) == want for k, want in labels.items()))


def route_by_name(name: str | None) -> Route | None:
    return next((r for r in ROUTES if r.name == name), None) if name else None


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., EnvoyAddresses]]:
    """Start a live and a dark sample app and an Envoy in front of them; the test may change
    the per-route config (``edit``) before Envoy starts. Everything is stopped afterwards."""
    started: list[ManagedProcess] = []

    def start(edit: Callable[[dict[str, Any]], None] | None = None) -> EnvoyAddresses:
        ports = {}
        for role in ("live", "dark"):
            proc, url = start_sampleapp(
                str(tmp_path / f"{role}.out"), "--log", str(tmp_path / f"{role}.jsonl")
            )
            started.append(proc)
            ports[role] = int(url.rsplit(":", 1)[1])
        spec = make_spec(mirror={"percent": 100})
        # Every method mirrored, so that the writes route reaches dark too.
        config = with_routes(
            envoy_config(
                spec, live_port=ports["live"], dark_port=ports["dark"], mirror_methods=HTTP_METHODS
            ),
            ROUTES,
            HTTP_METHODS,
        )
        if edit is not None:
            edit(config)
        config_path = tmp_path / "envoy.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        admin_path = str(tmp_path / "admin.txt")
        argv = [
            envoy_binary(), "--config-path", str(config_path), "--admin-address-path",
            admin_path, "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning",
        ]
        envoy = ManagedProcess.start("envoy", argv, log_path=str(tmp_path / "envoy.log"))
        started.append(envoy)
        return wait_for_envoy(envoy, admin_path)

    yield start
    for proc in reversed(started):
        proc.stop()
    assert not [p.pid for p in started if pid_alive(p.pid)]


def send_plan(envoy: EnvoyAddresses) -> None:
    with requests.Session() as session:
        for method, path, _, count in PLAN:
            for _ in range(count):
                response = session.request(method, envoy.ingress_url + path, timeout=5)
                assert response.status_code == 200, (method, path, response.status_code)


def wait_for_counts(envoy: EnvoyAddresses, want: dict[str, float]) -> None:
    """Until the request counters of ``want``'s clusters hold their values (mirrored copies
    are sent after live answers), then check none moves past them."""

    def reached() -> dict[str, float] | bool:
        samples = metric_samples(envoy.admin_url, "envoy_cluster_upstream_rq")
        got = {c: selected(samples, {"envoy_cluster_name": c}) for c in want}
        return got == want or got

    wait_for(reached, f"cluster request counts {want}", deadline_s=15)


def test_each_route_counts_exactly_its_requests(
    proxy: Callable[..., EnvoyAddresses], tmp_path: Path
) -> None:
    envoy = proxy()
    send_plan(envoy)
    counts = expected_counts()
    want = {"live": float(counts[None]), "dark": float(counts[None])}
    for route in ROUTES:
        want[f"live~{route.slug}"] = want[f"dark~{route.slug}"] = float(counts[route.name])
    wait_for_counts(envoy, want)

    # The selectors the sampler uses: per route, and all of a role's traffic at once.
    samples = metric_samples(envoy.admin_url, "envoy_cluster_upstream_rq")
    total = sum(counts.values())
    for role in ("live", "dark"):
        assert selected(samples, route_labels(role, None)) == total
        for name in ("detail", "writes", "list"):
            labels = route_labels(role, route_by_name(name))
            assert selected(samples, labels) == counts[name], (role, name)
    # Latency histograms are per route too, with the fine buckets (one bucket per 1 ms bin).
    detail = route_labels("dark", route_by_name("detail"))

    def histogram_done() -> bool:
        buckets = metric_samples(envoy.admin_url, "envoy_cluster_upstream_rq_time_bucket")
        return selected(buckets, {**detail, "le": "+Inf"}) == counts["detail"]

    wait_for(histogram_done, "dark~detail's latency histogram flushed", deadline_s=10)
    buckets = metric_samples(envoy.admin_url, "envoy_cluster_upstream_rq_time_bucket")
    bounds = {ls["le"] for ls, _ in buckets if all(ls.get(k) == v for k, v in detail.items())}
    assert len(bounds) == len(upstream_time_buckets()) + 1 and "1.9990234375" in bounds
    # What the apps saw agrees: every request reached live once and dark once.
    live = Counter(line["path"] for line in read_jsonl(tmp_path / "live.jsonl"))
    dark = Counter(line["path"] for line in read_jsonl(tmp_path / "dark.jsonl"))
    assert sum(live.values()) == total and live == dark


def test_a_route_without_mirror_policy_sends_dark_nothing_of_it(
    proxy: Callable[..., EnvoyAddresses], tmp_path: Path
) -> None:
    def drop_detail_mirror(config: dict[str, Any]) -> None:
        for entry in virtual_host(config)["routes"]:
            if entry["route"]["cluster"] == "live~detail":
                del entry["route"]["request_mirror_policies"]

    envoy = proxy(drop_detail_mirror)
    send_plan(envoy)
    counts = expected_counts()
    want = {
        "live~detail": float(counts["detail"]),
        "dark~detail": 0.0,
        "live~writes": float(counts["writes"]),
        "dark~writes": float(counts["writes"]),
        "dark": float(counts[None]),
    }
    wait_for_counts(envoy, want)
    dark_paths = {line["path"] for line in read_jsonl(tmp_path / "dark.jsonl")}
    assert "/items/17" in dark_paths  # the DELETE (writes) still reached dark
    assert "/items/4" not in dark_paths  # GET /items/4 is detail only: never mirrored
    stats = requests.get(f"{envoy.admin_url}/stats", params={"filter": "dark~detail"}, timeout=5)
    assert "cluster.dark~detail.upstream_rq_total: 0" in stats.text
    assert os.path.exists(tmp_path / "envoy.json")


def test_the_stack_labels_each_route_and_prometheus_sees_them(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = make_spec(
        versions={
            "live": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "live.jsonl")}},
            "dark": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "dark.jsonl")}},
        },
        mirror={"percent": 50},
        traffic={"rate": 200, "path": "/items/7", "warmup": "0.2s"},
        routes={"detail": {"path": "^/items/[0-9]+$"}, "other": {"path": "^/other$"}},
    )
    backend = stack(spec)
    env = backend.provision()
    assert env.labels["dark~detail"] == {"darklaunch_role": "dark", "darklaunch_route": "detail"}
    assert env.labels["live"] == {"darklaunch_role": "live"}
    wait_for_sent(backend, 300)
    backend.stop_traffic()
    wait_for_quiet_upstreams_of(env.endpoints["envoy_admin"], ["live~detail", "dark~detail"])
    live = read_jsonl(tmp_path / "live.jsonl")
    dark = read_jsonl(tmp_path / "dark.jsonl")

    def scraped(key: str, want: int) -> bool:
        found = prom_query(
            env.prometheus_url, f"sum(envoy_cluster_upstream_rq{selector(env.labels[key])})"
        )
        return bool(found) and float(found[0]["value"][1]) == want

    for key, want in (("live~detail", len(live)), ("dark~detail", len(dark)),
                      ("live", len(live)), ("dark", len(dark))):
        wait_for(
            lambda key=key, want=want: scraped(key, want),
            f"Prometheus holding {want} requests for {key}",
        )
    # The route no request matched has no series at all: no data, never zero.
    assert not prom_query(
        env.prometheus_url, f"envoy_cluster_upstream_rq{selector(env.labels['dark~other'])}"
    )
    assert 0 < len(dark) < len(live)


def wait_for_quiet_upstreams_of(admin_url: str, clusters: list[str]) -> None:
    def quiet() -> bool:
        stats = envoy_stats(admin_url, "cluster.")
        return all(stats.get(f"cluster.{c}.upstream_rq_active", 0) == 0 for c in clusters)

    wait_for(quiet, f"no request in flight to {clusters}", 10.0, 0.05)


HAR_ENTRIES = [
    ("GET", "https://shop.example.com/items/1"),
    ("GET", "https://shop.example.com/items/22?full=1"),
    ("GET", "https://shop.example.com/items"),
    ("POST", "https://shop.example.com/items"),
    ("GET", "https://shop.example.com/users/7/avatar"),
    ("DELETE", "https://shop.example.com/items/3"),
    ("GET", "https://shop.example.com/items/333"),
]


def har_text() -> str:
    entries = [
        {
            "startedDateTime": f"2024-05-01T10:00:0{i}.000Z",
            "request": {"method": method, "url": url, "headers": []},
        }
        for i, (method, url) in enumerate(HAR_ENTRIES)
    ]
    return json.dumps({"log": {"version": "1.2", "entries": entries}})


def test_routes_group_a_recorded_files_requests_as_the_apps_log_shows(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    (tmp_path / "rec.har").write_text(har_text(), encoding="utf-8")
    spec = build_spec(
        {
            "target": "default/sample-app",
            "duration": {"interval": "1s", "iterations": 5},
            "versions": {
                "live": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "live.jsonl")}},
                "dark": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "dark.jsonl")}},
            },
            "mirror": {"percent": 50},
            "traffic": {"rate": 70, "targets_file": "rec.har"},
            "routes": {
                "detail": {"path": "^/items/[0-9]+$", "methods": ["GET"]},
                "writes": {"methods": ["POST", "PUT", "PATCH", "DELETE"]},
            },
        },
        Sources("test"),
        base_dir=str(tmp_path),
    )
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 350)
    backend.stop_traffic()
    wait_for_quiet_upstreams_of(
        env.endpoints["envoy_admin"], ["live", "dark", "live~detail", "dark~detail", "live~writes"]
    )
    logs = {role: read_jsonl(tmp_path / f"{role}.jsonl") for role in ("live", "dark")}
    # The app's own log, grouped by the same declarations.
    want = {
        window_key(role, route_of(spec.routes, line["method"], line["path"])): 0
        for role, lines in logs.items()
        for line in lines
    }
    for role, lines in logs.items():
        for line in lines:
            want[window_key(role, route_of(spec.routes, line["method"], line["path"]))] += 1
    assert want["live~detail"] > 100 and want["live~writes"] > 50
    assert "dark~writes" not in want  # writes are not mirrored (mirror.methods)

    def count(key: str) -> float:
        labels = env.labels[key]
        if key in ("live", "dark"):  # the requests of no route: the base clusters alone
            labels = {"envoy_cluster_name": key}
        found = prom_query(
            env.prometheus_url, f"sum(envoy_cluster_upstream_rq{selector(labels)})"
        )
        return float(found[0]["value"][1]) if found else 0.0

    def counted() -> dict[str, float] | bool:
        got = {key: count(key) for key in want}
        return got == want or got

    wait_for(counted, f"Prometheus holding the app's per-route counts {want}")
