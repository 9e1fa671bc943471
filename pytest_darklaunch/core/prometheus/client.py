"""``PrometheusClient``: instant queries at an explicit time, readiness, scrapes, with retries."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import tenacity
from urllib3.exceptions import InsecureRequestWarning

from pytest_darklaunch.core.metrics import scrape_time_query
from pytest_darklaunch.core.prometheus.auth import (
    ENV_INSECURE,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    auth_from_env,
    env_flag,
    redact_url,
)
from pytest_darklaunch.core.prometheus.results import QueryResult, Sample
from pytest_darklaunch.core.redaction import HIDDEN
from pytest_darklaunch.core.units import parse_duration
from pytest_darklaunch.errors import ConfigError, MetricsError

_FIRST_BACKOFF_S = 0.1


_MAX_BACKOFF_S = 2.0


class _Transient(Exception):
    """A failed attempt that may succeed when repeated; carries what was seen."""

    def __init__(self, description: str, body: str = "", retry_after_s: float = 0.0) -> None:
        super().__init__(description)
        self.description = description
        self.body = body
        self.retry_after_s = retry_after_s


class PrometheusClient:
    """Instant queries against one Prometheus server.

    ``verify`` is ``True`` (system CAs), ``False`` or the path of a CA bundle; ``timeout_s``
    bounds each HTTP request and ``retry_deadline_s`` the retries of one call. ``session``,
    ``sleep``, ``clock`` and ``env`` (default ``os.environ``) are injectable so tests need no
    network and never wait;
    ``source`` says where the URL came from in a ConfigError. A URL with ``user:password@`` is
    refused (credentials come from the environment only).

    >>> client = PrometheusClient("http://127.0.0.1:9090", env={})
    >>> client
    PrometheusClient(url='http://127.0.0.1:9090', auth=none, verify=True)
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        verify: bool | str = True,
        retry_deadline_s: float = 10.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        source: str = "the Prometheus client settings",
    ) -> None:
        self.url = check_base_url(url, source)
        if timeout_s <= 0 or retry_deadline_s < 0:
            raise ValueError(
                f"timeout_s must be > 0 and retry_deadline_s >= 0, "
                f"got {timeout_s!r} and {retry_deadline_s!r}"
            )
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self._sleep = sleep
        self._clock = clock
        # Not a default argument: help() and inspect.signature would print the environment.
        env = os.environ if env is None else env
        self._auth, self._auth_kind, self._scrub = auth_from_env(env)
        self.verify: bool | str = _verify(verify, env, source)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"PrometheusClient(url={self.url!r}, auth={self._auth_kind}, verify={self.verify!r})"

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- public calls ---------------------------------------------------------------------------

    def query(self, promql: str, at: float) -> QueryResult:
        """Evaluate ``promql`` as an instant query at ``at`` (unix seconds, always sent).

        POSTed form-encoded, so long queries fit. Returns vector and scalar results; a matrix
        or string result is a MetricsError.

        >>> client.query("sum(up)", at=1.7e9).scalar()  # doctest: +SKIP
        3.0
        """
        if not math.isfinite(at):
            raise ValueError(f"query time must be finite unix seconds, got {at!r}")
        endpoint = f"{self.url}/api/v1/query"
        response = self._send("POST", endpoint, promql, data={"query": promql, "time": f"{at:.3f}"})
        payload = self._payload(response, endpoint, promql)
        return self._result(payload, endpoint, promql, at)

    def ready(self) -> bool:
        """Whether Prometheus answers ``GET /-/ready`` with success; one attempt, no retries.

        Unreachable, timing out or HTTP 5xx/429 (still starting) is ``False``; an answer that
        waiting will not change (TLS failure, 401, 404, ...) raises MetricsError.
        """
        endpoint = f"{self.url}/-/ready"
        try:
            response = self._attempt("GET", endpoint, "", None)
        except _Transient:
            return False
        if response.ok:
            return True
        raise MetricsError(
            f"Prometheus readiness check answered HTTP {response.status_code} {response.reason}"
            f"{self._hint(response.status_code)}",
            url=endpoint,
            response=self._scrub(response.text),
        )

    def last_scrape(self, selector: str, at: float) -> float | None:
        """Unix time of the latest scrape at or before ``at`` of the target(s) ``selector`` picks.

        Evaluates ``timestamp(<selector>)`` at ``at``: a sample's timestamp is its scrape time.
        With several series, the *earliest* of their latest scrapes, so ``last_scrape(...) >=
        end`` means every matched target has been scraped after ``end``. ``None`` when nothing
        matched within Prometheus' lookback (target gone or not scraped yet).

        >>> client.last_scrape('up{job="envoy"}', at=1.7e9)  # doctest: +SKIP
        1699999998.5
        """
        result = self.query(scrape_time_query(selector), at)
        if result.is_empty:
            return None
        return min(sample.value for sample in result.samples)

    def scrape_intervals(self) -> list[tuple[dict[str, str], float]]:
        """``(labels, scrape interval in seconds)`` of every active target, from
        ``/api/v1/targets`` (Prometheus 2.x+; Prometheus-compatible stores without a scrape
        manager answer 404, a MetricsError)."""
        endpoint = f"{self.url}/api/v1/targets?state=active"
        response = self._send("GET", endpoint, "", None)
        payload = self._payload(response, endpoint, "")
        out = []
        for target in (payload.get("data") or {}).get("activeTargets") or []:
            try:
                seconds = parse_duration(str(target.get("scrapeInterval", "")))
            except ValueError:
                continue
            out.append((dict(target.get("labels") or {}), seconds))
        return out

    # --- HTTP -----------------------------------------------------------------------------------

    @contextmanager
    def _quiet_if_insecure(self) -> Iterator[None]:
        # Turning verification off is explicit; urllib3 warning per request would be noise,
        # and an error under pytest's filterwarnings=error.
        if self.verify is False:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                yield
        else:
            yield

    def _attempt(
        self, method: str, endpoint: str, promql: str, data: dict[str, str] | None
    ) -> requests.Response:
        try:
            with self._quiet_if_insecure():
                response = self._session.request(
                    method,
                    endpoint,
                    data=data,
                    auth=self._auth,
                    timeout=self.timeout_s,
                    verify=self.verify,
                    headers={"Accept": "application/json"},
                )
        except requests.exceptions.SSLError as exc:
            raise MetricsError(
                f"TLS handshake with Prometheus failed ({self._scrub(str(exc))}); pass a CA "
                f"bundle as verify, or set {ENV_INSECURE}=1 to turn verification off",
                url=endpoint,
                query=promql,
            ) from exc
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _Transient(f"{type(exc).__name__}: {self._scrub(str(exc))}") from exc
        except requests.exceptions.RequestException as exc:
            raise MetricsError(
                f"could not query Prometheus: {type(exc).__name__}: {self._scrub(str(exc))}",
                url=endpoint,
                query=promql,
            ) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise _Transient(
                f"HTTP {response.status_code} {response.reason}",
                body=self._scrub(response.text),
                retry_after_s=_retry_after_s(response),
            )
        return response

    def _send(
        self, method: str, endpoint: str, promql: str, data: dict[str, str] | None
    ) -> requests.Response:
        deadline = self._clock() + self.retry_deadline_s
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            return self._attempt(method, endpoint, promql, data)

        def wait(state: tenacity.RetryCallState) -> float:
            backoff = min(_FIRST_BACKOFF_S * 2.0 ** (state.attempt_number - 1), _MAX_BACKOFF_S)
            failure = state.outcome.exception() if state.outcome else None
            if isinstance(failure, _Transient):
                backoff = max(backoff, failure.retry_after_s)
            return max(0.0, min(backoff, deadline - self._clock()))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=lambda state: self._clock() >= deadline,
            wait=wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as exc:
            raise MetricsError(
                f"Prometheus did not answer within the {self.retry_deadline_s:g} s retry deadline "
                f"({attempts} attempts); last error: {exc.description}",
                url=endpoint,
                query=promql,
                response=exc.body,
            ) from (exc.__cause__ or exc)

    # --- decoding -------------------------------------------------------------------------------

    def _payload(self, response: requests.Response, endpoint: str, promql: str) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("status") == "error":
            raise MetricsError(
                f"Prometheus rejected the query (HTTP {response.status_code}): "
                f"{payload.get('errorType', '?')}: {self._scrub(str(payload.get('error', '')))}",
                url=endpoint,
                query=promql,
            )
        if not response.ok:
            raise MetricsError(
                f"Prometheus answered HTTP {response.status_code} {response.reason}"
                f"{self._hint(response.status_code)}",
                url=endpoint,
                query=promql,
                response=self._scrub(response.text),
            )
        if not isinstance(payload, dict) or payload.get("status") != "success":
            raise MetricsError(
                f"Prometheus answered HTTP {response.status_code} with a body that is not a "
                "Prometheus API response (is the URL Prometheus' base URL?)",
                url=endpoint,
                query=promql,
                response=self._scrub(response.text),
            )
        return payload

    def _result(
        self, payload: dict[str, Any], endpoint: str, promql: str, at: float
    ) -> QueryResult:
        try:
            data = payload["data"]
            result_type = str(data["resultType"])
            result = data["result"]
            if result_type == "vector":
                samples = tuple(_vector_sample(item) for item in result)
            elif result_type == "scalar":
                samples = (Sample({}, float(result[1])),)
            else:
                hint = (
                    "; a range selector such as x[5m] needs a function such as increase()"
                    if result_type == "matrix"
                    else ""
                )
                raise MetricsError(
                    f"expected an instant vector or a scalar, got a {result_type}{hint}",
                    url=endpoint,
                    query=promql,
                )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(
                f"unexpected shape of Prometheus' answer: {type(exc).__name__}: {exc}",
                url=endpoint,
                query=promql,
                response=self._scrub(str(payload)),
            ) from exc
        notes = tuple(str(w) for w in payload.get("warnings", ()) or ())
        return QueryResult(promql, at, result_type, samples, notes)

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            sent = {
                "bearer": f"a bearer token from {ENV_TOKEN}",
                "basic": f"basic auth from {ENV_USER}/{ENV_PASSWORD}",
                "none": "no credentials",
            }[self._auth_kind]
            return f"; sent {sent}: check {ENV_TOKEN}, or {ENV_USER} and {ENV_PASSWORD}"
        if status == 404:
            return "; is the URL Prometheus' base URL (without /api/v1)?"
        return ""


def check_base_url(url: str, source: str, field: str = "Prometheus URL") -> str:
    """``url`` without a trailing slash; a ConfigError for anything but a plain http(s) base
    (the plugin calls it as the run is configured, naming the option as ``field``)."""
    parts = urlsplit(url.strip())
    # Anything after '?' or '#' may hold a token; it is never shown.
    shown = redact_url(urlunsplit(parts._replace(query=HIDDEN if parts.query else "", fragment="")))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(field, shown, source, "an http(s) URL such as http://127.0.0.1:9090")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            field,
            shown,
            source,
            f"a URL without credentials; set {ENV_TOKEN}, or {ENV_USER} and {ENV_PASSWORD}",
        )
    if parts.query or parts.fragment:
        raise ConfigError(field, shown, source, "a base URL without '?query' or '#fragment'")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def _verify(verify: bool | str, env: Mapping[str, str], source: str) -> bool | str:
    """TLS verification: off with ``ENV_INSECURE``, else as given (a CA bundle must exist)."""
    if env_flag(env, ENV_INSECURE):
        return False
    if isinstance(verify, str) and not os.path.exists(verify):
        raise ConfigError(
            "Prometheus CA bundle",
            verify,
            source,
            f"an existing CA bundle file, or {ENV_INSECURE}=1 to turn verification off",
        )
    return verify


def _vector_sample(item: Mapping[str, Any]) -> Sample:
    if "value" not in item and "histogram" in item:
        raise ValueError("native histogram samples are not supported; query classic _bucket series")
    return Sample(dict(item["metric"]), float(item["value"][1]))


def _retry_after_s(response: requests.Response) -> float:
    """Seconds from a numeric Retry-After header; 0 when absent or an HTTP date."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
