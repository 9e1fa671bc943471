"""Latencies of paired requests (microseconds, from the proxy's log): bounded memory.

Per pair it keeps sums for the ratio of means and its delta-method interval, and log-spaced
histograms 0.5% wide for percentiles (so a percentile is off by at most 0.5%, far below the
tolerances users set). Every entry, paired or not, also goes into per-role totals: the
unpaired comparison the paired one replaces, shown side by side.

>>> p = PairedLatency()
>>> for live, dark in [(1000, 1100), (2000, 2200), (1500, 1650)]:
...     p.add_pair(live, dark)
>>> round(p.mean_increase(), 3), p.pairs
(0.1, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

BIN_GROWTH = 1.005
_LOG_GROWTH = math.log(BIN_GROWTH)
# The joint histogram of (baseline, dark) on the same request, for the covariance of the two
# percentiles: bins 2% wide each way, at most MAX_JOINT_CELLS cells (a few thousand in a run,
# the pairs lying along a band); past that the covariance is taken at its least favourable
# value, which widens percentile intervals but keeps them valid.
JOINT_GROWTH = 1.02
_LOG_JOINT = math.log(JOINT_GROWTH)
MAX_JOINT_CELLS = 20000


def joint_index(value_us: float) -> int:
    return int(math.log(max(value_us, 1.0)) / _LOG_JOINT)


@dataclass
class LogHistogram:
    """Counts of values (us, >= 1) in bins 0.5% wide; quantiles at the bin's geometric middle."""

    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0

    def add(self, value_us: float) -> None:
        index = int(math.log(max(value_us, 1.0)) / _LOG_GROWTH)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1

    def buckets_ms(self) -> list[tuple[float, float]]:
        """Cumulative ``(le_ms, count)`` pairs ending at +Inf, as Prometheus histograms are, so
        that the statistics written for the proxy's buckets serve these as well."""
        out: list[tuple[float, float]] = []
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            out.append((BIN_GROWTH ** (index + 1) / 1000.0, float(seen)))
        out.append((math.inf, float(seen)))
        return out

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> LogHistogram:
        counts = {int(k): int(v) for k, v in data.items()}
        return cls(counts, sum(counts.values()))

    def minus(self, other: LogHistogram) -> LogHistogram:
        counts = {k: v - other.counts.get(k, 0) for k, v in self.counts.items()}
        kept = {k: v for k, v in counts.items() if v > 0}
        return LogHistogram(kept, sum(kept.values()))

    def quantile(self, q: float) -> float | None:
        if self.total == 0:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return float(BIN_GROWTH ** (index + 0.5))
        raise AssertionError("unreachable: rank <= total")


@dataclass
class Moments:
    """Count, sum and sum of squares: a mean and its standard error, in constant memory."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.squares += value * value

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def minus(self, other: Moments) -> Moments:
        return Moments(self.n - other.n, self.total - other.total, self.squares - other.squares)


@dataclass
class PairedLatency:
    """The baseline's and dark's durations on the same requests, and every entry's per role.

    The baseline (``live`` in the sums' names) is live itself, or live-2 when
    ``baseline="live-2"``: then ``primary`` holds live's durations on the same requests, which
    shows what the proxy's mirrored path adds (live-2 runs live's command).
    """

    live: Moments = field(default_factory=Moments)
    dark: Moments = field(default_factory=Moments)
    cross: float = 0.0  # sum of live * dark over pairs, for the ratio's variance
    live_hist: LogHistogram = field(default_factory=LogHistogram)
    dark_hist: LogHistogram = field(default_factory=LogHistogram)
    all_live: Moments = field(default_factory=Moments)
    all_dark: Moments = field(default_factory=Moments)
    all_live_hist: LogHistogram = field(default_factory=LogHistogram)
    all_dark_hist: LogHistogram = field(default_factory=LogHistogram)
    baseline: str = "live"
    primary: Moments = field(default_factory=Moments)
    joint: dict[tuple[int, int], int] = field(default_factory=dict)
    joint_full: bool = False  # MAX_JOINT_CELLS reached: the joint histogram is not used

    @property
    def pairs(self) -> int:
        return self.live.n

    def add_entry(self, role: str, duration_us: float) -> None:
        """Any entry, paired or not (the unpaired comparison)."""
        if role == "live":
            self.all_live.add(duration_us)
            self.all_live_hist.add(duration_us)
        elif role == "dark":
            self.all_dark.add(duration_us)
            self.all_dark_hist.add(duration_us)

    def add_pair(self, live_us: float, dark_us: float, primary_us: float | None = None) -> None:
        """One request: the baseline's duration, dark's, and live's when live-2 is the
        baseline."""
        if primary_us is not None:
            self.primary.add(primary_us)
        self.live.add(live_us)
        self.dark.add(dark_us)
        self.cross += live_us * dark_us
        self.live_hist.add(live_us)
        self.dark_hist.add(dark_us)
        if not self.joint_full:
            cell = (joint_index(live_us), joint_index(dark_us))
            if cell in self.joint or len(self.joint) < MAX_JOINT_CELLS:
                self.joint[cell] = self.joint.get(cell, 0) + 1
            else:
                self.joint_full = True

    def minus(self, baseline: PairedLatency) -> PairedLatency:
        """What was added since ``baseline`` (an earlier copy of this one): the measured phase
        without the warm-up."""
        return PairedLatency(
            self.live.minus(baseline.live), self.dark.minus(baseline.dark),
            self.cross - baseline.cross,
            self.live_hist.minus(baseline.live_hist), self.dark_hist.minus(baseline.dark_hist),
            self.all_live.minus(baseline.all_live), self.all_dark.minus(baseline.all_dark),
            self.all_live_hist.minus(baseline.all_live_hist),
            self.all_dark_hist.minus(baseline.all_dark_hist),
            self.baseline, self.primary.minus(baseline.primary),
            {k: v - baseline.joint.get(k, 0) for k, v in self.joint.items()
             if v > baseline.joint.get(k, 0)},
            self.joint_full or baseline.joint_full,
        )

    def quantile_covariance(self, live_us: float, dark_us: float) -> float | None:
        """Cov(1[baseline <= live_us], 1[dark <= dark_us]) over the pairs, read at the joint
        histogram's bin edges around the two values; ``None`` without the joint histogram."""
        if self.joint_full or not self.pairs:
            return None
        i, j = joint_index(live_us), joint_index(dark_us)
        both = below_i = below_j = 0
        for (a, b), count in self.joint.items():
            if a <= i:
                below_i += count
                if b <= j:
                    both += count
            if b <= j:
                below_j += count
        n = self.pairs
        return both / n - (below_i / n) * (below_j / n)

    def mean_increase(self) -> float | None:
        """Dark's mean over live's on the same requests, minus 1."""
        if not self.pairs or not self.live.total:
            return None
        return self.dark.total / self.live.total - 1.0

    def mean_increase_se(self) -> float | None:
        """Standard error of :meth:`mean_increase` (delta method for a ratio of paired means:
        Var(R) ~ Var(dark - R live) / (n mean(live)^2))."""
        n = self.pairs
        if n < 2 or not self.live.total:
            return None
        ratio = self.dark.total / self.live.total
        # sum of (dark - R live)^2 minus n * mean^2, the mean of (dark - R live) being 0
        residual = self.dark.squares - 2 * ratio * self.cross + ratio * ratio * self.live.squares
        variance = max(residual, 0.0) / (n - 1)
        live_mean = self.live.total / n
        return math.sqrt(variance / n) / live_mean

    def mean_difference_se_us(self) -> float | None:
        """Standard error of :meth:`mean_difference_us`."""
        n = self.pairs
        if n < 2:
            return None
        d_sum = self.dark.total - self.live.total
        d_squares = self.dark.squares - 2 * self.cross + self.live.squares
        variance = max(d_squares - d_sum * d_sum / n, 0.0) / (n - 1)
        return math.sqrt(variance / n)

    def paired_json(self) -> dict[str, object]:
        """Everything, JSON-able (see :meth:`from_paired_json`): a verdict can be computed
        again from a file (pytest-xdist's workers do)."""
        return {
            "live": [self.live.n, self.live.total, self.live.squares],
            "dark": [self.dark.n, self.dark.total, self.dark.squares],
            "cross": self.cross,
            "live_hist": self.live_hist.to_json(), "dark_hist": self.dark_hist.to_json(),
            "all_live": [self.all_live.n, self.all_live.total, self.all_live.squares],
            "all_dark": [self.all_dark.n, self.all_dark.total, self.all_dark.squares],
            "all_live_hist": self.all_live_hist.to_json(),
            "all_dark_hist": self.all_dark_hist.to_json(),
            "baseline": self.baseline,
            "primary": [self.primary.n, self.primary.total, self.primary.squares],
            "joint": [[a, b, c] for (a, b), c in self.joint.items()],
            "joint_full": self.joint_full,
        }

    @classmethod
    def from_paired_json(cls, data: dict[str, Any]) -> PairedLatency:
        """The latencies back from :meth:`paired_json`."""
        return cls(
            live=Moments(*data["live"]), dark=Moments(*data["dark"]), cross=data["cross"],
            live_hist=LogHistogram.from_json(data["live_hist"]),
            dark_hist=LogHistogram.from_json(data["dark_hist"]),
            all_live=Moments(*data["all_live"]), all_dark=Moments(*data["all_dark"]),
            all_live_hist=LogHistogram.from_json(data["all_live_hist"]),
            all_dark_hist=LogHistogram.from_json(data["all_dark_hist"]),
            baseline=data.get("baseline", "live"),
            primary=Moments(*data.get("primary", (0, 0.0, 0.0))),
            joint={(int(a), int(b)): int(c) for a, b, c in data.get("joint", [])},
            joint_full=bool(data.get("joint_full", "joint" not in data)),
        )

    def mean_difference_us(self) -> float | None:
        """Mean of dark minus live on the same request (us)."""
        if not self.pairs:
            return None
        return (self.dark.total - self.live.total) / self.pairs

    def as_dict(self) -> dict[str, object]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value / 1000.0, 4)

        def rel(a: float | None, b: float | None) -> float | None:
            return None if a is None or not b else _rounded(a / b - 1.0)

        out: dict[str, object] = {"pairs": self.pairs, "baseline": self.baseline}
        for name, (live_m, dark_m, live_h, dark_h) in {
            "paired": (self.live, self.dark, self.live_hist, self.dark_hist),
            "unpaired": (self.all_live, self.all_dark, self.all_live_hist, self.all_dark_hist),
        }.items():
            p95 = (live_h.quantile(0.95), dark_h.quantile(0.95))
            out[name] = {
                "live_requests": live_m.n, "dark_requests": dark_m.n,
                "live_mean_ms": ms(live_m.mean), "dark_mean_ms": ms(dark_m.mean),
                "mean_increase": rel(dark_m.mean, live_m.mean),
                "live_p95_ms": ms(p95[0]), "dark_p95_ms": ms(p95[1]),
                "p95_increase": rel(p95[1], p95[0]),
            }
        if self.primary.n:
            out["mirrored_path"] = {"live_mean_ms": ms(self.primary.mean),
                                    "live2_mean_ms": ms(self.live.mean),
                                    "mean_increase": _rounded(self.mirrored_path_increase())}
        return out

    def mirrored_path_increase(self) -> float | None:
        """With live-2 as the baseline: live-2's mean over live's on the same requests, minus
        1, what the mirrored path itself adds to live's own code; else ``None``."""
        if not self.primary.n or not self.primary.total:
            return None
        return self.live.total / self.primary.total - 1.0


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)
