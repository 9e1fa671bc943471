"""What every output shows of a finished run, computed once from the session: pure functions.

The objective outcomes are the ones the tests saw (:func:`final_verdicts`, built by the same
judge; a run that could not measure makes each objective inconclusive, for the reason
``core.experiment.unavailable_reason`` gives). Also here: the metric rows, the mirror and
generator facts, and the file names of the objectives (what is hidden is ``core.redaction``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.core import stats
from pytest_darklaunch.core.experiment import ExperimentData, unavailable_reason
from pytest_darklaunch.core.metrics import COMPARISON_NAMES
from pytest_darklaunch.core.routes import window_key
from pytest_darklaunch.core.spec import Objective, Spec, objective_ids
from pytest_darklaunch.core.units import format_value
from pytest_darklaunch.core.verdict import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Estimate,
    Verdict,
    bounds_text,
    estimate,
)

if TYPE_CHECKING:
    from pytest_darklaunch.core.compare import Settings, Summary
    from pytest_darklaunch.session import DarklaunchSession

# The metrics assessment always shows these, then custom metrics and other objective metrics.
BUILTIN_ROWS = (
    "request-count",
    "throughput",
    "mean-latency",
    "95th-percentile-tail-latency",
    "p99",
    "error-count",
    "error-rate",
)


def redact_url(url: str) -> str:
    """The URL without ``user:password@`` (imported lazily: ``requests`` is not needed for a
    report header, and inactive runs must stay cheap)."""
    from pytest_darklaunch.core.prometheus import redact_url as prometheus_redact_url

    return prometheus_redact_url(url)


def run_error(darklaunch: DarklaunchSession) -> str:
    """The run's error: provisioning's, else the experiment's (``""`` when none)."""
    data = darklaunch.data
    return darklaunch.error or (data.error if data else "")


def final_verdicts(darklaunch: DarklaunchSession) -> list[Verdict]:
    """One verdict per spec objective, as the tests see them (a failed run is inconclusive)."""
    spec, data = darklaunch.spec, darklaunch.data
    problem = unavailable_reason(darklaunch.error or "", data)
    if problem or data is None:
        return [
            Verdict(o, INCONCLUSIVE, problem, units=spec.units_of(o.metric), error=True)
            for o in spec.objectives
        ]
    return data.verdicts_for(spec.objectives)


def limit_text(obj: Objective, units: str = "") -> str:
    """The objective's bounds, and how they are judged when not on the whole experiment."""
    text = bounds_text(obj, units)
    if obj.judge == "interval":
        text += f" per interval ({obj.failure_limit} may fail)"
    return text


@dataclass(frozen=True)
class MetricRow:
    """One metric on the cumulative window, for dark and live, on all traffic or one route."""

    metric: str
    units: str
    dark: Estimate
    live: Estimate
    route: str | None = None

    @property
    def change(self) -> str:
        """Dark relative to live, ``+12.5%`` (empty without both values or with live at 0)."""
        dark, live = self.dark.value, self.live.value
        if dark is None or live is None or not live:
            return ""
        return f"{100 * (dark - live) / abs(live):+.1f}%"


def metric_rows(spec: Spec, data: ExperimentData | None) -> list[MetricRow]:
    """The built-in metrics, custom metrics and any other objective metric, cumulative."""
    if data is None or not data.intervals:
        return []
    names = list(
        dict.fromkeys(
            [*BUILTIN_ROWS, *(m.name for m in spec.metrics), *(o.metric for o in spec.objectives)]
        )
    )
    # Mismatch rates come from pairs of answers, not from Prometheus: see the comparison.
    names = [n for n in names if n not in COMPARISON_NAMES]
    last = data.intervals[-1].cumulative
    # Under each metric, a row per route the run measured.
    routes = [None, *(r.name for r in spec.routes if window_key("dark", r.name) in last)]
    return [
        MetricRow(
            n,
            spec.units_of(n),
            estimate(last[window_key("dark", route)], n, data.confidence),
            estimate(last[window_key("live", route)], n, data.confidence),
            route,
        )
        for n in names
        for route in routes
    ]


def mirror_facts(
    spec: Spec, data: ExperimentData | None, route: str | None = None
) -> dict[str, Any]:
    """Configured vs observed mirrored share on the cumulative window (of one route)."""
    out: dict[str, Any] = {
        "configured_percent": spec.mirror.percent,
        "observed_percent": None,
        "dark_requests": None,
        "live_requests": None,
        "ok": None,
        "interval_percent": None,
        "methods": list(spec.mirror.methods),
        "live_eligible_requests": None,
    }
    if data is None or not data.intervals:
        return out
    last = data.intervals[-1].cumulative
    if window_key("live", route) not in last:
        return out
    dark_window, live_window = last[window_key("dark", route)], last[window_key("live", route)]
    dark, live = dark_window.requests, live_window.requests
    out.update(dark_requests=dark, live_requests=live)
    if route is None and "eligible" in last and last["eligible"].requests is not None:
        # Only some methods are mirrored: the share is of live's requests of those methods.
        out["live_eligible_requests"] = live = last["eligible"].requests
    if route is not None and live and dark is None:
        # A route's dark cluster without a series: the mirror sent it nothing.
        out["dark_requests"] = dark = 0.0
    if dark is None or not live:
        return out
    ok, lo, hi, observed = stats.mirror_share_check(round(dark), round(live), spec.mirror.percent)
    # As the verdicts do: requests in flight at the window's edges may be counted later on dark
    # (a route's rate is its own share of live's).
    rate = data.target_rps if route is None else live / max(live_window.seconds, 1e-9)
    slack = spec.mirror.percent / 100 * (rate or 0.0) * data.timeout_s
    ok = ok or abs(dark - spec.mirror.percent / 100 * live) <= slack
    out.update(observed_percent=100 * observed, ok=ok, interval_percent=[100 * lo, 100 * hi])
    return out


def route_mirror_facts(spec: Spec, data: ExperimentData | None) -> dict[str, dict[str, Any]]:
    """:func:`mirror_facts` of every route, by name."""
    return {r.name: mirror_facts(spec, data, r.name) for r in spec.routes}


def generator_facts(spec: Spec, data: ExperimentData | None) -> dict[str, Any]:
    """What the generator (or, for a ``traffic.command``, the proxy) counted; per target of a
    mix too. ``target_rps`` is the recorded schedule's rate with ``timing: recorded``."""
    gen = (data.generator if data else None) or {}
    keys = (
        "achieved_rps", "sent", "errors", "late", "lag_p50_ms", "lag_p99_ms", "counted_by",
        "measured_since", "measured_until",
    )
    out = {"target_rps": spec.traffic.planned_rps, **{k: gen.get(k) for k in keys}}
    out["timing"] = "command" if spec.traffic.command else spec.traffic.mix.timing
    out["targets"] = dict(gen.get("targets") or {})
    out["generated"] = data is None or data.target_rps is not None
    return out


def traffic_text(spec: Spec) -> str:
    """``100 requests/s, GET /``; a mix, a recording or a command said as such."""
    t, mix = spec.traffic, spec.traffic.mix
    if t.command:
        return f"{t.rate_rps:g} requests/s asked of traffic.command ({t.command[0]})"
    if mix.single:
        body = f" with a {len(mix.targets[0].body)} B body" if mix.targets[0].body else ""
        return f"{t.rate_rps:g} requests/s, {t.method} {t.path}{body}"
    what = f"{len(mix.targets)} targets" + ("" if mix.source == "targets" else f" of {mix.source}")
    if mix.timing == "recorded":
        return f"{what} at their recorded times / {mix.speed:g} ({t.planned_rps:.4g} requests/s)"
    order = "drawn by weight" if len({x.weight for x in mix.targets}) > 1 else "in turn"
    return f"{t.rate_rps:g} requests/s over {what}, {order}"


def mirrored_of(m: Mapping[str, Any]) -> str:
    """Live's requests a mirror share is of: all, or those of the mirrored methods."""
    if m["live_eligible_requests"] in (None, m["live_requests"]):
        return format_value(m["live_requests"])
    methods = "/".join(m["methods"])
    return (
        f"{format_value(m['live_eligible_requests'])} {methods} "
        f"(of {format_value(m['live_requests'])})"
    )


def mirror_sentence(m: Mapping[str, Any]) -> str:
    """The mirror check of :func:`mirror_facts` in words, as the terminal and pytest-html show
    it: ``configured 40%, observed 38.3% (dark 386 of live 1008 requests; 99.9% interval
    33.3..43.5%): ok``."""
    configured = f"configured {m['configured_percent']:g}%"
    if m["observed_percent"] is None:
        return f"{configured}, observed n/a (no requests)"
    lo, hi = m["interval_percent"]
    verdict = "ok" if m["ok"] else "MISMATCH: the routing is wrong, no other number holds"
    return (
        f"{configured}, observed {m['observed_percent']:.1f}% (dark "
        f"{format_value(m['dark_requests'])} of live {mirrored_of(m)} requests; 99.9% interval "
        f"{lo:.1f}..{hi:.1f}%): {verdict}"
    )


def summary_counts(verdicts: Sequence[Verdict]) -> str:
    """``1 passed, 2 failed`` (or ``no objectives``)."""
    counts = {o: sum(v.outcome == o for v in verdicts) for o in (PASS, FAIL, INCONCLUSIVE)}
    words = {PASS: "passed", FAIL: "failed", INCONCLUSIVE: "inconclusive"}
    return ", ".join(f"{n} {words[o]}" for o, n in counts.items() if n) or "no objectives"


def shown_values(
    v: Verdict, data: ExperimentData | None
) -> tuple[float | None, float | None]:
    """Dark and live values to show for a verdict: its own, else the cumulative ones (an
    inconclusive verdict may carry none, yet what was measured is worth seeing)."""
    if v.value is not None or data is None or not data.intervals:
        return v.value, v.live_value
    last = data.intervals[-1].cumulative
    metric, route = v.objective.metric, v.objective.route
    keys = [window_key(role, route) for role in ("dark", "live")]
    if any(k not in last for k in keys):
        return None, None
    dark, live = (estimate(last[k], metric, data.confidence).value for k in keys)
    return dark, live


def objective_files(spec: Spec) -> list[tuple[str, Objective]]:
    """Each spec objective with its test id, which also names its chart."""
    return list(zip(objective_ids(spec.objectives), spec.objectives, strict=False))


def comparison_of(darklaunch: DarklaunchSession) -> tuple[Summary, Settings] | None:
    """The run's comparison of live's and dark's answers (local backend), or ``None``."""
    data = darklaunch.data
    if data is None or not data.comparison:
        return None
    from pytest_darklaunch.core.compare import Settings, Summary

    return Summary.from_json(data.comparison), darklaunch.spec.compare or Settings()
