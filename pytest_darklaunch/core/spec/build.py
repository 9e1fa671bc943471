"""``build_spec``: the raw mapping, section by section, into a :class:`~.model.Spec`."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from pytest_darklaunch.core.spec.compare import parse_compare
from pytest_darklaunch.core.spec.model import (
    ERROR_CLASSES,
    HTTP_METHODS,
    MIRROR_PROVIDERS,
    ROLES,
    Duration,
    MetricDef,
    Mirror,
    Objective,
    Route,
    Spec,
    Target,
    Traffic,
    Version,
    Versions,
)
from pytest_darklaunch.core.spec.objectives import parse_objectives
from pytest_darklaunch.core.spec.reader import Reader, Sources, to_int
from pytest_darklaunch.core.traffic.mix import build_mix, mirror_methods, traffic_command
from pytest_darklaunch.core.units import (
    DURATION_HINT,
    HOST_HINT,
    is_dns1123_label,
    is_host,
    parse_duration,
)
from pytest_darklaunch.errors import ConfigError


def parse_target(value: object) -> Target:
    """``namespace/name`` (both DNS-1123 labels), or a bare ``name`` in namespace ``default``."""
    if not isinstance(value, str):
        raise ValueError(value)
    parts = value.split("/")
    if len(parts) == 1:
        parts = ["default", parts[0]]
    if len(parts) != 2 or not all(is_dns1123_label(p) for p in parts):
        raise ValueError(value)
    return Target(parts[0], parts[1])


TARGET_HINT = "namespace/name, both DNS-1123 labels, such as default/sample-app"


TOP_KEYS = (
    "target",
    "versions",
    "mirror",
    "traffic",
    "duration",
    "objectives",
    "metrics",
    "errors",
    "confidence",
    "routes",
    "compare",
)


VERSION_KEYS = ("revision", "image", "env", "command")


def build_spec(
    raw: Mapping[str, Any],
    sources: Sources,
    known_metric: Callable[[str], bool] | None = None,
    base_dir: str = ".",
) -> Spec:
    """Validate ``raw`` (the merged spec mapping) into a :class:`Spec`.

    ``known_metric`` decides which objective metric names exist (built-ins and percentiles);
    custom metrics declared under ``metrics`` are always known. Files the spec names
    (``body_file``, ``targets_file``, a ``command`` given by path) are relative to ``base_dir``.
    """
    r = Reader(sources)
    top = r.mapping(raw, (), TOP_KEYS)
    if "target" not in top:
        raise r.fail(("target",), "", "a target " + TARGET_HINT)
    target = r.convert(top["target"], ("target",), parse_target, TARGET_HINT)
    # Sections are read in the file's order, so the first bad value is the one reported.
    versions = _versions(r, top.get("versions"), target)
    mirror = _mirror(r, top.get("mirror"), target)
    traffic = _traffic(r, top.get("traffic"), base_dir)
    duration = _duration(r, top.get("duration"))
    metrics = _metrics(r, top.get("metrics"))
    custom = {m.name for m in metrics}
    objectives = parse_objectives(r, top.get("objectives"), custom, known_metric)
    routes = _routes(r, top.get("routes"), objectives, traffic, mirror)
    errors = top.get("errors", "5xx")
    if errors not in ERROR_CLASSES:
        raise r.fail(("errors",), errors, "one of " + ", ".join(ERROR_CLASSES))
    confidence = r.number(
        top.get("confidence", 0.95), ("confidence",), 0.5, 0.9999, "a confidence in 0.5..0.9999"
    )
    compare = None if top.get("compare") is None else parse_compare(r, top["compare"])
    return Spec(
        target,
        versions,
        mirror,
        traffic,
        duration,
        objectives,
        metrics,
        str(errors),
        confidence,
        routes,
        compare,
    )


# Knative's rule for revision names (a Kubernetes DNS-1035 label).
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def check_for_kubernetes(
    spec: Spec, sources: Sources, backend_origin: str = "", spec_file: str = ""
) -> None:
    """What the kubernetes backend needs beyond a valid spec: a container image for each
    version and revision names Knative accepts. Checked as the run is configured (and by
    ``render``), so such a spec is refused before anything is applied. A missing field is
    reported against ``spec_file``, where it has to be written."""
    why = f" ({backend_origin})" if backend_origin else ""

    def fail(path: tuple[str, ...], value: str, allowed: str) -> ConfigError:
        label, source = sources.of(path)
        if source == sources.default_source and spec_file:
            source = spec_file
        return ConfigError(label, value, source, allowed + why)

    for version in (spec.versions.live, spec.versions.dark):
        path = ("versions", version.role)
        if version.image is None:
            raise fail(
                (*path, "image"),
                "",
                "a container image for each version with the kubernetes backend, for example "
                "gcr.io/knative-samples/knative-route-demo:blue",
            )
        prefix = f"{spec.target.name}-"
        if not version.revision.startswith(prefix):
            raise fail(
                (*path, "revision"),
                version.revision,
                f"a revision name starting with {prefix!r} (Knative requires it of named "
                "revisions)",
            )
        if not _DNS1035.match(version.revision):
            raise fail(
                (*path, "revision"),
                version.revision,
                "a DNS-1035 label (Knative's rule for revision names): lower-case letters, "
                "digits and '-', starting with a letter, ending alphanumeric",
            )
def _routes(
    r: Reader, value: object, objectives: tuple[Objective, ...], traffic: Traffic, mirror: Mirror
) -> tuple[Route, ...]:
    """The declared routes, and the targets objectives name, checked for overlaps (exactly
    against the mix's requests: a bring-your-own generator's are unknown)."""
    # core.routes builds on the spec model, so it is imported once the spec package is.
    from pytest_darklaunch.core.routes import objective_routes, parse_routes

    declared = parse_routes(value, r.sources)
    named = [
        (("objectives", f"[{i}]", "route"), o.route)
        for i, o in enumerate(objectives)
        if o.route is not None
    ]
    targets = (
        [(t.name, t.method, t.path) for t in traffic.mix.targets] if traffic.command is None else []
    )
    mirror_methods = None if mirror.all_methods else mirror.methods
    return objective_routes(named, declared, targets, r.sources, mirror_methods)


def _versions(r: Reader, value: object, target: Target) -> Versions:
    """``versions``: live and dark default to the target's ``-v1`` and ``-v2`` revisions."""
    raw = r.mapping(value, ("versions",), ROLES)
    versions = Versions(
        live=_version(r, "live", raw.get("live"), f"{target.name}-v1"),
        dark=_version(r, "dark", raw.get("dark"), f"{target.name}-v2"),
    )
    if versions.live.revision == versions.dark.revision:
        raise r.fail(
            ("versions", "dark", "revision"), versions.dark.revision, "a revision other than live's"
        )
    return versions


def _mirror(r: Reader, value: object, target: Target) -> Mirror:
    m = r.mapping(value, ("mirror",), ("percent", "host", "methods", "provider", "gateway"))
    provider = m.get("provider", "istio")
    if provider not in MIRROR_PROVIDERS:
        raise r.fail(("mirror", "provider"), provider, " or ".join(MIRROR_PROVIDERS))
    gateway = None
    if "gateway" in m:
        allowed = "NAMESPACE/NAME of a Gateway (with provider gateway-api)"
        gateway = r.string(m["gateway"], ("mirror", "gateway"), allowed)
        namespace, _, name = gateway.partition("/")
        valid = is_dns1123_label(namespace) and is_dns1123_label(name)
        if provider != "gateway-api" or not valid:
            raise r.fail(("mirror", "gateway"), gateway, allowed)
    return Mirror(
        percent=r.number(
            m.get("percent", 40), ("mirror", "percent"), 0, 100, "a percent in 0..100"
        ),
        host=_host(r, m.get("host", f"{target.name}.{target.namespace}.example.com")),
        methods=mirror_methods(m.get("methods"), lambda p, v, a: r.fail(("mirror", *p), v, a)),
        provider=str(provider),
        gateway=gateway,
    )


TRAFFIC_KEYS = (
    "rate", "path", "method", "headers", "body", "body_file", "targets", "targets_file",
    "timing", "speed", "command", "timeout", "warmup",
)


def _traffic(r: Reader, value: object, base_dir: str) -> Traffic:
    t = r.mapping(value, ("traffic",), TRAFFIC_KEYS)
    method = r.string(
        t.get("method", "GET"), ("traffic", "method"), "one of " + ", ".join(HTTP_METHODS)
    )
    if method.upper() not in HTTP_METHODS:
        raise r.fail(("traffic", "method"), method, "one of " + ", ".join(HTTP_METHODS))
    path = r.string(t.get("path", "/"), ("traffic", "path"), "a path starting with /")
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise r.fail(("traffic", "path"), path, "a path starting with / and without spaces")
    return Traffic(
        rate_rps=r.number(
            t.get("rate", 100), ("traffic", "rate"), 0.001, 100_000, "requests/s in 0.001..100000"
        ),
        path=path,
        method=method.upper(),
        headers=_headers(r, t.get("headers")),
        timeout_s=_timeout(r, t.get("timeout", "2s")),
        warmup_s=_warmup(r, t.get("warmup", 0)),
        **_mix(r, t, base_dir),
    )


def _mix(r: Reader, t: Mapping[str, Any], base_dir: str) -> dict[str, Any]:
    """The mix and the command of ``traffic`` (see :mod:`pytest_darklaunch.core.traffic`)."""

    def fail(path: tuple[str, ...], value: object, allowed: str) -> Exception:
        return r.fail(("traffic", *path), value, allowed)

    command = traffic_command(t, fail, base_dir)
    return {"mix": build_mix(t, fail, base_dir), "command": command, "command_cwd": base_dir}


def _duration(r: Reader, value: object) -> Duration:
    d = r.mapping(value, ("duration",), ("interval", "iterations"))
    interval_s = r.convert(
        d.get("interval", "10s"), ("duration", "interval"), parse_duration, DURATION_HINT
    )
    if interval_s < 0.1:
        raise r.fail(("duration", "interval"), d.get("interval"), "an interval of at least 100ms")
    every = "a whole number of iterations, 1 or more"
    iterations = r.convert(d.get("iterations", 10), ("duration", "iterations"), to_int, every)
    if iterations < 1:
        raise r.fail(("duration", "iterations"), d.get("iterations"), every)
    return Duration(interval_s, iterations)


# RFC 9110 field names are tokens; values must not smuggle in CR/LF or other controls.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _headers(r: Reader, value: object) -> dict[str, str]:
    headers = r.str_map(value, ("traffic", "headers"))
    for name, text in headers.items():
        if not _HEADER_NAME.match(name):
            raise r.fail(
                ("traffic", "headers", name),
                name,
                "an HTTP header name (letters, digits, '-', no spaces or ':')",
            )
        bad = _HEADER_VALUE_BAD.search(text)
        if bad:
            # The value itself is not echoed: headers are where tokens end up.
            shown = (
                f"control character U+{ord(bad.group()):04X} at offset {bad.start()} "
                "(value withheld)"
            )
            raise r.fail(
                ("traffic", "headers", name),
                shown,
                "a header value without line breaks or control characters",
            )
    return headers


def _timeout(r: Reader, value: object) -> float:
    timeout_s = r.convert(value, ("traffic", "timeout"), parse_duration, DURATION_HINT)
    # Envoy and the rendered manifests work in whole milliseconds: less would become 0.
    if not 0.001 <= timeout_s <= 3600:
        raise r.fail(
            ("traffic", "timeout"), value, "a request timeout of at least 1ms and at most 1h"
        )
    return timeout_s


def _warmup(r: Reader, value: object) -> float:
    if value in (0, "0", "0s"):
        return 0.0
    return r.convert(value, ("traffic", "warmup"), parse_duration, DURATION_HINT + " (or 0)")


def _host(r: Reader, value: object) -> str:
    text = r.string(value, ("mirror", "host"), HOST_HINT)
    if not is_host(text):
        raise r.fail(("mirror", "host"), value, HOST_HINT)
    return text


def _version(r: Reader, role: str, value: object, default_revision: str) -> Version:
    path = ("versions", role)
    v = r.mapping(value, path, VERSION_KEYS)
    revision = r.name(v.get("revision", default_revision), path + ("revision",))
    image = v.get("image")
    if image is not None:
        image = r.string(image, path + ("image",), "a container image reference")
    command = v.get("command")
    argv: tuple[str, ...] | None = None
    if command is not None:
        allowed = "an argv list or a command string containing {port}"
        if isinstance(command, str):
            import shlex

            try:
                argv = tuple(shlex.split(command))
            except ValueError:
                raise r.fail(path + ("command",), command, allowed) from None
        elif isinstance(command, list) and all(isinstance(a, (str, int, float)) for a in command):
            argv = tuple(str(a) for a in command)
        else:
            raise r.fail(path + ("command",), command, allowed)
        if not argv or not any("{port}" in a for a in argv):
            raise r.fail(path + ("command",), command, allowed)
    return Version(role, revision, image, r.str_map(v.get("env"), path + ("env",)), argv)


_METRIC_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def _metrics(r: Reader, value: object) -> tuple[MetricDef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise r.fail(("metrics",), value, "a list of {name, query, units}")
    out: list[MetricDef] = []
    for i, item in enumerate(value):
        path = ("metrics", f"[{i}]")
        m = r.mapping(item, path, ("name", "query", "units"))
        name = r.string(
            m.get("name"), path + ("name",), "a kebab-case metric name such as my-metric"
        )
        if not _METRIC_NAME.fullmatch(name):
            raise r.fail(path + ("name",), name, "a kebab-case metric name such as my-metric")
        query = r.string(m.get("query"), path + ("query",), "a PromQL template")
        try:
            string.Template(query).substitute(PLACEHOLDER_EXAMPLE)
        except (KeyError, ValueError) as exc:
            raise r.fail(
                path + ("query",),
                query,
                "a PromQL template whose placeholders are among $"
                + ", $".join(PLACEHOLDER_EXAMPLE)
                + f" (bad: {exc})",
            ) from None
        units = m.get("units", "")
        out.append(MetricDef(name, query, str(units)))
    names = [m.name for m in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise r.fail(("metrics",), dup, "unique metric names")
    return tuple(out)


# Placeholders a custom metric's PromQL template may use (values shown are examples).
PLACEHOLDER_EXAMPLE = {
    "version": "dark",
    "revision": "sample-app-v2",
    "namespace": "default",
    "service": "sample-app",
    "cluster": "dark",
    "window": "10s",
    "start": "1700000000",
    "end": "1700000010",
    "route": "detail",
}
