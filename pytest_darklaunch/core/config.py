"""Settings from every source, merged with a known origin for each value.

Precedence: command line > environment (``PYTEST_DARKLAUNCH_*``) > ini (``darklaunch_*``) >
spec file (``darklaunch.yaml``, or an imported Iter8 Experiment beneath it) > default.
This module never imports pytest: the plugin hands it plain mappings.

>>> r = resolve(cli={"target": "default/sample-app"}, env={}, ini={}, ini_source="-", rootdir=".")
>>> r.spec.target.name, r.origin["target"]
('sample-app', '--darklaunch-target')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pytest_darklaunch.core.units import DNS1123_HINT, is_dns1123_label
from pytest_darklaunch.errors import ConfigError

if TYPE_CHECKING:  # the spec machinery loads only when an experiment is configured
    from pytest_darklaunch.core.spec import Sources, Spec

SPEC_FILENAME = "darklaunch.yaml"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class OptionDef:
    """One setting: ``--darklaunch-NAME``, ini ``darklaunch_NAME``, env ``PYTEST_DARKLAUNCH_*``."""

    name: str
    help: str
    metavar: str = ""
    default: Optional[str] = None
    spec_path: Optional[tuple[str, ...]] = None
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


@dataclass(frozen=True)
class Settings:
    """How this pytest run executes the experiment (the spec says what the experiment is)."""

    backend: str = "local"
    spec_path: Optional[str] = None
    experiment_path: Optional[str] = None
    prometheus_url: Optional[str] = None
    prometheus_bin: Optional[str] = None
    prometheus_service: Optional[str] = None
    report: Optional[str] = None
    plots: Optional[str] = None
    keep: bool = False
    kube_context: Optional[str] = None
    namespace: Optional[str] = None
    provision: str = "all"
    inconclusive: str = "fail"
    full_duration: bool = False
    fail_fast: bool = False


@dataclass(frozen=True)
class Resolved:
    """The effective spec (``None`` when the plugin is inert), settings, and each value's origin."""

    spec: Optional[Spec]
    settings: Settings
    origin: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.spec is not None


def _pick(
    opt: OptionDef,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    ini: Mapping[str, Any],
    ini_source: str,
) -> tuple[Optional[str], str, str]:
    """(value, field label, source) of the highest-precedence source that sets ``opt``."""
    value = cli.get(opt.name)
    if value is not None and value is not False:
        return str(value).lower() if value is True else str(value), opt.cli, "command line"
    if env.get(opt.env) not in (None, ""):
        return env[opt.env], opt.env, "environment"
    if ini.get(opt.name) not in (None, ""):
        return str(ini[opt.name]), opt.ini, ini_source
    return None, opt.cli, "default"


def resolve(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    ini: Mapping[str, Any],
    ini_source: str,
    rootdir: str | os.PathLike[str],
) -> Resolved:
    """Merge all sources; a :class:`ConfigError` names field, value, source and what is allowed.

    ``cli`` and ``ini`` are keyed by option name (``"mirror-percent"``); missing or ``None``
    means not given.
    """
    picked: dict[str, tuple[Optional[str], str, str]] = {
        o.name: _pick(o, cli, env, ini, ini_source) for o in OPTIONS
    }
    values: dict[str, str] = {}
    origin: dict[str, str] = {}

    def describe(name: str, label: str, source: str) -> str:
        if source == "command line":
            return label
        if source == "environment":
            return f"env {label}"
        if source == "default":
            return "default"
        return f"{label} in {source}"

    settings_kwargs: dict[str, Any] = {}
    for opt in OPTIONS:
        value, label, source = picked[opt.name]
        if opt.spec_path is not None:
            continue
        if value is None:
            value = opt.default
        elif opt.choices and value not in opt.choices:
            raise ConfigError(label, value, source, "one of " + ", ".join(opt.choices))
        if value is None:
            continue
        values[opt.name] = value
        origin[opt.name] = describe(opt.name, label, source)
        attr = opt.name.replace("-", "_")
        if opt.flag:
            lowered = value.strip().lower()
            if lowered not in _TRUE + _FALSE:
                raise ConfigError(label, value, source, "true or false (1/0, yes/no, on/off)")
            settings_kwargs[attr] = lowered in _TRUE
        elif not value.strip():
            raise ConfigError(label, value, source, "a non-empty value")
        elif opt.name in ("spec", "experiment"):
            settings_kwargs[f"{attr}_path"] = value
        elif opt.name == "namespace" and not is_dns1123_label(value):
            # Checked here, before anything is provisioned, like every other name.
            raise ConfigError(label, value, source, DNS1123_HINT)
        else:
            settings_kwargs[attr] = value

    if "spec_path" not in settings_kwargs:
        default_spec = Path(rootdir) / SPEC_FILENAME
        if default_spec.is_file():
            settings_kwargs["spec_path"] = str(default_spec)
            values["spec"] = str(default_spec)
            origin["spec"] = "found in rootdir"
    settings = Settings(**settings_kwargs)

    if settings.prometheus_url is not None and not settings.prometheus_url.startswith(
        ("http://", "https://")
    ):
        _, label, source = picked["prometheus-url"]
        raise ConfigError(label, settings.prometheus_url, source, "an http:// or https:// URL")
    if settings.prometheus_service is not None and not _is_service(settings.prometheus_service):
        _, label, source = picked["prometheus-service"]
        raise ConfigError(
            label,
            settings.prometheus_service,
            source,
            "NS/NAME[:PORT] of DNS-1123 labels, such as istio-system/prometheus:9090",
        )

    target_given = picked["target"][0] is not None
    if not (target_given or settings.spec_path or settings.experiment_path):
        return Resolved(None, settings, origin, values)

    from pytest_darklaunch.core.iter8 import experiment_to_raw
    from pytest_darklaunch.core.metrics import is_builtin
    from pytest_darklaunch.core.spec import Sources, build_spec

    raw: dict[str, Any] = {}
    sources = Sources("defaults")
    if settings.experiment_path:
        _, label, source = picked["experiment"]
        doc = _load_yaml(settings.experiment_path, label, source)
        exp_raw, fields = experiment_to_raw(doc, settings.experiment_path)
        _merge(raw, exp_raw, (), sources, settings.experiment_path, fields)
    if settings.spec_path:
        _, label, source = picked["spec"]
        if source == "default":
            label, source = "--darklaunch-spec", "rootdir"
        doc = _load_yaml(settings.spec_path, label, source)
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigError(
                "document",
                type(doc).__name__,
                settings.spec_path,
                "a mapping with target, versions, mirror, traffic, duration, objectives",
            )
        _merge(raw, doc, (), sources, settings.spec_path, {})

    for opt in OPTIONS:
        value, label, source = picked[opt.name]
        if opt.spec_path is None or value is None:
            continue
        node = raw
        for key in opt.spec_path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[opt.spec_path[-1]] = value
        sources.set(opt.spec_path, label, source)

    if "target" not in raw:
        # Only a spec file can leave it out (an Iter8 import always has spec.target).
        raise ConfigError(
            "target",
            "",
            str(settings.spec_path),
            "namespace/name such as default/sample-app, as target: in the spec file or "
            "--darklaunch-target",
        )
    spec = build_spec(raw, sources, known_metric=is_builtin)
    for opt in OPTIONS:
        if opt.spec_path is None:
            continue
        value, label, source = picked[opt.name]
        if value is not None:
            origin[opt.name] = describe(opt.name, label, source)
        else:
            field_label, src = sources.of(opt.spec_path)
            origin[opt.name] = "default" if src == "defaults" else f"{field_label} in {src}"
    values.update(_spec_values(spec))
    return Resolved(spec, settings, origin, values)


def _is_service(text: str) -> bool:
    """``namespace/name`` or ``namespace/name:port`` (both DNS-1123 labels, port 1..65535)."""
    where, _, port = text.partition(":")
    parts = where.split("/")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return False
    return len(parts) == 2 and all(is_dns1123_label(p) for p in parts)


def _spec_values(spec: Spec) -> dict[str, str]:
    from pytest_darklaunch.core.units import format_duration

    return {
        "target": str(spec.target),
        "interval": format_duration(spec.duration.interval_s),
        "iterations": str(spec.duration.iterations),
        "mirror-percent": f"{spec.mirror.percent:g}",
        "rate": f"{spec.traffic.rate_rps:g}",
        "confidence": f"{spec.confidence:g}",
    }


def _load_yaml(path: str, label: str, source: str) -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(label, path, source, "an existing YAML file") from None
    except IsADirectoryError:
        raise ConfigError(label, path, source, "a YAML file, not a directory") from None
    except OSError as exc:
        raise ConfigError(label, path, source, f"a readable YAML file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            label, path, source, f"a UTF-8 YAML file (undecodable byte at offset {exc.start})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or "malformed"
        raise ConfigError("YAML", f"{problem} at {where}", path, "well-formed YAML") from None


def _merge(
    into: dict[str, Any],
    data: Mapping[str, Any],
    path: tuple[str, ...],
    sources: Sources,
    source: str,
    fields: Mapping[tuple[str, ...], str],
) -> None:
    from pytest_darklaunch.core.spec import dotted

    """Deep-merge ``data`` into ``into``, recording the source of every key it sets."""
    for key, value in data.items():
        key_path = path + (str(key),)
        sources.set(key_path, fields.get(key_path, dotted(key_path)), source)
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value, key_path, sources, source, fields)
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value, key_path, sources, source, fields)
        else:
            into[key] = value
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Mapping):
                        for sub in item:
                            p = key_path + (f"[{i}]", str(sub))
                            sources.set(p, fields.get(p, dotted(p)), source)


def load_spec(spec_path: str | None = None, experiment_path: str | None = None) -> Spec:
    """The spec in a ``darklaunch.yaml`` and/or an Iter8 Experiment, without pytest.

    >>> spec = load_spec(experiment_path="examples/iter8/experiment.yaml")  # doctest: +SKIP
    >>> spec.duration.iterations  # doctest: +SKIP
    10
    """
    resolved = resolve(
        cli={"spec": spec_path, "experiment": experiment_path},
        env={},
        ini={},
        ini_source="-",
        rootdir=os.devnull,
    )
    if resolved.spec is None:
        raise ConfigError("--spec", "", "command line", "a spec file or an Iter8 experiment")
    return resolved.spec
