"""Extra request headers for Prometheus-compatible endpoints (X-Scope-OrgID for Mimir, Cortex,
Thanos), from the environment only, sent on every request and never shown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pytest_darklaunch.core.prometheus import ENV_HEADERS, ENV_TOKEN, PrometheusClient
from pytest_darklaunch.errors import ConfigError, MetricsError

TENANT = "tenant-SECRET-7"


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP server that records request headers; it answers a query with an empty
    vector, and refuses (echoing the tenant, as some gateways do) a query for ``denied``."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            seen.append(dict(self.headers))
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            if "denied" in body:
                code, answer = 403, f"no access for tenant {self.headers.get('X-Scope-OrgID')}"
            else:
                code = 200
                answer = json.dumps({"status": "success",
                                     "data": {"resultType": "vector", "result": []}})
            data = answer.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_extra_headers_go_with_every_request_besides_the_credentials(
    server: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = server
    env = {ENV_HEADERS: f"X-Scope-OrgID: {TENANT}\nX-Team:shop", ENV_TOKEN: "tok"}
    with PrometheusClient(url, env=env) as client:
        assert client.query("up", at=1.0).is_empty
        assert TENANT not in repr(client) and TENANT not in repr(client._auth)
    assert seen[0]["X-Scope-OrgID"] == TENANT and seen[0]["X-Team"] == "shop"
    assert seen[0]["Authorization"] == "Bearer tok"


def test_an_error_that_echoes_a_header_value_does_not_show_it(
    server: tuple[str, list[dict[str, str]]],
) -> None:
    url, _ = server
    with PrometheusClient(url, env={ENV_HEADERS: f"X-Scope-OrgID: {TENANT}"}) as client:
        with pytest.raises(MetricsError) as info:
            client.query("denied", at=1.0)
    assert "no access for tenant ***" in str(info.value) + info.value.response
    assert TENANT not in str(info.value) + info.value.response


@pytest.mark.parametrize(
    "raw, shown",
    [
        (f"X-Scope-OrgID {TENANT}", "***: ***"),
        (f"Bad Name: {TENANT}", "***: ***"),
        ("X-Scope-OrgID:", "X-Scope-OrgID: ***"),
        (f"Authorization: Bearer {TENANT}", "Authorization: ***"),
    ],
)
def test_bad_header_entries_are_one_line_errors_without_values(raw: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        PrometheusClient("http://127.0.0.1:9", env={ENV_HEADERS: raw})
    message = str(info.value)
    assert TENANT not in message and "\n" not in message
    assert f"'{shown}'" in message and ENV_HEADERS in message
