"""Import of Iter8 v2alpha1 Experiments: the seed's experiment, Iter8's defaults, refusals."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_darklaunch.core.config import load_spec, resolve
from pytest_darklaunch.core.iter8 import (
    DEFAULT_INTERVAL_S,
    DEFAULT_ITERATIONS_PER_LOOP,
    DEFAULT_MAX_LOOPS,
    experiment_to_raw,
)
from pytest_darklaunch.core.spec import Objective
from pytest_darklaunch.errors import ConfigError

SEED = Path(__file__).resolve().parents[2] / "examples" / "iter8" / "experiment.yaml"


def seed_doc() -> dict[str, Any]:
    doc = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def import_doc(tmp_path: Path, doc: Any) -> Any:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_spec(experiment_path=str(path))


def refusal(tmp_path: Path, doc: Any) -> ConfigError:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_spec(experiment_path=str(path))
    assert str(info.value).startswith("invalid ")
    assert f"(from {path})" in str(info.value)
    assert "\n" not in str(info.value)
    return info.value


# --- the seed's experiment ---------------------------------------------------------------------


def test_seed_experiment_imports_unchanged() -> None:
    spec = load_spec(experiment_path=str(SEED))
    assert str(spec.target) == "default/sample-app"
    assert spec.objectives == (
        Objective("mean-latency", upper=50.0),
        Objective("95th-percentile-tail-latency", upper=100.0),
        Objective("error-rate", upper=0.01),
    )
    assert [o.label for o in spec.objectives] == [
        "mean-latency <= 50",
        "95th-percentile-tail-latency <= 100",
        "error-rate <= 0.01",
    ]
    assert spec.duration.interval_s == 10.0
    assert spec.duration.iterations == 10
    assert spec.versions.dark.revision == "sample-app-v2"
    assert spec.versions.live.revision == "sample-app-v1"


def test_seed_experiment_raw_mapping_and_fields() -> None:
    raw, fields = experiment_to_raw(seed_doc(), "experiment.yaml")
    assert raw == {
        "target": "default/sample-app",
        "objectives": [
            {"metric": "mean-latency", "upper": 50},
            {"metric": "95th-percentile-tail-latency", "upper": 100},
            {"metric": "error-rate", "upper": "0.01"},
        ],
        "duration": {"interval": 10, "iterations": 10},
        "versions": {"dark": {"revision": "sample-app-v2"}},
    }
    assert fields[("target",)] == "spec.target"
    assert fields[("objectives", "[2]", "upper")] == "spec.criteria.objectives[2].upperLimit"
    assert fields[("duration", "interval")] == "spec.duration.intervalSeconds"
    assert (
        fields[("versions", "dark", "revision")] == "spec.versionInfo.baseline.variables[revision]"
    )


def test_seed_origin_names_the_iter8_fields() -> None:
    r = resolve({"experiment": str(SEED)}, {}, {}, "-", "/nonexistent")
    assert r.origin["target"] == f"spec.target in {SEED}"
    assert r.origin["interval"] == f"spec.duration.intervalSeconds in {SEED}"
    assert r.origin["iterations"] == f"spec.duration.iterationsPerLoop in {SEED}"
    assert r.origin["mirror-percent"] == "default"
    assert r.origin["experiment"] == "--darklaunch-experiment"


# --- Iter8's defaults and loops ----------------------------------------------------------------


def test_iter8_defaults_when_duration_is_absent(tmp_path: Path) -> None:
    assert (DEFAULT_INTERVAL_S, DEFAULT_ITERATIONS_PER_LOOP, DEFAULT_MAX_LOOPS) == (20, 15, 1)
    doc = seed_doc()
    del doc["spec"]["duration"]
    spec = import_doc(tmp_path, doc)
    assert (spec.duration.interval_s, spec.duration.iterations) == (20.0, 15)


def test_iter8_defaults_for_each_missing_duration_field(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["spec"]["duration"] = {"iterationsPerLoop": 4}
    spec = import_doc(tmp_path, doc)
    assert (spec.duration.interval_s, spec.duration.iterations) == (20.0, 4)
    doc["spec"]["duration"] = {"intervalSeconds": 3}
    spec = import_doc(tmp_path, doc)
    assert (spec.duration.interval_s, spec.duration.iterations) == (3.0, 15)


def test_max_loops_multiplies_iterations(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["spec"]["duration"]["maxLoops"] = 3
    spec = import_doc(tmp_path, doc)
    assert spec.duration.iterations == 30
    assert spec.duration.interval_s == 10.0


# --- what else is read -------------------------------------------------------------------------


def test_lower_limit_quantities_and_library_prefix(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["spec"]["criteria"]["objectives"] = [
        {"metric": "iter8-knative/request-count", "lowerLimit": "2k"},
        {"metric": "iter8-knative/error-rate", "upperLimit": "50m"},
        {"metric": "mean-latency", "lowerLimit": 1, "upperLimit": "0.5k"},
    ]
    spec = import_doc(tmp_path, doc)
    assert spec.objectives == (
        Objective("request-count", lower=2000.0),
        Objective("error-rate", upper=pytest.approx(0.05)),  # type: ignore[arg-type]
        Objective("mean-latency", upper=500.0, lower=1.0),
    )


def test_without_revision_variable_the_default_dark_revision_is_used(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["spec"]["versionInfo"]["baseline"]["variables"] = [{"name": "other", "value": "x"}]
    assert import_doc(tmp_path, doc).versions.dark.revision == "sample-app-v2"
    doc["spec"]["versionInfo"]["baseline"]["variables"] = [{"name": "revision", "value": "next"}]
    assert import_doc(tmp_path, doc).versions.dark.revision == "next"


def test_v2alpha2_is_accepted(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["apiVersion"] = "iter8.tools/v2alpha2"
    assert str(import_doc(tmp_path, doc).target) == "default/sample-app"


# --- refusals, each naming the Iter8 field -----------------------------------------------------


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(seed_doc())
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return doc


REFUSALS = [
    (
        "canary",
        _with(("spec", "strategy", "testingPattern"), "Canary"),
        "invalid spec.strategy.testingPattern 'Canary'",
        "Conformance (Canary, A/B and A/B/N",
    ),
    (
        "ab",
        _with(("spec", "strategy", "testingPattern"), "A/B"),
        "invalid spec.strategy.testingPattern 'A/B'",
        "Conformance (Canary, A/B and A/B/N",
    ),
    (
        "abn",
        _with(("spec", "strategy", "testingPattern"), "A/B/N"),
        "invalid spec.strategy.testingPattern 'A/B/N'",
        "Conformance (Canary, A/B and A/B/N",
    ),
    (
        "no-pattern",
        _with(("spec", "strategy"), {}),
        "invalid spec.strategy.testingPattern None",
        "Conformance (Canary, A/B and A/B/N",
    ),
    (
        "rewards",
        _with(
            ("spec", "criteria", "rewards"),
            [{"metric": "conversions", "preferredDirection": "High"}],
        ),
        "invalid spec.criteria.rewards 'present'",
        "no rewards",
    ),
    (
        "candidates",
        _with(("spec", "versionInfo", "candidates"), [{"name": "candidate-1"}]),
        "invalid spec.versionInfo.candidates 'present'",
        "only a baseline",
    ),
    (
        "api-version",
        _with(("apiVersion",), "iter8.tools/v1"),
        "invalid apiVersion 'iter8.tools/v1'",
        "iter8.tools/v2alpha1",
    ),
    ("kind", _with(("kind",), "Metric"), "invalid kind 'Metric'", "Experiment"),
    ("spec-not-mapping", _with(("spec",), 3), "invalid spec 3", "a mapping"),
    (
        "max-loops-zero",
        _with(("spec", "duration", "maxLoops"), 0),
        "invalid spec.duration.maxLoops 0",
        "a whole number, 1 or more",
    ),
    (
        "max-loops-text",
        _with(("spec", "duration", "maxLoops"), "two"),
        "invalid spec.duration.maxLoops 'two'",
        "a whole number",
    ),
    (
        "max-loops-bool",
        _with(("spec", "duration", "maxLoops"), True),
        "invalid spec.duration.maxLoops True",
        "a whole number",
    ),
    (
        "iterations-negative",
        _with(("spec", "duration", "iterationsPerLoop"), -1),
        "invalid spec.duration.iterationsPerLoop -1",
        "a whole number",
    ),
    (
        "interval-zero",
        _with(("spec", "duration", "intervalSeconds"), 0),
        "invalid spec.duration.intervalSeconds 0",
        "positive duration",
    ),
    (
        "quoted-garbage-limit",
        _with(("spec", "criteria", "objectives"), [{"metric": "error-rate", "upperLimit": "lots"}]),
        "invalid spec.criteria.objectives[0].upperLimit 'lots'",
        "a number or a quantity",
    ),
    (
        "lower-above-upper",
        _with(
            ("spec", "criteria", "objectives"),
            [{"metric": "error-rate", "upperLimit": 1, "lowerLimit": 2}],
        ),
        "invalid spec.criteria.objectives[0].upperLimit 1.0",
        "an upper bound >= lower (2)",
    ),
    (
        "unknown-metric",
        _with(
            ("spec", "criteria", "objectives"),
            [{"metric": "iter8-knative/mean-latncy", "upperLimit": 1}],
        ),
        "invalid spec.criteria.objectives[0].metric 'mean-latncy'",
        "did you mean 'mean-latency'?",
    ),
    (
        "objective-not-mapping",
        _with(("spec", "criteria", "objectives"), [42]),
        "invalid spec.criteria.objectives[0] 42",
        "a mapping with metric",
    ),
    (
        "objectives-not-list",
        _with(("spec", "criteria", "objectives"), 5),
        "invalid spec.criteria.objectives 5",
        "a list of",
    ),
    (
        "criteria-not-mapping",
        _with(("spec", "criteria"), [1]),
        "invalid spec.criteria [1]",
        "a mapping with objectives",
    ),
    (
        "duration-not-mapping",
        _with(("spec", "duration"), 10),
        "invalid spec.duration 10",
        "a mapping with intervalSeconds",
    ),
    (
        "bad-target",
        _with(("spec", "target"), "Default/x"),
        "invalid spec.target 'Default/x'",
        "DNS-1123",
    ),
    (
        "bad-revision",
        _with(
            ("spec", "versionInfo", "baseline", "variables"),
            [{"name": "revision", "value": "Sample_V2"}],
        ),
        "invalid spec.versionInfo.baseline.variables[revision] 'Sample_V2'",
        "DNS-1123",
    ),
    ("document-list", [1, 2], "invalid document 'list'", "an Iter8 Experiment mapping"),
]


@pytest.mark.parametrize(
    ("doc", "start", "allowed"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusal_names_the_field(tmp_path: Path, doc: Any, start: str, allowed: str) -> None:
    message = str(refusal(tmp_path, doc))
    assert message.startswith(start + " "), message
    assert allowed in message.split(": expected ", 1)[1], message


def test_missing_target_is_refused(tmp_path: Path) -> None:
    doc = seed_doc()
    del doc["spec"]["target"]
    assert refusal(tmp_path, doc).field == "spec.target"


def test_pattern_refusal_explains_why() -> None:
    doc = _with(("spec", "strategy", "testingPattern"), "Canary")
    with pytest.raises(ConfigError) as info:
        experiment_to_raw(doc, "exp.yaml")
    assert info.value.field == "spec.strategy.testingPattern"
    assert "judges one dark version" in info.value.allowed
