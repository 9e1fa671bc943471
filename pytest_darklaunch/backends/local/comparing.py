"""The local backend's comparison: one object the stack drives through a run.

It owns the upstream log's path, the comparer and the log reader; it tells the stack how to
amend Envoy's config and whether a ``live-2`` must run, and at the end waits until the log
holds every upstream request Envoy completed before settling the last pairs.

``live-2`` (live's command, on a port of its own) runs when noise is learned or when dark's
latency is paired with it (see :func:`latency_baseline`).

>>> from pytest_darklaunch.core.compare import Settings
>>> c = LocalComparison(Settings(responses="body", noise=True), "/tmp/run", timeout_s=2.0)
>>> c.needs_live2, c.log_path
(True, '/tmp/run/upstream.log')
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pytest_darklaunch.backends.local.capture import LIVE2
from pytest_darklaunch.backends.local.envoy import pairing_amendment
from pytest_darklaunch.backends.local.pairing import PairingReader
from pytest_darklaunch.backends.local.processes import NotReady, wait_until
from pytest_darklaunch.core.compare import Clean, Comparer, Decide, Settings, Summary
from pytest_darklaunch.core.metrics import is_latency
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.errors import ProvisioningError

# An id waits this long past the request timeout for its partners (log flush, slow shadow).
PAIRING_SLACK_S = 3.0
LOG_DRAIN_DEADLINE_S = 15.0


def latency_baseline(settings: Settings, objectives: Sequence[Objective]) -> str:
    """What dark's latency is paired with: ``compare.baseline`` when given, else ``live-2``
    when an objective bounds a latency's increase over live's, else ``live``.

    A mirrored copy is not served as live's own request is: the proxy sends it after live's,
    and on shared cores it waits for them. Measured with the bundled Envoy (A/A, 100%
    mirrored, 250 requests/s, ``benchmarks/comparison.py --modes baseline``): live-2, running
    live's command, answered the same requests +16% to +47% slower than live with the sample
    app answering at once (about 0.7 ms), +10% to +14% with ``python -m http.server``, while
    dark and live-2, both copies, stayed within -6%..+7% of each other. A ``max_increase`` is
    therefore judged against live-2, which receives exactly the requests dark receives (both
    copies are made on the same routes), the two copies sent in either order (see
    :func:`~.capture.add_capture`).

    >>> latency_baseline(Settings(), [Objective("mean-latency", max_increase=None)])
    'live'
    """
    if settings.baseline:
        return settings.baseline
    if any(is_latency(obj.metric) and obj.max_increase is not None for obj in objectives):
        return LIVE2
    return "live"


class LocalComparison:
    """Pairing and comparison for one local run."""

    def __init__(
        self, settings: Settings, workdir: str, *, timeout_s: float,
        decide: Decide | None = None, clean: Clean | None = None,
        objectives: Sequence[Objective] = (),
    ) -> None:
        self.settings = replace(settings, baseline=latency_baseline(settings, objectives))
        self.log_path = os.path.join(workdir, "upstream.log")
        self.reader = PairingReader(
            self.log_path, Comparer(self.settings, decide=decide, clean=clean),
            live2=self.settings.live2, timeout_s=timeout_s + PAIRING_SLACK_S,
        )
        self._final: Summary | None = None
        self.log_shortfall = 0  # entries Envoy completed that the log did not show in time

    @property
    def needs_live2(self) -> bool:
        return self.settings.live2

    def envoy_options(
        self, live2_port: int | None
    ) -> tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]:
        """``amend`` and ``extra_argv`` for :func:`~.envoy.start_envoy`; creates the log
        private first (it holds answers' bodies; Envoy keeps the mode of a file it appends to,
        and would create it readable by everyone)."""
        os.close(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return pairing_amendment(
            self.log_path, bodies=self.settings.responses == "body",
            max_body=self.settings.max_body, live2_port=live2_port,
        )

    def start(self) -> None:
        self.reader.start()

    def close(self) -> None:
        """Stop reading without settling (the run failed or is torn down)."""
        self.reader.stop()

    def summary(self) -> Summary:
        """The comparison so far (the final one once :meth:`finish` ran)."""
        return self._final if self._final is not None else self.reader.summary()

    def finish(self, admin: str | None) -> None:
        """Once traffic stopped: wait until the log holds every request Envoy completed (when
        Envoy still answers on ``admin``, host:port), then settle every pending id. Never
        raises for a user's hook: :meth:`summary` does."""
        if self._final is not None or self.reader.failure is not None:
            return
        if admin is not None:
            self._drain(admin)
        self.reader.finish_reading()
        if self.reader.failure is None:
            self._final = self.reader.summary()

    def _drain(self, admin: str) -> None:
        """Until no upstream request is in flight (a shadow may outlive the client's answer)
        and the log holds an entry for every completed one."""
        roles = "live, dark" + (f", {LIVE2}" if self.needs_live2 else "")
        state = {"missing": 0}

        def drained() -> None:
            completed, active = upstream_requests(admin)
            seen = self.reader.counts()["entries"]
            state["missing"] = completed + active - seen
            if self.reader.failure is None and (active or seen < completed):
                raise NotReady(f"{seen} of {completed} upstream entries ({roles}) read, "
                               f"{active} requests in flight")

        try:
            wait_until(drained, what="upstream log read", deadline_s=LOG_DRAIN_DEADLINE_S)
        except ProvisioningError:
            # Settled with what arrived; reported, and partners missing for it show as
            # unpaired.
            self.log_shortfall = state["missing"]


def upstream_requests(admin: str) -> tuple[int, int]:
    """Envoy's completed and in-flight upstream requests to live, dark and live-2."""
    host, _, port = admin.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2.0)
    try:
        conn.request("GET", "/stats?filter=upstream_rq_(completed|active)$")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    totals = {"completed": 0, "active": 0}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        prefix, _, stat = name.rpartition(".upstream_rq_")
        cluster = prefix.removeprefix("cluster.")
        # per-route clusters are named <role>~<route> (see routes_envoy)
        role = cluster.split("~", 1)[0]
        paired = prefix.startswith("cluster.") and "." not in cluster and role in ROLES_PAIRED
        if paired and stat in totals:
            totals[stat] += int(value)
    return totals["completed"], totals["active"]


ROLES_PAIRED = ("live", "dark", LIVE2)
