"""The mirror probe against a real Prometheus scraping the emulator's model of the sidecars
(:mod:`emulator_mesh`): provisioning ends only once a mirrored request has reached dark, and a
rule that never mirrors is a provisioning error, not "no data" at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_darklaunch.backends.local.processes import free_port
from pytest_darklaunch.backends.local.prometheus import (
    find_prometheus,
    set_envoy_target,
    start_prometheus,
    wait_for_prometheus,
)
from pytest_darklaunch.errors import ProvisioningError
from tests.local.helpers import wait_for

from .conftest import FAST, BackendFactory
from .emulator import Emulator
from .emulator_mesh import Mesh


@pytest.fixture
def prometheus_url(emulator: Emulator, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping, every second, the counters the revisions' sidecars would
    expose once the traffic Job exists (none before)."""
    mesh = Mesh(emulator)
    started: list[float] = []

    class Sidecars(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b""
            if emulator.objects("jobs", "batch"):
                started[:] = started or [time.monotonic()]
                body = mesh.exposition(time.monotonic() - started[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sidecars)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    proc = start_prometheus(find_prometheus(None), str(tmp_path), port)
    try:
        url = wait_for_prometheus(proc, port)
        set_envoy_target(str(tmp_path), f"127.0.0.1:{server.server_address[1]}")

        def discovered() -> list[Any]:
            answer = requests.get(f"{url}/api/v1/targets?state=active", timeout=5).json()
            return list(answer["data"]["activeTargets"])

        wait_for(discovered, "Prometheus discovered the sidecars' target", 30)
        yield url
    finally:
        proc.stop()
        server.shutdown()
        server.server_close()


def test_provisioning_ends_once_a_mirrored_request_reached_dark(
    prometheus_url: str, make_backend: BackendFactory
) -> None:
    # the scrape interval as Prometheus's targets API reports it (this one scrapes every 1 s)
    settings = replace(FAST, mirror_probe_s=30, scrape_interval_s=None)
    backend = make_backend(prometheus_url=prometheus_url, settings=settings)
    env = backend.provision()
    assert env.scrape_interval_s == 1.0 and env.details["scrape_interval"] == "1s"
    dark = 'sum(istio_requests_total{destination_workload="sample-app-v2-deployment"})'
    answer = requests.get(
        f"{prometheus_url}/api/v1/query", params={"query": dark}, timeout=5
    ).json()
    assert float(answer["data"]["result"][0]["value"][1]) > 0
    assert env.labels["dark"]["source_workload"] == "sample-app-traffic-run-a"


def test_a_rule_that_never_mirrors_fails_provisioning(
    emulator: Emulator, prometheus_url: str, make_backend: BackendFactory
) -> None:
    # The rule is gone as soon as it was applied (as if it never attached): Fortio's requests
    # pass through to live, dark receives nothing, only autoscaler-free live counts exist.
    def detach(request: Any) -> None:
        emulator.store.delete(
            emulator.resource("virtualservices", "networking.istio.io"), "default", request.name
        )

    emulator.on("patch", "virtualservices", detach)
    backend = make_backend(prometheus_url=prometheus_url, settings=replace(FAST, mirror_probe_s=8))
    with pytest.raises(ProvisioningError, match=r"no mirrored request reached dark within 8s"):
        backend.provision()
    backend.teardown()
