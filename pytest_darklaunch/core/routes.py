"""Routes: named groups of requests, so that an objective can cover one endpoint.

A route is declared once under ``routes:`` (a regex on the path without its query, optional
methods), or is a target of the request mix, named there. The proxy sends every route to its own
pair of live/dark clusters, so each route gets its own counters and histograms.

Envoy takes the first route that matches a request; declarations whose order would decide a
request's route are refused instead (:func:`check_unambiguous`), so that the order in the file
never changes a verdict.

>>> routes = parse_routes({"detail": {"path": "^/items/[0-9]+$", "methods": ["GET"]},
...                        "writes": {"methods": ["POST", "PUT"]}}, Sources("darklaunch.yaml"))
>>> route_of(routes, "GET", "/items/42?full=1"), route_of(routes, "PUT", "/items"), \
route_of(routes, "GET", "/")
('detail', 'writes', None)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from pytest_darklaunch.core.regexes import re2_unsupported, regex_samples
from pytest_darklaunch.core.spec.model import HTTP_METHODS, Route
from pytest_darklaunch.core.spec.reader import Path, Sources
from pytest_darklaunch.errors import ConfigError

ROUTE_KEYS = ("path", "methods")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
NAME_HINT = "a route name of letters, digits, '-' and '_' (at most 63), such as detail"
REGEX_HINT = (
    "a regular expression RE2 accepts (Envoy's and Istio's engine: no lookaround, "
    "no backreferences), matched against the whole path without its query"
)


KEY_SEPARATOR = "~"


def window_key(role: str, route: str | None) -> str:
    """The key of one role's windows on one route (``dark~detail``), or on all (``dark``).

    >>> window_key("dark", "detail"), split_key("dark~GET /a~b"), split_key("live")
    ('dark~detail', ('dark', 'GET /a~b'), ('live', None))
    """
    return role if route is None else f"{role}{KEY_SEPARATOR}{route}"


def split_key(key: str) -> tuple[str, str | None]:
    """``(role, route)`` of a window key; roles never hold the separator, route names may."""
    role, sep, route = key.partition(KEY_SEPARATOR)
    return role, (route if sep else None)


def _fail(sources: Sources, path: Path, value: object, allowed: str) -> ConfigError:
    label, source = sources.of(path)
    return ConfigError(label, value, source, allowed)


def parse_routes(
    value: object, sources: Sources, at: Path = ("routes",)
) -> tuple[Route, ...]:
    """The ``routes:`` mapping, validated, in declaration order (also checked for overlaps)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise _fail(sources, at, value, "a mapping of route names to {path, methods}")
    routes = []
    for name, body in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _fail(sources, at, name, NAME_HINT)
        routes.append(_route(name, body, sources, at + (name,)))
    out = tuple(routes)
    check_unambiguous(out, (), sources, at)
    return out


def _route(name: str, body: object, sources: Sources, at: Path) -> Route:
    if not isinstance(body, Mapping) or not body:
        raise _fail(sources, at, body, "a mapping with path (a regex), methods or both")
    for key in body:
        if key not in ROUTE_KEYS:
            label, source = sources.of(at + (str(key),))
            raise ConfigError(f"key {label}", "unknown", source, "one of " + ", ".join(ROUTE_KEYS))
    path = body.get("path")
    if path is not None:
        path = _regex(path, sources, at + ("path",))
    return Route(name, path, _methods(body.get("methods"), sources, at + ("methods",)))


def _methods(value: object, sources: Sources, at: Path) -> tuple[str, ...]:
    allowed = "a list of methods among " + ", ".join(HTTP_METHODS)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _fail(sources, at, value, allowed)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or item.upper() not in HTTP_METHODS:
            raise _fail(sources, at, item, allowed)
        if item.upper() not in out:
            out.append(item.upper())
    return tuple(out)


def _regex(value: object, sources: Sources, at: Path) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(sources, at, value, REGEX_HINT)
    try:
        re.compile(value)
    except re.error as exc:
        raise _fail(sources, at, value, f"{REGEX_HINT} ({exc})") from None
    unsupported = re2_unsupported(value)
    if unsupported:
        raise _fail(sources, at, value, f"{REGEX_HINT} (found {unsupported})")
    return value


def target_route(name: str, requests: Sequence[tuple[str, str]]) -> Route:
    """The route of the targets named ``name``: their method and exact path, and their query
    parameters when they all send the same query.

    A recorded file names its entries ``METHOD /path`` (query dropped), so one name often
    stands for many queries of one path; a name whose requests differ in method or path is no
    route a proxy can match (``ValueError``).

    >>> target_route("GET /items", [("GET", "/items?page=1"), ("GET", "/items?page=2")]).query
    ()
    """
    lines = {(m.upper(), urlsplit(p).path or "/") for m, p in requests}
    if len(lines) != 1:
        shown = ", ".join(sorted(f"{m} {p}" for m, p in lines)[:3])
        raise ValueError(f"target name {name!r} names requests on different paths ({shown})")
    ((method, path),) = lines
    queries = {tuple(parse_qsl(urlsplit(p).query, keep_blank_values=True)) for _, p in requests}
    query = queries.pop() if len(queries) == 1 else ()
    return Route(name, re.escape(path), (method,), query, target=True)


Request = tuple[str, str, str]  # (method, path with query, where it comes from)


def check_unambiguous(
    routes: Sequence[Route], requests: Iterable[Request], sources: Sources, at: Path
) -> None:
    """Refuse routes under which one request would belong to two of them.

    Exact for the ``requests`` given (the mix's targets, a recorded file's entries). Between
    two declarations it checks what can be decided without traffic: methods in common and
    one of them without a path means overlap; two regexes overlap when a sample string of one
    (shortest strings through its branches and repeats) is matched by the other. Overlaps no
    sample reveals stay possible; the proxy then takes the first declared route, and so does
    :func:`route_of`.
    """
    for i, first in enumerate(routes):
        for second in routes[i + 1:]:
            clash = _declared_overlap(first, second)
            if clash is not None:
                raise _fail(
                    sources,
                    at + (second.name,),
                    second.describe(),
                    f"a route no request shares with route {first.name} "
                    f"({first.describe()}; both match {clash})",
                )
    for method, path, origin in requests:
        names = [r.name for r in routes if r.matches(method, path)]
        if len(names) > 1:
            raise _fail(
                sources,
                at + (names[1],),
                f"{method} {path}",
                f"one route per request, but {origin} matches routes {' and '.join(names[:2])}",
            )


def _declared_overlap(first: Route, second: Route) -> str | None:
    """A request both declared routes match (``METHOD /path``), or ``None`` when none is found.

    Targets are left out: their own requests are checked exactly.
    """
    if first.target or second.target:
        return None
    if first.methods and second.methods:
        common = [m for m in first.methods if m in second.methods]
    else:
        common = list(first.methods or second.methods or ("GET",))
    if not common:
        return None
    method = common[0]
    if first.path is None or second.path is None:
        pathed = first if first.path is not None else second
        samples = _samples(pathed)
        return f"{method} {samples[0] if samples else pathed.path or '/'}"
    for sample in [*_samples(first), *_samples(second)]:
        if _path_matches(first, sample) and _path_matches(second, sample):
            return f"{method} {sample}"
    return None


def _path_matches(route: Route, path: str) -> bool:
    return route.path is None or re.fullmatch(route.path, path) is not None


def _samples(route: Route) -> list[str]:
    if route.path is None:
        return []
    return [s for s in regex_samples(route.path) if re.fullmatch(route.path, s)]


def route_of(routes: Sequence[Route], method: str, path: str) -> str | None:
    """The name of the route a request is on (the first declared that matches), or ``None``."""
    for route in routes:
        if route.matches(method, path):
            return route.name
    return None


def objective_routes(
    names: Iterable[tuple[Path, str]],
    declared: Sequence[Route],
    targets: Sequence[tuple[str, str, str]],
    sources: Sources,
    mirror_methods: Sequence[str] | None = None,
) -> tuple[Route, ...]:
    """The routes the proxy needs: the targets objectives name, then every declared route.

    ``names`` are the objectives' ``route`` values with their spec paths; ``targets`` are the
    mix's ``(name, method, path)``. A name that is neither a target's nor a declared route's is
    a one-line error; so are a name that is both, a target name on several paths, and a target
    whose request a declared route also matches. So is an objective on a route none of whose
    methods is in ``mirror_methods`` (``None``: all are mirrored): dark never sees it.
    """
    by_name = {r.name: r for r in declared}
    requests: dict[str, list[tuple[str, str]]] = {}
    for name, method, path in targets:
        requests.setdefault(name, []).append((method, path))
    chosen: dict[str, Route] = {}
    for at, name in names:
        if name in requests and name in by_name:
            raise _fail(sources, at, name, "a route name that is not also a target's name")
        if name in requests and name not in chosen:
            try:
                chosen[name] = target_route(name, requests[name])
            except ValueError as exc:
                raise _fail(
                    sources, at, name, f"a target name on one method and path ({exc})"
                ) from None
        elif name not in requests and name not in by_name:
            known = ", ".join(sorted({*by_name, *requests}))
            raise _fail(
                sources,
                at,
                name,
                f"a route among {known} (declare it under routes: or name a target of the mix)"
                if known
                else "a route declared under routes: or a target's name (there are none)",
            )
    routes = (*chosen.values(), *declared)
    by_name.update(chosen)
    for at, name in names:
        _check_named(by_name[name], at, targets, sources, mirror_methods)
    check_unambiguous(
        routes, [(m, p, f"target {n}") for n, m, p in targets], sources, ("routes",)
    )
    return routes


def _check_named(
    route: Route,
    at: Path,
    targets: Sequence[tuple[str, str, str]],
    sources: Sources,
    mirror_methods: Sequence[str] | None,
) -> None:
    """An objective's route must hold its own requests only, and reach dark."""
    if route.target:
        # The proxy sees a request line, not a target's name: another target on the same
        # line would be counted as this one.
        other = next((n for n, m, p in targets if n != route.name and route.matches(m, p)), None)
        if other is not None:
            raise _fail(
                sources,
                at,
                route.name,
                f"a target whose requests no other target sends (target {other} sends "
                f"{route.describe()} too; declare a route for both under routes:)",
            )
    if mirror_methods is not None and route.methods:
        if not set(route.methods) & set(mirror_methods):
            raise _fail(
                sources,
                at,
                route.name,
                f"a route dark receives (route {route.name} is {', '.join(route.methods)}; "
                f"mirror.methods is {', '.join(mirror_methods)})",
            )
