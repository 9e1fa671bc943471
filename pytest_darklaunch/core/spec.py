"""The experiment spec: frozen, typed objects built from a plain mapping.

The mapping comes from ``darklaunch.yaml``, an imported Iter8 Experiment and option overrides;
:func:`build_spec` validates it and names, for each bad value, the field and where it came from.

>>> spec = build_spec({"target": "default/sample-app"}, Sources("darklaunch.yaml"))
>>> spec.target.namespace, spec.versions.dark.revision, spec.mirror.percent
('default', 'sample-app-v2', 40.0)
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

from pytest_darklaunch.core.metrics import BUILTIN_NAMES, units_of
from pytest_darklaunch.core.units import (
    DNS1123_HINT,
    DURATION_HINT,
    HOST_HINT,
    is_dns1123_label,
    is_host,
    parse_duration,
    parse_quantity,
)
from pytest_darklaunch.errors import ConfigError

T = TypeVar("T")
Path = tuple[str, ...]

ERROR_CLASSES = ("5xx", "4xx+5xx", "non-2xx")
JUDGE_MODES = ("experiment", "interval")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Target:
    """The Knative service under test, ``namespace/name``."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Version:
    """One version of the app: ``live`` serves users, ``dark`` gets the mirrored copy.

    ``command`` (local backend) is an argv with ``{port}`` still in it; ``None`` runs the
    bundled sample app.
    """

    role: str
    revision: str
    image: Optional[str] = None
    env: Mapping[str, str] = field(default_factory=dict)
    command: Optional[tuple[str, ...]] = None


@dataclass(frozen=True)
class Versions:
    live: Version
    dark: Version


@dataclass(frozen=True)
class Mirror:
    """Share of live requests copied to dark (0..100) and the host users call."""

    percent: float
    host: str


@dataclass(frozen=True)
class Traffic:
    """The open-loop traffic: ``rate_rps`` requests per second to ``path``."""

    rate_rps: float
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 2.0
    warmup_s: float = 0.0


@dataclass(frozen=True)
class Duration:
    interval_s: float
    iterations: int

    @property
    def total_s(self) -> float:
        return self.interval_s * self.iterations


@dataclass(frozen=True)
class Increase:
    """A bound relative to live: ``10%`` (relative) or ``5`` (absolute, in the metric's unit)."""

    amount: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


@dataclass(frozen=True)
class Objective:
    """One service-level objective of the dark version.

    ``judge="experiment"`` judges the cumulative value over the whole run; ``"interval"`` judges
    every interval and tolerates ``failure_limit`` failed intervals.
    """

    metric: str
    upper: Optional[float] = None
    lower: Optional[float] = None
    max_increase: Optional[Increase] = None
    judge: str = "experiment"
    failure_limit: int = 0

    @property
    def label(self) -> str:
        """A short readable form, as iter8ctl prints it: ``mean-latency <= 50``."""
        parts = []
        if self.lower is not None:
            parts.append(f"{self.lower:g} <=")
        parts.append(self.metric)
        if self.upper is not None:
            parts.append(f"<= {self.upper:g}")
        if self.max_increase is not None:
            parts.append(f"(max +{self.max_increase} vs live)")
        return " ".join(parts)


@dataclass(frozen=True)
class MetricDef:
    """A custom metric: a PromQL template with ``$placeholders`` (see README, Custom metrics)."""

    name: str
    query: str
    units: str = ""


@dataclass(frozen=True)
class Spec:
    """One experiment: what to run, how to mirror and load it, and what to require of dark."""

    target: Target
    versions: Versions
    mirror: Mirror
    traffic: Traffic
    duration: Duration
    objectives: tuple[Objective, ...] = ()
    metrics: tuple[MetricDef, ...] = ()
    errors: str = "5xx"
    confidence: float = 0.95

    def units_of(self, metric: str) -> str:
        """A custom metric's declared units, else the built-in rule (``ms`` for percentiles)."""
        for m in self.metrics:
            if m.name == metric:
                return m.units
        return units_of(metric)


class Sources:
    """Where each key of the raw mapping came from, for error messages.

    A key path maps to ``(field label, source label)``; unknown paths fall back to the path in
    dotted form and ``default`` source.
    """

    def __init__(self, default_source: str = "defaults") -> None:
        self.default_source = default_source
        self._by_path: dict[Path, tuple[str, str]] = {}

    def set(self, path: Path, field_label: str, source: str) -> None:
        self._by_path[path] = (field_label, source)

    def of(self, path: Path) -> tuple[str, str]:
        for end in range(len(path), 0, -1):
            found = self._by_path.get(path[:end])
            if found is not None:
                label, source = found
                return (label if end == len(path) else dotted(path), source)
        return dotted(path), self.default_source


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += part if part.startswith("[") else ("." if out else "") + part
    return out


class _Reader:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def fail(self, path: Path, value: object, allowed: str) -> ConfigError:
        label, source = self.sources.of(path)
        return ConfigError(label, value, source, allowed)

    def mapping(self, value: object, path: Path, keys: tuple[str, ...]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, value, f"a mapping with keys {', '.join(keys)}")
        for key in value:
            if key not in keys:
                near = difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                label, source = self.sources.of(path + (str(key),))
                raise ConfigError(
                    f"key {label}", "unknown", source, f"one of {', '.join(keys)}{hint}"
                )
        return value

    def convert(self, value: object, path: Path, parse: Callable[[object], T], allowed: str) -> T:
        try:
            return parse(value)
        except (ValueError, TypeError):
            raise self.fail(path, value, allowed) from None

    def string(self, value: object, path: Path, allowed: str = "a non-empty string") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, value, allowed)
        return value

    def name(self, value: object, path: Path) -> str:
        text = self.string(value, path, DNS1123_HINT)
        if not is_dns1123_label(text):
            raise self.fail(path, value, DNS1123_HINT)
        return text

    def number(self, value: object, path: Path, low: float, high: float, allowed: str) -> float:
        number = self.convert(value, path, _to_float, allowed)
        if not low <= number <= high:
            raise self.fail(path, value, allowed)
        return number

    def str_map(self, value: object, path: Path) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, value, "a mapping of names to string values")
        out = {}
        for key, item in value.items():
            if (
                not isinstance(key, str)
                or not key
                or isinstance(item, (Mapping, list))
                or item is None
            ):
                raise self.fail(path + (str(key),), item, "a string value under a non-empty name")
            out[key] = str(item)
        return out


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(value)
    return number


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"\d+", value):
            raise ValueError(value)
    if isinstance(value, float) and value != int(value):
        raise ValueError(value)
    if not isinstance(value, (int, float, str)):
        raise ValueError(value)
    return int(value)


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
)
VERSION_KEYS = ("revision", "image", "env", "command")
OBJECTIVE_KEYS = ("metric", "upper", "lower", "max_increase", "judge", "failure_limit")


def build_spec(
    raw: Mapping[str, Any], sources: Sources, known_metric: Callable[[str], bool] | None = None
) -> Spec:
    """Validate ``raw`` (the merged spec mapping) into a :class:`Spec`.

    ``known_metric`` decides which objective metric names exist (built-ins and percentiles);
    custom metrics declared under ``metrics`` are always known.
    """
    r = _Reader(sources)
    top = r.mapping(raw, (), TOP_KEYS)
    if "target" not in top:
        raise r.fail(("target",), "", "a target " + TARGET_HINT)
    target = r.convert(top["target"], ("target",), parse_target, TARGET_HINT)

    versions_raw = r.mapping(top.get("versions"), ("versions",), ("live", "dark"))
    versions = Versions(
        live=_version(r, "live", versions_raw.get("live"), f"{target.name}-v1"),
        dark=_version(r, "dark", versions_raw.get("dark"), f"{target.name}-v2"),
    )
    if versions.live.revision == versions.dark.revision:
        raise r.fail(
            ("versions", "dark", "revision"), versions.dark.revision, "a revision other than live's"
        )

    m = r.mapping(top.get("mirror"), ("mirror",), ("percent", "host"))
    mirror = Mirror(
        percent=r.number(
            m.get("percent", 40), ("mirror", "percent"), 0, 100, "a percent in 0..100"
        ),
        host=_host(r, m.get("host", f"{target.name}.{target.namespace}.example.com")),
    )

    t = r.mapping(
        top.get("traffic"),
        ("traffic",),
        ("rate", "path", "method", "headers", "timeout", "warmup"),
    )
    method = r.string(
        t.get("method", "GET"), ("traffic", "method"), "one of " + ", ".join(HTTP_METHODS)
    )
    if method.upper() not in HTTP_METHODS:
        raise r.fail(("traffic", "method"), method, "one of " + ", ".join(HTTP_METHODS))
    path = r.string(t.get("path", "/"), ("traffic", "path"), "a path starting with /")
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise r.fail(("traffic", "path"), path, "a path starting with / and without spaces")
    traffic = Traffic(
        rate_rps=r.number(
            t.get("rate", 100), ("traffic", "rate"), 0.001, 100_000, "requests/s in 0.001..100000"
        ),
        path=path,
        method=method.upper(),
        headers=_headers(r, t.get("headers")),
        timeout_s=_timeout(r, t.get("timeout", "2s")),
        warmup_s=_warmup(r, t.get("warmup", 0)),
    )

    d = r.mapping(top.get("duration"), ("duration",), ("interval", "iterations"))
    interval_s = r.convert(
        d.get("interval", "10s"), ("duration", "interval"), parse_duration, DURATION_HINT
    )
    if interval_s < 0.1:
        raise r.fail(("duration", "interval"), d.get("interval"), "an interval of at least 100ms")
    iterations = r.convert(
        d.get("iterations", 10),
        ("duration", "iterations"),
        _to_int,
        "a whole number of iterations, 1 or more",
    )
    if iterations < 1:
        raise r.fail(
            ("duration", "iterations"),
            d.get("iterations"),
            "a whole number of iterations, 1 or more",
        )
    duration = Duration(interval_s, iterations)

    metrics = _metrics(r, top.get("metrics"))
    custom = {m.name for m in metrics}
    objectives = _objectives(r, top.get("objectives"), custom, known_metric)

    errors = top.get("errors", "5xx")
    if errors not in ERROR_CLASSES:
        raise r.fail(("errors",), errors, "one of " + ", ".join(ERROR_CLASSES))
    confidence = r.number(
        top.get("confidence", 0.95), ("confidence",), 0.5, 0.9999, "a confidence in 0.5..0.9999"
    )
    return Spec(
        target, versions, mirror, traffic, duration, objectives, metrics, str(errors), confidence
    )


# RFC 9110 field names are tokens; values must not smuggle in CR/LF or other controls.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _headers(r: _Reader, value: object) -> dict[str, str]:
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


def _timeout(r: _Reader, value: object) -> float:
    timeout_s = r.convert(value, ("traffic", "timeout"), parse_duration, DURATION_HINT)
    # Envoy and the rendered manifests work in whole milliseconds: less would become 0.
    if not 0.001 <= timeout_s <= 3600:
        raise r.fail(
            ("traffic", "timeout"), value, "a request timeout of at least 1ms and at most 1h"
        )
    return timeout_s


def _warmup(r: _Reader, value: object) -> float:
    if value in (0, "0", "0s"):
        return 0.0
    return r.convert(value, ("traffic", "warmup"), parse_duration, DURATION_HINT + " (or 0)")


def _host(r: _Reader, value: object) -> str:
    text = r.string(value, ("mirror", "host"), HOST_HINT)
    if not is_host(text):
        raise r.fail(("mirror", "host"), value, HOST_HINT)
    return text


def _version(r: _Reader, role: str, value: object, default_revision: str) -> Version:
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


def _metrics(r: _Reader, value: object) -> tuple[MetricDef, ...]:
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
}


def _objectives(
    r: _Reader, value: object, custom: set[str], known: Callable[[str], bool] | None
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
        out.append(objective_from_mapping(o, r, path, metric))
    return tuple(out)


def known_metrics_hint(metric: str, custom: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    names = list(BUILTIN_NAMES) + sorted(custom)
    near = difflib.get_close_matches(metric, names + ["p95", "p99"], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"a metric among {', '.join(names)}, pNN or latency-pNN, or one under metrics{hint}"


def objective_from_mapping(
    o: Mapping[str, Any], r: _Reader | None, path: Path, metric: str
) -> Objective:
    """Bounds, relative bound and judging mode of one objective, validated."""
    r = r or _Reader(Sources("assert_objective"))
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
        _to_int,
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
    return Objective(metric, upper, lower, increase, str(judge), failure_limit)


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
