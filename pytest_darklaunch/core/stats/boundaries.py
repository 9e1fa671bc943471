"""Several looks at one test: Bonferroni's split, Pocock-type spending and exact
group-sequential boundaries for a rate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_darklaunch.core.stats.intervals import alpha_of, beta_cdf


def bonferroni_alpha(confidence: float, looks: int) -> float:
    """Per-look error rate when a decision may be taken at any of ``looks`` planned looks.

    Bonferroni: if every look errs with probability ``alpha / looks``, the chance that *any*
    look errs is at most ``alpha``, whatever the stopping rule and however the looks are
    correlated. It is conservative next to alpha-spending (O'Brien-Fleming, Pocock) but needs
    no assumption about the looks' spacing or dependence, and it is simple to explain. Judge
    each look at confidence ``1 - bonferroni_alpha(confidence, looks)``.

    >>> round(bonferroni_alpha(0.95, 10), 6)
    0.005
    """
    alpha = alpha_of(confidence)
    if isinstance(looks, bool) or not isinstance(looks, int) or looks < 1:
        raise ValueError(f"looks must be a whole number >= 1, got {looks!r}")
    return alpha / looks


def pocock_spending(alpha: float, fraction: float) -> float:
    """The error rate a sequential test may have spent by ``fraction`` (0..1) of its planned
    information: Lan and DeMets' Pocock-type function ``alpha * ln(1 + (e - 1) * fraction)``.
    It spends early (a third of ``alpha`` by a quarter of the plan), which suits a gate that
    wants to stop as soon as the data allow, and all of ``alpha`` at the end.

    >>> [round(pocock_spending(0.05, t), 4) for t in (0.0, 0.25, 0.5, 1.0)]
    [0.0, 0.0179, 0.031, 0.05]
    """
    t = min(max(fraction, 0.0), 1.0)
    return alpha * math.log1p((math.e - 1.0) * t)


@dataclass(frozen=True)
class RateBoundary:
    """One look of an exact sequential test of ``rate <= bound``.

    At this look the rate is proven below the bound when the event count is at most
    ``pass_at_most`` (``-1``: not yet possible) and above it when the count is at least
    ``fail_at_least`` (more than the trials: not yet possible). ``pass_level`` and
    ``fail_level`` are the one-sided levels of the equivalent single-look Clopper-Pearson
    decisions at this look (see :func:`sequential_rate_boundaries`); ``spent`` is the error
    rate spent so far on each side."""

    trials: int
    pass_at_most: int
    fail_at_least: int
    pass_level: float
    fail_level: float
    spent: float


# Probabilities below this are dropped from the dynamic program (and counted as spent, which
# only makes the test more conservative); work beyond the budget falls back to Bonferroni.
_TINY = 1e-18


_WORK_BUDGET = 1_000_000


def sequential_rate_boundaries(
    bound: float, trials: Sequence[int], fractions: Sequence[float], alpha: float
) -> tuple[RateBoundary, ...] | None:
    """Exact group-sequential boundaries for ``rate <= bound`` at looks after ``trials[j]``
    cumulative trials, ``fractions[j]`` of the planned information (1 at the last planned
    look); ``None`` when computing them would take too long (then use Bonferroni).

    Each side is its own test at ``alpha``: the probability, with the rate exactly at the
    bound, that the count ever crosses the pass boundary (and, separately, the fail boundary)
    at any look is at most ``alpha``, and at most :func:`pocock_spending` of it by look ``j``
    (the boundaries are computed exactly, by a dynamic program over the count of the paths
    that have not crossed yet; a rate beyond the bound only makes a wrong decision rarer).
    Looks are nested, so this spends far less than Bonferroni's ``alpha / looks`` per look:
    with no events, "none in the first n" at a late look implies it at every earlier look.
    The trial counts may be random (the mirror's sampling) as long as they do not depend on
    the events. Boundaries depend only on the looks so far: recomputing with more looks
    leaves the earlier ones unchanged.

    >>> looks = sequential_rate_boundaries(0.01, [200, 400], [0.5, 1.0], 0.05)
    >>> [(b.pass_at_most, b.fail_at_least) for b in looks]
    [(-1, 6), (0, 9)]
    """
    if not 0.0 <= bound <= 1.0:
        raise ValueError(f"bound must be a rate between 0 and 1, got {bound!r}")
    if len(trials) != len(fractions) or not trials:
        raise ValueError("sequential_rate_boundaries needs one fraction per look")
    if any(b < a for a, b in zip(trials, trials[1:], strict=False)) or trials[0] < 0:
        raise ValueError(f"trial counts must be non-decreasing and >= 0, got {list(trials)!r}")
    return _boundaries(bound, tuple(trials), tuple(fractions), alpha)


@functools.lru_cache(maxsize=512)
def _boundaries(
    bound: float, trials: tuple[int, ...], fractions: tuple[float, ...], alpha: float
) -> tuple[RateBoundary, ...] | None:
    below = _one_side(bound, trials, fractions, alpha, low=True)
    above = _one_side(bound, trials, fractions, alpha, low=False)
    if below is None or above is None:
        return None
    looks = []
    for n, (a, spent_low), (b, spent_high) in zip(trials, below, above, strict=False):
        pass_level = _binomial_cdf(a, n, bound) if a >= 0 else 0.0
        fail_level = 1.0 - _binomial_cdf(b - 1, n, bound) if b <= n else 0.0
        looks.append(RateBoundary(n, a, b, pass_level, fail_level, max(spent_low, spent_high)))
    return tuple(looks)


def _one_side(
    p: float, trials: tuple[int, ...], fractions: tuple[float, ...], alpha: float, low: bool
) -> list[tuple[int, float]] | None:
    """Per look, the boundary on one side (pass: the highest count that passes; fail: the
    lowest that fails) and the error rate spent so far on that side."""
    offset, mass = 0, [1.0]  # distribution of the count over paths not yet stopped
    spent, before, work = 0.0, 0, 0
    out: list[tuple[int, float]] = []
    for n, fraction in zip(trials, fractions, strict=False):
        if n > before:
            row_offset, row, lost = _binomial_row(n - before, p)
            work += len(mass) * len(row)
            if work > _WORK_BUDGET:
                return None
            mass = _convolve(mass, row)
            offset += row_offset
            spent += lost
            offset, mass, trimmed = _trim(offset, mass)
            spent += trimmed
        before = n
        budget = pocock_spending(alpha, fraction)
        if low:  # pass when the count is at most offset + i - 1
            i = 0
            while i < len(mass) and spent + mass[i] <= budget:
                spent += mass[i]
                i += 1
            out.append((offset + i - 1, spent))
            offset, mass = offset + i, mass[i:] or [0.0]
        else:  # fail when the count is at least offset + i + 1
            i = len(mass) - 1
            while i >= 0 and spent + mass[i] <= budget:
                spent += mass[i]
                i -= 1
            out.append((offset + i + 1, spent))
            mass = mass[: i + 1] or [0.0]
    return out


def _binomial_row(m: int, p: float) -> tuple[int, list[float], float]:
    """The probabilities of 0..m events in ``m`` trials at rate ``p``, as ``(first count,
    probabilities from it on, mass dropped below _TINY)``."""
    if p <= 0.0:
        return 0, [1.0], 0.0
    if p >= 1.0:
        return m, [1.0], 0.0
    mode = min(m, int((m + 1) * p))
    log_mode = (
        math.lgamma(m + 1) - math.lgamma(mode + 1) - math.lgamma(m - mode + 1)
        + mode * math.log(p) + (m - mode) * math.log1p(-p)
    )
    ratio = p / (1.0 - p)
    up = [math.exp(log_mode)]
    k = mode
    while k < m and up[-1] > _TINY:
        up.append(up[-1] * (m - k) / (k + 1) * ratio)
        k += 1
    down: list[float] = []
    value, k = up[0], mode
    while k > 0 and value > _TINY:
        value = value * k / ((m - k + 1) * ratio)
        down.append(value)
        k -= 1
    row = down[::-1] + up
    return mode - len(down), row, max(0.0, 1.0 - math.fsum(row))


def _convolve(a: list[float], b: list[float]) -> list[float]:
    out = [0.0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return out


def _trim(offset: int, mass: list[float]) -> tuple[int, list[float], float]:
    """Drop probabilities below _TINY at both ends; what was dropped."""
    start, end = 0, len(mass)
    while start < end - 1 and mass[start] < _TINY:
        start += 1
    while end - 1 > start and mass[end - 1] < _TINY:
        end -= 1
    dropped = math.fsum(mass[:start]) + math.fsum(mass[end:])
    return offset + start, mass[start:end], dropped


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return 1.0 - beta_cdf(p, k + 1, n - k)
