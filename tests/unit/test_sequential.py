"""The exact group-sequential test for rate objectives: its boundaries checked against an
independent brute-force computation, and the verdicts it gives over several looks."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.sampler import Window
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.core.verdict import Context, judge


def pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def crossing_by_enumeration(
    p: float, trials: list[int], boundaries: list[int], low: bool
) -> list[float]:
    """P(first crossing at look j) for each j, summing over every path of per-look event counts
    (no dynamic program, no truncation): what the boundaries must keep within the budget."""
    steps = [b - a for a, b in zip([0, *trials], trials, strict=False)]
    first = [0.0] * len(trials)
    for increments in itertools.product(*(range(m + 1) for m in steps)):
        prob = math.prod(pmf(k, m, p) for k, m in zip(increments, steps, strict=False))
        for j, count in enumerate(itertools.accumulate(increments)):
            if (count <= boundaries[j]) if low else (count >= boundaries[j]):
                first[j] += prob
                break
    return first


@pytest.mark.parametrize(
    "bound, trials, fractions",
    [
        (0.05, [20, 45, 70], [0.3, 0.6, 1.0]),
        (0.1, [15, 15, 40, 60], [0.2, 0.4, 0.7, 1.0]),  # a look with no new trial
        (0.3, [10, 25, 30], [0.25, 0.5, 0.9]),  # never reaches the whole plan
    ],
)
def test_boundaries_spend_at_most_the_budget_and_are_tight(bound, trials, fractions):
    alpha = 0.05
    looks = stats.sequential_rate_boundaries(bound, trials, fractions, alpha)
    assert looks is not None
    for low in (True, False):
        edges = [b.pass_at_most if low else b.fail_at_least for b in looks]
        first = crossing_by_enumeration(bound, trials, edges, low)
        spent = list(itertools.accumulate(first))
        for j, fraction in enumerate(fractions):
            budget = stats.pocock_spending(alpha, fraction)
            assert spent[j] <= budget + 1e-12
            # One count further at this look (earlier looks unchanged) would overspend.
            wider = list(edges)
            wider[j] += 1 if low else -1
            if 0 <= wider[j] <= trials[j]:
                assert sum(crossing_by_enumeration(bound, trials, wider, low)[: j + 1]) > budget


def test_spent_matches_the_enumeration():
    trials, fractions = [30, 60, 90], [1 / 3, 2 / 3, 1.0]
    looks = stats.sequential_rate_boundaries(0.05, trials, fractions, 0.05)
    assert looks is not None
    below = crossing_by_enumeration(0.05, trials, [b.pass_at_most for b in looks], True)
    above = crossing_by_enumeration(0.05, trials, [b.fail_at_least for b in looks], False)
    for j, look in enumerate(looks):
        assert look.spent == pytest.approx(
            max(sum(below[: j + 1]), sum(above[: j + 1])), abs=1e-12
        )


def test_later_looks_leave_earlier_boundaries_unchanged():
    trials, fractions = [180, 390, 600, 790], [0.25, 0.5, 0.75, 1.0]
    full = stats.sequential_rate_boundaries(0.01, trials, fractions, 0.05)
    assert full is not None
    for j in range(1, len(trials)):
        assert stats.sequential_rate_boundaries(0.01, trials[:j], fractions[:j], 0.05) == full[:j]


def test_nested_looks_spend_far_less_than_bonferroni():
    """No errors in 400 dark requests at the 5th of 10 looks passes ``<= 1%`` sequentially; a
    Bonferroni share of 10 looks needs 528."""
    trials = [80 * (j + 1) for j in range(5)]
    looks = stats.sequential_rate_boundaries(0.01, trials, [0.1 * (j + 1) for j in range(5)], 0.05)
    assert looks is not None and looks[-1].pass_at_most == 0
    assert stats.min_samples_for_upper(0.01, 1 - stats.bonferroni_alpha(0.95, 10)) == 528


def test_levels_are_the_single_look_equivalents():
    looks = stats.sequential_rate_boundaries(0.02, [100, 250], [0.4, 1.0], 0.05)
    assert looks is not None
    last = looks[-1]
    assert last.pass_level == pytest.approx(
        sum(pmf(k, 250, 0.02) for k in range(last.pass_at_most + 1))
    )
    assert last.fail_level == pytest.approx(
        sum(pmf(k, 250, 0.02) for k in range(last.fail_at_least, 251))
    )


def test_too_much_work_falls_back():
    trials = [4000 * (j + 1) for j in range(10)]
    assert stats.sequential_rate_boundaries(0.5, trials, [0.1 * (j + 1) for j in range(10)],
                                            0.05) is None


@pytest.mark.parametrize(
    "trials, fractions, message",
    [([], [], "one fraction per look"), ([10, 5], [0.5, 1.0], "non-decreasing"),
     ([10], [0.5, 1.0], "one fraction per look")],
)
def test_bad_looks_are_refused(trials, fractions, message):
    with pytest.raises(ValueError, match=message):
        stats.sequential_rate_boundaries(0.01, trials, fractions, 0.05)


# -- verdicts ---------------------------------------------------------------------------------

CTX = Context(0.95, looks=10, mirror_percent=40.0, target_rps=100.0, planned_s=20.0)
ERROR_RATE = Objective("error-rate", upper=0.01)


def looks_of(counts: list[tuple[int, int]], seconds: float = 2.0) -> list[tuple[Window, Window]]:
    """Per-look (dark, live) windows from (dark requests, dark errors) per look."""
    out = []
    for j, (requests, errors) in enumerate(counts):
        start = 100.0 + j * seconds
        dark = Window(start, start + seconds, float(requests), float(errors))
        live = Window(start, start + seconds, requests / 0.4, 0.0)
        out.append((dark, live))
    return out


def cumulative(intervals: list[tuple[Window, Window]]) -> tuple[Window, Window]:
    def total(windows: list[Window]) -> Window:
        return Window(windows[0].start, windows[-1].end, sum(w.requests or 0 for w in windows),
                      sum(w.errors or 0 for w in windows))

    return total([d for d, _ in intervals]), total([lv for _, lv in intervals])


def verdict(
    counts: list[tuple[int, int]], ctx: Context = CTX, final: bool = False, seconds: float = 2.0
):
    intervals = looks_of(counts, seconds)
    return judge(ERROR_RATE, cumulative(intervals), intervals, ctx, final)


def test_a_clean_dark_passes_where_bonferroni_is_still_undecided():
    counts = [(80, 0)] * 5  # 400 requests in 10 of 20 planned seconds
    sequential = verdict(counts)
    bonferroni = verdict(counts, Context(0.95, 10, 40.0, 100.0))  # no plan: Bonferroni
    assert sequential.outcome == "pass", sequential.reason
    assert "0 errors in 400 requests; sequential test, look 5: passes at <= 0" in sequential.reason
    assert sequential.hi is not None and sequential.hi <= 0.01
    assert (sequential.value, sequential.live_value, sequential.samples) == (0.0, 0.0, 400)
    assert bonferroni.outcome == "undecided"


def test_a_breach_fails_with_the_boundary_in_the_reason():
    v = verdict([(80, 2), (80, 4), (80, 3)])
    assert v.outcome == "fail", v.reason
    assert v.lo is not None and v.lo > 0.01
    assert "9 errors in 240 requests" in v.reason and "fails at >= " in v.reason


def test_undecided_until_the_last_planned_look_then_inconclusive():
    counts = [(80, 1)] * 3
    v = verdict(counts)
    assert v.outcome == "undecided" and "overlaps the bound <= 0.01" in v.reason
    assert verdict(counts, final=True).outcome == "inconclusive"


def test_too_few_requests_says_how_many_a_pass_needs():
    unknown_rate = Context(0.95, looks=10, mirror_percent=40.0, target_rps=None, planned_s=20.0)
    v = verdict([(20, 0)] * 10, unknown_rate, final=True)
    assert v.outcome == "inconclusive"
    assert "cannot pass with 200 requests (at least 299 without errors are needed)" in v.reason
    assert "cannot pass yet" in verdict([(20, 0)] * 3, unknown_rate).reason


def test_the_last_planned_look_spends_everything():
    """Ten looks of 1.5 s: 15 of the 20 planned seconds, but the last planned look spends all
    of the 5%, and 300 clean requests then pass."""
    counts = [(30, 0)] * 10
    unknown_rate = Context(0.95, looks=10, mirror_percent=40.0, target_rps=None, planned_s=20.0)
    v = verdict(counts, unknown_rate, final=True, seconds=1.5)
    trials = [30 * (j + 1) for j in range(10)]
    early = [0.075 * (j + 1) for j in range(9)]
    spend_all = stats.sequential_rate_boundaries(0.01, trials, [*early, 1.0], 0.05)
    spend_share = stats.sequential_rate_boundaries(0.01, trials, [*early, 0.75], 0.05)
    assert spend_all is not None and spend_share is not None
    assert v.outcome == "pass", v.reason
    assert f"({spend_all[-1].spent * 100:.2f}% of 5% spent)" in v.reason
    assert spend_share[-1].pass_at_most == -1


@pytest.mark.parametrize(
    "objective, ctx",
    [
        (Objective("error-rate", upper=0.01, lower=0.001), CTX),
        (Objective("error-rate", upper=0.0), CTX),
        (ERROR_RATE, Context(0.95, 1, 40.0, 100.0, planned_s=20.0)),  # full duration: one look
    ],
)
def test_other_rate_objectives_keep_bonferroni(objective, ctx):
    intervals = looks_of([(80, 0)] * 5)
    v = judge(objective, cumulative(intervals), intervals, ctx, final=False)
    assert "sequential" not in v.reason


@pytest.mark.parametrize("confidence", [0.5, 0.9999])
def test_the_ends_of_the_confidence_range_give_verdicts(confidence):
    ctx = Context(confidence, looks=10, mirror_percent=40.0, target_rps=100.0, planned_s=20.0)
    clean, breach = verdict([(80, 0)] * 3, ctx), verdict([(80, 8)] * 3, ctx)
    assert clean.outcome in ("pass", "undecided") and breach.outcome == "fail"
    assert clean.lo is not None and clean.hi is not None and 0 <= clean.lo <= clean.hi <= 1
    assert (clean.outcome == "pass") == (confidence == 0.5)


def test_wrong_passes_stay_within_the_budget_at_the_bound():
    """Simulated runs with dark exactly at the 1% bound, random dark counts per look (the
    mirror's sampling): the share ever judged ``pass`` at any look stays within 5%."""
    rng = random.Random(7)
    runs, wrong = 300, 0
    for _ in range(runs):
        counts: list[tuple[int, int]] = []
        for _look in range(10):
            requests = sum(rng.random() < 0.4 for _ in range(200))  # 100 live requests/s
            counts.append((requests, sum(rng.random() < 0.01 for _ in range(requests))))
            if verdict(counts, final=len(counts) == 10).outcome == "pass":
                wrong += 1
                break
    # 5% of 300 is 15; three standard deviations above it is 26 (600 runs gave 21, 3.5%).
    assert wrong <= 26, wrong


# -- percentiles: the count of observations above the bound is a rate -------------------------

EDGES = (10.0, 25.0, 50.0, 100.0, 250.0, math.inf)
P95 = Objective("95th-percentile-tail-latency", upper=100)


def latency_window(start: float, fast: int, slow: int, slow_ms: float = 150.0) -> Window:
    """2 s of dark traffic: ``fast`` observations at 8 ms, ``slow`` at ``slow_ms``."""
    n = fast + slow
    buckets = tuple((le, fast * (8 <= le) + slow * (slow_ms <= le)) for le in EDGES)
    return Window(start, start + 2.0, float(n), 0.0, 8.0 * fast + slow_ms * slow, float(n),
                  buckets)


def latency_verdict(looks: list[tuple[int, int]], objective: Objective = P95, final=False,
                    ctx: Context = CTX, slow_ms: float = 150.0):
    intervals = []
    for j, (fast, slow) in enumerate(looks):
        dark = latency_window(100.0 + 2 * j, fast, slow, slow_ms)
        intervals.append((dark, latency_window(100.0 + 2 * j, int((fast + slow) / 0.4), 0)))
    darks = [d for d, _ in intervals]
    buckets = tuple((le, sum(dict(d.buckets)[le] for d in darks)) for le in EDGES)
    n = sum(d.latency_count or 0 for d in darks)
    dark = Window(100.0, darks[-1].end, n, 0.0, sum(d.latency_sum or 0 for d in darks), n,
                  buckets)
    live = Window(100.0, darks[-1].end, n / 0.4, 0.0, 8.0 * n / 0.4, n / 0.4,
                  tuple((le, n / 0.4) for le in EDGES))
    return judge(objective, (dark, live), intervals, ctx, final)


def test_count_above_brackets_a_bound_inside_a_bucket():
    buckets = [(10.0, 5.0), (100.0, 90.0), (math.inf, 100.0)]
    assert stats.count_above(100.0, buckets) == (10.0, 10.0)
    assert stats.count_above(50.0, buckets) == (10.0, 95.0)
    assert stats.count_above(5.0, buckets) == (95.0, 100.0)  # below every edge
    assert stats.count_above(500.0, buckets) == (0.0, 10.0)  # only +Inf above it
    assert stats.count_above(50.0, [(10.0, 5.0), (100.0, 90.0)]) is None  # no +Inf bucket


def test_a_tail_within_the_bound_passes_where_bonferroni_is_still_undecided():
    looks = [(78, 2)] * 5  # 400 observations, 10 (2.5%) above 100 ms
    sequential = latency_verdict(looks)
    bonferroni = latency_verdict(looks, ctx=Context(0.95, 10, 40.0, 100.0))
    assert sequential.outcome == "pass", sequential.reason
    assert "10 of 400 observations above 100 ms; sequential test, look 5" in sequential.reason
    assert bonferroni.outcome == "undecided", bonferroni.reason
    assert sequential.live_value is not None and sequential.live_value < 10


def test_a_heavy_tail_fails():
    v = latency_verdict([(70, 10)] * 3)  # 12.5% above 100 ms
    assert v.outcome == "fail", v.reason
    assert "30 of 240 observations above 100 ms" in v.reason and "fails at >= " in v.reason


def test_a_bound_inside_a_bucket_counts_the_bucket_against_the_pass():
    # The slow observations (150 ms) share the (100, 250] bucket with a bound of 120 ms: they
    # may lie above it, so no pass; and nothing proves they do, so no fail either.
    bound_in_bucket = Objective("95th-percentile-tail-latency", upper=120)
    v = latency_verdict([(70, 10)] * 3, bound_in_bucket)
    assert v.outcome == "undecided" and "0..30 of 240 observations above 120 ms" in v.reason
    assert latency_verdict([(80, 0)] * 3, bound_in_bucket).outcome == "pass"


def test_wrong_percentile_passes_stay_within_the_budget_at_the_bound():
    """Exactly 5% of the observations above the bound: the p95 is the bound itself."""
    rng = random.Random(11)
    runs, wrong = 300, 0
    for _ in range(runs):
        looks: list[tuple[int, int]] = []
        for _look in range(10):
            n = sum(rng.random() < 0.4 for _ in range(200))
            slow = sum(rng.random() < 0.05 for _ in range(n))
            looks.append((n - slow, slow))
            if latency_verdict(looks, final=len(looks) == 10).outcome == "pass":
                wrong += 1
                break
    assert wrong <= 26, wrong


def test_a_bound_inside_a_wide_bucket_says_only_its_edges_are_decidable():
    # Istio's default buckets: a p95 bound of 120 ms lies in (100, 250]; more traffic of the
    # same shape never decides it, and the reason says why.
    bound_in_bucket = Objective("95th-percentile-tail-latency", upper=120)
    v = latency_verdict([(70, 10)] * 10, bound_in_bucket, final=True)
    assert v.outcome == "inconclusive", v.reason
    assert "the bound lies inside the histogram bucket 100..250 ms" in v.reason
    assert "only its edges are decidable" in v.reason
    on_an_edge = latency_verdict([(70, 10)] * 3)
    assert "inside the histogram bucket" not in on_an_edge.reason
