"""Statistics behind verdicts: known values, Prometheus' worked examples, seeded coverage checks."""

from __future__ import annotations

import bisect
import math
import random
from statistics import NormalDist

import pytest

from pytest_darklaunch.core.stats import (
    Buckets,
    binomial_interval,
    bonferroni_alpha,
    decide,
    histogram_mean_interval,
    histogram_quantile,
    min_samples_for_upper,
    mirror_share_check,
    quantile_bucket,
    quantile_interval,
)

INF = math.inf
_NORMAL = NormalDist()

# --- binomial bounds ----------------------------------------------------------------------------


def test_clopper_pearson_matches_published_values() -> None:
    # Clopper-Pearson for 10 of 100 at 95%: 0.0490..0.1762 (e.g. R's binom.test).
    lo, hi = binomial_interval(10, 100, 0.95)
    assert lo == pytest.approx(0.04900, abs=1e-5)
    assert hi == pytest.approx(0.17622, abs=1e-5)


def test_each_end_errs_at_most_alpha_half_even_for_a_few_errors() -> None:
    # Exactly: P(X >= k | p = lo) = alpha/2 and P(X <= k | p = hi) = alpha/2.
    from math import comb

    def cdf(k: int, n: int, p: float) -> float:
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    for k, n in ((6, 190), (3, 50), (30, 1000)):
        lo, hi = binomial_interval(k, n, 0.99)
        assert 1 - cdf(k - 1, n, lo) == pytest.approx(0.005, rel=1e-6)
        assert cdf(k, n, hi) == pytest.approx(0.005, rel=1e-6)
    # A true 1% yields 6 errors in 190 requests 1.3% of the time: no breach at 99.5% per side.
    assert binomial_interval(6, 190, 0.99)[0] < 0.01


def test_zero_events_use_the_exact_bound_and_follow_the_rule_of_three() -> None:
    for n in (300, 1000, 5000):
        lo, hi = binomial_interval(0, n, 0.90)  # each end one-sided at 95%
        assert lo == 0.0
        assert hi == pytest.approx(1 - 0.05 ** (1 / n))
        assert hi == pytest.approx(3 / n, rel=0.01)
    assert binomial_interval(0, 300, 0.95)[1] == pytest.approx(1 - 0.025 ** (1 / 300))


def test_all_events_mirror_the_zero_case() -> None:
    lo, hi = binomial_interval(50, 50, 0.95)
    assert hi == 1.0
    assert lo == pytest.approx(1 - binomial_interval(0, 50, 0.95)[1])


def test_interval_grows_with_k_and_contains_the_observed_share() -> None:
    previous = (0.0, 0.0)
    for k in range(0, 51):
        lo, hi = binomial_interval(k, 50, 0.95)
        assert 0.0 <= lo <= k / 50 <= hi <= 1.0
        assert lo >= previous[0] and hi >= previous[1]
        previous = (lo, hi)


def test_no_trials_tell_nothing_and_bad_input_is_rejected() -> None:
    assert binomial_interval(0, 0, 0.95) == (0.0, 1.0)
    for k, n, confidence in [(3, 2, 0.95), (-1, 2, 0.95), (1, 2, 1.0), (1, 2, 0.0), (1, INF, 0.9)]:
        with pytest.raises(ValueError):
            binomial_interval(k, n, confidence)


def test_min_samples_for_one_percent_at_95_is_299() -> None:
    assert min_samples_for_upper(0.01, 0.95) == 299
    # Consistent with the interval used two-sided at 2c - 1 = 90%.
    assert binomial_interval(0, 299, 0.90)[1] < 0.01 <= binomial_interval(0, 298, 0.90)[1]


@pytest.mark.parametrize("bound, confidence", [(0.001, 0.95), (0.05, 0.99), (0.2, 0.9), (0.5, 0.5)])
def test_min_samples_is_the_smallest_sufficient_n(bound: float, confidence: float) -> None:
    n = min_samples_for_upper(bound, confidence)
    alpha = 1 - confidence
    assert 1 - alpha ** (1 / n) < bound
    assert n == 1 or 1 - alpha ** (1 / (n - 1)) >= bound


def test_min_samples_rejects_bounds_outside_zero_one() -> None:
    for bound in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            min_samples_for_upper(bound, 0.95)


# --- mirrored share -----------------------------------------------------------------------------


@pytest.mark.parametrize("dark", [800, 760, 845])
def test_mirror_share_accepts_forty_percent_within_noise(dark: int) -> None:
    ok, lo, hi, observed = mirror_share_check(dark, 2000, 40)
    assert ok
    assert lo <= 0.40 <= hi
    assert observed == dark / 2000


def test_mirror_share_rejects_thirty_percent_when_forty_is_configured() -> None:
    ok, lo, hi, observed = mirror_share_check(600, 2000, 40)
    assert not ok
    assert observed == 0.3
    assert hi < 0.40


def test_mirror_share_false_alarm_rate_is_small_on_true_binomial_draws() -> None:
    rng = random.Random(7)
    accepted = 0
    for _ in range(300):
        dark = sum(rng.random() < 0.4 for _ in range(2000))
        accepted += mirror_share_check(dark, 2000, 40)[0]
    assert accepted >= 297  # 99.9% nominal


def test_mirror_share_edge_cases() -> None:
    ok, lo, hi, observed = mirror_share_check(0, 0, 40)
    assert (ok, lo, hi) == (False, 0.0, 1.0) and math.isnan(observed)
    assert mirror_share_check(0, 500, 0)[0]  # mirroring off, nothing arrived: consistent
    assert not mirror_share_check(5, 500, 0)[0]
    assert mirror_share_check(500, 500, 100)[0]
    assert not mirror_share_check(501, 500, 100)[0]  # dark above live is never right
    with pytest.raises(ValueError):
        mirror_share_check(1, 10, 140)


# --- histogram_quantile: Prometheus' promql/testdata/histograms.test at 50m ---------------------

POSITIVE: Buckets = [(0.1, 50), (0.2, 70), (1.0, 110), (INF, 120)]
NEGATIVE: Buckets = [(-0.2, 10), (-0.1, 20), (0.3, 20), (INF, 30)]


@pytest.mark.parametrize(
    "q, positive, negative",
    [
        (-0.1, -INF, -INF),
        (1.01, INF, INF),
        (0.0, 0.0, -0.2),
        (1.0, 1.0, 0.3),
        (0.2, 0.048, -0.2),
        (0.5, 0.15, -0.15),
        (0.8, 0.72, 0.3),
    ],
)
def test_histogram_quantile_matches_prometheus_examples(
    q: float, positive: float, negative: float
) -> None:
    assert histogram_quantile(q, POSITIVE) == pytest.approx(positive)
    assert histogram_quantile(q, NEGATIVE) == pytest.approx(negative)


def test_histogram_quantile_aggregated_example() -> None:
    # sum(rate(request_duration_seconds_bucket[5m])) by (le), in counts per 5m.
    buckets = [(0.1, 10), (0.2, 19), (INF, 25)]
    assert histogram_quantile(0.3, buckets) == pytest.approx(0.075)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1277777777777778)


def test_histogram_quantile_forces_monotonic_counts_like_prometheus() -> None:
    buckets = [(0.1, 10), (1, 90), (10, 80), (100, 80), (1000, 90), (INF, 90)]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.989875)


def test_histogram_quantile_coalesces_equal_bounds_and_sorts() -> None:
    # le="0.2", "2e-1" and "2.0e-1" are one bucket whose counts Prometheus adds up.
    buckets = [(INF, 4), (0.2, 1), (0.1, 1), (0.2, 1), (0.2, 1)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.2)
    assert histogram_quantile(1, buckets) == pytest.approx(0.2)


def test_histogram_quantile_in_the_inf_bucket_returns_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(100, 90), (250, 95), (INF, 100)]) == 250


def test_histogram_quantile_nan_cases() -> None:
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0), (INF, 0)]))  # no observations
    assert math.isnan(histogram_quantile(0.5, [(INF, 10)]))  # a single bucket
    assert math.isnan(histogram_quantile(0.5, [(0.1, 5), (1.0, 10)]))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, []))
    assert math.isnan(histogram_quantile(math.nan, POSITIVE))


def test_histogram_quantile_ignores_float_noise_like_prometheus() -> None:
    # A relative step below 1e-12 is flattened, so the rank lands in the first bucket.
    buckets = [(1.0, 100.0), (2.0, 100.0 + 1e-11), (INF, 100.0 + 1e-11)]
    assert histogram_quantile(1.0, buckets) == pytest.approx(1.0)


# --- quantile_bucket / quantile_interval --------------------------------------------------------

ENVOY_LIKE: Buckets = [(5, 0), (10, 40), (25, 300), (50, 380), (100, 396), (250, 400), (INF, 400)]


def test_quantile_bucket_brackets_the_prometheus_estimate() -> None:
    for q in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
        lo, hi = quantile_bucket(q, ENVOY_LIKE)
        assert lo <= histogram_quantile(q, ENVOY_LIKE) <= hi
    assert quantile_bucket(0.95, ENVOY_LIKE) == (25.0, 50.0)
    assert quantile_bucket(0.05, ENVOY_LIKE) == (5.0, 10.0)


def test_quantile_bucket_edges() -> None:
    assert quantile_bucket(0.99, [(100, 90), (250, 95), (INF, 100)]) == (250.0, INF)
    assert quantile_bucket(0.1, [(1, 5), (INF, 10)]) == (0.0, 1.0)
    assert quantile_bucket(0.0, NEGATIVE) == (-INF, -0.2)
    lo, hi = quantile_bucket(0.5, [(1, 0), (INF, 0)])
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        quantile_bucket(1.5, ENVOY_LIKE)


def test_quantile_interval_contains_estimate_and_its_bucket() -> None:
    for q in (0.05, 0.5, 0.9, 0.95):
        lo, hi = quantile_interval(q, ENVOY_LIKE, 0.95)
        b_lo, b_hi = quantile_bucket(q, ENVOY_LIKE)
        assert lo <= b_lo <= histogram_quantile(q, ENVOY_LIKE) <= b_hi <= hi


def test_quantile_interval_is_infinite_when_the_tail_is_not_bounded_yet() -> None:
    # p99 of 100 observations: the upper rank exceeds n, so nothing bounds it from above.
    buckets = [(10, 50), (20, 99), (50, 100), (INF, 100)]
    assert quantile_interval(0.99, buckets, 0.95)[1] == INF
    assert quantile_interval(1.0, buckets, 0.95) == (20.0, INF)
    assert quantile_interval(0.0, buckets, 0.95) == (0.0, 10.0)


def test_quantile_interval_empty_is_nan() -> None:
    lo, hi = quantile_interval(0.95, [(10, 0), (INF, 0)], 0.95)
    assert math.isnan(lo) and math.isnan(hi)


def _lognormal_histogram(rng: random.Random, n: int, bounds: list[float]) -> tuple[Buckets, float]:
    values = sorted(rng.lognormvariate(math.log(20.0), 0.5) for _ in range(n))
    cumulative = [(le, float(bisect.bisect_right(values, le))) for le in bounds]
    return [*cumulative, (INF, float(n))], sum(values)


FINE_BOUNDS = [round(1.02**i, 6) for i in range(1, 400)]  # 2% wide buckets


@pytest.mark.parametrize("q, n", [(0.5, 200), (0.95, 400), (0.9, 1000)])
def test_quantile_interval_covers_the_true_quantile(q: float, n: int) -> None:
    rng = random.Random(20240611)
    truth = 20.0 * math.exp(0.5 * _NORMAL.inv_cdf(q))
    trials, covered, widths = 400, 0, []
    for _ in range(trials):
        buckets, _ = _lognormal_histogram(rng, n, FINE_BOUNDS)
        lo, hi = quantile_interval(q, buckets, 0.95)
        covered += lo <= truth <= hi
        widths.append((hi - lo) / truth)
    assert covered / trials >= 0.93
    # Not trivially wide: with 2% buckets the interval is a sampling interval.
    assert sorted(widths)[trials // 2] < 0.35


def test_quantile_interval_with_coarse_buckets_still_covers() -> None:
    rng = random.Random(99)
    truth = 20.0 * math.exp(0.5 * _NORMAL.inv_cdf(0.95))
    envoy_bounds = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000]
    covered = 0
    for _ in range(200):
        buckets, _ = _lognormal_histogram(rng, 300, envoy_bounds)
        lo, hi = quantile_interval(0.95, buckets, 0.95)
        covered += lo <= truth <= hi
    assert covered == 200


# --- mean ---------------------------------------------------------------------------------------


def test_mean_interval_covers_the_true_mean() -> None:
    rng = random.Random(4242)
    truth = 20.0 * math.exp(0.5**2 / 2)
    covered = 0
    for _ in range(300):
        buckets, total = _lognormal_histogram(rng, 300, [5, 10, 25, 50, 100, 250])
        lo, hi = histogram_mean_interval(total, 300, buckets, 0.95)
        covered += lo <= truth <= hi
        assert hi - lo < 10.0  # usable for a 50 ms objective
    assert covered / 300 >= 0.95


def test_mean_interval_widens_with_bucket_width() -> None:
    narrow = histogram_mean_interval(1500, 100, [(14, 0), (16, 100), (INF, 100)], 0.95)
    wide = histogram_mean_interval(1500, 100, [(10, 0), (20, 100), (INF, 100)], 0.95)
    assert narrow[0] <= 15 <= narrow[1] and wide[0] <= 15 <= wide[1]
    assert wide[1] - wide[0] > 4 * (narrow[1] - narrow[0])


def test_mean_interval_accounts_for_an_outlier_in_the_inf_bucket() -> None:
    # 99 requests near 20 ms and one of 10 s: the mean is 119.8 and very uncertain.
    buckets = [(10, 0), (25, 99), (250, 99), (INF, 100)]
    lo, hi = histogram_mean_interval(99 * 20 + 10_000, 100, buckets, 0.95)
    assert lo < 119.8 < hi
    sample_sd = math.sqrt((99 * (20 - 119.8) ** 2 + (10_000 - 119.8) ** 2) / 99)  # about 998
    assert (hi - lo) / 2 >= 1.959964 * sample_sd / math.sqrt(100)


def test_mean_interval_degenerate_inputs() -> None:
    lo, hi = histogram_mean_interval(0, 0, [(10, 0), (INF, 0)], 0.95)
    assert math.isnan(lo) and math.isnan(hi)
    assert histogram_mean_interval(12, 1, [(10, 0), (20, 1), (INF, 1)], 0.95) == (-INF, INF)
    assert histogram_mean_interval(120, 10, [(10, 10)], 0.95) == (-INF, INF)


# --- sequential looks and decisions -------------------------------------------------------------


def test_bonferroni_alpha_splits_the_error_over_looks() -> None:
    assert bonferroni_alpha(0.95, 1) == pytest.approx(0.05)
    assert bonferroni_alpha(0.95, 10) == pytest.approx(0.005)
    for looks in (0, -1, True):
        with pytest.raises(ValueError):
            bonferroni_alpha(0.95, looks)


@pytest.mark.parametrize(
    "lo, hi, upper, lower, expected",
    [
        (10, 40, 50, None, "pass"),
        (10, 50, 50, None, "pass"),  # the bound itself is allowed
        (40, 60, 50, None, "undecided"),
        (50, 60, 50, None, "undecided"),  # the value may still be exactly 50
        (51, 60, 50, None, "fail"),
        (10, 20, None, 5, "pass"),
        (1, 20, None, 5, "undecided"),
        (1, 4, None, 5, "fail"),
        (6, 9, 10, 5, "pass"),
        (4, 9, 10, 5, "undecided"),
        (11, 12, 10, 5, "fail"),
        (1, 2, 10, 5, "fail"),
        (0, INF, 10, None, "undecided"),
        (math.nan, math.nan, 10, None, "undecided"),
    ],
)
def test_decide_truth_table(
    lo: float, hi: float, upper: float | None, lower: float | None, expected: str
) -> None:
    assert decide(lo, hi, upper=upper, lower=lower) == expected


def test_decide_rejects_meaningless_input() -> None:
    with pytest.raises(ValueError):
        decide(1, 2)
    with pytest.raises(ValueError):
        decide(3, 2, upper=5)
    with pytest.raises(ValueError):
        decide(1, 2, upper=1, lower=5)


def test_exact_ranks_bound_a_tail_quantile_with_a_few_hundred_samples():
    # 400 observations, all under 75 ms: the largest bounds p99 at 1 - 0.99**400 = 98.2%,
    # so a p99 <= 500 bound is decidable at 95% (the normal approximation said +Inf).
    buckets = [(70.0, 0.0), (75.0, 400.0), (500.0, 400.0), (math.inf, 400.0)]
    lo, hi = quantile_interval(0.99, buckets, 0.95)
    assert hi == 75.0 and lo == 70.0
    # At 99.9% the same 400 cannot bound it: the upper end stays open.
    assert quantile_interval(0.99, buckets, 0.999)[1] == math.inf


def test_exact_rank_interval_covers_the_true_quantile():
    rng = random.Random(7)
    edges = [float(e) for e in range(1, 200)] + [math.inf]
    covered = 0
    for _ in range(300):
        sample = [rng.expovariate(1 / 20) for _ in range(150)]
        buckets = [(le, float(sum(1 for x in sample if x <= le))) for le in edges]
        lo, hi = quantile_interval(0.95, buckets, 0.95)
        covered += lo <= 20 * math.log(20) <= hi  # true p95 of Exp(mean 20)
    assert covered / 300 >= 0.93
