"""The generator's counters: a log histogram accurate to 1%, and per-phase, per-target counts.

Kept apart from the generator's loop so the stats file's shape is read in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Columns of a target's row in :attr:`Counters.targets`.
SENT, ERRORS, LATE = 0, 1, 2


class LogHistogram:
    """Counts of non-negative values (ms) in bins 1% wide: percentiles accurate to 1%.

    >>> h = LogHistogram()
    >>> for v in range(1, 101):
    ...     h.add(float(v))
    >>> round(h.percentile(0.5)), round(h.percentile(0.99))
    (50, 99)
    """

    FLOOR_MS = 0.001
    _LOG_STEP = math.log(1.01)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        index = -1 if ms < self.FLOOR_MS else int(math.log(ms / self.FLOOR_MS) / self._LOG_STEP)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, q: float) -> float | None:
        """The value below which a share ``q`` of the values lie (bin's geometric middle)."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                if index < 0:
                    return 0.0
                return min(self.max_ms, self.FLOOR_MS * math.exp((index + 0.5) * self._LOG_STEP))
        return self.max_ms


@dataclass
class Counters:
    """What happened to the requests due in one phase (warm-up or measured)."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    cancelled: int = 0
    late: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    lag: LogHistogram = field(default_factory=LogHistogram)
    latency: LogHistogram = field(default_factory=LogHistogram)
    # Per target name: [sent, errors, late]; names only, never headers or bodies (secrets).
    targets: dict[str, list[int]] = field(default_factory=dict)

    def count(self, name: str, what: int) -> None:
        """Add one to ``what`` (:data:`SENT`, :data:`ERRORS` or :data:`LATE`) of ``name``."""
        row = self.targets.get(name)
        if row is None:
            row = self.targets[name] = [0, 0, 0]
        row[what] += 1

    def as_dict(self, with_targets: bool = True) -> dict[str, Any]:
        """The counters; ``targets`` is ``None`` without ``with_targets``."""
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "connection_errors": self.connection_errors,
            "cancelled": self.cancelled,
            "late": self.late,
            "statuses": dict(self.statuses),
            "lag_p50_ms": rounded(self.lag.percentile(0.50)),
            "lag_p99_ms": rounded(self.lag.percentile(0.99)),
            "lag_max_ms": rounded(self.lag.max_ms) if self.lag.total else None,
            "latency_p50_ms": rounded(self.latency.percentile(0.50)),
            "latency_p99_ms": rounded(self.latency.percentile(0.99)),
            "targets": {
                name: {"sent": sent, "errors": errors, "late": late}
                for name, (sent, errors, late) in self.targets.items()
            }
            if with_targets
            else None,
        }
