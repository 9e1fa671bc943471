"""Objectives: from the spec's list, or one at a time from ``assert_objective``'s arguments."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_darklaunch.core.metrics import BUILTIN_NAMES, COMPARISON_NAMES
from pytest_darklaunch.core.spec.model import JUDGE_MODES, Increase, Objective, Route
from pytest_darklaunch.core.spec.reader import Path, Reader, Sources, to_int
from pytest_darklaunch.core.units import (
    parse_quantity,
)

OBJECTIVE_KEYS = ("metric", "upper", "lower", "max_increase", "judge", "failure_limit", "route")


def parse_objectives(
    r: Reader, value: object, custom: set[str], known: Callable[[str], bool] | None
) -> tuple[Objective, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise r.fail(("objectives",), value, "a list of {metric, upper, lower}")
    out: list[Objective] = []
    for i, item in enumerate(value):
        path = ("objectives", f"[{i}]")
        o = r.mapping(item, path, OBJECTIVE_KEYS)
        metric = r.string(o.get("metric"), path + ("metric",), "a metric name such as mean-latency")
        if metric not in custom and known is not None and not known(metric):
            raise r.fail(path + ("metric",), metric, known_metrics_hint(metric, custom))
        objective = objective_from_mapping(o, r, path, metric)
        if metric in COMPARISON_NAMES and metric not in custom:
            _comparison_bounds(r, path, objective)
        out.append(objective)
    return tuple(out)


def _comparison_bounds(r: Reader, path: Path, objective: Objective) -> None:
    """A mismatch rate takes an upper bound in 0..1 only (judged by the exact sequential test
    on paired requests, over the whole experiment)."""
    allowed = "an upper bound in 0..1 only, such as upper: 0.001"
    if objective.upper is None or not 0 <= objective.upper <= 1:
        raise r.fail(path + ("upper",), objective.upper, allowed)
    for key, value in (("lower", objective.lower), ("max_increase", objective.max_increase)):
        if value is not None:
            raise r.fail(path + (key,), str(value), allowed)
    if objective.judge != "experiment":
        raise r.fail(path + ("judge",), objective.judge, "judge: experiment (the default) for "
                     "a mismatch rate")


def known_metrics_hint(metric: str, custom: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    names = list(BUILTIN_NAMES) + list(COMPARISON_NAMES) + sorted(custom)
    near = difflib.get_close_matches(metric, names + ["p95", "p99"], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"a metric among {', '.join(names)}, pNN or latency-pNN, or one under metrics{hint}"


def objective_from_mapping(
    o: Mapping[str, Any], r: Reader | None, path: Path, metric: str
) -> Objective:
    """Bounds, relative bound and judging mode of one objective, validated."""
    r = r or Reader(Sources("assert_objective"))
    upper = lower = None
    if o.get("upper") is not None:
        upper = r.convert(
            o["upper"], path + ("upper",), parse_quantity, "a number or a quantity such as 0.01"
        )
    if o.get("lower") is not None:
        lower = r.convert(
            o["lower"], path + ("lower",), parse_quantity, "a number or a quantity such as 0.01"
        )
    increase = None
    if o.get("max_increase") is not None:
        increase = r.convert(
            o["max_increase"],
            path + ("max_increase",),
            parse_increase,
            "a relative increase such as 10% or an absolute amount such as 5",
        )
    if upper is None and lower is None and increase is None:
        raise r.fail(path, metric, "at least one of upper, lower or max_increase")
    if upper is not None and lower is not None and upper < lower:
        raise r.fail(path + ("upper",), upper, f"an upper bound >= lower ({lower:g})")
    judge = o.get("judge", "experiment")
    if judge not in JUDGE_MODES:
        raise r.fail(path + ("judge",), judge, "one of " + ", ".join(JUDGE_MODES))
    failure_limit = r.convert(
        o.get("failure_limit", 0),
        path + ("failure_limit",),
        to_int,
        "a whole number of tolerated failed intervals, 0 or more",
    )
    if failure_limit < 0:
        raise r.fail(
            path + ("failure_limit",),
            failure_limit,
            "a whole number of tolerated failed intervals, 0 or more",
        )
    if failure_limit and judge != "interval":
        raise r.fail(
            path + ("failure_limit",), failure_limit, "failure_limit only with judge: interval"
        )
    route = o.get("route")
    if route is not None:
        route = r.string(route, path + ("route",), "a route name (under routes:, or a target's)")
    return Objective(metric, upper, lower, increase, str(judge), failure_limit, route)


def parse_increase(value: object) -> Increase:
    """``"10%"`` -> relative 0.10; ``5`` -> absolute 5 in the metric's unit. Never negative."""
    if isinstance(value, str) and value.strip().endswith("%"):
        amount = float(value.strip()[:-1]) / 100
        relative = True
    else:
        amount, relative = parse_quantity(value), False
    if amount < 0:
        raise ValueError(value)
    return Increase(amount, relative)


def objective_ids(objectives: Sequence[Objective]) -> list[str]:
    """Test ids: the metric name (with the route's cluster suffix: ``p95-detail``), numbered
    when several objectives share it (``p95-1``, ``p95-2``). Charts are named after them."""
    names = [
        o.metric if o.route is None else f"{o.metric}-{Route(o.route).slug}" for o in objectives
    ]
    seen: dict[str, int] = {}
    ids = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        ids.append(name if names.count(name) == 1 else f"{name}-{seen[name]}")
    return ids
