"""What every backend shares: the :class:`Backend` protocol, its inputs and outputs, and the
environment of the processes it starts.

A backend turns a :class:`~pytest_darklaunch.core.spec.Spec` into a running
:class:`Environment` (the app's live and dark versions, mirroring, traffic and a Prometheus to
read), and removes all of it again. Backends never import pytest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

BACKENDS = ("local", "kubernetes")
# The Prometheus credentials are the plugin's, never the processes' it starts (the app under
# test included). Named here rather than imported: core.prometheus loads requests.
CREDENTIAL_VARIABLES = (
    "PYTEST_DARKLAUNCH_PROMETHEUS_TOKEN",
    "PYTEST_DARKLAUNCH_PROMETHEUS_USER",
    "PYTEST_DARKLAUNCH_PROMETHEUS_PASSWORD",
)
# Where `python -m pytest_darklaunch...` finds this package, installed or not.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` (default: this process's) without the plugin's credentials."""
    environ = dict(os.environ if env is None else env)
    for name in CREDENTIAL_VARIABLES:
        environ.pop(name, None)
    return environ


def with_package_path(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this package's parent first on ``PYTHONPATH`` (for ``python -m``)."""
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_PARENT] + paths)
    return env


@dataclass(frozen=True)
class RunContext:
    """What a backend needs besides the spec.

    ``run_id`` is unique per pytest run (xdist's ``testrun_uid`` when present) and goes into
    every name, label, port file and temp dir so that concurrent runs never collide.
    """

    run_id: str
    workdir: str
    prometheus_url: str | None = None
    prometheus_bin: str | None = None
    prometheus_service: str | None = None
    # The cluster Prometheus's scrape interval (kubernetes backend); None: find it out.
    scrape_interval_s: float | None = None
    kube_context: str | None = None
    namespace: str | None = None
    provision: str = "all"
    keep: bool = False
    # The run's own private directory around ``workdir``, if any: removed with it by the local
    # backend's guardian should pytest die before teardown.
    run_dir: str | None = None
    # A failed provisioning leaves ``workdir`` (the logs its error names) to the caller, who
    # keeps a few failed runs' logs; otherwise the backend removes it at once.
    keep_failed_workdir: bool = False
    # Users' comparison rules (the pytest_darklaunch_compare / _clean hooks as plain callables,
    # see core.compare.Decide and Clean); the local backend's comparer calls them.
    compare_decide: Callable[..., Any] | None = None
    compare_clean: Callable[..., Any] | None = None


@dataclass(frozen=True)
class TrafficStats:
    """What the traffic generator itself observed (latency from the scheduled send time)."""

    target_rps: float
    sent: int
    errors: int
    late: int
    achieved_rps: float
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None
    # Per target name of a mix: {"sent", "errors", "late"} (names only: never headers, bodies).
    targets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # "generator" (the built-in one counted) or "proxy" (a user's command: Envoy counted).
    counted_by: str = "generator"
    # The unix times the measured counts are between (warm-up excluded).
    measured_since: float | None = None
    measured_until: float | None = None


@dataclass(frozen=True)
class Environment:
    """A provisioned experiment, as the sampler and the reports see it.

    ``metric_source`` names the PromQL catalogue to use (``envoy``, ``istio``, ``knative``);
    ``labels`` holds, per role (``live``/``dark``), the label matchers that select that version's
    series; ``endpoints`` the URLs a user can call; ``pids`` the processes the run started.
    ``details["traffic_started_at"]`` is when the generator started (unix seconds).
    """

    backend: str
    run_id: str
    prometheus_url: str
    metric_source: str
    labels: Mapping[str, Mapping[str, str]]
    endpoints: Mapping[str, str] = field(default_factory=dict)
    pids: tuple[int, ...] = ()
    scrape_interval_s: float = 1.0
    details: Mapping[str, str] = field(default_factory=dict)
    # True when every counter was zero when the traffic started (a proxy started for this run):
    # the first window can then start with the traffic instead of at the first scrape.
    counters_start_at_zero: bool = False


class Backend(Protocol):
    """The small protocol every backend implements."""

    name: str

    def provision(self) -> Environment:
        """Start everything, wait until it answers, start the traffic; return the environment."""

    def traffic_stats(self) -> TrafficStats | None:
        """The generator's own counters so far, or ``None`` when the backend cannot see them."""

    def teardown(self) -> None:
        """Stop and remove everything this run started; safe to call twice and after a failure."""

    def keep_instructions(self) -> str:
        """With ``--darklaunch-keep``: what is left running and the command that removes it."""
