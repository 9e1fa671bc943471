"""The local backend's comparison: one object the stack drives through a run.

It owns the upstream log's path, the comparer and the log reader; it tells the stack how to
amend Envoy's config and whether a ``live-2`` must run, and at the end waits until the log
holds every upstream request Envoy completed before settling the last pairs.

>>> from pytest_darklaunch.core.compare import Settings
>>> c = LocalComparison(Settings(responses="body", noise=True), "/tmp/run", timeout_s=2.0)
>>> c.needs_live2, c.log_path
(True, '/tmp/run/upstream.log')
"""

from __future__ import annotations

import http.client
import os
from typing import Any, Callable

from pytest_darklaunch.backends.local.capture import LIVE2
from pytest_darklaunch.backends.local.envoy import pairing_amendment
from pytest_darklaunch.backends.local.pairing import PairingReader
from pytest_darklaunch.backends.local.processes import NotReady, wait_until
from pytest_darklaunch.core.compare import Clean, Comparer, Decide, Settings, Summary
from pytest_darklaunch.errors import ProvisioningError

# An id waits this long past the request timeout for its partners (log flush, slow shadow).
PAIRING_SLACK_S = 3.0
LOG_DRAIN_DEADLINE_S = 15.0


class LocalComparison:
    """Pairing and comparison for one local run."""

    def __init__(
        self, settings: Settings, workdir: str, *, timeout_s: float,
        decide: Decide | None = None, clean: Clean | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = os.path.join(workdir, "upstream.log")
        self.reader = PairingReader(
            self.log_path, Comparer(settings, decide=decide, clean=clean),
            noise=settings.noise, timeout_s=timeout_s + PAIRING_SLACK_S,
        )
        self._final: Summary | None = None
        self.log_shortfall = 0  # entries Envoy completed that the log did not show in time

    @property
    def needs_live2(self) -> bool:
        return self.settings.noise

    def envoy_options(
        self, live2_port: int | None
    ) -> tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]:
        """``amend`` and ``extra_argv`` for :func:`~.envoy.start_envoy`."""
        return pairing_amendment(
            self.log_path, bodies=self.settings.responses == "body",
            max_body=self.settings.max_body, live2_port=live2_port,
        )

    def start(self) -> None:
        self.reader.start()

    def summary(self) -> Summary:
        """The comparison so far (the final one once :meth:`finish` ran)."""
        return self._final if self._final is not None else self.reader.summary()

    def finish(self, admin: str | None) -> Summary:
        """Once traffic stopped: wait until the log holds every request Envoy completed (when
        Envoy still answers on ``admin``, host:port), then settle every pending id."""
        if self._final is not None:
            return self._final
        if admin is not None:
            expected = completed_upstream_requests(admin)
            roles = "live, dark" + (f", {LIVE2}" if self.needs_live2 else "")

            def drained() -> None:
                seen = self.reader.counts()["entries"]
                if self.reader.failure is None and seen < expected:
                    raise NotReady(f"{seen} of {expected} upstream entries ({roles}) read")

            try:
                wait_until(drained, what="upstream log read", deadline_s=LOG_DRAIN_DEADLINE_S)
            except ProvisioningError:
                # Settled below with what arrived; reported, and partners missing for it
                # show as unpaired.
                self.log_shortfall = expected - self.reader.counts()["entries"]
        self._final = self.reader.finish()
        return self._final


def completed_upstream_requests(admin: str) -> int:
    """Envoy's count of completed upstream requests to live, dark and live-2."""
    host, _, port = admin.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2.0)
    try:
        conn.request("GET", "/stats?filter=upstream_rq_completed$")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    wanted = {f"cluster.{role}.upstream_rq_completed" for role in ("live", "dark", LIVE2)}
    total = 0
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name in wanted:
            total += int(value)
    return total
