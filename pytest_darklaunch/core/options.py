"""The options table: every setting's CLI flag, ini key, environment variable and help.

One row per option; the plugin registers them with pytest and :mod:`core.config` resolves them.
Kept apart from the resolver so the plugin's ``pytest_addoption`` reads a plain table.
"""

from __future__ import annotations

from dataclasses import dataclass

SPEC_FILENAME = "darklaunch.yaml"


@dataclass(frozen=True)
class OptionDef:
    """One setting: ``--darklaunch-NAME``, ini ``darklaunch_NAME``, env ``PYTEST_DARKLAUNCH_*``."""

    name: str
    help: str
    metavar: str = ""
    default: str | None = None
    spec_path: tuple[str, ...] | None = None
    choices: tuple[str, ...] = ()
    flag: bool = False

    @property
    def cli(self) -> str:
        return f"--darklaunch-{self.name}"

    @property
    def ini(self) -> str:
        return "darklaunch_" + self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "PYTEST_DARKLAUNCH_" + self.name.replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return "darklaunch_" + self.name.replace("-", "_")


OPTIONS: tuple[OptionDef, ...] = (
    OptionDef(
        "target",
        "the Knative service under test, namespace/name (spec: target)",
        "NS/NAME",
        spec_path=("target",),
    ),
    OptionDef(
        "backend", "where the experiment runs", "NAME", "local", choices=("local", "kubernetes")
    ),
    OptionDef(
        "spec",
        f"experiment spec file (default: {SPEC_FILENAME} in the rootdir when present)",
        "PATH",
    ),
    OptionDef("experiment", "an Iter8 v2alpha1 Experiment YAML to import (Conformance)", "PATH"),
    OptionDef(
        "interval",
        "length of one sampling interval, e.g. 500ms, 10s, 1m "
        "(spec: duration.interval; default 10s)",
        "DURATION",
        spec_path=("duration", "interval"),
    ),
    OptionDef(
        "iterations",
        "number of intervals (spec: duration.iterations; default 10)",
        "N",
        spec_path=("duration", "iterations"),
    ),
    OptionDef(
        "mirror-percent",
        "share of live requests mirrored to dark, 0..100 (spec: mirror.percent; default 40)",
        "PERCENT",
        spec_path=("mirror", "percent"),
    ),
    OptionDef(
        "rate",
        "traffic in requests/s (spec: traffic.rate; default 100)",
        "RPS",
        spec_path=("traffic", "rate"),
    ),
    OptionDef(
        "confidence",
        "confidence of every verdict (spec: confidence; default 0.95)",
        "P",
        spec_path=("confidence",),
    ),
    OptionDef("prometheus-url", "use this Prometheus instead of starting or forwarding one", "URL"),
    OptionDef(
        "prometheus-service",
        "kubernetes backend: the Prometheus service to port-forward to, NS/NAME[:PORT] "
        "(default: istio-system/prometheus:9090)",
        "NS/NAME[:PORT]",
    ),
    OptionDef(
        "scrape-interval",
        "kubernetes backend: how often the cluster's Prometheus scrapes the revisions "
        "(default: its targets API says, else 15s)",
        "DURATION",
    ),
    OptionDef(
        "prometheus-bin", "prometheus binary for the local backend (default: from PATH)", "PATH"
    ),
    OptionDef("report", "write the JSON report here", "PATH"),
    OptionDef("plots", "write one chart per objective into this directory", "DIR"),
    OptionDef(
        "keep",
        "leave everything running after the session and print how to remove it",
        flag=True,
        default="false",
    ),
    OptionDef("kube-context", "kubeconfig context for the kubernetes backend", "NAME"),
    OptionDef("namespace", "namespace for the kubernetes objects (default: the target's)", "NS"),
    OptionDef(
        "provision",
        "'all' provisions the app and mirroring; 'none' measures an app already deployed",
        "MODE",
        "all",
        choices=("all", "none"),
    ),
    OptionDef(
        "inconclusive",
        "what an inconclusive objective does to its test",
        "MODE",
        "fail",
        choices=("fail", "skip"),
    ),
    OptionDef(
        "fail-fast",
        "end the experiment as soon as one objective is certainly breached "
        "(the other objectives may then stay inconclusive)",
        flag=True,
        default="false",
    ),
    OptionDef(
        "full-duration",
        "run every interval even once all objectives are decided (Iter8's behaviour)",
        flag=True,
        default="false",
    ),
)
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}
