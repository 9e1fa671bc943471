"""The Prometheus client on canned responses: fake transport, fake clock, no network, no sleep."""

from __future__ import annotations

import base64
import inspect
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from requests.adapters import BaseAdapter

from pytest_darklaunch.core.prometheus import (
    ENV_INSECURE,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    PrometheusClient,
    QueryResult,
    Sample,
    redact_url,
)
from pytest_darklaunch.errors import ConfigError, MetricsError

URL = "http://prom.test:9090"
TOKEN = "tok-SECRET-123"
PASSWORD = "pw-SECRET-456"

Canned = tuple[int, str] | tuple[int, str, Mapping[str, str]] | Exception


class FakeTransport(BaseAdapter):
    """Answers from a queue of canned responses (the last one repeats) and records every call."""

    def __init__(self, *canned: Canned) -> None:
        super().__init__()
        self.canned = list(canned)
        self.calls: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.calls.append((request, kwargs))
        item = self.canned.pop(0) if len(self.canned) > 1 else self.canned[0]
        if isinstance(item, Exception):
            raise item
        response = requests.Response()
        response.status_code = item[0]
        response._content = item[1].encode()
        response.headers.update(item[2] if len(item) == 3 else {})
        response.reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            404: "Not Found",
            422: "Unprocessable Entity",
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(item[0], "")
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def form(self, index: int = -1) -> dict[str, list[str]]:
        body = self.calls[index][0].body
        text = body.decode() if isinstance(body, bytes) else str(body)
        return parse_qs(text)


class FakeTime:
    """A clock that only moves when the client sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ok(result_type: str, result: Any, **extra: Any) -> tuple[int, str]:
    return 200, json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result}, **extra}
    )


def vector(*series: tuple[Mapping[str, str], str]) -> tuple[int, str]:
    return ok("vector", [{"metric": dict(m), "value": [1.7e9, v]} for m, v in series])


def make(
    *canned: Canned,
    env: Mapping[str, str] | None = None,
    fake_time: FakeTime | None = None,
    **kwargs: Any,
) -> tuple[PrometheusClient, FakeTransport, FakeTime]:
    transport = FakeTransport(*canned)
    session = requests.Session()
    session.mount("http://", transport)
    session.mount("https://", transport)
    fake_time = fake_time or FakeTime()
    client = PrometheusClient(
        kwargs.pop("url", URL),
        session=session,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        env=env or {},
        **kwargs,
    )
    return client, transport, fake_time


# --- results -------------------------------------------------------------------------------------


def test_vector_with_several_series() -> None:
    client, transport, _ = make(vector(({"code": "2"}, "412"), ({"code": "5"}, "3")))
    result = client.query("sum by (code) (rq_total)", at=1_700_000_000.25)
    assert result.result_type == "vector"
    assert result.by_label("code") == {"2": 412.0, "5": 3.0}
    assert result.samples[0] == Sample({"code": "2"}, 412.0)
    assert not result.is_empty
    with pytest.raises(MetricsError, match=r"expected one series, got 2") as info:
        result.scalar()
    assert info.value.query == "sum by (code) (rq_total)"


def test_scalar_result() -> None:
    client, _, _ = make(ok("scalar", [1.7e9, "42.5"]))
    result = client.query("scalar(sum(up))", at=1.7e9)
    assert result.result_type == "scalar"
    assert result.scalar() == 42.5


def test_empty_nan_and_value_are_distinct() -> None:
    client, _, _ = make(vector(), vector(({}, "NaN")), vector(({}, "0")), vector(({}, "+Inf")))
    empty, nan, zero, inf = (client.query("q", at=1.0) for _ in range(4))
    assert empty.is_empty and empty.scalar() is None
    assert not nan.is_empty
    value = nan.scalar()
    assert value is not None and math.isnan(value)
    assert zero.scalar() == 0.0
    assert inf.scalar() == math.inf


def test_by_label_refuses_to_merge_series_silently() -> None:
    client, _, _ = make(vector(({"code": "5", "pod": "a"}, "1"), ({"code": "5", "pod": "b"}, "2")))
    with pytest.raises(MetricsError, match=r"sum by \(code\)"):
        client.query("q", at=1.0).by_label("code")
    assert QueryResult("q", 1.0, "vector", (Sample({}, 3.0),)).by_label("code") == {"": 3.0}


def test_matrix_result_is_refused_with_a_hint() -> None:
    client, _, _ = make(ok("matrix", [{"metric": {}, "values": [[1, "1"]]}]))
    with pytest.raises(MetricsError, match=r"got a matrix; a range selector"):
        client.query("up[5m]", at=1.0)


def test_warnings_are_kept() -> None:
    client, _, _ = make(ok("vector", [], warnings=["PromQL info: metric might not be a counter"]))
    assert client.query("rate(x[1m])", at=1.0).warnings == (
        "PromQL info: metric might not be a counter",
    )


# --- the request ---------------------------------------------------------------------------------


def test_time_is_always_sent_and_the_query_is_posted_form_encoded() -> None:
    client, transport, _ = make(vector())
    long_query = "sum(" + " + ".join(f'x{{i="{i}"}}' for i in range(500)) + ")"
    client.query(long_query, at=1_700_000_000.1234)
    request, _ = transport.calls[0]
    assert request.method == "POST"
    assert request.url == f"{URL}/api/v1/query"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert transport.form() == {"query": [long_query], "time": ["1700000000.123"]}


def test_query_time_must_be_finite() -> None:
    client, transport, _ = make(vector())
    with pytest.raises(ValueError, match="finite"):
        client.query("up", at=math.nan)
    assert transport.calls == []


def test_bearer_token_is_sent() -> None:
    client, transport, _ = make(vector(), env={ENV_TOKEN: TOKEN})
    client.query("up", at=1.0)
    assert transport.calls[0][0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_basic_auth_is_sent() -> None:
    client, transport, _ = make(vector(), env={ENV_USER: "alice", ENV_PASSWORD: PASSWORD})
    client.query("up", at=1.0)
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert transport.calls[0][0].headers["Authorization"] == f"Basic {expected}"


def test_no_credentials_means_no_authorization_header() -> None:
    client, transport, _ = make(vector())
    client.query("up", at=1.0)
    assert "Authorization" not in transport.calls[0][0].headers


@pytest.mark.parametrize(
    "env, verify, expected",
    [
        ({}, True, True),
        ({}, False, False),
        ({ENV_INSECURE: "1"}, True, False),
        ({ENV_INSECURE: "0"}, True, True),
    ],
)
def test_tls_verify_flag_is_passed_through(
    env: dict[str, str], verify: bool, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests swaps verify=True for these bundles; verification stays on either way.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client, transport, _ = make(vector(), env=env, verify=verify, url="https://prom.test")
    client.query("up", at=1.0)
    assert transport.calls[0][1]["verify"] is expected
    assert transport.calls[0][1]["timeout"] == 5.0


def test_ca_bundle_path_is_passed_through(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    client, transport, _ = make(vector(), verify=str(bundle), url="https://prom.test")
    client.query("up", at=1.0)
    assert transport.calls[0][1]["verify"] == str(bundle)


def test_missing_ca_bundle_and_bad_insecure_flag_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        make(vector(), verify=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=ENV_INSECURE):
        make(vector(), env={ENV_INSECURE: "maybe"})


# --- errors that are not retried -----------------------------------------------------------------


def test_error_payload_is_not_retried() -> None:
    body = json.dumps(
        {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected <EOF>"}
    )
    client, transport, fake_time = make((400, body), vector())
    with pytest.raises(MetricsError) as info:
        client.query("sum(", at=1.0)
    message = str(info.value)
    assert "bad_data" in message and "parse error" in message
    assert f"url={URL}/api/v1/query" in message and "query='sum('" in message
    assert len(transport.calls) == 1
    assert fake_time.sleeps == []


def test_http_4xx_without_payload_is_not_retried() -> None:
    client, transport, _ = make((404, "404 page not found"))
    with pytest.raises(MetricsError, match=r"HTTP 404 Not Found; is the URL") as info:
        client.query("up", at=1.0)
    assert info.value.response == "404 page not found"
    assert len(transport.calls) == 1


def test_non_json_body_is_reported_with_its_start() -> None:
    client, _, _ = make((200, "<html><body>Grafana login</body></html>"))
    with pytest.raises(MetricsError, match="not a Prometheus API response") as info:
        client.query("up", at=1.0)
    assert info.value.response.startswith("<html><body>Grafana")


def test_malformed_success_payload_is_a_metrics_error() -> None:
    client, _, _ = make((200, json.dumps({"status": "success", "data": {"resultType": "vector"}})))
    with pytest.raises(MetricsError, match="unexpected shape"):
        client.query("up", at=1.0)


def test_tls_failure_is_not_retried_and_names_the_fix() -> None:
    client, transport, _ = make(requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(MetricsError, match=ENV_INSECURE):
        client.query("up", at=1.0)
    assert len(transport.calls) == 1


# --- retries -------------------------------------------------------------------------------------


def test_http_500_then_success_is_retried() -> None:
    client, transport, fake_time = make((500, "internal"), (503, "unavailable"), vector(({}, "7")))
    assert client.query("up", at=1.0).scalar() == 7.0
    assert len(transport.calls) == 3
    assert fake_time.sleeps == [pytest.approx(0.1), pytest.approx(0.2)]
    assert transport.form(0) == transport.form(2)  # the same query, the same time


def test_429_honours_retry_after() -> None:
    client, _, fake_time = make((429, "slow down", {"Retry-After": "3"}), vector(({}, "1")))
    assert client.query("up", at=1.0).scalar() == 1.0
    assert fake_time.sleeps == [3.0]


def test_connection_error_until_deadline() -> None:
    refused = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    client, transport, fake_time = make(refused, retry_deadline_s=10.0)
    with pytest.raises(MetricsError) as info:
        client.query("sum(up)", at=1.0)
    message = str(info.value)
    assert "10 s retry deadline" in message
    assert f"url={URL}/api/v1/query" in message
    assert "query='sum(up)'" in message
    assert "ConnectionError: [Errno 111] Connection refused" in message
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)
    # Exponential backoff capped at 2 s, the last wait cut to the deadline, nothing beyond it.
    assert fake_time.sleeps[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert max(fake_time.sleeps) <= 2.0
    assert sum(fake_time.sleeps) == pytest.approx(10.0)
    assert len(transport.calls) == len(fake_time.sleeps) + 1
    assert f"({len(transport.calls)} attempts)" in message


def test_timeouts_and_5xx_until_deadline_report_the_last_response() -> None:
    client, _, _ = make(
        requests.exceptions.ReadTimeout("read timed out"), (503, "overloaded"), retry_deadline_s=1.0
    )
    with pytest.raises(MetricsError, match=r"last error: HTTP 503 Service Unavailable") as info:
        client.query("up", at=1.0)
    assert info.value.response == "overloaded"


def test_zero_deadline_means_one_attempt() -> None:
    client, transport, fake_time = make((500, "x"), retry_deadline_s=0.0)
    with pytest.raises(MetricsError):
        client.query("up", at=1.0)
    assert len(transport.calls) == 1 and fake_time.sleeps == []


# --- credentials never leak ----------------------------------------------------------------------


def test_401_with_token_names_the_variable_but_not_the_token() -> None:
    echo = f"invalid bearer token {TOKEN}"  # a proxy that echoes what it got
    client, _, _ = make((401, echo), env={ENV_TOKEN: TOKEN})
    with pytest.raises(MetricsError) as info:
        client.query("up", at=1.0)
    text = f"{info.value} {info.value!r} {info.value.response} {client!r}"
    assert TOKEN not in text
    assert "HTTP 401 Unauthorized" in str(info.value)
    assert ENV_TOKEN in str(info.value) and "bearer token" in str(info.value)


def test_basic_password_never_appears() -> None:
    pair = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    client, _, _ = make(
        (403, f"denied {PASSWORD} {pair}"), env={ENV_USER: "alice", ENV_PASSWORD: PASSWORD}
    )
    with pytest.raises(MetricsError) as info:
        client.query("up", at=1.0)
    text = f"{info.value} {info.value.response} {client!r} {vars(client)!r}"
    assert PASSWORD not in text and pair not in text


def test_url_with_credentials_is_refused_and_redacted() -> None:
    with pytest.raises(ConfigError) as info:
        make(vector(), url="https://alice:hunter2@prom.test:9090")
    assert "hunter2" not in str(info.value) and "alice" not in str(info.value)
    assert "https://***@prom.test:9090" in str(info.value)
    assert ENV_TOKEN in str(info.value)
    assert redact_url("http://u:p@h/x") == "http://***@h/x"
    assert redact_url("http://h:1/x") == "http://h:1/x"


def test_url_with_a_query_string_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as info:
        make(vector(), url="https://prom.test/?token=abc")
    assert "abc" not in str(info.value)


def test_conflicting_or_partial_credentials_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not both") as info:
        make(vector(), env={ENV_TOKEN: TOKEN, ENV_USER: "alice", ENV_PASSWORD: PASSWORD})
    assert TOKEN not in str(info.value)
    with pytest.raises(ConfigError, match=ENV_PASSWORD):
        make(vector(), env={ENV_USER: "alice"})


def test_signature_does_not_embed_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOKEN, TOKEN)
    assert TOKEN not in str(inspect.signature(PrometheusClient))
    client = PrometheusClient(URL)  # reads os.environ when env is not given
    assert client._auth_kind == "bearer"
    assert TOKEN not in repr(client)


def test_repr_shows_url_auth_kind_and_verify_only() -> None:
    client, _, _ = make(vector(), env={ENV_TOKEN: TOKEN}, url=URL + "/")
    assert repr(client) == f"PrometheusClient(url='{URL}', auth=bearer, verify=True)"


# --- ready and last_scrape -----------------------------------------------------------------------


def test_ready() -> None:
    client, transport, fake_time = make((200, "Prometheus Server is Ready.\n"))
    assert client.ready() is True
    assert transport.calls[0][0].method == "GET"
    assert transport.calls[0][0].url == f"{URL}/-/ready"
    client, _, _ = make((503, "Service Unavailable"))
    assert client.ready() is False
    client, _, fake_time = make(requests.exceptions.ConnectionError("refused"))
    assert client.ready() is False
    assert fake_time.sleeps == []  # one attempt: the caller owns the waiting
    client, _, _ = make((401, "no"))
    with pytest.raises(MetricsError, match="readiness check answered HTTP 401"):
        client.ready()


def test_last_scrape_queries_timestamp_at_the_given_time() -> None:
    client, transport, _ = make(
        vector(({"instance": "a"}, "1700000009.5"), ({"instance": "b"}, "1700000008.25"))
    )
    assert client.last_scrape('up{job="envoy"}', at=1_700_000_010.0) == 1_700_000_008.25
    assert transport.form() == {"query": ['timestamp(up{job="envoy"})'], "time": ["1700000010.000"]}


def test_last_scrape_is_none_before_the_first_scrape() -> None:
    client, _, _ = make(vector())
    assert client.last_scrape('up{job="envoy"}', at=1.0) is None
