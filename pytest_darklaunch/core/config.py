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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

# OPTIONS is re-exported: the plugin and the report read the table from here.
from pytest_darklaunch.core.options import OPTIONS as OPTIONS
from pytest_darklaunch.core.options import SPEC_FILENAME, OptionDef
from pytest_darklaunch.core.units import (
    BOOLEAN_HINT,
    DNS1123_HINT,
    format_duration,
    is_dns1123_label,
    parse_boolean,
    parse_duration,
)
from pytest_darklaunch.errors import ConfigError

if TYPE_CHECKING:  # the spec machinery loads only when an experiment is configured
    from pytest_darklaunch.core.spec import Sources, Spec


@dataclass(frozen=True)
class Settings:
    """How this pytest run executes the experiment (the spec says what the experiment is)."""

    backend: str = "local"
    spec_path: str | None = None
    experiment_path: str | None = None
    prometheus_url: str | None = None
    prometheus_bin: str | None = None
    prometheus_service: str | None = None
    scrape_interval_s: float | None = None
    report: str | None = None
    plots: str | None = None
    keep: bool = False
    kube_context: str | None = None
    namespace: str | None = None
    provision: str = "all"
    inconclusive: str = "fail"
    full_duration: bool = False
    fail_fast: bool = False


@dataclass(frozen=True)
class Resolved:
    """The effective spec (``None`` when the plugin is inert), settings, and each value's origin."""

    spec: Spec | None
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
) -> tuple[str | None, str, str]:
    """(value, field label, source) of the highest-precedence source that sets ``opt``."""
    value = cli.get(opt.name)
    if value is not None and value is not False:
        return str(value).lower() if value is True else str(value), opt.cli, "command line"
    if env.get(opt.env) not in (None, ""):
        return env[opt.env], opt.env, "environment"
    if ini.get(opt.name) not in (None, ""):
        return str(ini[opt.name]), opt.ini, ini_source
    return None, opt.cli, "default"


Picked = Mapping[str, tuple[str | None, str, str]]


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
    picked = {o.name: _pick(o, cli, env, ini, ini_source) for o in OPTIONS}
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    settings = _settings(picked, rootdir, values, origin)
    _check_prometheus(settings, picked)
    if picked["target"][0] is None and not (settings.spec_path or settings.experiment_path):
        return Resolved(None, settings, origin, values)

    from pytest_darklaunch.core.metrics import is_builtin
    from pytest_darklaunch.core.spec import build_spec, check_for_kubernetes

    raw, sources = _read_spec_files(settings, picked)
    _apply_spec_options(raw, sources, picked)
    if "target" not in raw:
        # Only a spec file can leave it out (an Iter8 import always has spec.target).
        raise ConfigError(
            "target",
            "",
            str(settings.spec_path),
            "namespace/name such as default/sample-app, as target: in the spec file or "
            "--darklaunch-target",
        )
    # Files a spec names (bodies, recorded traffic, a command) are relative to the spec file.
    base_dir = rootdir
    if settings.spec_path:
        base_dir = os.path.dirname(os.path.abspath(settings.spec_path))
    spec = build_spec(raw, sources, known_metric=is_builtin, base_dir=str(base_dir))
    # First: no image or revision fixes a comparison the backend cannot make.
    _check_comparison_backend(spec, settings.backend, sources, origin.get("backend", "default"))
    if settings.backend == "kubernetes":
        _local_only_traffic(raw, sources)
        _, label, source = picked["backend"]
        spec_file = settings.spec_path or settings.experiment_path or ""
        check_for_kubernetes(spec, sources, f"{label}=kubernetes from {source}", spec_file)
    origin.update(_spec_origins(picked, sources))
    values.update(_spec_values(spec))
    return Resolved(spec, settings, origin, values)


# Spec keys only the local backend implements so far: the kubernetes traffic Job (Fortio, or k6
# for a mix) sends at a rate, from a pinned image: no recorded timing, no command of yours.
LOCAL_ONLY = (("traffic", "command"), ("traffic", "timing"))


def _local_only_traffic(raw: Mapping[str, Any], sources: Sources) -> None:
    for section, key in LOCAL_ONLY:
        node = raw.get(section)
        if isinstance(node, Mapping) and node.get(key) is not None:
            label, source = sources.of((section, key))
            raise ConfigError(
                label, node[key], source,
                "no such key with --darklaunch-backend kubernetes yet (the local backend has it)",
            )


def _check_comparison_backend(spec: Any, backend: str, sources: Any, backend_source: str) -> None:
    """Response comparison needs the proxy's view of dark's answers, which only the local
    backend has: refuse it elsewhere, naming why and what works."""
    from pytest_darklaunch.core.metrics import COMPARISON_NAMES

    if backend == "local":
        return
    where: tuple[str, ...] | None = None
    if spec.compare is not None:
        where = ("compare",)
    for i, objective in enumerate(spec.objectives):
        if where is None and objective.metric in COMPARISON_NAMES:
            where = ("objectives", f"[{i}]", "metric")
    if where is None:
        return
    label, source = sources.of(where)
    raise ConfigError(
        f"{label} with --darklaunch-backend", backend, f"{source}; backend from {backend_source}",
        "the local backend (--darklaunch-backend local), which compares dark's answers with "
        "live's: Istio drops mirrored responses before anything can read them, so the "
        f"{backend} backend cannot compare responses, not even status codes",
    )


def _describe(label: str, source: str) -> str:
    """Where a value came from, as the header and the report show it."""
    if source == "command line":
        return label
    if source == "environment":
        return f"env {label}"
    if source == "default":
        return "default"
    return f"{label} in {source}"


def _settings(
    picked: Picked,
    rootdir: str | os.PathLike[str],
    values: dict[str, str],
    origin: dict[str, str],
) -> Settings:
    """The run's :class:`Settings` from the options that are not spec fields, each checked."""
    kwargs: dict[str, Any] = {}
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
        origin[opt.name] = _describe(label, source)
        attr, setting = _setting(opt, value, label, source)
        kwargs[attr] = setting
    if "spec_path" not in kwargs:
        default_spec = Path(rootdir) / SPEC_FILENAME
        if default_spec.is_file():
            kwargs["spec_path"] = str(default_spec)
            values["spec"] = str(default_spec)
            origin["spec"] = "found in rootdir"
    return Settings(**kwargs)


def _setting(opt: OptionDef, value: str, label: str, source: str) -> tuple[str, Any]:
    """The :class:`Settings` attribute and typed value of one given option."""
    attr = opt.name.replace("-", "_")
    if opt.flag:
        try:
            return attr, parse_boolean(value)
        except ValueError:
            raise ConfigError(label, value, source, BOOLEAN_HINT) from None
    if not value.strip():
        raise ConfigError(label, value, source, "a non-empty value")
    if opt.name in ("spec", "experiment"):
        return f"{attr}_path", value
    if opt.name == "scrape-interval":
        return "scrape_interval_s", _scrape_interval(value, label, source)
    if opt.name == "namespace" and not is_dns1123_label(value):
        # Checked here, before anything is provisioned, like every other name.
        raise ConfigError(label, value, source, DNS1123_HINT)
    return attr, value


def _scrape_interval(value: str, label: str, source: str) -> float:
    """A scrape interval of 1 s to 10 min, as Prometheus configurations write them."""
    allowed = "a duration from 1s to 10m, such as 15s or 1m"
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ConfigError(label, value, source, allowed) from None
    if not 1 <= seconds <= 600:
        raise ConfigError(label, value, source, allowed)
    return seconds


def _check_prometheus(settings: Settings, picked: Picked) -> None:
    """The Prometheus URL and service are checked before anything starts or forwards."""
    url = settings.prometheus_url
    if url is not None:
        _, label, source = picked["prometheus-url"]
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") and "@" not in parts.netloc:
            raise ConfigError(label, url, source, "an http:// or https:// URL")
        # The client's own check and redaction (credentials in the URL, a token in its
        # query) now, not once the run has started; only a URL it refuses loads requests here.
        if "@" in parts.netloc or parts.query or parts.fragment or not parts.hostname:
            from pytest_darklaunch.core.prometheus.client import check_base_url

            check_base_url(url, source, field=label)
    if settings.prometheus_service is not None and not _is_service(settings.prometheus_service):
        _, label, source = picked["prometheus-service"]
        raise ConfigError(
            label,
            settings.prometheus_service,
            source,
            "NS/NAME[:PORT] of DNS-1123 labels, such as istio-system/prometheus:9090",
        )


def _read_spec_files(settings: Settings, picked: Picked) -> tuple[dict[str, Any], Sources]:
    """The raw spec: the Iter8 import first, the spec file merged over it."""
    from pytest_darklaunch.core.iter8 import experiment_to_raw
    from pytest_darklaunch.core.spec import Sources
    from pytest_darklaunch.core.spec_files import load_yaml, merge_sourced

    raw: dict[str, Any] = {}
    sources = Sources("defaults")
    if settings.experiment_path:
        _, label, source = picked["experiment"]
        doc = load_yaml(settings.experiment_path, label, source)
        exp_raw, fields = experiment_to_raw(doc, settings.experiment_path)
        merge_sourced(raw, exp_raw, (), sources, settings.experiment_path, fields)
    if settings.spec_path:
        _, label, source = picked["spec"]
        if source == "default":
            label, source = "--darklaunch-spec", "rootdir"
        doc = load_yaml(settings.spec_path, label, source)
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigError(
                "document",
                type(doc).__name__,
                settings.spec_path,
                "a mapping with target, versions, mirror, traffic, duration, objectives",
            )
        merge_sourced(raw, doc, (), sources, settings.spec_path, {})
    return raw, sources


def _apply_spec_options(raw: dict[str, Any], sources: Sources, picked: Picked) -> None:
    """Options that are spec fields (``--darklaunch-rate``…) override the files' values."""
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


def _spec_origins(picked: Picked, sources: Sources) -> dict[str, str]:
    """Where each spec-field option's effective value came from."""
    origin: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.spec_path is None:
            continue
        value, label, source = picked[opt.name]
        if value is not None:
            origin[opt.name] = _describe(label, source)
        else:
            field_label, src = sources.of(opt.spec_path)
            origin[opt.name] = "default" if src == "defaults" else f"{field_label} in {src}"
    return origin


def _is_service(text: str) -> bool:
    """``namespace/name`` or ``namespace/name:port`` (both DNS-1123 labels, port 1..65535)."""
    where, _, port = text.partition(":")
    parts = where.split("/")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return False
    return len(parts) == 2 and all(is_dns1123_label(p) for p in parts)


def _spec_values(spec: Spec) -> dict[str, str]:
    return {
        "target": str(spec.target),
        "interval": format_duration(spec.duration.interval_s),
        "iterations": str(spec.duration.iterations),
        "mirror-percent": f"{spec.mirror.percent:g}",
        "rate": f"{spec.traffic.rate_rps:g}",
        "confidence": f"{spec.confidence:g}",
    }


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
