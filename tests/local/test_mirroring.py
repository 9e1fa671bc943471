"""Mirroring on the real stack: share, isolation of clients from dark, exact counts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests

from pytest_darklaunch.backends.local import LocalBackend
from tests.local.helpers import (
    binomial_acceptance,
    envoy_stats,
    make_spec,
    prom_query,
    read_jsonl,
    wait_for,
    wait_for_quiet_upstreams,
    wait_for_sent,
)

HOST = "customdomain.com"


def logged_versions(tmp_path: Path, dark_env: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "live": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "live.jsonl")}},
        "dark": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "dark.jsonl"), **(dark_env or {})}},
    }


def test_mirror_share_within_binomial_interval(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = make_spec(
        versions=logged_versions(tmp_path),
        mirror={"percent": 40, "host": HOST},
        traffic={"rate": 500, "warmup": "0.5s"},
    )
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 2200)
    backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])

    live, dark = read_jsonl(tmp_path / "live.jsonl"), read_jsonl(tmp_path / "dark.jsonl")
    details = backend.traffic_details()
    assert details is not None
    answered = details["ok"] + details["warmup"]["ok"]
    assert len(live) == answered >= 2000
    low, high = binomial_acceptance(0.40, len(live))
    share = len(dark) / len(live)
    assert low <= share <= high, f"dark got {len(dark)}/{len(live)} = {share:.4f}"
    # What Istio does: live sees the rewritten host, dark the same with -shadow, same request id.
    assert {line["host"] for line in live} == {HOST}
    assert {line["host"] for line in dark} == {f"{HOST}-shadow"}
    live_ids = {line["x-request-id"] for line in live}
    assert None not in live_ids
    assert {line["x-request-id"] for line in dark} <= live_ids


def test_dark_failing_and_slow_changes_nothing_for_clients(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = make_spec(
        versions=logged_versions(
            tmp_path, {"SAMPLEAPP_ERROR_SHARE": "1", "SAMPLEAPP_LATENCY_MS": "300"}
        ),
        mirror={"percent": 100},
        traffic={"rate": 200, "warmup": "0.2s"},
    )
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 400)
    backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])

    details = backend.traffic_details()
    assert details is not None
    assert details["errors"] == details["warmup"]["errors"] == 0
    assert set(details["statuses"]) == {"200"}
    # Clients did not wait for dark's 300 ms.
    assert details["latency_p99_ms"] < 150
    dark = read_jsonl(tmp_path / "dark.jsonl")
    assert len(dark) >= 400
    assert {line["status"] for line in dark} == {500}


def test_dark_down_changes_nothing_for_clients(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = make_spec(mirror={"percent": 100}, traffic={"rate": 200, "warmup": "0.2s"})
    backend = stack(spec)
    env = backend.provision()
    os.kill(int(env.details["dark_pid"]), signal.SIGKILL)
    before = backend.traffic_stats()
    assert before is not None
    wait_for_sent(backend, before.sent + 400)
    stats = backend.stop_traffic()

    assert stats is not None
    assert stats.errors == 0
    details = backend.traffic_details()
    assert details is not None and details["warmup"]["errors"] == 0
    # Envoy did try dark and failed: its own 503s, which the sampler counts as dark's errors.
    dark = envoy_stats(env.endpoints["envoy_admin"], "cluster.dark.")
    assert dark.get("cluster.dark.upstream_cx_connect_fail", 0) >= 1
    assert dark.get("cluster.dark.upstream_rq_503", 0) >= 300


def test_prometheus_count_equals_dark_log(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = make_spec(
        versions=logged_versions(
            tmp_path, {"SAMPLEAPP_ERROR_SHARE": "0.05", "SAMPLEAPP_SEED": "3"}
        ),
        traffic={"rate": 400, "warmup": "0.5s"},
    )
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 800)
    backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])
    stopped_at = time.time()

    def count_after_stop(role: str) -> float | None:
        labels = f'{{envoy_cluster_name="{role}"}}'
        fresh = prom_query(
            env.prometheus_url, f"timestamp(envoy_cluster_upstream_rq_total{labels})"
        )
        if not fresh or float(fresh[0]["value"][1]) <= stopped_at:
            return None
        total = prom_query(env.prometheus_url, f"sum(envoy_cluster_upstream_rq_xx{labels})")
        return float(total[0]["value"][1]) if total else None

    prom_dark = wait_for(lambda: count_after_stop("dark"), "a scrape after traffic stopped")
    prom_live = count_after_stop("live")
    dark = read_jsonl(tmp_path / "dark.jsonl")
    live = read_jsonl(tmp_path / "live.jsonl")
    assert len(dark) > 200
    assert prom_dark == len(dark)
    assert prom_live == len(live)
    errors = prom_query(
        env.prometheus_url,
        'sum(envoy_cluster_upstream_rq_xx{envoy_cluster_name="dark",envoy_response_code_class="5"})',
    )
    assert float(errors[0]["value"][1]) == sum(1 for line in dark if line["status"] == 500) > 0


def test_latency_buckets_count_only_requests_below_their_bound(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    """Envoy's upstream time includes the app's own time, so a bucket may never hold more
    requests than the app log has below that bound (a bound on a bin edge would: it counts
    the whole bin starting there); and, the proxy overhead being small, not many fewer."""
    spec = make_spec(
        versions=logged_versions(
            tmp_path, {"SAMPLEAPP_LATENCY_MS": "20", "SAMPLEAPP_JITTER_MS": "15"}
        ),
        mirror={"percent": 100},
        traffic={"rate": 200, "warmup": "0s"},
    )
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 400)
    backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])
    dark = [line["latency_ms"] for line in read_jsonl(tmp_path / "dark.jsonl")]

    def buckets() -> dict[float, float] | None:
        text = requests.get(env.details["envoy_metrics_url"], timeout=2).text
        out = {}
        for line in text.splitlines():
            if line.startswith('envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="dark"'):
                le = line.split('le="')[1].split('"')[0]
                if le != "+Inf":
                    out[float(le)] = float(line.rsplit(" ", 1)[1])
        count = f'envoy_cluster_upstream_rq_time_count{{envoy_cluster_name="dark"}} {len(dark)}\n'
        return out if count in text else None  # only once a flush has seen every request

    counts = wait_for(buckets, "a stats flush with all of dark's requests", 10)
    checked = 0
    for edge in range(20, 40):
        bound = edge - 1 / 1024
        below = sum(1 for ms in dark if ms < edge)
        assert counts[bound] <= below, f"le={bound}: {counts[bound]} > {below} served faster"
        checked += below > 0
    assert checked >= 15
    assert counts[40 - 1 / 1024] >= 0.9 * sum(1 for ms in dark if ms < 37)
