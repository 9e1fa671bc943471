"""The statistics behind verdicts: binomial bounds, histogram quantiles and their errors, looks.

Pure functions on plain numbers, standard library only (normal quantiles come from
:class:`statistics.NormalDist`). Every interval is *two-sided* at the given confidence, so each
of its ends errs with probability at most ``(1 - confidence) / 2``; a one-sided decision at 95%
(``error-rate <= 1%``) therefore uses a two-sided interval at 90%.

>>> lo, hi = binomial_interval(0, 300, 0.90)
>>> decide(lo, hi, upper=0.01)
'pass'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Buckets = Sequence[tuple[float, float]]
"""Classic Prometheus histogram buckets: ``(le, cumulative_count)`` pairs, ``+Inf`` included."""

Decision = Literal["pass", "fail", "undecided"]

_NORMAL = NormalDist()
# Prometheus' correctPrecisionErrors tolerance (promql/quantile.go).
_PRECISION_TOLERANCE = 1e-12


def _alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return 1.0 - confidence


def _z(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for 95%."""
    return _NORMAL.inv_cdf(1.0 - _alpha(confidence) / 2.0)


def binomial_interval(k: float, n: float, confidence: float) -> tuple[float, float]:
    """Two-sided confidence interval for a proportion after ``k`` events in ``n`` trials.

    Clopper-Pearson, the exact interval: each end is the rate at which ``k`` (or a more extreme
    count) has probability ``alpha / 2``, so each one-sided statement errs at most that often
    for every ``n`` and every rate, also after a handful of errors in a few hundred requests
    (where the approximate Wilson interval is too narrow: a true 1% shows 6 errors in 190
    requests 1.3% of the time, and Wilson would call that a breach at 99.5%). The ends are
    quantiles of Beta distributions: ``lo = Beta(k, n-k+1).ppf(alpha/2)``,
    ``hi = Beta(k+1, n-k).ppf(1-alpha/2)``; ``k == 0`` gives ``hi = 1 - (alpha/2) ** (1/n)``.
    ``n == 0`` tells nothing: ``(0.0, 1.0)``. Counts may be floats (Prometheus returns floats;
    they are rounded) but must satisfy ``0 <= k <= n``.

    >>> [round(x, 4) for x in binomial_interval(10, 100, 0.95)]
    [0.049, 0.1762]
    >>> round(binomial_interval(0, 300, 0.90)[1], 5)  # the rule of three: about 3/n
    0.00994
    """
    alpha = _alpha(confidence)
    if not (math.isfinite(n) and math.isfinite(k) and 0 <= k <= n):
        raise ValueError(f"binomial_interval needs 0 <= k <= n, got k={k!r}, n={n!r}")
    if n == 0:
        return 0.0, 1.0
    events, trials = round(k), round(n)
    if trials == 0:
        return 0.0, 1.0
    if events == 0:
        lo = 0.0
    elif events == trials:
        lo = (alpha / 2.0) ** (1.0 / trials)
    else:
        lo = _beta_ppf(alpha / 2.0, events, trials - events + 1)
    if events == trials:
        hi = 1.0
    elif events == 0:
        hi = 1.0 - (alpha / 2.0) ** (1.0 / trials)
    else:
        hi = _beta_ppf(1.0 - alpha / 2.0, events + 1, trials - events)
    return lo, hi


def _beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` (Lentz's continued fraction)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); else use symmetry.
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _beta_cdf(1.0 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def _beta_ppf(p: float, a: float, b: float) -> float:
    """The ``p``-quantile of ``Beta(a, b)``, by bisection on :func:`_beta_cdf`."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if _beta_cdf(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def min_samples_for_upper(bound: float, confidence: float) -> int:
    """Fewest trials that, with zero events, put the one-sided upper bound below ``bound``.

    The exact bound after ``n`` clean trials is ``1 - (1 - confidence) ** (1/n)``; this is the
    smallest ``n`` for which it is below ``bound``. It matches :func:`binomial_interval` used
    two-sided at ``2 * confidence - 1`` (each end of that interval is one-sided at
    ``confidence``).

    >>> min_samples_for_upper(0.01, 0.95)
    299
    """
    alpha = _alpha(confidence)
    if not 0.0 < bound < 1.0:
        raise ValueError(f"bound must be a rate strictly between 0 and 1, got {bound!r}")
    n = max(1, math.floor(math.log(alpha) / math.log1p(-bound)) + 1)
    # The closed form can be off by one in floating point; settle it on the bound itself.
    while n > 1 and 1.0 - alpha ** (1.0 / (n - 1)) < bound:
        n -= 1
    while 1.0 - alpha ** (1.0 / n) >= bound:
        n += 1
    return n


def mirror_share_check(
    dark_count: float, live_count: float, percent: float, confidence: float = 0.999
) -> tuple[bool, float, float, float]:
    """Is dark's request count plausible as ``Binomial(live_count, percent / 100)``?

    Returns ``(ok, lo, hi, observed)``: ``observed = dark / live`` and ``[lo, hi]`` is the
    :func:`binomial_interval` of the true mirrored share; ``ok`` when ``percent / 100`` lies in
    it. Wilson's interval is the inversion of the binomial score test, so this is that test at
    ``1 - confidence``; the default 99.9% keeps false alarms rare over many checks. Without live
    traffic nothing can be confirmed: ``(False, 0.0, 1.0, nan)``; dark above live is never ok.

    >>> ok, lo, hi, observed = mirror_share_check(790, 2000, 40)
    >>> ok, round(observed, 3)
    (True, 0.395)
    >>> mirror_share_check(600, 2000, 40)[0]
    False
    """
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent must be between 0 and 100, got {percent!r}")
    if not (dark_count >= 0 and live_count >= 0):
        raise ValueError(f"counts must be >= 0, got dark={dark_count!r}, live={live_count!r}")
    if live_count == 0:
        return False, 0.0, 1.0, math.nan
    observed = dark_count / live_count
    lo, hi = binomial_interval(min(dark_count, live_count), live_count, confidence)
    ok = dark_count <= live_count and lo <= percent / 100.0 <= hi
    return ok, lo, hi, observed


def _prepare(buckets: Buckets) -> list[list[float]] | None:
    """Buckets as Prometheus' bucketQuantile sees them, or None when it would return NaN.

    Sorted by ``le``, equal bounds coalesced (summed), float noise below a relative 1e-12
    flattened, then the running maximum taken so counts never decrease.
    """
    ordered = sorted(([float(le), float(count)] for le, count in buckets), key=lambda b: b[0])
    if any(math.isnan(b[0]) for b in ordered):
        raise ValueError("a histogram bucket has a NaN upper bound (le)")
    if not ordered or ordered[-1][0] != math.inf:
        return None
    merged: list[list[float]] = []
    for le, count in ordered:
        if merged and merged[-1][0] == le:
            merged[-1][1] += count
        else:
            merged.append([le, count])
    prev = merged[0][1]
    for bucket in merged[1:]:
        delta = abs(bucket[1] - prev)
        if delta == 0:
            continue
        if bucket[1] != 0 and delta / bucket[1] <= _PRECISION_TOLERANCE:
            bucket[1] = prev
        else:
            prev = bucket[1]
    top = merged[0][1]
    for bucket in merged[1:]:
        if bucket[1] > top:
            top = bucket[1]
        elif bucket[1] < top:
            bucket[1] = top
    if len(merged) < 2 or merged[-1][1] == 0:
        return None
    return merged


def _search(prepared: list[list[float]], rank: float) -> int:
    """Index of the first bucket whose cumulative count reaches ``rank`` (Go's sort.Search)."""
    for i, bucket in enumerate(prepared[:-1]):
        if bucket[1] >= rank:
            return i
    return len(prepared) - 1


def _lower_edge(prepared: list[list[float]], index: int) -> float:
    if index > 0:
        return prepared[index - 1][0]
    # Prometheus' convention: a lowest bucket above 0 starts at 0, otherwise it is unbounded.
    return 0.0 if prepared[0][0] > 0 else -math.inf


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be between 0 and 1, got {q!r}")


def histogram_quantile(q: float, buckets: Buckets) -> float:
    """The q-quantile exactly as Prometheus' ``histogram_quantile`` computes it.

    Linear interpolation inside the bucket holding rank ``q * count``; the lowest bucket starts
    at 0 when its upper bound is positive (else its upper bound is returned); a rank in the
    ``+Inf`` bucket returns the highest finite bound; no observations, no ``+Inf`` bucket or
    fewer than two buckets give NaN; ``q < 0`` gives -Inf and ``q > 1`` +Inf; decreasing
    cumulative counts are raised to their running maximum, as Prometheus does.

    >>> round(histogram_quantile(0.5, [(0.1, 50), (0.2, 70), (1.0, 110), (math.inf, 120)]), 9)
    0.15
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    prepared = _prepare(buckets)
    if prepared is None:
        return math.nan
    rank = q * prepared[-1][1]
    b = _search(prepared, rank)
    if b == len(prepared) - 1:
        return prepared[-2][0]
    if b == 0 and prepared[0][0] <= 0:
        return prepared[0][0]
    start, end, count = 0.0, prepared[b][0], prepared[b][1]
    if b > 0:
        start = prepared[b - 1][0]
        count -= prepared[b - 1][1]
        rank -= prepared[b - 1][1]
    return start + (end - start) * (rank / count)


def quantile_bucket(q: float, buckets: Buckets) -> tuple[float, float]:
    """Bounds of the bucket holding the q-quantile: the interpolation error of a percentile.

    :func:`histogram_quantile` always lies in this bucket, and so does the sample's
    ``ceil(q * n)``-th observation for ``0 < q <= 1``. A quantile in the ``+Inf`` bucket has
    ``hi = inf`` (Prometheus reports ``lo``); NaN bounds when the histogram is empty.

    >>> quantile_bucket(0.95, [(50, 80), (100, 96), (250, 100), (math.inf, 100)])
    (50.0, 100.0)
    """
    _check_q(q)
    prepared = _prepare(buckets)
    if prepared is None:
        return math.nan, math.nan
    b = _search(prepared, q * prepared[-1][1])
    return _lower_edge(prepared, b), prepared[b][0]


def count_above(bound: float, buckets: Buckets) -> tuple[float, float] | None:
    """How many observations lie above ``bound``: ``(at least, at most)``. Exact when
    ``bound`` is a bucket edge; otherwise the observations of the bucket holding it may lie on
    either side. ``None`` for an empty histogram or one without its +Inf bucket.

    >>> buckets = [(10, 0), (20, 100), (30, 380), (40, 400), (math.inf, 400)]
    >>> count_above(30, buckets), count_above(25, buckets)
    ((20.0, 20.0), (20.0, 300.0))
    """
    prepared = _prepare(buckets)
    if prepared is None:
        return None
    total = prepared[-1][1]
    at_or_below = [count for le, count in prepared if le <= bound]
    above_edge = [count for le, count in prepared if le >= bound]
    least = total - (above_edge[0] if above_edge else total)
    most = total - (at_or_below[-1] if at_or_below else 0.0)
    return least, most


def quantile_interval(q: float, buckets: Buckets, confidence: float) -> tuple[float, float]:
    """Distribution-free confidence interval for the population q-quantile, bucket error included.

    With ``n`` observations, the number ``B`` of them at or below the true quantile is
    ``Binomial(n, q)``. The interval runs from the ``l``-th to the ``u``-th smallest observation
    with ``l = floor(n*q - z*s)`` and ``u = ceil(n*q + z*s) + 1``, ``s = sqrt(n*q*(1-q))`` (the
    ``+ 1`` because the ``u``-th observation lies above the quantile when ``B <= u - 1``; both
    ends then hold with the continuity correction). Observations are only known to their
    bucket, so ``l`` maps to the *lower* edge of its bucket and ``u`` to the *upper* edge of
    its bucket. A rank below 1 maps to the lowest bucket's lower edge (0 for positive buckets),
    a rank above ``n`` to +Inf: too few observations to bound a tail quantile is then visible
    as an infinite end, not hidden. NaN bounds when the histogram is empty.

    >>> buckets = [(10, 0), (20, 100), (30, 380), (40, 400), (math.inf, 400)]
    >>> quantile_interval(0.5, buckets, 0.95)
    (20.0, 30.0)
    """
    _check_q(q)
    z = _z(confidence)
    prepared = _prepare(buckets)
    if prepared is None:
        return math.nan, math.nan
    n = prepared[-1][1]
    if 0.0 < q < 1.0 and n * q * (1.0 - q) < _EXACT_BELOW:
        lower_rank, upper_rank = _exact_ranks(int(round(n)), q, confidence)
    else:
        spread = z * math.sqrt(n * q * (1.0 - q))
        lower_rank = math.floor(n * q - spread)
        upper_rank = math.ceil(n * q + spread) + 1
    lo = _lower_edge(prepared, _search(prepared, lower_rank) if lower_rank >= 1 else 0)
    hi = math.inf if upper_rank > n else prepared[_search(prepared, upper_rank)][0]
    return lo, hi


# Below this n*q*(1-q) the normal approximation of the rank distribution is poor in the tails
# (a p99 on a few hundred samples): ranks come from the exact binomial distribution instead.
_EXACT_BELOW = 50.0


def _exact_ranks(n: int, q: float, confidence: float) -> tuple[int, int]:
    """Order-statistic ranks ``(l, u)`` of an exact distribution-free interval for a quantile.

    With ``B ~ Binomial(n, q)`` observations at or below the quantile, the ``u``-th smallest
    observation lies above it unless ``B >= u``, and the ``l``-th lies below it unless
    ``B <= l - 1``: ``u`` is the smallest rank with ``P(B <= u - 1) >= 1 - alpha/2`` (``n + 1``
    when none is, an unbounded end) and ``l`` the largest with ``P(B <= l - 1) <= alpha/2``
    (``0`` when none is).

    >>> _exact_ranks(400, 0.99, 0.95)  # the largest of 400 bounds a p99 at 98.2% > 97.5%
    (392, 400)
    """
    tail = (1.0 - confidence) / 2.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(q) + (n - k) * math.log1p(-q)
        for k in range(n + 1)
    ]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w
        cdf.append(acc / total)
    upper = next((u for u in range(1, n + 1) if cdf[u - 1] >= 1.0 - tail), n + 1)
    lower = max((lo for lo in range(1, n + 1) if cdf[lo - 1] <= tail), default=0)
    return lower, upper


def histogram_mean_interval(
    sum_: float, count: float, buckets: Buckets, confidence: float
) -> tuple[float, float]:
    """Confidence interval for the population mean: ``mean ± z * sd / sqrt(count)``.

    The mean ``sum_ / count`` is exact; only ``sd`` must come from the buckets, and it is taken
    as the *largest* standard deviation the buckets allow: every observation sits at the edge
    of its bucket farther from the mean. That is never below the midpoint estimate and
    includes the bucket widths, so coarse buckets widen the interval instead of faking
    precision. Observations in the ``+Inf`` bucket are bounded through ``sum_``: at worst all
    sit at the highest finite bound but one, which takes the rest of the sum. Fewer than two
    observations or unusable buckets give ``(-inf, inf)``; no observations give NaN bounds.

    >>> buckets = [(10, 0), (20, 100), (30, 100), (math.inf, 100)]
    >>> [round(x, 2) for x in histogram_mean_interval(1500, 100, buckets, 0.95)]
    [14.02, 15.98]
    """
    z = _z(confidence)
    if not count > 0 or math.isnan(sum_):
        return math.nan, math.nan
    mean = sum_ / count
    prepared = _prepare(buckets)
    total = prepared[-1][1] if prepared else 0.0
    if prepared is None or count < 2 or total <= 1:
        return -math.inf, math.inf
    squares = 0.0
    floor_sum = 0.0  # the least the finite buckets' observations can add up to
    below = 0.0
    for i, (le, cumulative) in enumerate(prepared[:-1]):
        in_bucket = cumulative - below
        below = cumulative
        if in_bucket <= 0:
            continue
        lower = _lower_edge(prepared, i)
        squares += in_bucket * max((lower - mean) ** 2, (le - mean) ** 2)
        floor_sum += in_bucket * lower
    in_tail = total - below
    if in_tail > 0:
        highest = prepared[-2][0]
        others = max(in_tail - 1.0, 0.0)
        largest = max(sum_ - floor_sum - others * highest, highest)
        squares += max(
            in_tail * (highest - mean) ** 2,
            (largest - mean) ** 2 + others * (highest - mean) ** 2,
        )
    half = z * math.sqrt(squares / (total - 1.0)) / math.sqrt(count)
    return mean - half, mean + half


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
    alpha = _alpha(confidence)
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
    if any(b < a for a, b in zip(trials, trials[1:])) or trials[0] < 0:
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
    for n, (a, spent_low), (b, spent_high) in zip(trials, below, above):
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
    for n, fraction in zip(trials, fractions):
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
    return 1.0 - _beta_cdf(p, k + 1, n - k)


def decide(
    lo: float, hi: float, upper: float | None = None, lower: float | None = None
) -> Decision:
    """Settle an objective from a confidence interval ``[lo, hi]`` of its metric.

    ``pass`` when the whole interval is within the bounds (``hi <= upper``, ``lo >= lower``),
    ``fail`` when the whole interval lies beyond one bound (``lo > upper`` or ``hi < lower``),
    otherwise ``undecided``; a NaN end (no data) is always ``undecided``. With a two-sided
    interval at confidence ``c``, a wrong pass and a wrong fail each have probability at most
    ``(1 - c) / 2``.

    >>> [decide(lo, hi, upper=50.0) for lo, hi in [(10.0, 40.0), (60.0, 70.0), (40.0, 60.0)]]
    ['pass', 'fail', 'undecided']
    """
    if upper is None and lower is None:
        raise ValueError("decide() needs an upper or a lower bound")
    if upper is not None and lower is not None and lower > upper:
        raise ValueError(f"lower bound {lower!r} is above upper bound {upper!r}")
    if math.isnan(lo) or math.isnan(hi):
        return "undecided"
    if lo > hi:
        raise ValueError(f"interval ends are reversed: lo={lo!r} > hi={hi!r}")
    if (upper is not None and lo > upper) or (lower is not None and hi < lower):
        return "fail"
    if (upper is None or hi <= upper) and (lower is None or lo >= lower):
        return "pass"
    return "undecided"
