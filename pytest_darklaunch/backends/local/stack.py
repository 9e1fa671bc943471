"""The local backend: live and dark as processes, Envoy mirroring, Prometheus, open-loop load.

A guardian starts first (it stops everything should pytest be killed without tearing down, see
:mod:`~pytest_darklaunch.backends.guardian`). Then everything starts at once (the apps,
Envoy, Prometheus and the generator's interpreter), and each is waited for; traffic starts once
live, dark and Envoy answer. Every file lives in ``run.workdir`` (private, removed at teardown
unless ``run.keep``), every port comes from the kernel, so two runs on one machine never collide.

>>> from pytest_darklaunch.backends import RunContext
>>> from pytest_darklaunch.core.spec import Sources, build_spec
>>> spec = build_spec({"target": "default/sample-app", "traffic": {"rate": 50}}, Sources("doc"))
>>> backend = LocalBackend(spec, RunContext(run_id="doc", workdir="/tmp/darklaunch-doc"))
>>> env = backend.provision()          # doctest: +SKIP
>>> env.endpoints["ingress"]           # doctest: +SKIP
'http://127.0.0.1:40123'
>>> backend.teardown()                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import threading
import time
from collections.abc import Mapping
from typing import Any

import tenacity

from pytest_darklaunch.backends.base import Environment, RunContext, TrafficStats
from pytest_darklaunch.backends.guardian import Guardian
from pytest_darklaunch.backends.local.capture import LIVE2
from pytest_darklaunch.backends.local.comparing import LocalComparison
from pytest_darklaunch.backends.local.envoy import (
    EnvoyAddresses,
    envoy_binary,
    series_labels,
    start_envoy,
    wait_for_envoy,
)
from pytest_darklaunch.backends.local.external import DownstreamWatch, start_command_traffic
from pytest_darklaunch.backends.local.launch import (
    kept_text,
    start_app,
    start_generator,
    start_traffic,
    wait_for_app,
)
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    PortInUse,
    free_port,
    make_private_dir,
    signals_deferred,
    stop_all,
)
from pytest_darklaunch.backends.local.prometheus import (
    SCRAPE_INTERVAL_S,
    find_prometheus,
    set_envoy_target,
    start_prometheus,
    wait_for_prometheus,
)
from pytest_darklaunch.core.compare import Settings, Summary
from pytest_darklaunch.core.spec import ROLES, Spec
from pytest_darklaunch.errors import ProvisioningError

PORT_ATTEMPTS = 3
PIDS_FILE = "pids"


class LocalBackend:
    """The :class:`~pytest_darklaunch.backends.Backend` that runs everything on this machine.

    Besides the protocol it offers :meth:`stop_traffic` (end the load, keep the stack, so a
    last scrape can settle the counters) and :attr:`started_pids`.
    """

    name = "local"

    def __init__(self, spec: Spec, run: RunContext) -> None:
        self.spec = spec
        self.run = run
        self.workdir = os.path.abspath(run.workdir)
        self.stats_path = os.path.join(self.workdir, "traffic.json")
        self.timings: dict[str, float] = {}
        self._procs: dict[str, ManagedProcess] = {}
        self._guardian: Guardian | None = None
        # The guardian's PID once started (kept after teardown, for leak checks); not in
        # started_pids, which lists the stack's processes (the pids file).
        self.guardian_pid: int | None = None
        self._pids: list[int] = []
        self._environment: Environment | None = None
        self._final_traffic: dict[str, Any] | None = None
        self._watch: DownstreamWatch | None = None
        self._torn_down = False
        # provision() may run in another thread than teardown(): see _track.
        self._lock = threading.Lock()
        # Pairing of live's and dark's answers: always (status codes and latencies, measured
        # cheap: benchmarks/comparison.py), bodies too with the spec's compare: section, and
        # live-2 with noise or as the latency baseline (see latency_baseline).
        self.comparison = LocalComparison(
            spec.compare or Settings(), self.workdir, timeout_s=spec.traffic.timeout_s,
            decide=run.compare_decide, clean=run.compare_clean, objectives=spec.objectives,
        )

    # -- protocol -------------------------------------------------------------------------

    def provision(self) -> Environment:
        """Start live, dark, Envoy, Prometheus (unless a URL is given) and the traffic."""
        if self._torn_down:
            raise ProvisioningError("this local backend was torn down; create a new one")
        if self._environment is not None:
            return self._environment
        if self.run.provision != "all":
            raise ProvisioningError(
                f"--darklaunch-provision {self.run.provision!r} is not supported by the local "
                "backend, which always starts its own app versions, Envoy and generator; "
                "use --darklaunch-backend kubernetes to measure an app already deployed"
            )
        started = time.monotonic()
        # Missing binaries fail before anything starts.
        prometheus_bin = None if self.run.prometheus_url else find_prometheus(
            self.run.prometheus_bin
        )
        envoy_bin = envoy_binary()
        make_private_dir(self.workdir)
        try:
            if not self.run.keep:
                self._start_guardian()
            retrying = tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(PortInUse),
                stop=tenacity.stop_after_attempt(PORT_ATTEMPTS),
                before_sleep=lambda _state: self._stop_started(),
                reraise=True,
            )
            self._environment = retrying(self._provision_once, envoy_bin, prometheus_bin, started)
        except BaseException:
            with signals_deferred():
                self._stop_started()
                self._dismiss_guardian()
                if not (self.run.keep or self.run.keep_failed_workdir):
                    shutil.rmtree(self.workdir, ignore_errors=True)
            self._torn_down = True
            raise
        return self._environment

    def traffic_stats(self) -> TrafficStats | None:
        """The generator's counters (measured phase, warm-up excluded), or ``None`` before it
        has written any."""
        raw = self.traffic_details()
        if raw is None:
            return None
        return TrafficStats(
            target_rps=float(raw["target_rps"]),
            sent=int(raw["sent"]),
            errors=int(raw["errors"]),
            late=int(raw["late"]),
            achieved_rps=float(raw["achieved_rps"] or 0.0),
            lag_p50_ms=raw.get("lag_p50_ms"),
            lag_p99_ms=raw.get("lag_p99_ms"),
            targets=raw.get("targets") or {},
            counted_by=raw.get("source", "generator"),
            measured_since=raw.get("measured_since"),
            measured_until=raw.get("measured_until"),
        )

    def teardown(self) -> None:
        """Stop the generator, then Envoy, Prometheus and the apps; remove the workdir.

        With ``run.keep`` only the generator is stopped and everything else is left for
        :meth:`keep_instructions`. Safe to call twice, after a failed provision, and while a
        SIGINT arrives (signals are held until the processes are reaped).
        """
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        with signals_deferred():
            self.stop_traffic()
            if self.run.keep:
                for proc in self._procs.values():
                    proc.detach()
                return
            self._stop_started()
            self._dismiss_guardian()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if os.path.exists(self.workdir):
                raise ProvisioningError(f"could not remove the run's directory {self.workdir}")

    def keep_instructions(self) -> str:
        """What ``--darklaunch-keep`` left running and the commands that remove it.

        With ``run.keep`` the processes it lists are handed over to the user (detached), whether
        or not :meth:`teardown` ran first; the generator, if still running, stops by itself
        once this Python process exits (it watches its parent).
        """
        running = [(role, p) for role, p in self._procs.items() if p.alive()]
        if self.run.keep:
            for _, proc in running:
                proc.detach()
        if not running and not os.path.isdir(self.workdir):
            return "pytest-darklaunch left nothing running."
        env = self._environment
        return kept_text(self.run.run_id, self.workdir, running, env.endpoints if env else None)

    # -- extras ---------------------------------------------------------------------------

    @property
    def started_pids(self) -> tuple[int, ...]:
        """Every PID this backend ever started (also after teardown), for leak checks."""
        return tuple(self._pids)

    def traffic_details(self) -> dict[str, Any] | None:
        """The generator's whole stats file (warm-up counters, statuses, latency, CPU...)."""
        if self._final_traffic is not None:
            return self._final_traffic
        try:
            with open(self.stats_path, encoding="utf-8") as handle:
                data: dict[str, Any] = json.load(handle)
        except FileNotFoundError:
            return None
        return data

    def stop_traffic(self) -> TrafficStats | None:
        """Stop the generator (its last counters are kept), settle the comparison once the
        proxy's log holds every request, and leave the stack running."""
        generator = self._procs.get("generator")
        if generator is not None and self._final_traffic is None:
            if self._watch is not None:
                # Count up to the command's last request: it is still running here.
                self._watch.stop("stopped with the experiment")
            generator.stop()
            self._final_traffic = self.traffic_details()
            envoy = self._procs.get("envoy")
            env = self._environment
            admin = env.endpoints["envoy_admin"].removeprefix("http://") if env else None
            self.comparison.finish(admin if envoy is not None and envoy.alive() else None)
        return self.traffic_stats()

    def comparison_summary(self) -> Summary | None:
        """The comparison of live's and dark's answers so far (final after stop_traffic)."""
        if self._environment is None:
            return None
        return self.comparison.summary()

    # -- provisioning ---------------------------------------------------------------------

    def _provision_once(
        self, envoy_bin: str, prometheus_bin: str | None, started: float
    ) -> Environment:
        apps = (*ROLES, LIVE2) if self.comparison.needs_live2 else ROLES
        ports = self._ports(len(apps) + 1)
        app_ports = dict(zip(apps, ports[1:], strict=False))
        # A user's command starts once the entry point is known; ours waits for it on stdin.
        generator = None
        if self.spec.traffic.command is None:
            generator = start_generator(self.spec, self.workdir, self.stats_path)
            self._track("generator", generator)
        for role in apps:
            self._track(role, start_app(self.spec, role, app_ports[role], self.workdir,
                                        version_of="live" if role == LIVE2 else None))
        amend, envoy_argv = self.comparison.envoy_options(app_ports.get(LIVE2))
        envoy_proc, admin_path = start_envoy(
            self.spec, self.workdir, live_port=app_ports["live"], dark_port=app_ports["dark"],
            binary=envoy_bin, mirror_methods=self.spec.mirror.methods, amend=amend,
            extra_argv=envoy_argv,
        )
        self._track("envoy", envoy_proc)
        if prometheus_bin is not None:
            self._track("prometheus", start_prometheus(prometheus_bin, self.workdir, ports[0]))

        envoy = wait_for_envoy(envoy_proc, admin_path)
        if prometheus_bin is not None:
            set_envoy_target(self.workdir, envoy.admin)
        for role in apps:
            wait_for_app(role, app_ports[role], self._procs[role])
        prometheus_url = self.run.prometheus_url or wait_for_prometheus(
            self._procs["prometheus"], ports[0]
        )
        self.comparison.start()
        self.timings["stack_ready_s"] = time.monotonic() - started

        traffic_started_at = self._start_traffic(generator, envoy)
        self.timings["provision_s"] = time.monotonic() - started
        return self._describe(envoy, app_ports, prometheus_url.rstrip("/"), traffic_started_at)

    def _start_traffic(self, generator: ManagedProcess | None, envoy: EnvoyAddresses) -> float:
        """Hand the generator its URL, or start the user's command; when traffic started."""
        if generator is not None:
            return start_traffic(
                generator, envoy.ingress_url, self.traffic_details, self.stats_path
            )
        self._watch = start_command_traffic(
            self.spec, self.workdir, envoy.ingress_url, envoy.admin, self.stats_path,
            lambda proc: self._track("generator", proc),
        )
        return self._watch.started_at

    def _ports(self, count: int) -> list[int]:
        ports: list[int] = []
        while len(ports) < count:  # the kernel may hand out a just-released port again
            port = free_port()
            if port not in ports:
                ports.append(port)
        return ports

    def _track(self, role: str, proc: ManagedProcess) -> None:
        with self._lock:
            self._procs[role] = proc
            self._pids.append(proc.pid)
            self._write_pids()
            cancelled = self._torn_down
        if cancelled:
            # teardown() ran while provisioning (in another thread) was starting processes.
            proc.stop()
            raise ProvisioningError("provisioning was interrupted: the run is being torn down")

    def _write_pids(self) -> None:
        """The ``pids`` file: what the guardian stops should pytest die, and users can kill."""
        path = os.path.join(self.workdir, PIDS_FILE)
        with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
            handle.write("".join(f"{p.pid}\n" for p in self._procs.values()))
        os.replace(f"{path}.tmp", path)

    def _start_guardian(self) -> None:
        """Start the process that stops this run's processes should pytest die (SIGKILL, OOM)
        before :meth:`teardown`; see :mod:`~pytest_darklaunch.backends.guardian`."""
        proc = Guardian.start(
            os.path.join(self.workdir, "guardian.log"),
            pids_file=os.path.join(self.workdir, PIDS_FILE),
            remove=[self.workdir, *([self.run.run_dir] if self.run.run_dir else [])],
        )
        with self._lock:
            self._guardian = proc
            self.guardian_pid = proc.pid
            cancelled = self._torn_down
        if cancelled:  # as in _track
            self._dismiss_guardian()
            raise ProvisioningError("provisioning was interrupted: the run is being torn down")

    def _dismiss_guardian(self) -> None:
        with self._lock:
            proc, self._guardian = self._guardian, None
        if proc is not None:
            proc.dismiss()

    def _describe(
        self, envoy: EnvoyAddresses, ports: Mapping[str, int], prometheus_url: str,
        traffic_started_at: float,
    ) -> Environment:
        endpoints = {
            "ingress": envoy.ingress_url,
            "live": f"http://127.0.0.1:{ports['live']}",
            "dark": f"http://127.0.0.1:{ports['dark']}",
            "envoy_admin": envoy.admin_url,
            "prometheus": prometheus_url,
        }
        details: dict[str, str] = {
            "workdir": self.workdir,
            "traffic_started_at": f"{traffic_started_at:.6f}",
            "traffic_warmup_s": f"{self.spec.traffic.warmup_s:g}",
            "traffic_stats_file": self.stats_path,
            "mirror_percent": f"{self.spec.mirror.percent:g}",
            "envoy_metrics_url": f"{envoy.admin_url}/stats/prometheus",
            "envoy_config": os.path.join(self.workdir, "envoy.json"),
            "upstream_log": self.comparison.log_path,
            "prometheus": "external" if self.run.prometheus_url else "started",
            "stack_ready_s": f"{self.timings['stack_ready_s']:.3f}",
            "provision_s": f"{self.timings['provision_s']:.3f}",
        }
        if self.run.prometheus_url:
            details["prometheus_scrape_hint"] = (
                f"your Prometheus must scrape {envoy.admin_url}/stats/prometheus "
                "(job envoy, every 1s) for this run's metrics"
            )
        for role, proc in self._procs.items():
            details[f"{role}_pid"] = str(proc.pid)
            details[f"{role}_log"] = proc.log_path
            details[f"{role}_command"] = shlex.join(proc.argv)
        return Environment(
            backend=self.name,
            run_id=self.run.run_id,
            prometheus_url=prometheus_url,
            metric_source="envoy",
            labels=series_labels(self.spec),
            endpoints=endpoints,
            pids=tuple(p.pid for p in self._procs.values()),
            scrape_interval_s=SCRAPE_INTERVAL_S,
            details=details,
            counters_start_at_zero=True,  # this run's own Envoy, started before the traffic
        )

    def _stop_started(self) -> None:
        """Stop what runs, in order: generator, Envoy, Prometheus, apps."""
        order = ("generator", "envoy", "prometheus", *ROLES, LIVE2)
        self.comparison.close()
        stop_all([self._procs[r] for r in order if r in self._procs])
        self._procs.clear()

