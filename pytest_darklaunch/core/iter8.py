"""Import of an Iter8 v2alpha1 ``Experiment`` (testingPattern ``Conformance``) into a spec mapping.

>>> raw, _ = experiment_to_raw({
...     "apiVersion": "iter8.tools/v2alpha1", "kind": "Experiment",
...     "spec": {"target": "default/sample-app", "strategy": {"testingPattern": "Conformance"},
...              "criteria": {"objectives": [{"metric": "error-rate", "upperLimit": "0.01"}]}}},
...     "experiment.yaml")
>>> raw["duration"], raw["objectives"]
({'interval': 20, 'iterations': 15}, [{'metric': 'error-rate', 'upper': '0.01'}])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_darklaunch.errors import ConfigError

API_VERSIONS = ("iter8.tools/v2alpha1", "iter8.tools/v2alpha2")
# Iter8's own defaults when the experiment leaves duration out.
DEFAULT_INTERVAL_S = 20
DEFAULT_ITERATIONS_PER_LOOP = 15
DEFAULT_MAX_LOOPS = 1
PATTERN_HINT = (
    "Conformance (Canary, A/B and A/B/N experiments pick a winner between versions; "
    "pytest-darklaunch judges one dark version against its objectives)"
)

# Raw spec path -> the Iter8 field it came from, for error messages about converted values.
Fields = dict[tuple[str, ...], str]


def experiment_to_raw(doc: object, source: str) -> tuple[dict[str, Any], Fields]:
    """Convert a loaded Iter8 Experiment document into a spec mapping and its field names."""

    def fail(field: str, value: object, allowed: str) -> ConfigError:
        return ConfigError(field, value, source, allowed)

    if not isinstance(doc, Mapping):
        raise fail("document", type(doc).__name__, "an Iter8 Experiment mapping")
    if doc.get("apiVersion") not in API_VERSIONS:
        raise fail("apiVersion", doc.get("apiVersion"), " or ".join(API_VERSIONS))
    if doc.get("kind") != "Experiment":
        raise fail("kind", doc.get("kind"), "Experiment")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise fail("spec", spec, "a mapping with target, strategy, criteria, duration")

    raw: dict[str, Any] = {}
    fields: Fields = {}
    if "target" not in spec:
        raise fail("spec.target", "", "namespace/name of the Knative service")
    raw["target"] = spec["target"]
    fields[("target",)] = "spec.target"

    strategy = spec.get("strategy") or {}
    pattern = strategy.get("testingPattern") if isinstance(strategy, Mapping) else None
    if pattern != "Conformance":
        raise fail("spec.strategy.testingPattern", pattern, PATTERN_HINT)

    criteria = spec.get("criteria") or {}
    if not isinstance(criteria, Mapping):
        raise fail("spec.criteria", criteria, "a mapping with objectives")
    if criteria.get("rewards"):
        raise fail(
            "spec.criteria.rewards", "present", "no rewards: a Conformance experiment has none"
        )
    objectives = criteria.get("objectives") or []
    if not isinstance(objectives, list):
        raise fail(
            "spec.criteria.objectives", objectives, "a list of {metric, upperLimit, lowerLimit}"
        )
    raw_objectives = []
    for i, item in enumerate(objectives):
        where = f"spec.criteria.objectives[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("metric"), str):
            raise fail(where, item, "a mapping with metric and upperLimit and/or lowerLimit")
        # Iter8 names library metrics as "iter8-knative/mean-latency"; ours are the bare names.
        entry: dict[str, Any] = {"metric": item["metric"].rsplit("/", 1)[-1]}
        fields[("objectives", f"[{i}]", "metric")] = f"{where}.metric"
        for theirs, ours in (("upperLimit", "upper"), ("lowerLimit", "lower")):
            if theirs in item:
                entry[ours] = item[theirs]
                fields[("objectives", f"[{i}]", ours)] = f"{where}.{theirs}"
        raw_objectives.append(entry)
    raw["objectives"] = raw_objectives

    duration = spec.get("duration") or {}
    if not isinstance(duration, Mapping):
        raise fail("spec.duration", duration, "a mapping with intervalSeconds, iterationsPerLoop")
    interval = duration.get("intervalSeconds", DEFAULT_INTERVAL_S)
    per_loop = duration.get("iterationsPerLoop", DEFAULT_ITERATIONS_PER_LOOP)
    loops = duration.get("maxLoops", DEFAULT_MAX_LOOPS)
    for name, value in (("iterationsPerLoop", per_loop), ("maxLoops", loops)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(f"spec.duration.{name}", value, "a whole number, 1 or more")
    raw["duration"] = {"interval": interval, "iterations": per_loop * loops}
    fields[("duration", "interval")] = "spec.duration.intervalSeconds"
    fields[("duration", "iterations")] = "spec.duration.iterationsPerLoop"

    version_info = spec.get("versionInfo") or {}
    if isinstance(version_info, Mapping):
        if version_info.get("candidates"):
            raise fail(
                "spec.versionInfo.candidates",
                "present",
                "only a baseline: a Conformance experiment judges one version",
            )
        baseline = version_info.get("baseline") or {}
        variables = baseline.get("variables") if isinstance(baseline, Mapping) else None
        for var in variables or []:
            if isinstance(var, Mapping) and var.get("name") == "revision":
                # The version Iter8 judges is the one we run dark.
                raw["versions"] = {"dark": {"revision": var.get("value")}}
                fields[("versions", "dark", "revision")] = (
                    "spec.versionInfo.baseline.variables[revision]"
                )
    return raw, fields
