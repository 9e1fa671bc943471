"""Prometheus through a port-forward the backend opens (WebSocket relay in the API emulator)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from pytest_darklaunch.errors import ProvisioningError

from .conftest import BackendFactory
from .emulator import Emulator


class _FakePrometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"status": "success", "data": {"path": self.path}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def prometheus(emulator: Emulator) -> Iterator[tuple[str, int]]:
    """A fake Prometheus process behind ``istio-system/prometheus`` in the emulator."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "prometheus", "namespace": "istio-system"},
            "spec": {
                "selector": {"app.kubernetes.io/name": "prometheus"},
                "ports": [{"name": "http", "port": 9090, "targetPort": "web"}],
            },
        }
    )
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "prometheus-7d9f5",
                "namespace": "istio-system",
                "labels": {"app.kubernetes.io/name": "prometheus"},
            },
            "spec": {
                "containers": [
                    {"name": "prometheus", "ports": [{"name": "web", "containerPort": 9090}]}
                ]
            },
            "status": {"phase": "Running"},
        }
    )
    emulator.forward_to("istio-system", "prometheus-7d9f5", 9090, server.server_address[:2])
    yield server.server_address[:2]
    server.shutdown()
    server.server_close()


def test_prometheus_is_reached_through_a_local_port_forward(
    emulator: Emulator, prometheus: tuple[str, int], make_backend: BackendFactory
) -> None:
    backend = make_backend(prometheus_url=None)
    env = backend.provision()
    assert env.prometheus_url.startswith("http://127.0.0.1:")
    assert env.details["prometheus"] == "port-forward to service istio-system/prometheus:9090"
    for query in ("up", "sum(istio_requests_total)"):
        answer = requests.get(
            f"{env.prometheus_url}/api/v1/query", params={"query": query}, timeout=5
        )
        assert answer.json()["data"]["path"].startswith("/api/v1/query?query=")
    forwards = emulator.calls("create", "pods/portforward")
    assert {f.name for f in forwards} == {"prometheus-7d9f5"}
    assert len(forwards) == 3  # the probe at start, then one per connection
    assert all(f.query["ports"] == "9090" for f in forwards)

    backend.teardown()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{env.prometheus_url}/api/v1/query", timeout=5)


def test_a_forbidden_port_forward_names_the_permission(
    emulator: Emulator, prometheus: tuple[str, int], make_backend: BackendFactory
) -> None:
    emulator.fail("create", "pods/portforward", 403)
    with pytest.raises(
        ProvisioningError,
        match="forbidden: cannot create pods/portforward in namespace istio-system; grant it",
    ):
        make_backend(prometheus_url=None).provision()
    assert not emulator.calls("patch"), "nothing is created when Prometheus is out of reach"


def test_a_missing_prometheus_service_is_named(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    from pytest_darklaunch.backends.kubernetes import KubeSettings

    from .conftest import FAST

    settings = KubeSettings(retry=FAST.retry, prometheus_service="monitoring/prom:9091")
    with pytest.raises(ProvisioningError, match="Prometheus service monitoring/prom not found"):
        make_backend(prometheus_url=None, settings=settings).provision()
