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
    spec = _experiment_spec(doc, source)
    raw: dict[str, Any] = {}
    fields: Fields = {}
    _convert_target(spec, source, raw, fields)
    _check_pattern(spec, source)
    _convert_objectives(spec, source, raw, fields)
    _convert_duration(spec, source, raw, fields)
    _convert_version(spec, source, raw, fields)
    return raw, fields


def _experiment_spec(doc: object, source: str) -> Mapping[str, Any]:
    """The ``spec`` of ``doc``, once ``doc`` is an Iter8 Experiment of a version we read."""
    if not isinstance(doc, Mapping):
        raise ConfigError("document", type(doc).__name__, source, "an Iter8 Experiment mapping")
    if doc.get("apiVersion") not in API_VERSIONS:
        raise ConfigError("apiVersion", doc.get("apiVersion"), source, " or ".join(API_VERSIONS))
    if doc.get("kind") != "Experiment":
        raise ConfigError("kind", doc.get("kind"), source, "Experiment")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise ConfigError(
            "spec", spec, source, "a mapping with target, strategy, criteria, duration"
        )
    return spec


def _convert_target(
    spec: Mapping[str, Any], source: str, raw: dict[str, Any], fields: Fields
) -> None:
    if "target" not in spec:
        raise ConfigError("spec.target", "", source, "namespace/name of the Knative service")
    raw["target"] = spec["target"]
    fields[("target",)] = "spec.target"


def _check_pattern(spec: Mapping[str, Any], source: str) -> None:
    strategy = spec.get("strategy") or {}
    pattern = strategy.get("testingPattern") if isinstance(strategy, Mapping) else None
    if pattern != "Conformance":
        raise ConfigError("spec.strategy.testingPattern", pattern, source, PATTERN_HINT)


def _convert_objectives(
    spec: Mapping[str, Any], source: str, raw: dict[str, Any], fields: Fields
) -> None:
    criteria = spec.get("criteria") or {}
    if not isinstance(criteria, Mapping):
        raise ConfigError("spec.criteria", criteria, source, "a mapping with objectives")
    if criteria.get("rewards"):
        raise ConfigError(
            "spec.criteria.rewards",
            "present",
            source,
            "no rewards: a Conformance experiment has none",
        )
    objectives = criteria.get("objectives") or []
    if not isinstance(objectives, list):
        raise ConfigError(
            "spec.criteria.objectives",
            objectives,
            source,
            "a list of {metric, upperLimit, lowerLimit}",
        )
    raw["objectives"] = [_objective(i, item, source, fields) for i, item in enumerate(objectives)]


def _objective(i: int, item: object, source: str, fields: Fields) -> dict[str, Any]:
    """Objective ``i`` in our terms: the bare metric name, ``upper`` and ``lower``."""
    where = f"spec.criteria.objectives[{i}]"
    if not isinstance(item, Mapping) or not isinstance(item.get("metric"), str):
        raise ConfigError(
            where, item, source, "a mapping with metric and upperLimit and/or lowerLimit"
        )
    # Iter8 names library metrics as "iter8-knative/mean-latency"; ours are the bare names.
    entry: dict[str, Any] = {"metric": item["metric"].rsplit("/", 1)[-1]}
    fields[("objectives", f"[{i}]", "metric")] = f"{where}.metric"
    for theirs, ours in (("upperLimit", "upper"), ("lowerLimit", "lower")):
        if theirs in item:
            entry[ours] = item[theirs]
            fields[("objectives", f"[{i}]", ours)] = f"{where}.{theirs}"
    return entry


def _convert_duration(
    spec: Mapping[str, Any], source: str, raw: dict[str, Any], fields: Fields
) -> None:
    duration = spec.get("duration") or {}
    if not isinstance(duration, Mapping):
        raise ConfigError(
            "spec.duration", duration, source, "a mapping with intervalSeconds, iterationsPerLoop"
        )
    interval = duration.get("intervalSeconds", DEFAULT_INTERVAL_S)
    per_loop = duration.get("iterationsPerLoop", DEFAULT_ITERATIONS_PER_LOOP)
    loops = duration.get("maxLoops", DEFAULT_MAX_LOOPS)
    for name, value in (("iterationsPerLoop", per_loop), ("maxLoops", loops)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"spec.duration.{name}", value, source, "a whole number, 1 or more")
    raw["duration"] = {"interval": interval, "iterations": per_loop * loops}
    fields[("duration", "interval")] = "spec.duration.intervalSeconds"
    fields[("duration", "iterations")] = "spec.duration.iterationsPerLoop"


def _convert_version(
    spec: Mapping[str, Any], source: str, raw: dict[str, Any], fields: Fields
) -> None:
    version_info = spec.get("versionInfo") or {}
    if not isinstance(version_info, Mapping):
        return
    if version_info.get("candidates"):
        raise ConfigError(
            "spec.versionInfo.candidates",
            "present",
            source,
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
