"""``judge``: one objective's verdict from exact (dark, live) windows.

Rates and percentiles with an upper bound go to :mod:`.sequential`; every other objective
is decided by its confidence interval at a Bonferroni-split level per look, or look by look
for ``judge: interval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.metrics import is_latency, units_of
from pytest_darklaunch.core.sampler import Window
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict.model import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    UNDECIDED,
    Context,
    Estimate,
    IntervalPoint,
    Verdict,
    bounds_text,
    estimate,
)
from pytest_darklaunch.core.verdict.sequential import judge_sequentially

# The generator must deliver this share of its target rate for a verdict to count.
MIN_RATE_SHARE = 0.9


def precheck(dark: Window, live: Window, ctx: Context, eligible: Window | None = None) -> str:
    """Why no verdict is possible on this cumulative window, or ``""``.

    ``eligible``: live's requests of the mirrored methods, when only some methods are mirrored;
    the mirror check's base (else all of live's requests). A route's live windows hold only
    its requests of mirrored methods already.
    """
    if ctx.route:
        why = _route_precheck(dark, live, ctx)
        return f"route {ctx.route}: {why}" if why else ""
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
    if eligible is not None and eligible.requests is not None:
        return _mirror_check(dark.requests, eligible.requests, ctx, "requests of mirrored methods")
    return _mirror_check(dark.requests, live.requests, ctx, "requests")


def _mirror_check(dark: float, base: float | None, ctx: Context, what: str) -> str:
    """Whether dark got ``mirror_percent`` of live's ``base`` requests, within binomial noise."""
    if not base:
        return ""
    # Requests in flight at a window's edge may be counted in the next window on dark.
    slack = ctx.mirror_percent / 100 * (ctx.target_rps or 0.0) * ctx.dark_timeout_s
    ok, lo, hi, observed = stats.mirror_share_check(
        int(round(dark)), int(round(base)), ctx.mirror_percent
    )
    if ok or abs(dark - ctx.mirror_percent / 100 * base) <= slack:
        return ""
    return (
        f"the mirror delivered {observed * 100:.1f}% of live's {what} to dark "
        f"(99.9% interval {lo * 100:.1f}..{hi * 100:.1f}%), expected "
        f"{ctx.mirror_percent:g}%: the routing is wrong, no other number can be trusted"
    )


def _route_precheck(dark: Window, live: Window, ctx: Context) -> str:
    """The checks of one route's windows: its mirror share is checked like the whole
    experiment's, against ``percent`` of the route's live requests (those eligible for
    mirroring); the generator's rate is the whole experiment's business."""
    span = f"{dark.seconds:.1f} s"
    if dark.reset or live.reset:
        return f"a counter went backwards in the {span} window (a restarted proxy or app)"
    if not live.requests:
        return f"no data: no request on this route in {span} (does the route match the traffic?)"
    share = ctx.mirror_percent / 100
    received = int(round(dark.requests or 0.0))
    ok, lo, hi, observed = stats.mirror_share_check(
        received, int(round(live.requests)), ctx.mirror_percent
    )
    # Requests in flight at a window's edge may be counted in the next window on dark (at the
    # route's own rate); fewer missing than that cannot tell a broken mirror from an edge.
    slack = share * live.requests / max(live.seconds, 1e-9) * ctx.dark_timeout_s
    if ok or abs(received - share * live.requests) <= slack:
        return ""
    return (
        f"dark received {received} of {share * live.requests:.0f} mirrored requests "
        f"({ctx.mirror_percent:g}% of live's {live.requests:.0f} on the route; got "
        f"{observed * 100:.1f}%, 99.9% interval {lo * 100:.1f}..{hi * 100:.1f}%): this "
        "route's mirroring is broken (no mirror policy for it, or a proxy that drops its shadows, "
        "as sidecars do with bodies over their buffer limit), none of its numbers can be trusted"
    )


def judge(
    obj: Objective,
    cumulative: tuple[Window, Window],
    intervals: Sequence[tuple[Window, Window]],
    ctx: Context,
    final: bool,
    eligible: Window | None = None,
) -> Verdict:
    """Judge ``obj`` on (dark, live) windows; ``final`` turns 'undecided' into inconclusive.

    ``eligible`` is live's cumulative window of mirror-eligible requests (see :func:`precheck`).
    """
    dark, live = cumulative
    # Each decision is one-sided: a two-sided interval at 1 - 2*alpha bounds it at 1 - alpha.
    alpha = stats.bonferroni_alpha(ctx.confidence, ctx.looks)
    conf = 1.0 - 2 * alpha
    base = Verdict(
        obj,
        INCONCLUSIVE,
        "",
        window=(dark.start, dark.end),
        query=ctx.query,
        units=ctx.units or units_of(obj.metric),
        points=_points(obj, intervals, conf),
    )
    why = precheck(dark, live, ctx, eligible)
    if why:
        return replace(base, reason=why, samples=int(dark.requests or 0))
    if obj.judge == "interval":
        return _judge_intervals(obj, intervals, conf, final, base)
    est = estimate(dark, obj.metric, conf, with_interval=False)
    # Live's interval serves relative bounds only.
    live_est = estimate(live, obj.metric, conf, with_interval=obj.max_increase is not None)
    if est.value is None:
        return _without_value(obj, dark, est, base)
    sequential = judge_sequentially(obj, dark, intervals, ctx, final, base)
    if sequential is not None:
        return replace(sequential, live_value=live_est.value)
    return _judge_by_interval(obj, dark, est.value, live_est, alpha, final, base)


def _points(
    obj: Objective, intervals: Sequence[tuple[Window, Window]], conf: float
) -> tuple[IntervalPoint, ...]:
    """Dark's and live's value in each interval, for the progress line and the plots."""
    return tuple(
        IntervalPoint(
            d.end,
            estimate(d, obj.metric, conf, with_interval=False).value,
            estimate(lv, obj.metric, conf, with_interval=False).value,
        )
        for d, lv in intervals
    )


def _without_value(obj: Objective, dark: Window, est: Estimate, base: Verdict) -> Verdict:
    """No value for dark: missing data, or a latency bound breached by a dark that answers
    nothing."""
    answered_none = bool(dark.requests) and (dark.errors or 0.0) >= (dark.requests or 0.0)
    if answered_none and is_latency(obj.metric) and (obj.upper is not None or obj.max_increase):
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


def _judge_by_interval(
    obj: Objective,
    dark: Window,
    point: float,
    live_est: Estimate,
    alpha: float,
    final: bool,
    base: Verdict,
) -> Verdict:
    """Decide on dark's confidence interval (around ``point``) at one-sided ``1 - alpha``."""
    est = estimate(dark, obj.metric, 1.0 - 2 * alpha)
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
    return _settle(obj, outcomes, est, alpha, final, base)


def _settle(
    obj: Objective, outcomes: list[str], est: Estimate, alpha: float, final: bool, base: Verdict
) -> Verdict:
    """The verdict and its reason once each bound has its decision."""
    units = base.units
    ci = (
        f"{format_value(base.lo)}..{format_value(base.hi)}, "
        f"one-sided {(1 - alpha) * 100:.2f}% per look"
    )
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
