"""build_spec: defaults, and every validation rule with the exact field path and source."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from pytest_darklaunch.core.metrics import is_builtin
from pytest_darklaunch.core.spec import (
    Increase,
    Objective,
    Sources,
    build_spec,
    dotted,
    objective_from_mapping,
    parse_increase,
    parse_target,
)
from pytest_darklaunch.errors import ConfigError

SRC = "conf/darklaunch.yaml"


def build(raw: dict[str, Any], sources: Sources | None = None) -> Any:
    return build_spec(raw, sources or Sources(SRC), known_metric=is_builtin)


def error_of(raw: dict[str, Any], sources: Sources | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(raw, sources)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("invalid ")
    return info.value


def with_target(**rest: Any) -> dict[str, Any]:
    return {"target": "default/sample-app", **rest}


# --- defaults ----------------------------------------------------------------------------------


def test_defaults_of_a_spec_with_only_a_target() -> None:
    spec = build({"target": "shop/cart"})
    assert (spec.target.namespace, spec.target.name, str(spec.target)) == (
        "shop",
        "cart",
        "shop/cart",
    )
    assert spec.versions.live.revision == "cart-v1"
    assert spec.versions.dark.revision == "cart-v2"
    assert (spec.versions.live.role, spec.versions.dark.role) == ("live", "dark")
    assert spec.versions.dark.image is None and spec.versions.dark.command is None
    assert dict(spec.versions.dark.env) == {}
    assert spec.mirror.percent == 40.0
    assert spec.mirror.host == "cart.shop.example.com"
    t = spec.traffic
    assert (t.rate_rps, t.path, t.method, dict(t.headers), t.timeout_s, t.warmup_s) == (
        100.0,
        "/",
        "GET",
        {},
        2.0,
        0.0,
    )
    assert (spec.duration.interval_s, spec.duration.iterations, spec.duration.total_s) == (
        10.0,
        10,
        100.0,
    )
    assert spec.objectives == () and spec.metrics == ()
    assert spec.errors == "5xx"
    assert spec.confidence == 0.95


def test_bare_target_name_means_namespace_default() -> None:
    assert str(build({"target": "sample-app"}).target) == "default/sample-app"


def test_spec_is_frozen() -> None:
    spec = build({"target": "a/b"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.confidence = 0.5  # type: ignore[misc]


def test_full_spec_is_read() -> None:
    spec = build(
        {
            "target": "default/sample-app",
            "versions": {
                "live": {
                    "revision": "blue",
                    "image": "img:blue",
                    "env": {"T_VERSION": "blue", "N": 3},
                },
                "dark": {"revision": "green", "command": "python app.py --port {port}"},
            },
            "mirror": {"percent": "12.5", "host": "customdomain.com"},
            "traffic": {
                "rate": 2,
                "path": "/api?x=1",
                "method": "post",
                "headers": {"X-Id": "7"},
                "timeout": "500ms",
                "warmup": 0,
            },
            "duration": {"interval": "1m", "iterations": "3"},
            "objectives": [
                {"metric": "mean-latency", "upper": 50},
                {"metric": "error-rate", "upper": "10m"},
                {"metric": "p99", "max_increase": "10%", "judge": "interval", "failure_limit": 2},
                {"metric": "my-metric", "lower": 1, "upper": 2},
            ],
            "metrics": [
                {
                    "name": "my-metric",
                    "query": 'sum(x{revision="$revision"}[$window])',
                    "units": "ms",
                }
            ],
            "errors": "4xx+5xx",
            "confidence": 0.99,
        }
    )
    assert spec.versions.live.env == {"T_VERSION": "blue", "N": "3"}
    assert spec.versions.live.image == "img:blue"
    assert spec.versions.dark.command == ("python", "app.py", "--port", "{port}")
    assert spec.mirror.percent == 12.5
    assert spec.traffic.method == "POST" and spec.traffic.warmup_s == 0.0
    assert spec.traffic.timeout_s == 0.5
    assert spec.duration.interval_s == 60.0 and spec.duration.iterations == 3
    assert [o.metric for o in spec.objectives] == ["mean-latency", "error-rate", "p99", "my-metric"]
    assert spec.objectives[1].upper == pytest.approx(0.01)
    assert spec.objectives[2].max_increase == Increase(0.10, True)
    assert spec.objectives[2].failure_limit == 2
    assert spec.metrics[0].units == "ms"
    assert [spec.units_of(m) for m in ("my-metric", "p99", "error-rate")] == ["ms", "ms", ""]
    assert (spec.errors, spec.confidence) == ("4xx+5xx", 0.99)


def test_command_as_argv_list() -> None:
    spec = build(with_target(versions={"dark": {"command": ["app", "--port", "{port}", 1]}}))
    assert spec.versions.dark.command == ("app", "--port", "{port}", "1")


def test_objective_label() -> None:
    assert Objective("mean-latency", upper=50).label == "mean-latency <= 50"
    assert Objective("p99", lower=1, upper=2).label == "1 <= p99 <= 2"
    assert Objective("p99", max_increase=Increase(0.1, True)).label == "p99 (max +10% vs live)"


def test_parse_increase() -> None:
    assert parse_increase("10%") == Increase(0.1, True)
    assert parse_increase(5) == Increase(5.0, False)
    assert str(parse_increase("25%")) == "25%" and str(parse_increase("5")) == "5"
    for bad in ("-5%", -1, "x%", "lots"):
        with pytest.raises(ValueError):
            parse_increase(bad)


@pytest.mark.parametrize("bad", ["a/b/c", "Default/x", "../x", "", "/x", "x/", 5, None, "a b/c"])
def test_parse_target_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_dotted_paths() -> None:
    assert dotted(("objectives", "[2]", "upper")) == "objectives[2].upper"
    assert dotted(("mirror",)) == "mirror"


# --- the source of a value is in the message ---------------------------------------------------


def test_message_names_option_and_source_set_for_the_path() -> None:
    sources = Sources(SRC)
    sources.set(("duration", "interval"), "--darklaunch-interval", "command line")
    err = error_of(with_target(duration={"interval": "5x"}), sources)
    assert str(err) == (
        "invalid --darklaunch-interval '5x' (from command line): "
        "expected a positive duration such as 500ms, 10s or 1m"
    )
    assert (err.field, err.value, err.source) == ("--darklaunch-interval", "5x", "command line")


def test_sub_path_of_a_sourced_key_is_dotted_with_that_source() -> None:
    sources = Sources("defaults")
    sources.set(("mirror",), "mirror", "team.yaml")
    err = error_of(with_target(mirror={"percent": 101}), sources)
    assert str(err).startswith("invalid mirror.percent 101 (from team.yaml)")


# --- every rule: (raw, field in the message, shown value, part of what is allowed) -------------

RULES = [
    # top level
    ({"taget": "a/b"}, "key taget", "'unknown'", "did you mean 'target'?"),
    (with_target(objectivs=[]), "key objectivs", "'unknown'", "did you mean 'objectives'?"),
    (with_target(zzz=1), "key zzz", "'unknown'", "one of target, versions"),
    ({"target": "a/b/c"}, "target", "'a/b/c'", "namespace/name"),
    ({"target": "Default/x"}, "target", "'Default/x'", "DNS-1123"),
    ({"target": "../x"}, "target", "'../x'", "namespace/name"),
    ({"target": ""}, "target", "''", "namespace/name"),
    ({"target": 5}, "target", "5", "namespace/name"),
    ({"target": "a/" + "x" * 64}, "target", "'a/" + "x" * 64 + "'", "namespace/name"),
    # versions
    (with_target(versions=[1]), "versions", "[1]", "a mapping with keys live, dark"),
    (with_target(versions={"drak": {}}), "key versions.drak", "'unknown'", "did you mean 'dark'?"),
    (
        with_target(versions={"dark": {"revison": "x"}}),
        "key versions.dark.revison",
        "'unknown'",
        "did you mean 'revision'?",
    ),
    (
        with_target(versions={"dark": {"revision": "Bad_Rev"}}),
        "versions.dark.revision",
        "'Bad_Rev'",
        "DNS-1123",
    ),
    (with_target(versions={"live": {"revision": ""}}), "versions.live.revision", "''", "DNS-1123"),
    (
        with_target(versions={"dark": {"revision": "sample-app-v1"}}),
        "versions.dark.revision",
        "'sample-app-v1'",
        "a revision other than live's",
    ),
    (with_target(versions={"dark": {"image": ""}}), "versions.dark.image", "''", "container image"),
    (
        with_target(versions={"dark": {"command": "python app.py"}}),
        "versions.dark.command",
        "'python app.py'",
        "containing {port}",
    ),
    (with_target(versions={"dark": {"command": []}}), "versions.dark.command", "[]", "{port}"),
    (
        with_target(versions={"dark": {"command": ["app", {"port": 1}]}}),
        "versions.dark.command",
        "['app', {'port': 1}]",
        "argv list",
    ),
    (
        with_target(versions={"dark": {"command": 'app "{port}'}}),
        "versions.dark.command",
        "'app \"{port}'",
        "{port}",
    ),
    (
        with_target(versions={"dark": {"env": ["A=1"]}}),
        "versions.dark.env",
        "['A=1']",
        "a mapping of names",
    ),
    (
        with_target(versions={"dark": {"env": {"A": [1]}}}),
        "versions.dark.env.A",
        "[1]",
        "a string value",
    ),
    (
        with_target(versions={"dark": {"env": {"A": None}}}),
        "versions.dark.env.A",
        "None",
        "a string value",
    ),
    # mirror
    (with_target(mirror=40), "mirror", "40", "a mapping with keys percent, host"),
    (
        with_target(mirror={"precent": 4}),
        "key mirror.precent",
        "'unknown'",
        "did you mean 'percent'?",
    ),
    (with_target(mirror={"percent": 101}), "mirror.percent", "101", "0..100"),
    (with_target(mirror={"percent": -1}), "mirror.percent", "-1", "0..100"),
    (with_target(mirror={"percent": "lots"}), "mirror.percent", "'lots'", "0..100"),
    (with_target(mirror={"percent": True}), "mirror.percent", "True", "0..100"),
    (with_target(mirror={"host": "Bad Host"}), "mirror.host", "'Bad Host'", "host name"),
    (with_target(mirror={"host": ""}), "mirror.host", "''", "host name"),
    # traffic
    (with_target(traffic={"rte": 1}), "key traffic.rte", "'unknown'", "did you mean 'rate'?"),
    (with_target(traffic={"rate": 0}), "traffic.rate", "0", "0.001..100000"),
    (with_target(traffic={"rate": "fast"}), "traffic.rate", "'fast'", "requests/s"),
    (with_target(traffic={"method": "FETCH"}), "traffic.method", "'FETCH'", "one of GET, HEAD"),
    (with_target(traffic={"method": 3}), "traffic.method", "3", "one of GET"),
    (with_target(traffic={"path": "api"}), "traffic.path", "'api'", "starting with /"),
    (with_target(traffic={"path": "/a b"}), "traffic.path", "'/a b'", "without spaces"),
    (with_target(traffic={"headers": ["a"]}), "traffic.headers", "['a']", "a mapping of names"),
    (
        with_target(traffic={"headers": {"X-A": {"b": 1}}}),
        "traffic.headers.X-A",
        "{'b': 1}",
        "a string value",
    ),
    (with_target(traffic={"headers": {"X A": "1"}}), "traffic.headers.X A", "'X A'", "header name"),
    (
        with_target(traffic={"headers": {"X-A": "a\r\nHost: evil"}}),
        "traffic.headers.X-A",
        "'control character U+000D at offset 1 (value withheld)'",
        "without line breaks",
    ),
    (with_target(traffic={"timeout": "0s"}), "traffic.timeout", "'0s'", "positive duration"),
    (with_target(traffic={"warmup": "-1s"}), "traffic.warmup", "'-1s'", "(or 0)"),
    (
        with_target(traffic={"timeout": "0.5ms"}),
        "traffic.timeout",
        "'0.5ms'",
        "a request timeout of at least 1ms",
    ),
    # duration
    (
        with_target(duration={"intervall": "1s"}),
        "key duration.intervall",
        "'unknown'",
        "did you mean 'interval'?",
    ),
    (with_target(duration={"interval": "0s"}), "duration.interval", "'0s'", "positive duration"),
    (with_target(duration={"interval": "-5s"}), "duration.interval", "'-5s'", "positive duration"),
    (with_target(duration={"interval": -5}), "duration.interval", "-5", "positive duration"),
    (with_target(duration={"interval": "5x"}), "duration.interval", "'5x'", "500ms, 10s or 1m"),
    (with_target(duration={"interval": "50ms"}), "duration.interval", "'50ms'", "at least 100ms"),
    (with_target(duration={"iterations": 0}), "duration.iterations", "0", "1 or more"),
    (with_target(duration={"iterations": -2}), "duration.iterations", "-2", "1 or more"),
    (with_target(duration={"iterations": 2.5}), "duration.iterations", "2.5", "whole number"),
    (with_target(duration={"iterations": "ten"}), "duration.iterations", "'ten'", "whole number"),
    (with_target(duration={"iterations": True}), "duration.iterations", "True", "whole number"),
    # custom metrics
    (
        with_target(metrics={"name": "m"}),
        "metrics",
        "{'name': 'm'}",
        "a list of {name, query, units}",
    ),
    (
        with_target(metrics=[{"name": "m", "qeury": "x"}]),
        "key metrics[0].qeury",
        "'unknown'",
        "did you mean 'query'?",
    ),
    (with_target(metrics=[{"query": "x"}]), "metrics[0].name", "None", "kebab-case"),
    (
        with_target(metrics=[{"name": "My_Metric", "query": "x"}]),
        "metrics[0].name",
        "'My_Metric'",
        "kebab-case",
    ),
    (with_target(metrics=[{"name": "m"}]), "metrics[0].query", "None", "a PromQL template"),
    (
        with_target(metrics=[{"name": "m", "query": 'x{a="$nope"}'}]),
        "metrics[0].query",
        "'x{a=\"$nope\"}'",
        "bad: 'nope'",
    ),
    (
        with_target(metrics=[{"name": "m", "query": "x $"}]),
        "metrics[0].query",
        "'x $'",
        "placeholders are among $version",
    ),
    (
        with_target(metrics=[{"name": "m", "query": "a"}, {"name": "m", "query": "b"}]),
        "metrics",
        "'m'",
        "unique metric names",
    ),
    # objectives
    (
        with_target(objectives={"metric": "p99"}),
        "objectives",
        "{'metric': 'p99'}",
        "a list of {metric, upper, lower}",
    ),
    (
        with_target(objectives=[{"metric": "p99", "uper": 1}]),
        "key objectives[0].uper",
        "'unknown'",
        "did you mean 'upper'?",
    ),
    (with_target(objectives=[{"upper": 1}]), "objectives[0].metric", "None", "a metric name"),
    (
        with_target(objectives=[{"metric": "mean-latncy", "upper": 1}]),
        "objectives[0].metric",
        "'mean-latncy'",
        "did you mean 'mean-latency'?",
    ),
    (
        with_target(objectives=[{"metric": "p100", "upper": 1}]),
        "objectives[0].metric",
        "'p100'",
        "pNN or latency-pNN",
    ),
    (
        with_target(objectives=[{"metric": "p99"}]),
        "objectives[0]",
        "'p99'",
        "at least one of upper, lower or max_increase",
    ),
    (
        with_target(objectives=[{"metric": "p99", "upper": "abc"}]),
        "objectives[0].upper",
        "'abc'",
        "a number or a quantity",
    ),
    (
        with_target(objectives=[{"metric": "p99", "lower": [1]}]),
        "objectives[0].lower",
        "[1]",
        "a number or a quantity",
    ),
    (
        with_target(objectives=[{"metric": "p99", "upper": 5, "lower": 10}]),
        "objectives[0].upper",
        "5.0",
        "an upper bound >= lower (10)",
    ),
    (
        with_target(objectives=[{"metric": "p99", "max_increase": "-5%"}]),
        "objectives[0].max_increase",
        "'-5%'",
        "a relative increase such as 10%",
    ),
    (
        with_target(objectives=[{"metric": "p99", "upper": 1, "judge": "sometimes"}]),
        "objectives[0].judge",
        "'sometimes'",
        "one of experiment, interval",
    ),
    (
        with_target(objectives=[{"metric": "p99", "upper": 1, "failure_limit": 2}]),
        "objectives[0].failure_limit",
        "2",
        "only with judge: interval",
    ),
    (
        with_target(
            objectives=[{"metric": "p99", "upper": 1, "judge": "interval", "failure_limit": -1}]
        ),
        "objectives[0].failure_limit",
        "-1",
        "0 or more",
    ),
    (
        with_target(
            objectives=[{"metric": "p99", "upper": 1, "judge": "interval", "failure_limit": "x"}]
        ),
        "objectives[0].failure_limit",
        "'x'",
        "0 or more",
    ),
    (
        with_target(objectives=[{"metric": "p99", "upper": 1}, {"metric": "bogus", "upper": 1}]),
        "objectives[1].metric",
        "'bogus'",
        "a metric among",
    ),
    # errors, confidence
    (with_target(errors="3xx"), "errors", "'3xx'", "one of 5xx, 4xx+5xx, non-2xx"),
    (with_target(confidence=1.5), "confidence", "1.5", "0.5..0.9999"),
    (with_target(confidence=0.1), "confidence", "0.1", "0.5..0.9999"),
    (with_target(confidence="high"), "confidence", "'high'", "0.5..0.9999"),
]


@pytest.mark.parametrize(("raw", "field", "shown", "allowed"), RULES, ids=[r[1] for r in RULES])
def test_validation_rule(raw: dict[str, Any], field: str, shown: str, allowed: str) -> None:
    err = error_of(raw)
    message = str(err)
    assert message.startswith(f"invalid {field} {shown} (from {SRC}): expected "), message
    assert allowed in message.split(": expected ", 1)[1], message


def test_rules_are_distinct() -> None:
    assert len({(r[1], r[2]) for r in RULES}) == len(RULES)


def test_missing_target() -> None:
    err = error_of({"mirror": {"percent": 1}})
    assert err.field == "target" and "namespace/name" in err.allowed


def test_custom_metric_is_a_known_objective_metric() -> None:
    spec = build(
        with_target(
            metrics=[{"name": "queue-depth", "query": "x"}],
            objectives=[{"metric": "queue-depth", "upper": 3}],
        )
    )
    assert spec.objectives[0].metric == "queue-depth"


def test_unknown_metric_allowed_without_a_catalogue() -> None:
    spec = build_spec(with_target(objectives=[{"metric": "whatever", "upper": 1}]), Sources(SRC))
    assert spec.objectives[0].metric == "whatever"


@pytest.mark.parametrize("metric", ["p50", "latency-p99", "p99.9", "throughput", "error-count"])
def test_builtin_and_percentile_metrics_are_known(metric: str) -> None:
    assert (
        build(with_target(objectives=[{"metric": metric, "upper": 1}])).objectives[0].metric
        == metric
    )


def test_objective_from_mapping_without_reader_names_assert_objective() -> None:
    with pytest.raises(ConfigError, match=re.escape("(from assert_objective)")):
        objective_from_mapping({"upper": "x"}, None, (), "p99")
    assert objective_from_mapping({"lower": "50m"}, None, (), "p99").lower == pytest.approx(0.05)
