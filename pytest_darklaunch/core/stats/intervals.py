"""Binomial bounds (Clopper-Pearson), sample sizes, the mirror-share check and :func:`decide`."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Literal

Decision = Literal["pass", "fail", "undecided"]


_NORMAL = NormalDist()


def alpha_of(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return 1.0 - confidence


def z_two_sided(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for 95%."""
    return _NORMAL.inv_cdf(1.0 - alpha_of(confidence) / 2.0)


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
    alpha = alpha_of(confidence)
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


def beta_cdf(x: float, a: float, b: float) -> float:
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
        return 1.0 - beta_cdf(1.0 - x, b, a)
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
    """The ``p``-quantile of ``Beta(a, b)``, by bisection on :func:`beta_cdf`."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if beta_cdf(mid, a, b) < p:
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
    alpha = alpha_of(confidence)
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
