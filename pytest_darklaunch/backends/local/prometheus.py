"""A private Prometheus for one run: scrapes Envoy every second, TSDB in the run's workdir.

Prometheus is started at the same moment as the apps and Envoy, before Envoy's admin port is
known: it discovers its one target from a file (``file_sd``) that :func:`set_envoy_target`
writes atomically once Envoy is up. Its first scrape lands about 5 s after start whatever we do
(target discovery is throttled to 5 s), which the sampler waits for behind warm-up traffic;
provisioning only waits for ``/-/ready``.
"""

from __future__ import annotations

import json
import os
import shutil

from pytest_darklaunch.backends.local.listeners import connect
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    wait_until,
)
from pytest_darklaunch.errors import ProvisioningError

SCRAPE_INTERVAL_S = 1.0
READY_DEADLINE_S = 15.0
INSTALL_HINT = (
    "install it with `apt-get install -y --no-install-recommends prometheus`, "
    "or pass --darklaunch-prometheus-bin PATH, "
    "or use a running Prometheus with --darklaunch-prometheus-url URL"
)


def find_prometheus(configured: str | None) -> str:
    """The Prometheus binary: ``configured`` (a path or a name on PATH), else ``prometheus``
    on PATH. A missing one is a one-line :class:`ProvisioningError` saying how to get it."""
    wanted = configured or "prometheus"
    found = shutil.which(wanted)
    if found is None:
        where = f"--darklaunch-prometheus-bin {configured!r}" if configured else "PATH"
        raise ProvisioningError(f"Prometheus not found ({wanted!r} via {where}): {INSTALL_HINT}")
    return found


def prometheus_config(targets_file: str) -> dict[str, object]:
    """Scrape Envoy's ``/stats/prometheus`` every second; the target comes from a file."""
    interval = f"{SCRAPE_INTERVAL_S:g}s"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "file_sd_configs": [{"files": [targets_file], "refresh_interval": "1m"}],
            }
        ],
    }


def start_prometheus(binary: str, workdir: str, port: int) -> ManagedProcess:
    """Write the config (JSON is YAML) and start Prometheus on ``127.0.0.1:port``."""
    targets_file = os.path.join(workdir, "prometheus-targets.json")
    _write_atomic(targets_file, "[]")
    config_path = os.path.join(workdir, "prometheus.yml")
    _write_atomic(config_path, json.dumps(prometheus_config(targets_file), indent=1))
    tsdb = os.path.join(workdir, "prometheus-tsdb")
    os.makedirs(tsdb, mode=0o700, exist_ok=True)
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tsdb}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return ManagedProcess.start(
        "prometheus", argv, log_path=os.path.join(workdir, "prometheus.log"), cwd=workdir
    )


def set_envoy_target(workdir: str, envoy_admin: str) -> None:
    """Point the run's Prometheus at Envoy's admin address (``host:port``)."""
    targets = [{"targets": [envoy_admin]}]
    _write_atomic(os.path.join(workdir, "prometheus-targets.json"), json.dumps(targets))


def wait_for_prometheus(
    proc: ManagedProcess, port: int, deadline_s: float = READY_DEADLINE_S
) -> str:
    """Wait until ``/-/ready`` answers 200 from ``proc`` (another run's Prometheus on ``port``
    is :class:`~.processes.PortInUse`, see :mod:`~.listeners`); returns the base URL."""

    def probe() -> str:
        conn = connect(proc, port)
        try:
            conn.request("GET", "/-/ready")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise NotReady(f"/-/ready answered {response.status} {body[:80]!r}")
        return f"http://127.0.0.1:{port}"

    return wait_until(probe, what="Prometheus ready", deadline_s=deadline_s, process=proc)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
