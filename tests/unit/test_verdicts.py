"""Windows, estimates and verdict rules on canned Prometheus data (no I/O, no sleeps)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from pytest_darklaunch.core.metrics import SOURCES
from pytest_darklaunch.core.sampler import Snapshot, Window, window_between
from pytest_darklaunch.core.spec import Increase, Objective
from pytest_darklaunch.core.verdict import Context, estimate, judge

ENVOY = SOURCES["envoy"]
CTX = Context(confidence=0.95, looks=1, mirror_percent=40.0, target_rps=100.0)
BUCKETS = tuple((le, 0.0) for le in (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, math.inf))


def win(requests, errors=0.0, latency_ms=3.0, seconds=10.0, reset=False, end=110.0):
    if requests is None:
        return Window(end - seconds, end)
    buckets = tuple((le, requests if latency_ms <= le else 0.0) for le, _ in BUCKETS)
    return Window(end - seconds, end, requests, errors, latency_ms * requests, requests, buckets,
                  reset)


def test_window_is_the_exact_difference_of_two_snapshots():
    first = Snapshot(100.0, {"2": 40.0}, ((5.0, 30.0), (math.inf, 40.0)), 90.0, 40.0)
    last = Snapshot(110.0, {"2": 440.0}, ((5.0, 420.0), (math.inf, 440.0)), 1290.0, 440.0)
    w = window_between(first, last, "5xx", ENVOY)
    assert (w.requests, w.errors, w.latency_count, w.latency_sum) == (400.0, 0.0, 400.0, 1200.0)
    assert w.buckets == ((5.0, 390.0), (math.inf, 400.0))
    assert not w.reset


def test_a_series_new_in_the_window_counts_from_zero():
    # The 5xx series does not exist at the start: its whole value happened inside the window.
    first = Snapshot(100.0, {"2": 100.0})
    last = Snapshot(110.0, {"2": 190.0, "5": 10.0})
    w = window_between(first, last, "5xx", ENVOY)
    assert (w.requests, w.errors) == (100.0, 10.0)


def test_no_series_at_the_end_is_no_data_not_zero():
    w = window_between(Snapshot(100.0), Snapshot(110.0), "5xx", ENVOY)
    assert w.requests is None
    assert estimate(w, "error-rate", 0.95).value is None
    assert estimate(w, "mean-latency", 0.95).missing


def test_counter_reset_is_flagged_and_makes_the_verdict_inconclusive():
    w = window_between(Snapshot(100.0, {"2": 500.0}), Snapshot(110.0, {"2": 20.0}), "5xx", ENVOY)
    assert w.reset
    v = judge(Objective("error-rate", upper=0.01), (w, win(1000)), [], CTX, final=True)
    assert v.outcome == "inconclusive" and "counter went backwards" in v.reason


@pytest.mark.parametrize("errors, expected", [("5xx", 5.0), ("4xx+5xx", 8.0), ("non-2xx", 9.0)])
def test_error_classes(errors, expected):
    last = Snapshot(110.0, {"2": 91.0, "3": 1.0, "4": 3.0, "5": 5.0})
    assert window_between(Snapshot(100.0), last, errors, ENVOY).errors == expected


def test_good_dark_passes_with_an_interval_inside_the_bound():
    v = judge(Objective("mean-latency", upper=50), (win(400), win(1000)), [], CTX, final=True)
    assert v.outcome == "pass"
    assert v.value == pytest.approx(3.0)
    assert v.hi <= 50


def test_slow_dark_fails_with_the_numbers():
    v = judge(Objective("mean-latency", upper=50), (win(400, latency_ms=60.0), win(1000)), [],
              CTX, final=True)
    assert v.outcome == "fail"
    assert "60" in v.reason and "<= 50" in v.reason


def test_error_rate_needs_enough_requests():
    # 0 errors in 100 requests cannot show an error rate below 1% at 95%: about 300 are needed.
    v = judge(Objective("error-rate", upper=0.01), (win(100), win(250)), [],
              Context(0.95, 1, 40.0, None), final=True)
    assert v.outcome == "inconclusive"
    assert "at least 299 needed" in v.reason
    v = judge(Objective("error-rate", upper=0.01), (win(400), win(1000)), [], CTX, final=True)
    assert v.outcome == "pass"


def test_undecided_is_not_final_before_the_last_interval():
    v = judge(Objective("error-rate", upper=0.01), (win(100), win(250)), [],
              Context(0.95, 1, 40.0, None), final=False)
    assert v.outcome == "undecided" and not v.decided


def test_three_percent_errors_fail():
    v = judge(Objective("error-rate", upper=0.01), (win(1000, errors=30.0), win(2500)), [],
              CTX, final=True)
    assert v.outcome == "fail" and v.value == pytest.approx(0.03)


def test_dark_without_requests_is_inconclusive_never_pass():
    for dark in (win(None), win(0)):
        v = judge(Objective("error-rate", upper=0.01), (dark, win(1000)), [], CTX, final=True)
        assert v.outcome == "inconclusive" and v.reason.startswith("no data")


def test_mirror_share_off_is_inconclusive():
    # 40% configured, 10% delivered: the routing is wrong.
    v = judge(Objective("mean-latency", upper=50), (win(100), win(1000)), [], CTX, final=True)
    assert v.outcome == "inconclusive" and "mirror delivered 10.0%" in v.reason


def test_mirror_share_of_the_mirrored_methods_when_only_some_are():
    # 1000 live requests, 700 of them GETs (the mirrored method): 280 on dark is 40% of those.
    obj = Objective("mean-latency", upper=50)
    v = judge(obj, (win(280), win(1000)), [], CTX, final=True, eligible=win(700))
    assert v.outcome == "pass"
    v = judge(obj, (win(280), win(1000)), [], CTX, final=True)
    assert v.outcome == "inconclusive" and "mirror delivered 28.0% of live's requests" in v.reason
    v = judge(obj, (win(400), win(1000)), [], CTX, final=True, eligible=win(700))
    assert "delivered 57.1% of live's requests of mirrored methods" in v.reason  # writes copied


def test_generator_below_its_rate_is_inconclusive():
    ctx = Context(0.95, 1, 40.0, target_rps=1000.0)
    v = judge(Objective("mean-latency", upper=50), (win(400), win(1000)), [], ctx, final=True)
    assert v.outcome == "inconclusive" and "achieved 100.0 requests/s" in v.reason


def test_percentile_carries_its_bucket_and_is_not_a_confident_pass_inside_it():
    # Every observation in the (5, 10] bucket: p95 could be anywhere in it.
    v = judge(Objective("p95", upper=8), (win(400, latency_ms=7.0), win(1000)), [], CTX,
              final=True)
    assert v.outcome == "inconclusive"
    assert "bucket 5..10" in v.reason
    v = judge(Objective("p95", upper=10), (win(400, latency_ms=7.0), win(1000)), [], CTX,
              final=True)
    assert v.outcome == "pass"


def test_relative_objective_catches_a_slower_dark():
    obj = Objective("mean-latency", max_increase=Increase(0.10, relative=True))
    slow = judge(obj, (win(400, latency_ms=4.0), win(1000, latency_ms=3.0)), [], CTX, True)
    assert slow.outcome == "fail" and slow.live_value == pytest.approx(3.0)
    same = judge(obj, (win(400, latency_ms=3.0), win(1000, latency_ms=3.0)), [], CTX, True)
    assert same.outcome == "pass"


def test_custom_metric_nan_is_no_data():
    w = Window(100.0, 110.0, 400.0, 0.0, custom={"my-metric": float("nan")})
    assert estimate(w, "my-metric", 0.95).value is None
    v = judge(Objective("my-metric", upper=1), (w, win(1000)), [], CTX, final=True)
    assert v.outcome == "inconclusive" and "returned no data" in v.reason


def test_a_custom_metric_s_units_reach_the_message():
    w = Window(100.0, 110.0, 400.0, 0.0, custom={"queue-depth": 7.0})
    obj = Objective("queue-depth", upper=5)
    v = judge(obj, (w, win(1000)), [], replace(CTX, units="jobs"), final=True)
    assert v.outcome == "fail" and v.units == "jobs" and "7 jobs" in v.reason
    assert judge(obj, (w, win(1000)), [], CTX, final=True).units == ""


def test_judge_per_interval_with_a_failure_limit():
    ok, bad = win(40, seconds=1.0), win(40, latency_ms=60.0, seconds=1.0)
    live = win(100, seconds=1.0)
    intervals = [(ok, live), (bad, live), (ok, live)]
    cumulative = (win(120), win(300))
    strict = Objective("mean-latency", upper=50, judge="interval")
    tolerant = Objective("mean-latency", upper=50, judge="interval", failure_limit=1)
    ctx = Context(0.95, 1, 40.0, None)
    assert judge(strict, cumulative, intervals, ctx, final=True).outcome == "fail"
    verdict = judge(tolerant, cumulative, intervals, ctx, final=True)
    assert verdict.outcome == "pass" and "1 of 3 intervals" in verdict.reason
    assert [p.outcome for p in verdict.points] == ["pass", "fail", "pass"]


def test_more_looks_need_more_evidence():
    # The same data: decided with one look, not with a Bonferroni share of 20 looks.
    data = (win(350), win(875))
    one = judge(Objective("error-rate", upper=0.01), data, [], Context(0.95, 1, 40.0, None), True)
    many = judge(Objective("error-rate", upper=0.01), data, [], Context(0.95, 20, 40.0, None), True)
    assert one.outcome == "pass" and many.outcome == "inconclusive"


def test_a_dark_that_answers_nothing_fails_latency_objectives_instead_of_no_data():
    # Every mirrored request timed out (504 from Envoy): no latency observation at all.
    hung = Window(100.0, 110.0, 400.0, 400.0, 0.0, 0.0, (), False, {}, {"504": 400.0})
    for obj in (Objective("mean-latency", upper=50), Objective("p95", upper=100)):
        v = judge(obj, (hung, win(1000)), [], CTX, final=True)
        assert v.outcome == "fail" and "answered none of its 400 requests" in v.reason
    # Requests with no latency and no errors stay "no data": nothing says dark was slow.
    silent = Window(100.0, 110.0, 400.0, 0.0, 0.0, 0.0)
    v = judge(Objective("mean-latency", upper=50), (silent, win(1000)), [], CTX, final=True)
    assert v.outcome == "inconclusive" and v.reason.startswith("no data")
