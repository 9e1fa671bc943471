"""The exact group-sequential test for upper bounds on ``error-rate`` and percentiles.

Both reduce to a rate: errors among requests, or observations above the bound among all
observations. :func:`stats.sequential_rate_boundaries` gives each look's pass and fail
counts with Pocock-type alpha-spending over the planned sampling time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.metrics import percentile_of
from pytest_darklaunch.core.sampler import Window
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict.model import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    UNDECIDED,
    Context,
    Verdict,
    bounds_text,
)


def _sequential_looks(
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    trials_of: Callable[[Window], float | None],
    current: float,
    bound: float,
) -> tuple[stats.RateBoundary, ...] | None:
    """The exact sequential boundaries of a rate against ``bound`` at every look so far: the
    trials of each look are ``trials_of`` dark's interval window, summed (``current`` is the
    exact cumulative count at this look); the information fraction is the sampled share of the
    planned time, and the last planned look spends what is left. ``None`` when the plan is
    unknown, there is one look only, or the boundaries would take too long to compute."""
    if ctx.looks < 2 or ctx.planned_s <= 0 or not intervals or current <= 0:
        return None
    trials: list[int] = []
    fractions: list[float] = []
    total = seconds = 0.0
    for window, _ in intervals:
        total += trials_of(window) or 0.0
        seconds += window.seconds
        trials.append(max(trials[-1] if trials else 0, round(total)))
        fractions.append(seconds / ctx.planned_s)
    trials[-1] = max(trials[-2] if len(trials) > 1 else 0, round(current))
    if len(intervals) >= ctx.looks:
        fractions[-1] = 1.0
    return stats.sequential_rate_boundaries(bound, trials, fractions, 1.0 - ctx.confidence)


def _boundary_text(
    looks: tuple[stats.RateBoundary, ...],
    ctx: Context,
    final: bool,
    bound: float,
    trials: str,
    without: str,
) -> str:
    """``sequential test, look 4: passes at <= 0, fails at >= 9 (2.46% of 5% spent)``; at the
    end, a pass out of reach says what it needed (``trials`` ``without`` events)."""
    look = looks[-1]
    n = look.trials
    if look.pass_at_most >= 0:
        passes = f"passes at <= {look.pass_at_most}"
    elif final:
        # With no pass boundary reached before, the pass side has spent nothing: at the last
        # planned look a pass takes what one look at the full confidence takes.
        needed = stats.min_samples_for_upper(bound, ctx.confidence)
        passes = f"cannot pass with {n} {trials} (at least {needed} {without} are needed)"
    else:
        passes = "cannot pass yet"
    fails = f"fails at >= {look.fail_at_least}" if look.fail_at_least <= n else "cannot fail yet"
    alpha = 1.0 - ctx.confidence
    return (
        f"sequential test, look {len(looks)}: {passes}, {fails} "
        f"({look.spent * 100:.2f}% of {alpha * 100:g}% spent)"
    )


def _sequential_verdict(
    obj: Objective, base: Verdict, final: bool, shown: str, details: str, fails: bool, passes: bool
) -> Verdict:
    interval = f"{format_value(base.lo)}..{format_value(base.hi)}"
    if fails:
        reason = (
            f"dark {obj.metric} is {shown}, breaching {bounds_text(obj)} "
            f"(interval {interval}; {details})"
        )
        return replace(base, outcome=FAIL, reason=reason)
    if passes:
        return replace(base, outcome=PASS, reason=f"dark {obj.metric} is {shown} "
                       f"(interval {interval}; {details})")
    reason = (
        f"undecided: dark {obj.metric} is {shown}, its interval {interval} overlaps the bound "
        f"{bounds_text(obj)}; {details}"
    )
    return replace(base, outcome=INCONCLUSIVE if final else UNDECIDED, reason=reason)


def judge_sequentially(
    obj: Objective,
    dark: Window,
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    final: bool,
    base: Verdict,
) -> Verdict | None:
    """An upper bound, and no other, on ``error-rate`` or a percentile, by the exact
    group-sequential test (:func:`stats.sequential_rate_boundaries`); ``None`` where it does
    not apply (another metric or bound, one look, an unknown plan, looks too large to
    compute), and Bonferroni decides."""
    if obj.upper is None or obj.lower is not None or obj.max_increase is not None:
        return None
    if obj.metric == "error-rate":
        return _judge_rate_sequentially(obj, obj.upper, dark, intervals, ctx, final, base)
    q = percentile_of(obj.metric)
    if q is None:
        return None
    return _judge_percentile_sequentially(obj, obj.upper, q, dark, intervals, ctx, final, base)


def _judge_rate_sequentially(
    obj: Objective,
    upper: float,
    dark: Window,
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    final: bool,
    base: Verdict,
) -> Verdict | None:
    """``error-rate <= upper``: the count is dark's errors among its requests."""
    if not 0 < upper < 1:
        return None
    looks = _sequential_looks(intervals, ctx, lambda w: w.requests, dark.requests or 0.0, upper)
    if looks is None:
        return None
    look = looks[-1]
    n, errors = look.trials, min(look.trials, round(dark.errors or 0.0))
    lo, hi = _rate_end(errors, n, look.fail_level, 0), _rate_end(errors, n, look.pass_level, 1)
    value = errors / n
    base = replace(base, value=value, lo=lo, hi=hi, samples=n)
    test = _boundary_text(looks, ctx, final, upper, "requests", "without errors")
    details = f"{errors} errors in {n} requests; {test}"
    shown = format_value(value, base.units)
    return _sequential_verdict(
        obj, base, final, shown, details, errors >= look.fail_at_least,
        errors <= look.pass_at_most,
    )


def _judge_percentile_sequentially(
    obj: Objective,
    upper: float,
    q: float,
    dark: Window,
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    final: bool,
    base: Verdict,
) -> Verdict | None:
    """``pNN <= bound`` over several looks: the pNN is at most the bound exactly when at most
    a share ``1 - q`` of the observations lie above it, so the count of observations above the
    bound is a rate, and the same exact sequential test decides it. The buckets give that count
    exactly when the bound is a bucket edge, and else bracket it: a pass counts every
    observation of the bucket holding the bound as above it, a fail none of them."""
    counted = stats.count_above(upper, dark.buckets)
    looks = _sequential_looks(
        intervals, ctx, lambda w: w.latency_count, dark.latency_count or 0.0, 1.0 - q
    )
    if looks is None or counted is None:
        return None
    look = looks[-1]
    n = look.trials
    at_least, at_most = counted
    above_lo, above_hi = min(n, round(at_least)), min(n, round(at_most))
    value = stats.histogram_quantile(q, dark.buckets)
    lo = _quantile_end(q, dark.buckets, look.fail_level, 0, value)
    hi = _quantile_end(q, dark.buckets, look.pass_level, 1, value)
    base = replace(base, value=value, lo=lo, hi=hi, samples=n)
    units = base.units
    above = f"{above_lo}" if above_lo == above_hi else f"{above_lo}..{above_hi}"
    test = _boundary_text(looks, ctx, final, 1.0 - q, "observations", "with none above")
    details = f"{above} of {n} observations above {format_value(upper, units)}; {test}"
    fails, passes = above_lo >= look.fail_at_least, above_hi <= look.pass_at_most
    if not (fails or passes) and above_lo != above_hi:
        details += _wide_bucket_text(upper, dark.buckets, units)
    return _sequential_verdict(obj, base, final, format_value(value, units), details, fails, passes)


def _wide_bucket_text(upper: float, buckets: stats.Buckets, units: str) -> str:
    """Why more traffic may never decide: the bound lies inside a histogram bucket, whose
    observations count on either side of it (Istio's default buckets are 0.5, 1, 5, 10, 25,
    50, 100, 250 ms ...; the kubernetes backend asks the sidecars for finer ones).

    >>> _wide_bucket_text(80, [(50, 1), (100, 9), (float("inf"), 9)], "ms")
    '; the bound lies inside the histogram bucket 50..100 ms: only its edges are decidable'
    """
    edges = sorted(float(le) for le, _ in buckets)
    below = [e for e in edges if e < upper]
    above = [e for e in edges if e > upper]
    if not below or not above:
        return ""
    low, high = format_value(below[-1]), format_value(above[0])
    return (
        f"; the bound lies inside the histogram bucket {low}..{high} {units}: "
        "only its edges are decidable"
    )


def _quantile_end(
    q: float, buckets: stats.Buckets, level: float, end: int, value: float
) -> float:
    """An end of the order-statistics interval of the q-quantile at one-sided ``level``, as
    :func:`_rate_end` does for rates."""
    if level <= 0.0:
        return (0.0, math.inf)[end]
    if level >= 0.5:
        return value
    return stats.quantile_interval(q, buckets, 1 - 2 * level)[end]


def _rate_end(errors: int, n: int, level: float, end: int) -> float:
    """The lower (``end`` 0) or upper (1) Clopper-Pearson end at one-sided ``level``: nothing
    is excluded at level 0, and level 0.5 (possible at confidence 0.5) is the point estimate."""
    if level <= 0.0:
        return float(end)
    if level >= 0.5:
        return errors / n
    return stats.binomial_interval(errors, n, 1 - 2 * level)[end]
