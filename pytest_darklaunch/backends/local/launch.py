"""Starting the local backend's apps and generator, and waiting for them.

Plain functions on the spec and the run's directory; :class:`~.stack.LocalBackend` tracks
every process they start (for the guardian and teardown) and decides the order.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_darklaunch.backends.base import with_package_path
from pytest_darklaunch.backends.local.listeners import connect
from pytest_darklaunch.backends.local.processes import ManagedProcess, NotReady, wait_until
from pytest_darklaunch.core.spec import Spec, Version
from pytest_darklaunch.core.traffic.model import dump_targets
from pytest_darklaunch.errors import ProvisioningError

APP_READY_DEADLINE_S = 15.0
GENERATOR_START_DEADLINE_S = 15.0


def default_command() -> tuple[str, ...]:
    """The bundled sample app, for a version without a ``command``."""
    return (sys.executable, "-m", "pytest_darklaunch.sampleapp", "--port", "{port}")


def start_app(
    spec: Spec, role: str, port: int, workdir: str, *, version_of: str | None = None
) -> ManagedProcess:
    """Start ``role``'s version on ``port`` (its ``{port}`` placeholder filled in).

    ``version_of`` runs another role's version under this role's name: ``live-2``, the second
    copy of live that noise is learned from, runs live's command with live's environment.
    """
    source = version_of or role
    version: Version = getattr(spec.versions, source)
    env = dict(os.environ)
    env.update(version.env)
    env.setdefault("T_VERSION", source)
    command = version.command
    if command is None:
        command = default_command()
        with_package_path(env)
    argv = [arg.replace("{port}", str(port)) for arg in command]
    log_path = os.path.join(workdir, f"{role}.log")
    return ManagedProcess.start(role, argv, log_path=log_path, env=env)


def wait_for_app(role: str, port: int, process: ManagedProcess) -> None:
    """Until the app answers HTTP at all (any status: dark may be told to fail), itself: when
    another program holds ``port``, :class:`~.processes.PortInUse` (see :mod:`~.listeners`)."""

    def probe() -> int:
        conn = connect(process, port)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    wait_until(
        probe, what=f"{role} answering on port {port}", deadline_s=APP_READY_DEADLINE_S,
        process=process,
    )


def generator_argv(spec: Spec, workdir: str, stats_path: str) -> list[str]:
    """The generator's command line; it reads its URL from stdin (``--url -``)."""
    t = spec.traffic
    argv = [
        sys.executable, "-m", "pytest_darklaunch.backends.local.generator",
        "--url", "-",
        "--rate", f"{t.rate_rps:g}",
        "--method", t.method,
        "--path", t.path,
        "--timeout", f"{t.timeout_s:g}",
        "--warmup", f"{t.warmup_s:g}",
        "--stats", stats_path,
        "--max-duration", f"{max_traffic_s(spec):g}",
        "--connections", str(max(64, min(1024, int(t.rate_rps * 0.5)))),
        "--parent-pid", str(os.getpid()),
    ]
    mix = t.mix
    if not (mix.single and not mix.targets[0].body):
        # Files only we can read: headers may carry credentials, argv is public.
        targets_path = os.path.join(workdir, "generator-targets.json")
        dump_targets(mix.targets, targets_path)
        argv += ["--targets", targets_path, "--timing", mix.timing, "--speed", f"{mix.speed:g}"]
    if t.headers:
        # A file only we can read: headers may carry credentials, argv is public.
        headers_path = os.path.join(workdir, "generator-headers.json")
        fd = os.open(headers_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(t.headers), handle)
        argv += ["--headers-file", headers_path]
    if not any(name.lower() == "host" for name in t.headers):
        argv += ["--host", spec.mirror.host]
    return argv


def start_generator(spec: Spec, workdir: str, stats_path: str) -> ManagedProcess:
    """Start the generator's interpreter now; it gets its URL on stdin once Envoy is up."""
    return ManagedProcess.start(
        "generator", generator_argv(spec, workdir, stats_path),
        log_path=os.path.join(workdir, "generator.log"),
        env=with_package_path(dict(os.environ)), stdin_pipe=True,
    )


def max_traffic_s(spec: Spec) -> float:
    """Safety bound on the load: twice the planned experiment plus a margin."""
    return spec.traffic.warmup_s + 2 * spec.duration.total_s + 300.0


def start_traffic(
    generator: ManagedProcess,
    url: str,
    stats: Callable[[], dict[str, Any] | None],
    stats_path: str,
) -> float:
    """Hand the generator its URL; return the unix time it started sending (from ``stats``,
    the contents of its stats file ``stats_path``)."""
    stdin = generator.popen.stdin
    if stdin is None:
        raise ProvisioningError("generator started without a stdin pipe")
    try:
        stdin.write(f"{url}\n".encode())
        stdin.close()
    except BrokenPipeError:
        raise generator.failure("exited before it got its URL") from None

    def started_at() -> float:
        raw = stats()
        if raw is None:
            raise NotReady(f"no stats file {stats_path} yet")
        return float(raw["started_at"])

    return wait_until(
        started_at, what="traffic generator sending", deadline_s=GENERATOR_START_DEADLINE_S,
        process=generator,
    )


def kept_text(
    run_id: str,
    workdir: str,
    running: Sequence[tuple[str, ManagedProcess]],
    endpoints: Mapping[str, str] | None,
) -> str:
    """What ``--darklaunch-keep`` left running, and the commands that remove it."""
    shown = endpoints or {}
    lines = [f"pytest-darklaunch run {run_id} left running (files in {workdir}):"]
    for role, proc in running:
        where = shown.get("ingress" if role == "envoy" else role, "")
        extra = f", admin {shown['envoy_admin']}" if role == "envoy" and endpoints else ""
        lines.append(f"  {role:<11} pid {proc.pid:<8} {where}{extra}")
    pids = " ".join(str(p.pid) for _, p in running)
    lines.append("Stop it and remove its files with:")
    kill = f"kill {pids} && " if pids else ""
    lines.append(f"  {kill}rm -rf {shlex.quote(workdir)}")
    return "\n".join(lines)
