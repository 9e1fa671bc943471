"""Helpers for the local backend's tests: specs, PID checks, logs, Envoy and Prometheus reads."""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import tenacity

from pytest_darklaunch.backends.local import LocalBackend
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    free_port,
    wait_until,
)
from pytest_darklaunch.core.spec import Sources, Spec, build_spec
from tests.procfs import proc_stat

SAMPLEAPP = [sys.executable, "-m", "pytest_darklaunch.sampleapp"]


def start_sampleapp(
    log_path: str, *flags: str, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """A sample app with ``flags`` on a free port, once it answers: its process and URL."""
    port = free_port()
    proc = ManagedProcess.start(
        "sampleapp", [*SAMPLEAPP, "--port", str(port), *flags], log_path=log_path,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> None:
        try:
            requests.get(f"{url}/healthz", timeout=1).close()
        except requests.ConnectionError as exc:
            raise NotReady(str(exc)) from exc

    try:
        wait_until(ready, what="sample app answering", deadline_s=15, process=proc)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def make_spec(**overrides: Any) -> Spec:
    """A spec for target default/sample-app with ``overrides`` merged at the top level."""
    raw: dict[str, Any] = {
        "target": "default/sample-app",
        "duration": {"interval": "1s", "iterations": 5},
    }
    raw.update(overrides)
    return build_spec(raw, Sources("test"))


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie of ours would be an unreaped leak,
    so zombies count as alive when they are our children)."""
    stat = proc_stat(pid)
    if stat is None:
        return False
    state, ppid, _ = stat
    return state != "Z" or ppid == os.getpid()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def binomial_acceptance(p: float, n: int, confidence: float = 0.999) -> tuple[float, float]:
    """The interval a share measured over ``n`` trials falls in with ``confidence`` when the true
    share is ``p`` (normal approximation, fine for n >= 1000)."""
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * (p * (1 - p) / n) ** 0.5
    return p - half, p + half


def wait_for(
    check: Callable[[], Any], what: str, deadline_s: float = 15.0, interval_s: float = 0.1
) -> Any:
    """Call ``check`` until it returns a truthy value; fail with the last value after the
    deadline."""
    last: dict[str, Any] = {}

    def attempt() -> Any:
        last["value"] = check()
        return last["value"]

    try:
        return tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda value: not value),
            stop=tenacity.stop_after_delay(deadline_s),
            wait=tenacity.wait_fixed(interval_s),
        )(attempt)
    except tenacity.RetryError:
        pytest.fail(f"{what}: not within {deadline_s} s (last: {last.get('value')!r})")


def wait_for_sent(backend: LocalBackend, count: int, deadline_s: float = 20.0) -> None:
    """Until the generator has sent ``count`` requests in its measured phase."""

    def sent() -> int | None:
        stats = backend.traffic_stats()
        return stats is not None and stats.sent >= count and stats.sent

    wait_for(sent, f"generator sending {count} requests", deadline_s)


def envoy_stats(admin_url: str, prefix: str) -> dict[str, int]:
    """Envoy's counters and gauges whose names start with ``prefix``."""
    response = requests.get(f"{admin_url}/stats", params={"filter": f"^{prefix}"}, timeout=2)
    response.raise_for_status()
    out: dict[str, int] = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def wait_for_quiet_upstreams(admin_url: str) -> None:
    """Until neither live nor dark has a request in flight (mirrored copies included)."""

    def quiet() -> bool:
        stats = envoy_stats(admin_url, "cluster.")
        return all(stats.get(f"cluster.{c}.upstream_rq_active", 0) == 0 for c in ("live", "dark"))

    wait_for(quiet, "no request in flight to live or dark", 10.0, 0.05)


def prom_query(prometheus_url: str, query: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
