"""Every bad input is a usage error: exit code 4, one line naming field, value and source.

The corpus spans command-line options, ``PYTEST_DARKLAUNCH_*`` variables, ``darklaunch_*`` ini
keys (pytest.ini, tox.ini, pyproject.toml), spec files and Iter8 Experiment files. For each case
the run must also leave nothing behind: TMPDIR points at a fresh directory that stays empty
(the experiment's ``darklaunch-*`` work dir is the first thing a started run creates).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SEED = (Path(__file__).resolve().parents[2] / "examples" / "iter8" / "experiment.yaml").read_text(
    encoding="utf-8"
)
SPEC_OK = "target: default/sample-app\n"
CLI = "command line"
ENV = "environment"


@dataclass(frozen=True)
class Case:
    """One bad input: the files and env it needs, the arguments, and the expected error start."""

    id: str
    prefix: str  # "invalid FIELD VALUE (from SOURCE)" - the error line must start with it
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str | bytes], ...] = ()
    dirs: tuple[str, ...] = ()
    also: str = ""  # a further substring the line must hold (a "did you mean", an allowed set)


def cli(
    id: str,
    option: str,
    value: str,
    shown: str = "",
    also: str = "",
    extra: tuple[str, ...] = ("--darklaunch-target", "default/sample-app"),
) -> Case:
    shown = shown or repr(value)
    args = (() if option == "--darklaunch-target" else extra) + (f"{option}={value}",)
    return Case(f"cli-{id}", f"invalid {option} {shown} (from {CLI})", args=args, also=also)


def env(id: str, var: str, value: str, also: str = "", target: bool = True) -> Case:
    pairs = ((var, value),)
    if target and var != "PYTEST_DARKLAUNCH_TARGET":
        pairs += (("PYTEST_DARKLAUNCH_TARGET", "default/sample-app"),)
    return Case(f"env-{id}", f"invalid {var} {value!r} (from {ENV})", env=pairs, also=also)


INI_FORMS = {
    "pytest.ini": ("[pytest]\n", "{key} = {value}\n"),
    "tox.ini": ("[tox]\nenvlist = py\n\n[pytest]\n", "{key} = {value}\n"),
    "pyproject.toml": ("[tool.pytest.ini_options]\n", '{key} = "{value}"\n'),
}


def ini(id: str, filename: str, key: str, value: str, also: str = "") -> Case:
    head, line = INI_FORMS[filename]
    text = head + line.format(key=key, value=value)
    return Case(
        f"ini-{id}",
        f"invalid {key} {value!r} (from {filename})",
        args=("--darklaunch-target", "default/sample-app"),
        files=((filename, text),),
        also=also,
    )


def spec(id: str, text: str, field_: str, shown: str, also: str = "") -> Case:
    return Case(
        f"spec-{id}",
        f"invalid {field_} {shown} (from bad.yaml)",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(("bad.yaml", text),),
        also=also,
    )


def iter8(id: str, text: str, field_: str, shown: str, also: str = "") -> Case:
    return Case(
        f"iter8-{id}",
        f"invalid {field_} {shown} (from exp.yaml)",
        args=("--darklaunch-experiment", "exp.yaml"),
        files=(("exp.yaml", text),),
        also=also,
    )


def seed(old: str, new: str) -> str:
    assert old in SEED, old
    return SEED.replace(old, new, 1)


CASES = [
    # --- command-line options ------------------------------------------------------------------
    cli("target-three-parts", "--darklaunch-target", "a/b/c", also="namespace/name"),
    cli("target-uppercase", "--darklaunch-target", "Default/x", also="DNS-1123"),
    cli("target-dotdot", "--darklaunch-target", "../x"),
    cli("target-empty", "--darklaunch-target", ""),
    cli("target-newline", "--darklaunch-target", "default/sample-app\n"),
    cli("target-too-long", "--darklaunch-target", "default/" + "x" * 64),
    cli("backend", "--darklaunch-backend", "docker", also="one of local, kubernetes"),
    cli("inconclusive", "--darklaunch-inconclusive", "maybe", also="one of fail, skip"),
    cli("provision", "--darklaunch-provision", "some", also="one of all, none"),
    cli("interval-garbage", "--darklaunch-interval", "5x", also="such as 500ms, 10s or 1m"),
    cli("interval-zero", "--darklaunch-interval", "0"),
    cli("interval-negative", "--darklaunch-interval", "-1s"),
    cli("iterations-zero", "--darklaunch-iterations", "0", also="1 or more"),
    cli("iterations-fraction", "--darklaunch-iterations", "2.5"),
    cli("mirror-percent-high", "--darklaunch-mirror-percent", "101", also="0..100"),
    cli("mirror-percent-negative", "--darklaunch-mirror-percent", "-5", also="0..100"),
    cli("rate-zero", "--darklaunch-rate", "0"),
    cli("rate-garbage", "--darklaunch-rate", "fast"),
    cli("confidence", "--darklaunch-confidence", "1.5", also="0.5..0.9999"),
    cli(
        "prometheus-url-no-scheme",
        "--darklaunch-prometheus-url",
        "localhost:9090",
        also="http:// or https://",
    ),
    # credentials come from the environment only: refused at start, the password never shown
    cli(
        "prometheus-url-credentials",
        "--darklaunch-prometheus-url",
        "http://user:pw@host/",
        shown="'http://***@host/'",
        also="PYTEST_DARKLAUNCH_PROMETHEUS_USER",
    ),
    cli(
        "prometheus-url-token-in-query",
        "--darklaunch-prometheus-url",
        "http://host:9090/?token=t0k3n",
        shown="'http://host:9090/?***'",
        also="without '?query'",
    ),
    cli("spec-missing", "--darklaunch-spec", "missing.yaml", also="an existing YAML file"),
    cli("spec-empty", "--darklaunch-spec", "", extra=()),
    cli("experiment-missing", "--darklaunch-experiment", "nope/exp.yaml", extra=()),
    cli("report-blank", "--darklaunch-report", " ", also="non-empty"),
    cli("namespace", "--darklaunch-namespace", "Bad_NS", also="DNS-1123"),
    Case(
        "cli-spec-is-directory",
        f"invalid --darklaunch-spec 'specdir' (from {CLI})",
        args=("--darklaunch-spec", "specdir"),
        dirs=("specdir",),
        also="not a directory",
    ),
    # --- environment -----------------------------------------------------------------------------
    env("keep", "PYTEST_DARKLAUNCH_KEEP", "maybe", also="true or false", target=False),
    env("full-duration", "PYTEST_DARKLAUNCH_FULL_DURATION", "sometimes", target=False),
    env("target", "PYTEST_DARKLAUNCH_TARGET", "A/B"),
    env("target-blank", "PYTEST_DARKLAUNCH_TARGET", " "),
    env("backend", "PYTEST_DARKLAUNCH_BACKEND", "k8s", target=False),
    env("interval", "PYTEST_DARKLAUNCH_INTERVAL", "10x"),
    env("iterations", "PYTEST_DARKLAUNCH_ITERATIONS", "-1"),
    env("mirror-percent", "PYTEST_DARKLAUNCH_MIRROR_PERCENT", "150"),
    env("prometheus-url", "PYTEST_DARKLAUNCH_PROMETHEUS_URL", "prom:9090"),
    env("spec-missing", "PYTEST_DARKLAUNCH_SPEC", "missing.yaml", target=False),
    env("inconclusive", "PYTEST_DARKLAUNCH_INCONCLUSIVE", "pass", target=False),
    env("namespace", "PYTEST_DARKLAUNCH_NAMESPACE", "../etc"),
    # --- ini files -------------------------------------------------------------------------------
    ini("pytest-ini-interval", "pytest.ini", "darklaunch_interval", "5x"),
    ini("pytest-ini-keep", "pytest.ini", "darklaunch_keep", "maybe", also="true or false"),
    ini("pytest-ini-confidence", "pytest.ini", "darklaunch_confidence", "2"),
    ini("tox-ini-backend", "tox.ini", "darklaunch_backend", "docker"),
    ini("tox-ini-rate", "tox.ini", "darklaunch_rate", "-3"),
    ini("tox-ini-prometheus-url", "tox.ini", "darklaunch_prometheus_url", "prometheus:9090"),
    ini("pyproject-mirror-percent", "pyproject.toml", "darklaunch_mirror_percent", "200"),
    ini("pyproject-iterations", "pyproject.toml", "darklaunch_iterations", "0"),
    ini("pyproject-inconclusive", "pyproject.toml", "darklaunch_inconclusive", "ignore"),
    Case(
        "ini-tox-ini-target",
        "invalid darklaunch_target 'a/b/c' (from tox.ini)",
        files=(("tox.ini", "[pytest]\ndarklaunch_target = a/b/c\n"),),
    ),
    # --- spec files ------------------------------------------------------------------------------
    spec(
        "malformed-yaml",
        "target: [default/sample-app\n",
        "YAML",
        "\"expected ',' or ']', but got '<stream end>' at line 2\"",
        also="well-formed YAML",
    ),
    spec(
        "tab-indent",
        SPEC_OK + "mirror:\n\tpercent: 1\n",
        "YAML",
        "\"found character '\\\\t' that cannot start any token at line 3\"",
    ),
    Case(
        "spec-not-utf8",
        f"invalid --darklaunch-spec 'bad.yaml' (from {CLI})",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(("bad.yaml", b"\xff\xfe\x00"),),
        also="UTF-8",
    ),
    spec("document-list", "- a\n- b\n", "document", "'list'"),
    spec(
        "unknown-top-key",
        SPEC_OK + "mirorr: {percent: 3}\n",
        "key mirorr",
        "'unknown'",
        also="(did you mean 'mirror'?)",
    ),
    spec(
        "unknown-nested-key",
        SPEC_OK + "mirror: {percnt: 3}\n",
        "key mirror.percnt",
        "'unknown'",
        also="(did you mean 'percent'?)",
    ),
    spec(
        "unknown-objective-key",
        SPEC_OK + "objectives: [{metric: p99, uper: 5}]\n",
        "key objectives[0].uper",
        "'unknown'",
        also="(did you mean 'upper'?)",
    ),
    spec("mirror-wrong-type", SPEC_OK + "mirror: 40\n", "mirror", "40"),
    spec("percent-above-100", SPEC_OK + "mirror: {percent: 130}\n", "mirror.percent", "130"),
    spec("percent-negative", SPEC_OK + "mirror: {percent: -1}\n", "mirror.percent", "-1"),
    spec("interval-zero", SPEC_OK + "duration: {interval: 0s}\n", "duration.interval", "'0s'"),
    spec(
        "interval-negative", SPEC_OK + "duration: {interval: -5s}\n", "duration.interval", "'-5s'"
    ),
    spec("iterations-zero", SPEC_OK + "duration: {iterations: 0}\n", "duration.iterations", "0"),
    spec(
        "iterations-wrong-type",
        SPEC_OK + "duration: {iterations: [3]}\n",
        "duration.iterations",
        "[3]",
    ),
    spec(
        "upper-below-lower",
        SPEC_OK + "objectives: [{metric: mean-latency, upper: 5, lower: 10}]\n",
        "objectives[0].upper",
        "5.0",
        also="an upper bound >= lower (10)",
    ),
    spec(
        "unknown-metric",
        SPEC_OK + "objectives: [{metric: mean-latncy, upper: 5}]\n",
        "objectives[0].metric",
        "'mean-latncy'",
        also="(did you mean 'mean-latency'?)",
    ),
    spec(
        "objective-without-bound",
        SPEC_OK + "objectives: [{metric: error-rate}]\n",
        "objectives[0]",
        "'error-rate'",
        also="at least one of upper, lower",
    ),
    spec(
        "objective-bound-text",
        SPEC_OK + "objectives: [{metric: p99, upper: fast}]\n",
        "objectives[0].upper",
        "'fast'",
    ),
    spec(
        "objectives-not-list",
        SPEC_OK + "objectives: {metric: p99}\n",
        "objectives",
        "{'metric': 'p99'}",
    ),
    spec("target-three-parts", "target: a/b/c\n", "target", "'a/b/c'"),
    spec("target-uppercase", "target: Default/x\n", "target", "'Default/x'"),
    spec("target-dotdot", "target: ../x\n", "target", "'../x'"),
    spec("target-empty", "target: ''\n", "target", "''"),
    spec("target-missing", "mirror: {percent: 3}\n", "target", "''", also="--darklaunch-target"),
    spec(
        "command-without-port",
        SPEC_OK + "versions: {dark: {command: python app.py}}\n",
        "versions.dark.command",
        "'python app.py'",
        also="{port}",
    ),
    spec(
        "command-empty",
        SPEC_OK + "versions: {dark: {command: []}}\n",
        "versions.dark.command",
        "[]",
    ),
    spec("headers-list", SPEC_OK + "traffic: {headers: [a, b]}\n", "traffic.headers", "['a', 'b']"),
    spec(
        "header-name-space",
        SPEC_OK + "traffic: {headers: {'X A': b}}\n",
        "traffic.headers.X A",
        "'X A'",
    ),
    spec(
        "header-value-newline",
        SPEC_OK + 'traffic: {headers: {X-A: "b\\r\\nHost: evil"}}\n',
        "traffic.headers.X-A",
        "'control character U+000D at offset 1 (value withheld)'",
    ),
    spec(
        "header-value-nested",
        SPEC_OK + "traffic: {headers: {X-A: {b: 1}}}\n",
        "traffic.headers.X-A",
        "{'b': 1}",
    ),
    spec(
        "timeout-sub-millisecond",
        SPEC_OK + "traffic: {timeout: 0.0001}\n",
        "traffic.timeout",
        "0.0001",
        also="at least 1ms",
    ),
    spec("method", SPEC_OK + "traffic: {method: FETCH}\n", "traffic.method", "'FETCH'"),
    spec("path", SPEC_OK + "traffic: {path: noslash}\n", "traffic.path", "'noslash'"),
    spec(
        "revision-not-dns",
        SPEC_OK + "versions: {dark: {revision: Bad_Rev}}\n",
        "versions.dark.revision",
        "'Bad_Rev'",
    ),
    spec(
        "revision-same-as-live",
        SPEC_OK + "versions: {dark: {revision: sample-app-v1}}\n",
        "versions.dark.revision",
        "'sample-app-v1'",
        also="other than live's",
    ),
    spec(
        "env-nested", SPEC_OK + "versions: {live: {env: {A: [1]}}}\n", "versions.live.env.A", "[1]"
    ),
    spec(
        "duplicate-metric",
        SPEC_OK + "metrics: [{name: m, query: x}, {name: m, query: y}]\n",
        "metrics",
        "'m'",
        also="unique metric names",
    ),
    spec(
        "promql-placeholder",
        SPEC_OK + "metrics: [{name: m, query: 'sum(x{a=\"$nope\"})'}]\n",
        "metrics[0].query",
        "'sum(x{a=\"$nope\"})'",
        also="bad: 'nope'",
    ),
    spec(
        "route-unknown",
        SPEC_OK + "routes: {detail: {path: '^/items/[0-9]+$'}}\n"
        "objectives: [{metric: p95, upper: 100, route: detial}]\n",
        "objectives[0].route",
        "'detial'",
        also="a route among GET /, detail",
    ),
    spec(
        "route-regex",
        SPEC_OK + "routes: {detail: {path: '^/items/[0-9+$'}}\n",
        "routes.detail.path",
        "'^/items/[0-9+$'",
        also="RE2",
    ),
    spec(
        "route-method",
        SPEC_OK + "routes: {detail: {methods: [FETCH]}}\n",
        "routes.detail.methods",
        "'FETCH'",
    ),
    spec(
        "route-overlap",
        SPEC_OK + "routes: {any: {path: '^/items/.*$'}, detail: {path: '^/items/[0-9]+$'}}\n",
        "routes.detail",
        "'any method ^/items/[0-9]+$'",
        also="both match GET /items/0",
    ),
    spec("errors", SPEC_OK + "errors: 3xx\n", "errors", "'3xx'"),
    spec("confidence", SPEC_OK + "confidence: 1.5\n", "confidence", "1.5"),
    spec(
        "judge",
        SPEC_OK + "objectives: [{metric: p99, upper: 1, judge: sometimes}]\n",
        "objectives[0].judge",
        "'sometimes'",
    ),
    spec(
        "failure-limit",
        SPEC_OK + "objectives: [{metric: p99, upper: 1, failure_limit: 2}]\n",
        "objectives[0].failure_limit",
        "2",
        also="judge: interval",
    ),
    spec("mirror-host", SPEC_OK + "mirror: {host: 'Bad Host'}\n", "mirror.host", "'Bad Host'"),
    Case(
        "spec-rootdir-default",
        "invalid mirror.percent 300 (from {rootdir}/darklaunch.yaml)",
        files=(("darklaunch.yaml", SPEC_OK + "mirror: {percent: 300}\n"),),
    ),
    # --- Iter8 experiments -----------------------------------------------------------------------
    iter8(
        "canary",
        seed("Conformance", "Canary"),
        "spec.strategy.testingPattern",
        "'Canary'",
        also="Conformance",
    ),
    iter8("ab", seed("Conformance", "A/B"), "spec.strategy.testingPattern", "'A/B'"),
    iter8("abn", seed("Conformance", "A/B/N"), "spec.strategy.testingPattern", "'A/B/N'"),
    iter8(
        "rewards",
        seed(
            "  criteria:\n",
            "  criteria:\n    rewards:\n    - metric: conversions\n"
            "      preferredDirection: High\n",
        ),
        "spec.criteria.rewards",
        "'present'",
    ),
    iter8(
        "candidates",
        seed("  versionInfo:\n", "  versionInfo:\n    candidates:\n    - name: c\n"),
        "spec.versionInfo.candidates",
        "'present'",
    ),
    iter8(
        "api-version",
        seed("iter8.tools/v2alpha1", "iter8.tools/v1"),
        "apiVersion",
        "'iter8.tools/v1'",
    ),
    iter8("kind", seed("kind: Experiment", "kind: Metric"), "kind", "'Metric'"),
    iter8(
        "max-loops-zero",
        seed("iterationsPerLoop: 10", "iterationsPerLoop: 10\n    maxLoops: 0"),
        "spec.duration.maxLoops",
        "0",
    ),
    iter8(
        "max-loops-text",
        seed("iterationsPerLoop: 10", "iterationsPerLoop: 10\n    maxLoops: two"),
        "spec.duration.maxLoops",
        "'two'",
    ),
    iter8(
        "quoted-garbage-limit",
        seed('"0.01"', '"lots"'),
        "spec.criteria.objectives[2].upperLimit",
        "'lots'",
    ),
    iter8(
        "interval-zero",
        seed("intervalSeconds: 10", "intervalSeconds: 0"),
        "spec.duration.intervalSeconds",
        "0",
    ),
    iter8(
        "target",
        seed("target: default/sample-app", "target: Default/x"),
        "spec.target",
        "'Default/x'",
    ),
    iter8(
        "revision",
        seed("value: sample-app-v2", "value: BAD"),
        "spec.versionInfo.baseline.variables[revision]",
        "'BAD'",
    ),
    iter8(
        "unknown-metric",
        seed("metric: mean-latency", "metric: iter8-knative/mean-lat"),
        "spec.criteria.objectives[0].metric",
        "'mean-lat'",
        also="did you mean 'mean-latency'?",
    ),
    iter8(
        "spec-not-mapping",
        "apiVersion: iter8.tools/v2alpha1\nkind: Experiment\nspec: 3\n",
        "spec",
        "3",
    ),
    iter8("document-list", "[1, 2]\n", "document", "'list'"),
    iter8("missing-target", seed("  target: default/sample-app\n", ""), "spec.target", "''"),
    iter8(
        "malformed-yaml",
        seed(
            "  strategy:\n    testingPattern: Conformance\n",
            "  strategy: Conformance\n    testingPattern: x\n",
        ),
        "YAML",
        "'mapping values are not allowed here at line 8'",
    ),
]

# --- traffic mixes, recorded traffic, mirror.methods, traffic.command --------------------------
HAR_OK_ENTRY = '{"request": {"method": "GET", "url": "http://a.example/x"}}'
CASES += [
    spec(
        "target-method",
        SPEC_OK + "traffic: {targets: [{path: /, method: FETCH}]}\n",
        "traffic.targets[0].method",
        "'FETCH'",
        also="one of GET, HEAD, POST",
    ),
    spec(
        "target-path",
        SPEC_OK + "traffic: {targets: [{path: items}]}\n",
        "traffic.targets[0].path",
        "'items'",
        also="a path starting with /",
    ),
    spec(
        "target-weight-zero",
        SPEC_OK + "traffic: {targets: [{path: /a}, {path: /b, weight: 0}]}\n",
        "traffic.targets[1].weight",
        "0",
        also="a number greater than 0",
    ),
    spec(
        "target-weight-text",
        SPEC_OK + "traffic: {targets: [{path: /a, weight: lots}]}\n",
        "traffic.targets[0].weight",
        "'lots'",
    ),
    spec(
        "target-body-and-file",
        SPEC_OK + "traffic: {targets: [{path: /a, body: x, body_file: b.bin}]}\n",
        "traffic.targets[0].body_file",
        "'given with body'",
        also="only one of body or body_file",
    ),
    spec(
        "body-file-missing",
        SPEC_OK + "traffic: {method: PUT, body_file: missing.png}\n",
        "traffic.body_file",
        "'missing.png'",
        also="No such file or directory",
    ),
    spec(
        "targets-file-missing",
        SPEC_OK + "traffic: {targets_file: rec.har}\n",
        "traffic.targets_file",
        "'rec.har'",
        also="No such file or directory",
    ),
    Case(
        "spec-targets-file-unreadable",
        "invalid traffic.targets_file 'dir.har' (from bad.yaml)",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(("bad.yaml", SPEC_OK + "traffic: {targets_file: dir.har}\n"),),
        dirs=("dir.har",),
        also="not a file",
    ),
    Case(
        "spec-har-malformed",
        "invalid JSON 'Expecting value' (from rec.har, line 3 column 13)",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(
            ("bad.yaml", SPEC_OK + "traffic: {targets_file: rec.har}\n"),
            ("rec.har", '{"log": {"entries": [\n' + HAR_OK_ENTRY + ',\n{"request": }]}}'),
        ),
        also="a HAR 1.2 file",
    ),
    Case(
        "spec-jsonl-malformed",
        "invalid JSON 'Expecting value' (from mix.jsonl, line 2 column 10)",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(
            ("bad.yaml", SPEC_OK + "traffic: {targets_file: mix.jsonl}\n"),
            ("mix.jsonl", '{"path": "/"}\n{"path": \n'),
        ),
    ),
    Case(
        "spec-har-entry-without-request",
        "invalid request None (from rec.har, entry 2)",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(
            ("bad.yaml", SPEC_OK + "traffic: {targets_file: rec.har}\n"),
            ("rec.har", '{"log": {"entries": [' + HAR_OK_ENTRY + ', {"time": 3}]}}'),
        ),
        also="an entry with a request",
    ),
    spec(
        "targets-with-path",
        SPEC_OK + "traffic: {path: /x, targets: [{path: /a}]}\n",
        "traffic.path",
        "'/x'",
        also="either path (one target) or targets, not both",
    ),
    spec(
        "targets-with-file",
        SPEC_OK + "traffic: {targets_file: a.har, targets: [{path: /a}]}\n",
        "traffic.targets_file",
        "'a.har'",
        also="either targets or targets_file",
    ),
    Case(
        "spec-recorded-without-times",
        "invalid traffic.timing 'recorded' (from bad.yaml)",
        args=("--darklaunch-spec", "bad.yaml"),
        files=(
            ("bad.yaml", SPEC_OK + "traffic: {targets_file: t.txt, timing: recorded}\n"),
            ("t.txt", "GET /a\n\nPOST /b\n"),
        ),
        also="request 1 of t.txt has no recorded time",
    ),
    spec("speed-zero", SPEC_OK + "traffic: {speed: 0}\n", "traffic.speed", "0"),
    spec("speed-negative", SPEC_OK + "traffic: {speed: -2}\n", "traffic.speed", "-2"),
    spec(
        "mirror-methods",
        SPEC_OK + "mirror: {methods: [GET, FETCH]}\n",
        "mirror.methods[1]",
        "'FETCH'",
        also="all, or a list of methods among GET",
    ),
    Case(
        # A mix reaches the cluster (k6); a command of your own does not (the Job's image runs).
        "spec-command-on-kubernetes",
        "invalid traffic.command ['sh', '-c', 'true'] (from bad.yaml)",
        args=("--darklaunch-spec", "bad.yaml", "--darklaunch-backend", "kubernetes"),
        files=(("bad.yaml", SPEC_OK + "traffic: {command: [sh, -c, 'true']}\n"),),
        also="with --darklaunch-backend kubernetes yet",
    ),
    spec(
        "command-not-found",
        SPEC_OK + "traffic: {command: [no-such-load-tool-4711, run]}\n",
        "traffic.command",
        "'no-such-load-tool-4711'",
        also="not found on PATH",
    ),
]


# What only the kubernetes backend needs of a spec is checked at start too, not at apply time.
CASES += [
    Case(
        "spec-kubernetes-without-image",
        "invalid versions.live.image '' (from bad.yaml)",
        args=("--darklaunch-backend=kubernetes", "--darklaunch-spec", "bad.yaml"),
        files=(("bad.yaml", SPEC_OK),),
        also="a container image for each version with the kubernetes backend",
    ),
    Case(
        "env-kubernetes-dark-without-image",
        "invalid versions.dark.image '' (from bad.yaml)",
        args=("--darklaunch-spec", "bad.yaml"),
        env=(("PYTEST_DARKLAUNCH_BACKEND", "kubernetes"),),
        files=(("bad.yaml", SPEC_OK + "versions: {live: {image: 'app:1'}}\n"),),
        also="(PYTEST_DARKLAUNCH_BACKEND=kubernetes from environment)",
    ),
    Case(
        "spec-kubernetes-revision",
        "invalid versions.dark.revision 'cart-v2' (from bad.yaml)",
        args=("--darklaunch-backend=kubernetes", "--darklaunch-spec", "bad.yaml"),
        files=(
            (
                "bad.yaml",
                SPEC_OK + "versions: {live: {image: 'a:1'}, dark: {image: 'a:2', "
                "revision: cart-v2}}\n",
            ),
        ),
        also="starting with 'sample-app-'",
    ),
]


def test_corpus_size_and_ids_are_distinct() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.prefix + repr(c.files) + repr(c.env) + repr(c.args) for c in CASES}) == len(CASES)
    kinds = {c.id.split("-", 1)[0] for c in CASES}
    assert kinds == {"cli", "env", "ini", "spec", "iter8"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Also xdist's worker variables: a nested run is no worker (plugins check them).
    for name in list(os.environ):
        if name.startswith(("PYTEST_DARKLAUNCH_", "PYTEST_XDIST_")):
            monkeypatch.delenv(name)


@pytest.fixture
def fresh_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TMPDIR for the run under test; tempfile caches its directory, so patch that too."""
    path = tmp_path_factory.mktemp("TMPDIR")
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every experiment start (in-process runs) instead of provisioning anything."""
    from pytest_darklaunch.session import DarklaunchSession

    calls: list[str] = []
    monkeypatch.setattr(DarklaunchSession, "start", lambda self: calls.append(self.run_id))
    monkeypatch.setattr("pytest_darklaunch.interrupts.SignalGuard.install", lambda self: None)
    return calls


def check_usage_error(result: pytest.RunResult, prefix: str, also: str) -> str:
    out = result.stdout.str()
    err = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("ERROR: invalid "), line
    assert line.startswith("ERROR: " + prefix), (line, prefix)
    assert ": expected " in line, line
    if also:
        assert also in line, (line, also)
    for text in (out, err):
        assert "Traceback" not in text and "INTERNALERROR" not in text, text
    return line


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_one_line_usage_error(
    case: Case,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    fresh_tmpdir: Path,
    starts: list[str],
) -> None:
    for name, content in case.files:
        target = pytester.path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    for name in case.dirs:
        (pytester.path / name).mkdir()
    for name, value in case.env:
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_any="def test_any(darklaunch):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *case.args)
    prefix = case.prefix.replace("{rootdir}", str(pytester.path))
    check_usage_error(result, prefix, case.also)
    assert starts == []
    assert list(fresh_tmpdir.iterdir()) == []


@pytest.mark.usefixtures("clean_env")
def test_control_the_same_run_with_good_input_does_start(
    pytester: pytest.Pytester,
    starts: list[str],
    fresh_tmpdir: Path,
) -> None:
    """Shows the ``starts`` probe above can fail: valid input reaches the experiment start."""
    pytester.makepyfile(test_any="def test_any():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--darklaunch-target", "a/b")
    assert result.ret == pytest.ExitCode.OK
    assert len(starts) == 1


SUBPROCESS = [
    c
    for c in CASES
    if c.id
    in (
        "cli-interval-garbage",
        "env-keep",
        "ini-tox-ini-backend",
        "spec-unknown-top-key",
        "iter8-canary",
        "cli-prometheus-url-credentials",
        "spec-kubernetes-without-image",
    )
]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("case", SUBPROCESS, ids=[c.id for c in SUBPROCESS])
def test_bad_input_in_a_real_pytest_process(
    case: Case,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    fresh_tmpdir: Path,
) -> None:
    """The same contract from a separate ``python -m pytest``, as a user's shell sees it."""
    for name, content in case.files:
        (pytester.path / name).write_text(str(content), encoding="utf-8")
    for name, value in case.env:
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_any="def test_any(darklaunch):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *case.args)
    check_usage_error(result, case.prefix, case.also)
    assert list(fresh_tmpdir.iterdir()) == []


@pytest.mark.usefixtures("clean_env")
def test_credentials_in_the_prometheus_url_are_never_shown(
    pytester: pytest.Pytester, fresh_tmpdir: Path
) -> None:
    pytester.makepyfile(test_any="def test_any(darklaunch):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--darklaunch-target=default/sample-app",
        "--darklaunch-prometheus-url=https://alice:s3cr3t-pw@prom.example:9090/",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    shown = result.stdout.str() + result.stderr.str()
    assert "s3cr3t-pw" not in shown and "alice" not in shown
    assert "'https://***@prom.example:9090/'" in shown
    assert list(fresh_tmpdir.iterdir()) == []
