"""Quantiles, their order-statistics intervals and means from classic Prometheus buckets.

The quantile follows Prometheus' ``histogram_quantile`` (linear inside a bucket), so a value
shown here matches what a dashboard shows for the same buckets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_darklaunch.core.stats.intervals import z_two_sided

Buckets = Sequence[tuple[float, float]]
"""Classic Prometheus histogram buckets: ``(le, cumulative_count)`` pairs, ``+Inf`` included."""


# Prometheus' correctPrecisionErrors tolerance (promql/quantile.go).
_PRECISION_TOLERANCE = 1e-12


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
    z = z_two_sided(confidence)
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
    z = z_two_sided(confidence)
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
