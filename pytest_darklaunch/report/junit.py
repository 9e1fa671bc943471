"""``--junitxml`` properties of the objectives a test asserted (``plugin`` adds them to
``item.user_properties``, pytest's ``record_property`` path)."""

from __future__ import annotations

from pytest_darklaunch.core.verdict import Verdict


def _prop(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def junit_properties(verdict: Verdict) -> list[tuple[str, str]]:
    """The ``--junitxml`` properties of one asserted objective (empty string: not set)."""
    obj = verdict.objective
    props = [
        ("darklaunch_metric", obj.metric),
        ("darklaunch_value", _prop(verdict.value)),
        ("darklaunch_upper", _prop(obj.upper)),
        ("darklaunch_lower", _prop(obj.lower)),
        ("darklaunch_outcome", verdict.outcome),
        ("darklaunch_live_value", _prop(verdict.live_value)),
        ("darklaunch_samples", str(verdict.samples)),
        ("darklaunch_reason", verdict.reason),
    ]
    if obj.max_increase is not None:
        props.append(("darklaunch_max_increase", str(obj.max_increase)))
    if obj.route is not None:
        props.append(("darklaunch_route", obj.route))
    return props
