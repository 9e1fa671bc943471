"""The experiment loop on a canned Prometheus with a fake clock: no sleeps, no network."""

from __future__ import annotations

import json

from pytest_darklaunch.core.experiment import ExperimentData, new_data
from pytest_darklaunch.core.loop import Runner
from pytest_darklaunch.core.spec import Sources, build_spec
from pytest_darklaunch.core.verdict import FAIL, PASS
from tests.unit.fakeprom import LABELS, FakePrometheus, steady

START = 1_700_000_000.0


class FakeTime:
    """A clock and a stop event whose ``wait`` advances the clock instead of sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.waited = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float | None = None) -> bool:
        self.now += seconds or 0.0
        self.waited += seconds or 0.0
        return False

    def is_set(self) -> bool:
        return False


def spec(**duration):
    return build_spec(
        {
            "target": "default/sample-app",
            "traffic": {"rate": 100, "warmup": "1s"},
            "duration": duration or {"interval": "2s", "iterations": 10},
            "objectives": [
                {"metric": "mean-latency", "upper": 50},
                {"metric": "95th-percentile-tail-latency", "upper": 100},
                {"metric": "error-rate", "upper": 0.01},
            ],
        },
        Sources("test"),
    )


def run(prom, the_spec, full_duration=False, on_interval=None):
    clock = FakeTime(START)
    data = new_data(the_spec, "envoy", LABELS, full_duration)
    runner = Runner(
        the_spec,
        data,
        prom,
        the_spec.objectives,
        traffic_started_at=START,
        template_values={},
        stop=clock,
        clock=clock,
        on_interval=on_interval,
    )
    return runner.run(), clock


def test_good_dark_is_decided_early_and_every_window_is_exact():
    prom = FakePrometheus()
    steady(prom, START + 3, 60, live_rps=100, dark_share=0.4, dark_latency=4.0)
    lines = []
    data, clock = run(prom, spec(), on_interval=lambda d, i, v: lines.append((i.index, v)))
    assert data.error == ""
    assert data.stage == "completed" and "decided after" in data.stop_reason
    assert 1 < len(data.intervals) < 10
    assert [v.outcome for v in data.verdicts_for(spec().objectives)] == [PASS, PASS, PASS]
    first = data.intervals[0]
    # The first window starts at a real scrape after the warm-up, and each 2 s interval holds
    # exactly 200 live and 80 dark requests.
    assert first.start == START + 3
    assert all(i.windows["live"].requests == 200 for i in data.intervals)
    assert all(i.windows["dark"].requests == 80 for i in data.intervals)
    assert data.intervals[-1].cumulative["dark"].requests == 80 * len(data.intervals)
    assert len(lines) == len(data.intervals)
    # Every query named an explicit evaluation time inside the run.
    assert all(START <= at <= clock.now for _, at in prom.queries)


def test_full_duration_samples_every_interval():
    prom = FakePrometheus()
    steady(prom, START + 3, 60, live_rps=100, dark_share=0.4, dark_latency=4.0)
    data, _ = run(prom, spec(), full_duration=True)
    assert len(data.intervals) == 10 and data.stop_reason == "all 10 intervals sampled"


def test_a_certain_breach_stops_the_experiment_at_once():
    prom = FakePrometheus()
    steady(prom, START + 3, 60, live_rps=100, dark_share=0.4, dark_latency=250.0)
    data, _ = run(prom, spec())
    outcomes = {v.objective.metric: v.outcome for v in data.verdicts_for(spec().objectives)}
    assert outcomes["mean-latency"] == FAIL and outcomes["95th-percentile-tail-latency"] == FAIL
    assert len(data.intervals) < 10


def test_no_scrape_ever_is_a_metrics_error_not_a_pass():
    data, clock = run(FakePrometheus(), spec())
    assert data.stage == "failed"
    assert "no Prometheus scrape within 30s" in data.error
    assert data.intervals == []
    assert clock.waited < 40  # the deadline ran on the fake clock


def test_result_round_trips_through_json():
    prom = FakePrometheus()
    steady(prom, START + 3, 60, live_rps=100, dark_share=0.4, dark_latency=4.0, dark_error_every=20)
    data, _ = run(prom, spec())
    again = ExperimentData.from_json(json.loads(json.dumps(data.to_json())))
    assert again.to_json() == data.to_json()
    before = [v.outcome for v in data.verdicts_for(spec().objectives)]
    after = [v.outcome for v in again.verdicts_for(spec().objectives)]
    assert before == after and after[2] == FAIL


def test_windows_end_at_real_scrapes_even_when_scrapes_jitter_around_the_schedule():
    # Scrapes land a few ms before or after the nominal boundaries; each window must end at a
    # scrape's own timestamp so its counts belong to its stated span.
    prom = FakePrometheus()
    live = 0
    times = []
    for s in range(40):
        t = START + 3 + s + (0.004 if s % 2 else -0.004)
        times.append(t)
        prom.add("live", t, {"2": float(live)}, [3.0] * live)
        prom.add("dark", t, {"2": float(live * 0.4)}, [4.0] * int(live * 0.4))
        live += 100
    data, _ = run(prom, spec(), full_duration=True)
    assert all(i.end in times for i in data.intervals)
    for i in data.intervals:
        w = i.windows["live"]
        assert w.requests == round((w.end - w.start) * 100, -2)
        assert w.requests > 0
    cumulative = data.intervals[-1].cumulative["live"]
    assert cumulative.requests / cumulative.seconds == __import__("pytest").approx(100, rel=0.01)


def test_zero_baseline_counts_from_the_traffic_start_without_waiting_for_a_scrape():
    # The run's own proxy starts at zero: the first window starts with the traffic, and the
    # first scrape (5 s later) ends it with every request since the start in it.
    prom = FakePrometheus()
    steady(prom, START + 5, 40, live_rps=100, dark_share=0.4, dark_latency=4.0)
    the_spec = build_spec(
        {"target": "default/sample-app", "duration": {"interval": "2s", "iterations": 6}},
        Sources("test"),
    )
    clock = FakeTime(START)
    data = new_data(the_spec, "envoy", LABELS, True)
    # steady() starts its counters at 0 at START + 5: shift so they start at the traffic start.
    runner = Runner(
        the_spec,
        data,
        prom,
        (),
        traffic_started_at=START + 5,
        template_values={},
        stop=clock,
        clock=clock,
        counters_start_at_zero=True,
    )
    data = runner.run()
    first = data.intervals[0]
    assert first.start == START + 5
    assert first.end == START + 7 and first.windows["live"].requests == 200
    assert [i.end - START for i in data.intervals] == [7, 9, 11, 13, 15, 17]


def test_custom_metric_units_reach_the_judge_also_from_the_result_file():
    the_spec = build_spec(
        {
            "target": "default/sample-app",
            "metrics": [{"name": "queue-depth", "query": "sum(queue)", "units": "jobs"}],
            "objectives": [{"metric": "queue-depth", "upper": 5}],
        },
        Sources("test"),
    )
    data = new_data(the_spec, "envoy", LABELS, True)
    again = ExperimentData.from_json(json.loads(json.dumps(data.to_json())))  # an xdist worker
    for d in (data, again):
        assert d.context("queue-depth").units == "jobs" == the_spec.units_of("queue-depth")
        assert d.context("mean-latency").units == ""  # built-in metrics: the judge's own rule


def test_comparison_looks_exclude_the_warm_up_and_decide_mismatch_rates():
    from pytest_darklaunch.core.compare import Comparer, Request, Response, Settings
    from pytest_darklaunch.core.spec import Objective

    prom = FakePrometheus()
    steady(prom, START + 3, 60, live_rps=100, dark_share=0.4, dark_latency=4.0)
    the_spec = spec()
    clock = FakeTime(START)
    comparer = Comparer(Settings(responses="body"))
    state = {"fed": 0}

    def comparison():
        # 40 pairs per second of (fake) time since the traffic started, 5% of them wrong; the
        # warm-up's pairs (before START + 3) must not be counted.
        due = int((clock.now - START) * 40)
        for i in range(state["fed"], due):
            dark = b'{"total": 18}' if i % 20 == 0 else b'{"total": 17}'
            comparer.add(Request(str(i), "GET", "/"), Response(200, body=b'{"total": 17}',
                         duration_us=1000), Response(200, body=dark, duration_us=1000))
        state["fed"] = max(state["fed"], due)
        return comparer.summary()

    data = new_data(the_spec, "envoy", LABELS, False)
    objectives = [Objective("response-mismatch-rate", upper=0.01)]
    Runner(the_spec, data, prom, objectives, traffic_started_at=START, template_values={},
           stop=clock, clock=clock, comparison=comparison).run()
    assert data.comparison_looks and data.comparison_looks[0].paired == 80  # 2 s, not 5 s
    [verdict] = data.verdicts_for(objectives)
    assert verdict.outcome == FAIL and "paired requests whose answers differ" in verdict.reason
    back = ExperimentData.from_json(json.loads(json.dumps(data.to_json())))
    assert [v.reason for v in back.verdicts_for(objectives)] == [verdict.reason]
