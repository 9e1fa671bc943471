"""Verdicts: pass, fail or inconclusive, with the reason, from exact windows.

Every estimate carries a confidence interval: binomial for rates, order statistics mapped
through the histogram buckets for percentiles (so bucket interpolation error is inside it), a
bucket-based standard error for means. An objective passes only when the whole interval lies
within its bounds and fails only when the whole interval lies outside; otherwise the experiment
goes on, and at its end the objective is inconclusive. Repeated looks are paid for with a
Bonferroni split of ``1 - confidence`` over the planned intervals, except for upper bounds on
``error-rate`` and on percentiles, which an exact group-sequential test on a count decides
(errors; observations above the bound), with Pocock-type alpha-spending over the planned
sampling time: it keeps the same guarantee and needs far fewer samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.metrics import percentile_of, units_of
from pytest_darklaunch.core.sampler import Window
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.units import format_value, shown_units

PASS, FAIL, INCONCLUSIVE, UNDECIDED = "pass", "fail", "inconclusive", "undecided"
# The generator must deliver this share of its target rate for a verdict to count.
MIN_RATE_SHARE = 0.9


@dataclass(frozen=True)
class Estimate:
    """A metric's value on one window and its confidence interval ``[lo, hi]``."""

    value: Optional[float]
    lo: Optional[float] = None
    hi: Optional[float] = None
    samples: int = 0
    bucket: Optional[tuple[float, float]] = None
    missing: str = ""


def estimate(
    window: Window, metric: str, confidence: float, with_interval: bool = True
) -> Estimate:
    """The value of ``metric`` on ``window`` with a ``confidence`` interval (without one, and
    much faster, when ``with_interval`` is false)."""
    if metric in window.custom:
        value = window.custom[metric]
        if value is None or math.isnan(value):
            return Estimate(None, missing=f"the query for {metric} returned no data")
        return Estimate(value, value, value, int(window.requests or 0))
    if window.requests is None:
        return Estimate(None, missing="no requests recorded")
    n = int(round(window.requests))
    if metric == "request-count":
        return Estimate(window.requests, window.requests, window.requests, n)
    if metric == "throughput":
        rate = window.requests / window.seconds if window.seconds > 0 else 0.0
        return Estimate(rate, rate, rate, n)
    errors = window.errors or 0.0
    if metric == "error-count":
        return Estimate(errors, errors, errors, n)
    if metric == "error-rate":
        if n == 0:
            return Estimate(None, missing="no requests recorded")
        if not with_interval:
            return Estimate(errors / n, samples=n)
        lo, hi = stats.binomial_interval(int(round(errors)), n, confidence)
        return Estimate(errors / n, lo, hi, n)
    count = window.latency_count or 0.0
    if count <= 0 or not window.buckets:
        return Estimate(None, samples=n, missing="no latency observations recorded")
    if metric == "mean-latency":
        mean = (window.latency_sum or 0.0) / count
        if not with_interval:
            return Estimate(mean, samples=int(count))
        lo, hi = stats.histogram_mean_interval(
            window.latency_sum or 0.0, count, window.buckets, confidence
        )
        return Estimate(mean, lo, hi, int(count))
    q = percentile_of(metric)
    if q is None:
        return Estimate(None, missing=f"unknown metric {metric!r}")
    value = stats.histogram_quantile(q, window.buckets)
    if not with_interval:
        return Estimate(value, samples=int(count))
    lo, hi = stats.quantile_interval(q, window.buckets, confidence)
    return Estimate(value, lo, hi, int(count), stats.quantile_bucket(q, window.buckets))


@dataclass(frozen=True)
class IntervalPoint:
    """One interval's value of the objective's metric, for dark and live."""

    end: float
    dark: Optional[float]
    live: Optional[float]
    outcome: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one objective with everything needed to explain it."""

    objective: Objective
    outcome: str
    reason: str
    value: Optional[float] = None
    live_value: Optional[float] = None
    lo: Optional[float] = None
    hi: Optional[float] = None
    samples: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    query: str = ""
    units: str = ""
    points: tuple[IntervalPoint, ...] = field(default=())
    error: bool = False

    @property
    def decided(self) -> bool:
        return self.outcome in (PASS, FAIL)


@dataclass(frozen=True)
class Context:
    """What a verdict needs besides the windows: the run's shape and checks."""

    confidence: float
    looks: int
    mirror_percent: float
    target_rps: Optional[float] = None
    dark_timeout_s: float = 0.0
    query: str = ""
    # The planned sampling time (interval x iterations): the information fraction of a look is
    # its cumulative window over this. 0: unknown, so rate objectives use Bonferroni.
    planned_s: float = 0.0
    # The judged metric's units, from ``Spec.units_of`` so a custom metric's units reach the
    # message. Empty: the built-in rule (custom metrics never take a built-in name).
    units: str = ""


def bounds_text(obj: Objective, units: str = "") -> str:
    """``<= 50``, ``>= 10 and <= 50 ms``, ``<= +10% over live``."""
    unit = f" {shown_units(units)}" if shown_units(units) else ""
    parts = []
    if obj.lower is not None:
        parts.append(f">= {obj.lower:g}{unit}")
    if obj.upper is not None:
        parts.append(f"<= {obj.upper:g}{unit}")
    if obj.max_increase is not None:
        parts.append(f"<= +{obj.max_increase} over live")
    return " and ".join(parts)


def precheck(dark: Window, live: Window, ctx: Context) -> str:
    """Why no verdict is possible on this cumulative window, or ``""``."""
    span = f"{dark.seconds:.1f} s"
    if dark.reset or live.reset:
        return f"a counter went backwards in the {span} window (a restarted proxy or app)"
    if dark.requests is None or dark.requests == 0:
        return (
            f"no data: dark recorded no requests in {span} "
            f"(mirror.percent is {ctx.mirror_percent:g}; is mirroring in place?)"
        )
    if ctx.target_rps and live.seconds > 0:
        achieved = (live.requests or 0.0) / live.seconds
        if achieved < MIN_RATE_SHARE * ctx.target_rps:
            return (
                f"the generator achieved {achieved:.1f} requests/s of the "
                f"{ctx.target_rps:g} requests/s target"
            )
    if live.requests:
        # Requests in flight at a window's edge may be counted in the next window on dark.
        slack = ctx.mirror_percent / 100 * (ctx.target_rps or 0.0) * ctx.dark_timeout_s
        ok, lo, hi, observed = stats.mirror_share_check(
            int(round(dark.requests)), int(round(live.requests)), ctx.mirror_percent
        )
        share = ctx.mirror_percent / 100
        if not ok and abs(dark.requests - share * live.requests) > slack:
            return (
                f"the mirror delivered {observed * 100:.1f}% of live's requests to dark "
                f"(99.9% interval {lo * 100:.1f}..{hi * 100:.1f}%), expected "
                f"{ctx.mirror_percent:g}%: the routing is wrong, no other number can be "
                "trusted"
            )
    return ""


def judge(
    obj: Objective,
    cumulative: tuple[Window, Window],
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    final: bool,
) -> Verdict:
    """Judge ``obj`` on (dark, live) windows; ``final`` turns 'undecided' into inconclusive."""
    dark, live = cumulative
    units = ctx.units or units_of(obj.metric)
    # Each decision is one-sided: a two-sided interval at 1 - 2*alpha bounds it at 1 - alpha.
    alpha = stats.bonferroni_alpha(ctx.confidence, ctx.looks)
    conf = 1.0 - 2 * alpha
    points = tuple(
        IntervalPoint(
            d.end,
            estimate(d, obj.metric, conf, with_interval=False).value,
            estimate(lv, obj.metric, conf, with_interval=False).value,
        )
        for d, lv in intervals
    )
    base = Verdict(
        obj,
        INCONCLUSIVE,
        "",
        window=(dark.start, dark.end),
        query=ctx.query,
        units=units,
        points=points,
    )
    why = precheck(dark, live, ctx)
    if why:
        return replace(base, reason=why, samples=int(dark.requests or 0))
    if obj.judge == "interval":
        return _judge_intervals(obj, intervals, conf, final, base)
    est = estimate(dark, obj.metric, conf, with_interval=False)
    # Live's interval serves relative bounds only.
    live_est = estimate(live, obj.metric, conf, with_interval=obj.max_increase is not None)
    if est.value is None:
        answered_none = bool(dark.requests) and (dark.errors or 0.0) >= (dark.requests or 0.0)
        is_latency = obj.metric == "mean-latency" or percentile_of(obj.metric) is not None
        if answered_none and is_latency and (obj.upper is not None or obj.max_increase):
            # A dark that answers nothing (timeouts, Envoy's 503s) records no latency at all:
            # that is the worst latency there is, not missing data.
            return replace(
                base,
                outcome=FAIL,
                samples=int(dark.requests or 0),
                reason=f"dark answered none of its {dark.requests:.0f} requests (every one an "
                f"error: timed out or refused), so no latency can meet {bounds_text(obj)}",
            )
        return replace(base, reason=f"no data: dark: {est.missing}", samples=est.samples)
    sequential = _judge_sequentially(obj, dark, intervals, ctx, final, base)
    if sequential is not None:
        return replace(sequential, live_value=live_est.value)
    point = est.value
    est = estimate(dark, obj.metric, conf)  # now with its interval
    lo = est.lo if est.lo is not None else point
    hi = est.hi if est.hi is not None else point
    outcomes: list[str] = []
    if obj.upper is not None or obj.lower is not None:
        outcomes.append(stats.decide(lo, hi, upper=obj.upper, lower=obj.lower))
    if obj.max_increase is not None:
        if live_est.value is None:
            return replace(
                base,
                reason=f"no data for live: {live_est.missing}",
                value=est.value,
                samples=est.samples,
            )
        outcomes.append(_relative(obj, lo, hi, live_est))
    base = replace(
        base, value=est.value, live_value=live_est.value, lo=lo, hi=hi, samples=est.samples
    )
    ci = f"{format_value(lo)}..{format_value(hi)}, one-sided {(1 - alpha) * 100:.2f}% per look"
    if est.bucket is not None:
        low, high = (format_value(edge) for edge in est.bucket)
        ci += f"; histogram bucket {low}..{high} {units}"
    value = format_value(est.value, units)
    if FAIL in outcomes:
        return replace(
            base,
            outcome=FAIL,
            reason=f"dark {obj.metric} is {value}, breaching {bounds_text(obj)} (interval {ci})",
        )
    if all(o == PASS for o in outcomes):
        return replace(base, outcome=PASS, reason=f"dark {obj.metric} is {value} (interval {ci})")
    reason = (
        f"undecided: dark {obj.metric} is {value}, its interval {ci} "
        f"overlaps the bound {bounds_text(obj)}"
    )
    if obj.metric == "error-rate" and obj.upper:
        needed = stats.min_samples_for_upper(obj.upper, 1 - alpha)
        if est.samples < needed:
            reason += f"; {est.samples} requests, at least {needed} needed for this bound"
    else:
        reason += f"; {est.samples} samples"
    return replace(base, outcome=INCONCLUSIVE if final else UNDECIDED, reason=reason)


def _sequential_looks(
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    trials_of: Callable[[Window], Optional[float]],
    current: float,
    bound: float,
) -> Optional[tuple[stats.RateBoundary, ...]]:
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


def _judge_sequentially(
    obj: Objective,
    dark: Window,
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    final: bool,
    base: Verdict,
) -> Optional[Verdict]:
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
) -> Optional[Verdict]:
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
) -> Optional[Verdict]:
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
    return _sequential_verdict(
        obj, base, final, format_value(value, units), details,
        above_lo >= look.fail_at_least, above_hi <= look.pass_at_most,
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


def _relative(obj: Objective, lo: float, hi: float, live: Estimate) -> str:
    inc = obj.max_increase
    assert inc is not None and live.value is not None
    live_lo = live.lo if live.lo is not None else live.value
    live_hi = live.hi if live.hi is not None else live.value

    def allowed(base: float) -> float:
        return base * (1 + inc.amount) if inc.relative else base + inc.amount

    if hi <= allowed(live_lo):
        return PASS
    if lo > allowed(live_hi):
        return FAIL
    return UNDECIDED


def _judge_intervals(
    obj: Objective,
    intervals: Sequence[tuple[Window, Window]],
    conf: float,
    final: bool,
    base: Verdict,
) -> Verdict:
    """Flagger/Argo style: judge each interval's value, tolerate ``failure_limit`` failures."""
    failed, missing, points = 0, 0, []
    for d, lv in intervals:
        est = estimate(d, obj.metric, conf, with_interval=False)
        live_est = estimate(lv, obj.metric, conf, with_interval=False)
        if est.value is None:
            missing += 1
            points.append(IntervalPoint(d.end, None, live_est.value, INCONCLUSIVE))
            continue
        outcome = PASS
        if obj.upper is not None or obj.lower is not None:
            outcome = stats.decide(est.value, est.value, upper=obj.upper, lower=obj.lower)
        if obj.max_increase is not None and live_est.value is not None and outcome != FAIL:
            point = Estimate(live_est.value, live_est.value, live_est.value)
            outcome = _relative(obj, est.value, est.value, point)
        failed += outcome == FAIL
        points.append(IntervalPoint(d.end, est.value, live_est.value, outcome))
    last = points[-1] if points else None
    base = replace(
        base,
        points=tuple(points),
        value=last.dark if last else None,
        live_value=last.live if last else None,
        samples=len(points),
        reason=f"{failed} of {len(points)} intervals breached {bounds_text(obj)} "
        f"(failure_limit {obj.failure_limit})",
    )
    if failed > obj.failure_limit:
        return replace(base, outcome=FAIL)
    if not final:
        return replace(base, outcome=UNDECIDED)
    if missing > obj.failure_limit - failed:
        return replace(base, reason=f"{missing} intervals had no data; " + base.reason)
    return replace(base, outcome=PASS)
