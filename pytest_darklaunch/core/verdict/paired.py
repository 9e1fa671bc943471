"""Verdicts on the comparison: mismatch rates, and relative latency bounds on pairs.

``status-mismatch-rate`` and ``response-mismatch-rate`` are rates among paired requests, and
an upper bound on them is decided exactly as one on ``error-rate``: the exact group-sequential
test on the count, the trials being the paired requests at each look. A ``max_increase`` on
``mean-latency`` or a percentile, when pairs exist, compares each dark request with live's
answer to the same request (microseconds from the proxy's log, no bucket error): the mean by
the ratio of paired means and its delta-method interval, a percentile by the paired
asymptotic interval of the two sample quantiles (see ``_quantile_interval``), read from the
pairs' 0.5%-wide histograms and their joint 2% histogram.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.compare.comparer import Summary
from pytest_darklaunch.core.compare.latency import BIN_GROWTH, LogHistogram, PairedLatency
from pytest_darklaunch.core.compare.model import LIVE2
from pytest_darklaunch.core.metrics import is_latency, percentile_of
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict.model import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    UNDECIDED,
    Context,
    IntervalPoint,
    Verdict,
    bounds_text,
)
from pytest_darklaunch.core.verdict.sequential import (
    _boundary_text,
    _rate_end,
    _sequential_verdict,
)

# A value's place inside its 0.5% bin, as a uniform error on the log scale
BIN_VARIANCE = math.log(BIN_GROWTH) ** 2 / 12
MISMATCH_METRICS = ("status-mismatch-rate", "response-mismatch-rate")
PAIRED_QUERY = "paired from the proxy's upstream log (same x-request-id)"


@dataclass(frozen=True)
class Look:
    """The comparison's counts at the end of one interval (cumulative), JSON-able."""

    end: float
    seconds: float  # sampled time since the start of the measured phase
    paired: int
    status_mismatches: int
    response_mismatches: int
    unpaired: int
    latency: PairedLatency

    @classmethod
    def of(cls, summary: Summary, end: float, seconds: float) -> Look:
        return cls(end, seconds, summary.paired, summary.status_mismatches,
                   summary.response_mismatches, summary.unpaired, summary.latency)

    def minus(self, baseline: Look) -> Look:
        """This look without what ``baseline`` (the start of the measured phase) held."""
        return Look(
            self.end, self.seconds, self.paired - baseline.paired,
            self.status_mismatches - baseline.status_mismatches,
            self.response_mismatches - baseline.response_mismatches,
            self.unpaired - baseline.unpaired, self.latency.minus(baseline.latency),
        )

    def events(self, metric: str) -> int:
        if metric == "status-mismatch-rate":
            return self.status_mismatches
        return self.response_mismatches

    def to_json(self) -> dict[str, Any]:
        return {"end": self.end, "seconds": self.seconds, "paired": self.paired,
                "status_mismatches": self.status_mismatches,
                "response_mismatches": self.response_mismatches, "unpaired": self.unpaired,
                "latency": self.latency.paired_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Look:
        return cls(data["end"], data["seconds"], data["paired"], data["status_mismatches"],
                   data["response_mismatches"], data["unpaired"],
                   PairedLatency.from_paired_json(data["latency"]))


def _base(obj: Objective, looks: Sequence[Look], units: str) -> Verdict:
    last = looks[-1]
    return Verdict(obj, INCONCLUSIVE, "", window=(last.end - last.seconds, last.end),
                   query=PAIRED_QUERY, units=units)


def judge_mismatch(
    obj: Objective, looks: Sequence[Look], ctx: Context, final: bool
) -> Verdict:
    """An upper bound on a mismatch rate, by the exact sequential test over the looks."""
    if not looks or looks[-1].paired == 0:
        base = _base(obj, looks, "") if looks else Verdict(obj, INCONCLUSIVE, "")
        return replace(base, reason="no data: no paired requests (dark received none of "
                       "live's requests, or the proxy's log was not read)")
    base = _base(obj, looks, "")
    points = tuple(IntervalPoint(look.end, look.events(obj.metric) / look.paired
                                 if look.paired else None, None) for look in looks)
    base = replace(base, points=points)
    last = looks[-1]
    n, events = last.paired, min(last.paired, last.events(obj.metric))
    upper = obj.upper
    if upper is None or obj.lower is not None or obj.max_increase is not None:
        return replace(base, reason=f"{obj.metric} takes an upper bound only")
    trials = [look.paired for look in looks]
    for i in range(1, len(trials)):
        trials[i] = max(trials[i], trials[i - 1])
    fractions = [look.seconds / ctx.planned_s if ctx.planned_s else 1.0 for look in looks]
    if len(looks) >= ctx.looks or not ctx.planned_s:
        fractions[-1] = 1.0
    fractions = [min(1.0, max(f, 1e-9)) for f in fractions]
    boundaries = None
    if 0 < upper < 1:
        boundaries = stats.sequential_rate_boundaries(
            upper, trials, fractions, 1.0 - ctx.confidence)
    if boundaries is None:
        return _bonferroni(obj, upper, events, n, ctx, final, base)
    look = boundaries[-1]
    lo = _rate_end(events, n, look.fail_level, 0)
    hi = _rate_end(events, n, look.pass_level, 1)
    base = replace(base, value=events / n, lo=lo, hi=hi, samples=n)
    test = _boundary_text(boundaries, ctx, final, upper, "paired requests", "without mismatches")
    kind = "status differs" if obj.metric == "status-mismatch-rate" else "answers differ"
    details = f"{events} of {n} paired requests whose {kind}; {test}"
    if last.unpaired:
        details += f"; {last.unpaired} unpaired entries"
    return _sequential_verdict(obj, base, final, format_value(events / n), details,
                               events >= look.fail_at_least, events <= look.pass_at_most)


def _bonferroni(
    obj: Objective, upper: float, events: int, n: int, ctx: Context, final: bool, base: Verdict
) -> Verdict:
    """Where the exact sequential boundaries are out of reach (a bound of 0 or 1, looks too
    large to compute): a Clopper-Pearson interval at the Bonferroni level of the look."""
    alpha = stats.bonferroni_alpha(ctx.confidence, ctx.looks)
    lo, hi = stats.binomial_interval(events, n, 1 - 2 * alpha)
    outcome = stats.decide(lo, hi, upper=upper, lower=None)
    base = replace(base, value=events / n, lo=lo, hi=hi, samples=n)
    details = f"{events} of {n} paired requests; Bonferroni, one-sided {1 - alpha:.4f}"
    return _sequential_verdict(obj, base, final, format_value(events / n), details,
                               outcome == FAIL, outcome == PASS)


def _decide(obj: Objective, lo: float, hi: float) -> str:
    inc = obj.max_increase
    assert inc is not None
    if hi <= inc.amount:
        return PASS
    if lo > inc.amount:
        return FAIL
    return UNDECIDED


def _baseline_note(lat: PairedLatency, q: float | None) -> str:
    """The unpaired difference (all of dark's entries against all of live's), and with
    live-2 as the baseline what the mirrored path adds to live's own code."""
    if q is None:
        a, b = lat.all_live.mean, lat.all_dark.mean
    else:
        a, b = lat.all_live_hist.quantile(q), lat.all_dark_hist.quantile(q)
    note = f"unpaired {b / a - 1:+.1%}" if a and b is not None else "unpaired n/a"
    shift = lat.mirrored_path_increase()
    if shift is not None:
        note += (f"; live-2 (live's command, mirrored like dark) {shift:+.1%} over live on "
                 "the same requests")
    elif lat.baseline != LIVE2:
        note += ("; against live itself, whose requests the proxy serves before their copies "
                 "(compare.baseline: live-2 pairs dark with a copy)")
    return note


def judge_paired_latency(
    obj: Objective, looks: Sequence[Look], ctx: Context, final: bool
) -> Verdict | None:
    """``max_increase`` (and no other bound) on mean-latency or a percentile, on pairs;
    ``None`` when this does not apply (another metric or bound, no pairs yet)."""
    q = percentile_of(obj.metric)
    if (obj.max_increase is None or not is_latency(obj.metric) or obj.upper is not None
            or obj.lower is not None or not looks or looks[-1].latency.pairs < 2):
        return None
    lat = looks[-1].latency
    alpha = stats.bonferroni_alpha(ctx.confidence, ctx.looks)
    if q is None:
        found = _mean_interval(obj, lat, alpha)
    else:
        found = _quantile_interval(obj, lat, q, alpha)
    if found is None:
        return None
    live, dark, change, lo, hi = found
    outcome = _decide(obj, lo, hi)
    inc = obj.max_increase
    assert inc is not None

    def shown(value: float) -> str:
        return f"{value:+.1%}" if inc is not None and inc.relative else f"{value:+.3f} ms"

    who = "live-2's" if lat.baseline == LIVE2 else "live's"
    reason = (
        f"dark {obj.metric} is {format_value(dark, 'ms')} against {who} "
        f"{format_value(live, 'ms')} on the same requests: {shown(change)} (interval "
        f"{shown(lo)}..{shown(hi)}, one-sided {(1 - alpha) * 100:.2f}% per look), paired over "
        f"{lat.pairs} requests; {_baseline_note(lat, q)}"
    )
    base = replace(_base(obj, looks, "ms"), value=dark, live_value=live, lo=lo, hi=hi,
                   samples=lat.pairs)
    if outcome == FAIL:
        return replace(base, outcome=FAIL, reason=f"{reason}, breaching {bounds_text(obj)}")
    if outcome == PASS:
        return replace(base, outcome=PASS, reason=reason)
    return replace(base, outcome=INCONCLUSIVE if final else UNDECIDED,
                   reason=f"undecided: {reason}, the interval overlaps {bounds_text(obj)}")


def _mean_interval(
    obj: Objective, lat: PairedLatency, alpha: float
) -> tuple[float, float, float, float, float] | None:
    z = NormalDist().inv_cdf(1 - alpha)
    live, dark = lat.live.mean, lat.dark.mean
    inc = obj.max_increase
    assert inc is not None and live is not None and dark is not None
    if inc.relative:
        change, se = lat.mean_increase(), lat.mean_increase_se()
    else:
        diff, se_us = lat.mean_difference_us(), lat.mean_difference_se_us()
        change = None if diff is None else diff / 1000
        se = None if se_us is None else se_us / 1000
    if change is None or se is None:
        return None
    return live / 1000, dark / 1000, change, change - z * se, change + z * se


def _bandwidth(q: float, n: int, alpha: float) -> float:
    """Hall and Sheather's bandwidth (in probability) for the density at the q-quantile,
    kept inside (0, 1) around q and at least 5 observations wide."""
    normal = NormalDist()
    x = normal.inv_cdf(q)
    h: float = n ** (-1 / 3) * normal.inv_cdf(1 - alpha / 2) ** (2 / 3) * (
        1.5 * normal.pdf(x) ** 2 / (2 * x * x + 1)) ** (1 / 3)
    return min(max(h, 5 / n), 0.9 * min(q, 1 - q))


def _density(hist: LogHistogram, q: float, h: float) -> float | None:
    """Siddiqui's estimate of the density at the q-quantile (per microsecond)."""
    upper, lower = hist.quantile(min(q + h, 1.0)), hist.quantile(max(q - h, 0.0))
    if upper is None or lower is None or upper <= lower:
        return None
    return 2 * h / (upper - lower)


def _quantile_interval(
    obj: Objective, lat: PairedLatency, q: float, alpha: float
) -> tuple[float, float, float, float, float] | None:
    """Dark's q-quantile against the baseline's over the same requests, with a paired
    interval: each sample quantile is its population quantile plus (q - F(x)) / f(x)
    (Bahadur), so the difference's variance is q(1-q)/f_d^2 + q(1-q)/f_b^2 - 2 c/(f_d f_b),
    over n, with f by Siddiqui's estimate and c, the covariance of the two indicators, from
    the joint histogram (its least favourable value, -(1-q)^2, without one). On the log scale
    for a relative bound. One-sided alpha at each end, as for the mean."""
    n = lat.pairs
    live, dark = lat.live_hist.quantile(q), lat.dark_hist.quantile(q)
    if n < 20 or live is None or dark is None:
        return None
    h = _bandwidth(q, n, alpha)
    f_live, f_dark = _density(lat.live_hist, q, h), _density(lat.dark_hist, q, h)
    if f_live is None or f_dark is None:
        return None
    cov = lat.quantile_covariance(live, dark)
    if cov is None:
        cov = -((1 - q) ** 2)
    z = NormalDist().inv_cdf(1 - alpha)
    spread = q * (1 - q)
    inc = obj.max_increase
    assert inc is not None
    if inc.relative:
        a, b = dark * f_dark, live * f_live  # densities of the logarithms
        variance = (spread / (a * a) + spread / (b * b) - 2 * cov / (a * b)) / n
        se = math.sqrt(max(variance, 0.0) + 2 * BIN_VARIANCE)
        ratio = math.log(dark / live)
        return (live / 1000, dark / 1000, dark / live - 1,
                math.exp(ratio - z * se) - 1, math.exp(ratio + z * se) - 1)
    variance = (spread / f_dark**2 + spread / f_live**2 - 2 * cov / (f_dark * f_live)) / n
    se_ms = math.sqrt(max(variance, 0.0) + (dark**2 + live**2) * BIN_VARIANCE) / 1000
    change = (dark - live) / 1000
    return live / 1000, dark / 1000, change, change - z * se_ms, change + z * se_ms


def judge_comparison(
    obj: Objective, looks: Sequence[Look], ctx: Context, final: bool, why: str
) -> Verdict | None:
    """The verdict on pairs for ``obj``, or ``None`` when Prometheus' windows decide it.
    ``why`` is the precheck's reason not to judge (mirror share, load), if any."""
    if obj.metric in MISMATCH_METRICS:
        if why:
            return Verdict(obj, INCONCLUSIVE, why, query=PAIRED_QUERY)
        if not looks:
            return Verdict(obj, INCONCLUSIVE, "no data: responses were not paired (the "
                           "comparison needs the local backend)", query=PAIRED_QUERY)
        return judge_mismatch(obj, looks, ctx, final)
    if why:
        return None
    return judge_paired_latency(obj, looks, ctx, final)
