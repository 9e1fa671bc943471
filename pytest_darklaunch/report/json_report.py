"""The JSON report (``--darklaunch-report``): its keys are documented in docs/report.md."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.core.redaction import HIDDEN, SENSITIVE, hide_query, hide_sensitive
from pytest_darklaunch.core.routes import window_key
from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.core.traffic.mix import Mix
from pytest_darklaunch.core.verdict import Estimate, Verdict
from pytest_darklaunch.report.assessment import (
    MetricRow,
    comparison_of,
    final_verdicts,
    generator_facts,
    metric_rows,
    mirror_facts,
    redact_url,
    route_mirror_facts,
    run_error,
)

if TYPE_CHECKING:
    from pytest_darklaunch.core.experiment import ExperimentData
    from pytest_darklaunch.session import DarklaunchSession

REPORT_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _estimate_json(e: Estimate) -> dict[str, Any]:
    return {
        "value": e.value,
        "lo": e.lo,
        "hi": e.hi,
        "samples": e.samples,
        "missing": e.missing or None,
    }


def _verdict_json(v: Verdict, spec: Spec) -> dict[str, Any]:
    obj = v.objective
    return {
        "metric": obj.metric,
        "route": obj.route,
        "label": obj.label,
        "outcome": v.outcome,
        "value": v.value,
        "live_value": v.live_value,
        "lo": v.lo,
        "hi": v.hi,
        "upper": obj.upper,
        "lower": obj.lower,
        "max_increase": None if obj.max_increase is None else str(obj.max_increase),
        "judge": obj.judge,
        "reason": v.reason,
        "samples": v.samples,
        "query": v.query,
        "window": list(v.window) if v.window != (0.0, 0.0) else None,
        "units": spec.units_of(obj.metric),
    }


def report_document(
    darklaunch: DarklaunchSession, plots: dict[str, str] | None = None
) -> dict[str, Any]:
    """The JSON report (keys documented in docs/report.md, kept stable)."""
    spec, data, env = darklaunch.spec, darklaunch.data, darklaunch.environment
    verdicts = [_verdict_json(v, spec) for v in final_verdicts(darklaunch)]
    rows = metric_rows(spec, data)
    everything = [r for r in rows if r.route is None]
    settings = darklaunch.resolved.settings
    url = (env.prometheus_url if env else None) or settings.prometheus_url
    gen = generator_facts(spec, data)
    gen.pop("generated")
    document: dict[str, Any] = _clean(
        {
            "version": REPORT_VERSION,
            "run_id": darklaunch.run_id,
            "spec": spec_json(spec),
            "backend": settings.backend,
            "prometheus_url": redact_url(url) if url else None,
            "metric_source": env.metric_source if env else None,
            "started_at": (data.started_at or None) if data else None,
            "finished_at": (data.finished_at or None) if data else None,
            "stage": data.stage if data else "not started",
            "stop_reason": data.stop_reason if data else "",
            "error": run_error(darklaunch) or None,
            "intervals": {
                "completed": len(data.intervals) if data else 0,
                "planned": spec.duration.iterations,
                "interval_s": spec.duration.interval_s,
            },
            "verdicts": verdicts,
            "metrics": _metrics_json(everything),
            "series": _series_json(data, everything, None),
            "mirror": mirror_facts(spec, data),
            "routes": _routes_json(spec, data, rows),
            "generator": gen,
            "plots": plots or {},
            "comparison": _comparison_json(darklaunch),
        }
    )
    return document


def _metrics_json(rows: list[MetricRow]) -> dict[str, Any]:
    return {
        r.metric: {"units": r.units, "dark": _estimate_json(r.dark), "live": _estimate_json(r.live)}
        for r in rows
    }


def _series_json(
    data: ExperimentData | None, rows: list[MetricRow], route: str | None
) -> dict[str, Any]:
    if data is None:  # rows are empty without data
        return {}
    return {
        row.metric: {
            role: [
                {"start": i.start, "end": i.end, "value": e.value, "samples": e.samples}
                for i, e in data.series(row.metric, window_key(role, route))
            ]
            for role in ("dark", "live")
        }
        for row in rows
    }


def _routes_json(
    spec: Spec, data: ExperimentData | None, rows: list[MetricRow]
) -> dict[str, Any]:
    """Per route: what it matches, its metrics, per-interval series and mirror check."""
    mirror = route_mirror_facts(spec, data)
    out = {}
    for route in spec.routes:
        mine = [r for r in rows if r.route == route.name]
        out[route.name] = {
            "matches": route.describe(),
            "metrics": _metrics_json(mine),
            "series": _series_json(data, mine, route.name) if mine else {},
            "mirror": mirror[route.name],
        }
    return out


def _comparison_json(darklaunch: DarklaunchSession) -> dict[str, Any] | None:
    found = comparison_of(darklaunch)
    if found is None:
        return None
    from pytest_darklaunch.core.compare.render import report_section

    summary, settings = found
    return report_section(summary, settings)


def spec_json(spec: Spec) -> dict[str, Any]:
    """The effective spec as JSON, with secret-looking header and env values hidden."""
    import dataclasses

    raw = dataclasses.asdict(spec)
    # Bodies are not written (only their size), nor secret-looking headers or query values.
    raw["traffic"]["mix"] = _mix_json(spec.traffic.mix)
    out: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    out["traffic"]["headers"] = hide_sensitive(out["traffic"].get("headers") or {})
    for role in ("live", "dark"):
        out["versions"][role]["env"] = hide_sensitive(out["versions"][role].get("env") or {})
    return out


MAX_TARGETS = 100


def _mix_json(mix: Mix) -> dict[str, Any]:
    """The mix as the report shows it: the first :data:`MAX_TARGETS` targets, no bodies."""
    targets = [
        {
            "name": t.name,
            "method": t.method,
            "path": hide_query(t.path),
            "weight": t.weight,
            "offset_s": t.offset_s,
            "headers": [[k, HIDDEN if SENSITIVE.search(k) else v] for k, v in t.headers],
            "body_bytes": len(t.body),
        }
        for t in mix.targets[:MAX_TARGETS]
    ]
    return {
        "source": mix.source,
        "timing": mix.timing,
        "speed": mix.speed,
        "count": len(mix.targets),
        "targets": targets,
    }
