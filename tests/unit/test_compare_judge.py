"""Verdicts on the comparison: mismatch rates by the exact sequential test, paired latency."""

from __future__ import annotations

import json
import random

from pytest_darklaunch.core.compare.latency import PairedLatency
from pytest_darklaunch.core.spec import Increase, Objective
from pytest_darklaunch.core.verdict import FAIL, INCONCLUSIVE, PASS, UNDECIDED, Context
from pytest_darklaunch.core.verdict.paired import Look, judge_mismatch, judge_paired_latency

CTX = Context(confidence=0.95, looks=5, mirror_percent=40, planned_s=50.0)


def looks_of(paired: list[int], mismatches: list[int]) -> list[Look]:
    return [Look(10.0 * (i + 1), 10.0 * (i + 1), n, m, m, 0, PairedLatency())
            for i, (n, m) in enumerate(zip(paired, mismatches, strict=True))]


def test_mismatch_rate_fails_passes_and_waits_like_error_rate() -> None:
    obj = Objective("response-mismatch-rate", upper=0.01)
    failed = judge_mismatch(obj, looks_of([400, 800], [12, 25]), CTX, final=False)
    assert failed.outcome == FAIL and "25 of 800 paired requests" in failed.reason
    assert "sequential test, look 2" in failed.reason
    early = judge_mismatch(obj, looks_of([100], [0]), CTX, final=False)
    assert early.outcome == UNDECIDED
    passed = judge_mismatch(obj, looks_of([400, 800, 1200, 1600, 2000], [0, 0, 1, 1, 2]), CTX,
                            final=True)
    assert passed.outcome == PASS and passed.value == 0.001
    none = judge_mismatch(obj, looks_of([0], [0]), CTX, final=True)
    assert none.outcome == INCONCLUSIVE and "no paired requests" in none.reason


def _latency(shift: float, n: int, seed: int) -> PairedLatency:
    rng = random.Random(seed)
    p = PairedLatency()
    for _ in range(n):
        live = rng.lognormvariate(7.5, 0.4)  # ~1.8 ms, a tail like a real app's
        dark = live * (1 + shift) * rng.uniform(0.9, 1.1)
        p.add_pair(live, dark)
        p.add_entry("live", live)
        p.add_entry("dark", dark * 1.2)  # the unpaired side is biased, as measured
    return p


def test_paired_mean_and_p95_pass_a_a_and_fail_a_regression() -> None:
    for metric in ("mean-latency", "95th-percentile-tail-latency"):
        obj = Objective(metric, max_increase=Increase(0.10, True))
        same = [Look(10, 10, 4000, 0, 0, 0, _latency(0.0, 4000, 1))]
        verdict = judge_paired_latency(obj, same, CTX, final=True)
        assert verdict is not None and verdict.outcome == PASS, verdict
        assert "paired over 4000 requests" in verdict.reason and "unpaired +" in verdict.reason
        slower = [Look(10, 10, 4000, 0, 0, 0, _latency(0.3, 4000, 2))]
        verdict = judge_paired_latency(obj, slower, CTX, final=True)
        assert verdict is not None and verdict.outcome == FAIL, verdict


def test_paired_latency_leaves_other_objectives_alone() -> None:
    look = [Look(10, 10, 100, 0, 0, 0, _latency(0.0, 100, 3))]
    assert judge_paired_latency(Objective("mean-latency", upper=5), look, CTX, True) is None
    assert judge_paired_latency(
        Objective("error-rate", max_increase=Increase(0.1, True)), look, CTX, True) is None
    empty = [Look(10, 10, 0, 0, 0, 0, PairedLatency())]
    assert judge_paired_latency(
        Objective("mean-latency", max_increase=Increase(0.1, True)), empty, CTX, True) is None


def test_looks_survive_json() -> None:
    look = Look(10, 10, 4000, 3, 4, 1, _latency(0.0, 4000, 1))
    back = Look.from_json(json.loads(json.dumps(look.to_json())))
    obj = Objective("95th-percentile-tail-latency", max_increase=Increase(0.10, True))
    a = judge_paired_latency(obj, [look], CTX, True)
    b = judge_paired_latency(obj, [back], CTX, True)
    assert a is not None and b is not None and (a.outcome, a.reason) == (b.outcome, b.reason)
    assert (back.status_mismatches, back.response_mismatches, back.unpaired) == (3, 4, 1)


def _correlated(shift: float, n: int, rng: random.Random) -> PairedLatency:
    """Pairs sharing a per-request factor (the machine's moment), dark's distribution that of
    the baseline scaled by 1 + shift: its p95 is exactly (1 + shift) times the baseline's."""
    p = PairedLatency(baseline="live-2")
    for _ in range(n):
        moment = rng.lognormvariate(0.0, 0.3)
        base = moment * rng.lognormvariate(7.5, 0.35)
        dark = (1 + shift) * moment * rng.lognormvariate(7.5, 0.35)
        p.add_pair(base, dark)
    return p


def test_the_paired_p95_interval_holds_its_level_and_is_narrower_than_order_statistics() -> None:
    # At the boundary (dark's p95 exactly 10% over), "pass" is a wrong verdict: it may happen
    # at most alpha of the time (one-sided 5% per look here, Bonferroni over 5 looks: 1%).
    rng = random.Random(11)
    obj = Objective("95th-percentile-tail-latency", max_increase=Increase(0.10, True))
    wrong = covered = 0
    widths = []
    rounds = 300
    for _ in range(rounds):
        lat = _correlated(0.10, 3000, rng)
        verdict = judge_paired_latency(obj, [Look(10, 10, 3000, 0, 0, 0, lat)], CTX, final=True)
        assert verdict is not None and verdict.lo is not None and verdict.hi is not None
        wrong += verdict.outcome == PASS
        covered += verdict.lo <= 0.10 <= verdict.hi
        widths.append(verdict.hi - verdict.lo)
    assert wrong <= 0.03 * rounds, wrong  # 1% expected: 3 of 300, binomial slack
    assert covered >= 0.95 * rounds, covered  # two-sided 98% expected
    # A/A is decided: the same data pass a 10% bound
    same = judge_paired_latency(obj, [Look(10, 10, 3000, 0, 0, 0, _correlated(0.0, 3000, rng))],
                                CTX, final=True)
    assert same is not None and same.outcome == PASS, same
    # order statistics of each side, combined (the method before): 0.22 on the same data
    assert sorted(widths)[rounds // 2] < 0.16


def test_without_the_joint_histogram_the_interval_is_wider_not_wrong() -> None:
    rng = random.Random(5)
    lat = _correlated(0.0, 3000, rng)
    obj = Objective("95th-percentile-tail-latency", max_increase=Increase(0.10, True))
    paired = judge_paired_latency(obj, [Look(10, 10, 3000, 0, 0, 0, lat)], CTX, final=True)
    lat.joint_full = True
    blind = judge_paired_latency(obj, [Look(10, 10, 3000, 0, 0, 0, lat)], CTX, final=True)
    assert paired is not None and blind is not None
    assert paired.lo is not None and paired.hi is not None
    assert blind.lo is not None and blind.hi is not None
    assert blind.lo < paired.lo and blind.hi > paired.hi
