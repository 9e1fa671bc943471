"""Bring your own generator: ``traffic.command`` runs in place of the built-in one.

The command gets the experiment's entry point and load in its environment (see
:func:`command_environment`), writes its stdout and stderr to ``traffic-command.log`` in the
run's directory (tailed in the error should it exit early), and is stopped with the rest of
the stack, as the leader of its own process group (a shell loop's children go with it).

Its own counters are not ours to read, so the achieved rate comes from the proxy:
:class:`DownstreamWatch` samples Envoy's downstream counters (every request the listener got,
answered or not) and writes the same stats file the built-in generator writes. The rate is
the count between two samples over the time between them, so no window edge is guessed.

>>> env = command_environment("http://127.0.0.1:10000", "shop.example.com", 50, 630)
>>> env["DARKLAUNCH_URL"], env["DARKLAUNCH_RATE"], env["DARKLAUNCH_DURATION_S"]
('http://127.0.0.1:10000', '50', '630')
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_darklaunch.backends.local.launch import max_traffic_s
from pytest_darklaunch.backends.local.processes import ManagedProcess, NotReady, wait_until
from pytest_darklaunch.core.spec import Spec

LOG_NAME = "traffic-command.log"
POLL_S = 0.1
FIRST_REQUEST_DEADLINE_S = 30.0
# Envoy's HTTP connection manager counters, under the listener's stat_prefix "ingress".
TOTAL = "http.ingress.downstream_rq_total"
COMPLETED = "http.ingress.downstream_rq_completed"
OK_2XX = "http.ingress.downstream_rq_2xx"


def command_environment(url: str, host: str, rate_rps: float, duration_s: float) -> dict[str, str]:
    """What a user's command reads: where to send, which Host, how fast, for how long."""
    return {
        "DARKLAUNCH_URL": url,
        "DARKLAUNCH_HOST": host,
        "DARKLAUNCH_RATE": f"{rate_rps:g}",
        "DARKLAUNCH_DURATION_S": f"{duration_s:.0f}",
    }


def start_command(
    argv: Sequence[str], workdir: str, env: Mapping[str, str], cwd: str | None
) -> ManagedProcess:
    """Start the user's command with ``env`` added to ours; its output in the run's directory."""
    return ManagedProcess.start(
        "traffic command", argv, log_path=os.path.join(workdir, LOG_NAME),
        env={**os.environ, **env}, cwd=cwd,
    )


def start_command_traffic(
    spec: Spec,
    workdir: str,
    ingress_url: str,
    admin: str,
    stats_path: str,
    track: Callable[[ManagedProcess], None],
) -> DownstreamWatch:
    """Start ``traffic.command`` on the entry point (``track`` gets its process at once) and
    the watch of the proxy's counters; return once the proxy has seen its first request."""
    t = spec.traffic
    if t.command is None:
        raise ValueError("the spec has no traffic.command")
    env = command_environment(ingress_url, spec.mirror.host, t.rate_rps, max_traffic_s(spec))
    proc = start_command(t.command, workdir, env, t.command_cwd)
    track(proc)
    watch = DownstreamWatch(admin, stats_path, t.rate_rps, t.warmup_s, proc)
    watch.start()
    try:
        # A command that fails at once (a typo in its script) stops the run with its log tail.
        wait_until(
            watch.first_request, what="traffic command sending its first request",
            deadline_s=FIRST_REQUEST_DEADLINE_S, process=proc,
        )
    except BaseException:
        watch.stop("the command failed to start")
        raise
    return watch


def read_counters(admin: str, timeout_s: float = 1.0) -> dict[str, int]:
    """Envoy's downstream request counters (``admin`` is host:port)."""
    host, _, port = admin.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request("GET", "/stats?format=json&filter=^http%5C.ingress%5C.downstream_rq_")
        body = conn.getresponse().read()
    finally:
        conn.close()
    stats = json.loads(body).get("stats", [])
    return {s["name"]: int(s["value"]) for s in stats if "value" in s}


class DownstreamWatch:
    """Samples the proxy's downstream counters and keeps a generator-shaped stats file."""

    def __init__(
        self,
        admin: str,
        stats_path: str,
        target_rps: float,
        warmup_s: float,
        process: ManagedProcess,
        read: Callable[[str], dict[str, int]] = read_counters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admin = admin
        self.stats_path = stats_path
        self.target_rps = target_rps
        self.warmup_s = warmup_s
        self.process = process
        self._read = read
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = clock()
        self._start = self._sample()
        # Without a warm-up the counts start with the command, at the first sample.
        self._base: tuple[float, dict[str, int]] | None = None if warmup_s > 0 else self._start
        self._last = self._start
        self.stop_reason: str | None = None

    def _sample(self) -> tuple[float, dict[str, int]]:
        counters = self._read(self.admin)
        return self._clock(), counters

    def start(self) -> None:
        self.write()
        self._thread = threading.Thread(
            target=self._loop, name="darklaunch-downstream", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()

    def poll(self) -> None:
        """One sample: the first one after the warm-up is the base of every figure."""
        try:
            self._last = self._sample()
        except (OSError, ValueError):
            return  # Envoy is being stopped; the last good sample stands
        if self._base is None and self._last[0] >= self.started_at + self.warmup_s:
            self._base = self._last
        if self.stop_reason is None and not self.process.alive():
            self.stop_reason = f"the command exited with status {self.process.exit_code()}"
        self.write()

    def first_request(self) -> int:
        """The proxy's request count since the start, once there is one (else NotReady)."""
        sent = _delta(self._last[1], self._start[1], TOTAL)
        if sent <= 0:
            raise NotReady("the proxy has received no request yet")
        return sent

    def stop(self, reason: str) -> None:
        """Stop sampling (after one last sample) and write the final file."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()

    def stats(self) -> dict[str, Any]:
        base_t, base = self._base or self._last
        last_t, last = self._last
        measured_s = max(0.0, last_t - base_t)
        sent = _delta(last, base, TOTAL)
        return {
            "source": "proxy",
            "target_rps": self.target_rps,
            "timing": "command",
            "started_at": self.started_at,
            "warmup_s": self.warmup_s,
            "measured_since": base_t,
            "measured_until": last_t,
            "updated_at": last_t,
            "measured_s": round(measured_s, 3),
            "achieved_rps": round(sent / measured_s, 3) if measured_s >= 0.05 else None,
            "sent": sent,
            # Non-2xx answers, as the built-in generator counts them (in flight: not yet).
            "errors": _delta(last, base, COMPLETED) - _delta(last, base, OK_2XX),
            "late": 0,
            "lag_p50_ms": None,
            "lag_p99_ms": None,
            "warmup": {"sent": base.get(TOTAL, 0) - self._start[1].get(TOTAL, 0)},
            "running": not self._stop.is_set(),
            "stop_reason": self.stop_reason,
        }

    def write(self) -> None:
        tmp = f"{self.stats_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.stats(), handle)
        os.replace(tmp, self.stats_path)


def _delta(last: Mapping[str, int], base: Mapping[str, int], name: str) -> int:
    return last.get(name, 0) - base.get(name, 0)
