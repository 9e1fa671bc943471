"""The frozen experiment spec and the values its fields allow."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl, urlsplit

from pytest_darklaunch.core.compare.model import Settings
from pytest_darklaunch.core.metrics import units_of
from pytest_darklaunch.core.traffic.mix import Mix
from pytest_darklaunch.core.traffic.model import HTTP_METHODS, SAFE_METHODS
from pytest_darklaunch.core.traffic.model import Target as MixTarget
from pytest_darklaunch.core.traffic.schedule import Schedule

# The two versions of every experiment, in the order the spec, the stack and reports list them.
ROLES = ("live", "dark")
ERROR_CLASSES = ("5xx", "4xx+5xx", "non-2xx")


JUDGE_MODES = ("experiment", "interval")


# HTTP_METHODS (re-exported) is the traffic model's: one list for the spec, mixes and Envoy.
__all__ = ["HTTP_METHODS"]


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
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Versions:
    live: Version
    dark: Version


MIRROR_PROVIDERS = ("istio", "gateway-api")


@dataclass(frozen=True)
class Mirror:
    """Share of live requests copied to dark (0..100) and the host users call; only requests
    of ``methods`` are mirrored (by default the ones that change nothing). ``provider`` is the
    routing API that mirrors on the kubernetes backend: ``istio`` (a VirtualService) or
    ``gateway-api`` (an HTTPRoute, attached to ``gateway`` ``NAMESPACE/NAME`` or, without it,
    to mesh traffic)."""

    percent: float
    host: str
    methods: tuple[str, ...] = SAFE_METHODS
    provider: str = "istio"
    gateway: str | None = None

    @property
    def all_methods(self) -> bool:
        return set(self.methods) >= set(HTTP_METHODS)


@dataclass(frozen=True)
class Traffic:
    """The open-loop traffic: ``rate_rps`` requests per second to ``path`` or over ``mix``.

    ``command`` (an argv, run in ``command_cwd``) replaces the built-in generator. ``path``,
    ``method`` and ``headers`` are the single target's (a mix leaves the defaults).
    """

    rate_rps: float
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 2.0
    warmup_s: float = 0.0
    mix: Mix = field(default_factory=lambda: Mix((MixTarget("GET /", "GET", "/"),)))
    command: tuple[str, ...] | None = None
    # The spec file's directory, so `k6 run load.js` finds load.js.
    command_cwd: str = "."

    @property
    def planned_rps(self) -> float:
        """The rate the generator must hold: ``rate_rps``, or the recorded schedule's."""
        if self.command is None and self.mix.timing == "recorded":
            return Schedule(self.mix.targets, self.rate_rps, "recorded", self.mix.speed).planned_rps
        return self.rate_rps


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
    upper: float | None = None
    lower: float | None = None
    max_increase: Increase | None = None
    judge: str = "experiment"
    failure_limit: int = 0
    # A route's name (declared under ``routes:`` or a target's); None covers all traffic.
    route: str | None = None

    @property
    def subject(self) -> str:
        """What the objective is about: ``p95``, or ``p95 (route detail)``."""
        return self.metric if self.route is None else f"{self.metric} (route {self.route})"

    @property
    def label(self) -> str:
        """A short readable form, as iter8ctl prints it: ``mean-latency <= 50``, with its
        route if it has one: ``p95 <= 100 on route detail``."""
        parts = []
        if self.lower is not None:
            parts.append(f"{self.lower:g} <=")
        parts.append(self.metric)
        if self.upper is not None:
            parts.append(f"<= {self.upper:g}")
        if self.max_increase is not None:
            parts.append(f"(max +{self.max_increase} vs live)")
        if self.route is not None:
            parts.append(f"on route {self.route}")
        return " ".join(parts)


# Characters Envoy keeps in a cluster's stat name and that Prometheus label values carry as
# they are; a dot would split the stat name (Envoy cuts the cluster name at the first dot).
_SLUG_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,48}$")


@dataclass(frozen=True)
class Route:
    """One named group of requests.

    ``path`` is a regex the whole path (query removed) must match, ``None`` for any path;
    ``methods`` empty means any method. A target of the mix is a route with an exact
    ``path`` and its ``query`` parameters (``target=True``).
    """

    name: str
    path: str | None = None
    methods: tuple[str, ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    target: bool = False

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        return None if self.path is None else re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        """Whether a request ``method path`` (``path`` may carry a query) is on this route."""
        if self.methods and method.upper() not in self.methods:
            return False
        parts = urlsplit(path)
        if self._pattern is not None and not self._pattern.fullmatch(parts.path or "/"):
            return False
        if self.query:
            present = parse_qsl(parts.query, keep_blank_values=True)
            return all(pair in present for pair in self.query)
        return True

    @property
    def slug(self) -> str:
        """The route's part of its cluster names (``live~<slug>``): the name when it is made
        of safe characters, else a readable part of it plus a short hash, so that two names
        never share a slug.

        >>> Route("detail").slug, Route("GET /items/7", target=True).slug
        ('detail', 'GET__items_7-d90c08')
        """
        if _SLUG_SAFE.fullmatch(self.name):
            return self.name
        readable = re.sub(r"[^A-Za-z0-9_-]", "_", self.name)[:40]
        digest = hashlib.sha1(self.name.encode("utf-8")).hexdigest()[:6]
        return f"{readable}-{digest}"

    def describe(self) -> str:
        """``GET,HEAD ^/items/[0-9]+$``: what the route matches, for messages."""
        methods = ",".join(self.methods) or "any method"
        if self.target:
            query = "&".join(f"{k}={v}" for k, v in self.query)
            return f"{methods} {self.path_literal}{'?' + query if query else ''}"
        return f"{methods} {self.path or 'any path'}"

    @property
    def path_literal(self) -> str:
        """A target route's exact path (its regex unescaped)."""
        if self.path is None:
            return "/"
        return re.sub(r"\\(.)", r"\1", self.path)


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
    # The routes the proxy splits out: targets objectives name, then the declared ones.
    routes: tuple[Route, ...] = ()
    # ``compare:`` (local backend): how dark's answers are compared with live's; None when the
    # section is absent (the local backend then pairs status codes and latencies only).
    compare: Settings | None = None

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def units_of(self, metric: str) -> str:
        """A custom metric's declared units, else the built-in rule (``ms`` for percentiles)."""
        for m in self.metrics:
            if m.name == metric:
                return m.units
        return units_of(metric)
