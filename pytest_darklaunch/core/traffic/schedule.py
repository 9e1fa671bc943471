"""When each request of a mix is due, and which target it is: pure, so it is unit-tested.

``timing: rate``: request ``i`` is due at ``i / rate``. Targets of different weights are drawn
by weight from a seeded RNG; targets of equal weight (every recorded file) go round in file
order, as vegeta does, so a file replays exactly its requests. ``timing: recorded``: each
target at its recorded offset divided by ``speed``; the recording repeats, the next round one
mean spacing after the last request, so a long experiment keeps its load.

>>> from pytest_darklaunch.core.traffic.model import Target
>>> mix = [Target("a", "GET", "/a", offset_s=0.0), Target("b", "GET", "/b", offset_s=1.0)]
>>> s = Schedule(mix, rate_rps=10, timing="recorded", speed=2.0)
>>> [s.next() for _ in range(4)], s.planned_rps
([(0.0, 0), (0.5, 1), (1.0, 0), (1.5, 1)], 2.0)
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

from pytest_darklaunch.core.traffic.model import Target

TIMINGS = ("rate", "recorded")


def recorded_period_s(offsets: Sequence[float], rate_rps: float, speed: float) -> float:
    """The length (recorded seconds) of one round of a recording: its span plus one mean gap.

    A recording whose requests all share one time keeps ``rate_rps`` instead.
    """
    span = max(offsets) - min(offsets)
    if len(offsets) < 2 or span <= 0:
        return len(offsets) * speed / rate_rps
    return span * len(offsets) / (len(offsets) - 1)


class Schedule:
    """``next()`` gives ``(due_s, target_index)``, due times since the start, in order."""

    def __init__(
        self,
        targets: Sequence[Target],
        rate_rps: float,
        timing: str = "rate",
        speed: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not targets:
            raise ValueError("a schedule needs at least one target")
        self.timing = timing
        self.index = 0
        self._rng = random.Random(seed)
        weights = [t.weight for t in targets]
        self._cumulative = list(itertools.accumulate(weights))
        self._in_order = len(set(weights)) == 1
        self._n = len(targets)
        self._interval = 1.0 / rate_rps
        if timing == "recorded":
            offsets = [t.offset_s or 0.0 for t in targets]
            self._order = sorted(range(self._n), key=lambda i: offsets[i])
            self._offsets = [offsets[i] / speed for i in self._order]
            self._period = recorded_period_s(offsets, rate_rps, speed) / speed
            self.planned_rps = self._n / self._period
        else:
            self.planned_rps = rate_rps

    def next(self) -> tuple[float, int]:
        i = self.index
        self.index += 1
        if self.timing == "recorded":
            round_, j = divmod(i, self._n)
            return round_ * self._period + self._offsets[j], self._order[j]
        if self._in_order:
            return i * self._interval, i % self._n
        draw = self._rng.random() * self._cumulative[-1]
        return i * self._interval, bisect.bisect_right(self._cumulative, draw)
