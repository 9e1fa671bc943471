"""Per-route proxy config: each route gets its own Envoy route and its own live/dark clusters.

:func:`with_routes` takes the bootstrap :func:`~pytest_darklaunch.backends.local.envoy.envoy_config`
made and puts, before its routes, one copy of them per declared route: the same actions and
mirror policies, restricted to the route's path regex and methods, sending to clusters named
``<cluster>~<slug>`` (``live~detail``, ``dark~detail``) that point at the same sockets. Envoy's
counters and histograms are per cluster, so every route then has its own series, and what no
route matches still goes to ``live``/``dark``.

Envoy cuts a cluster's name out of its stat name at the first dot, and Prometheus label values
take any UTF-8: slugs are therefore made of ``[A-Za-z0-9_-]`` and ``~`` separates them (a
character no DNS label, hence no base cluster name, holds). Two stats tags make selectors easy:
``darklaunch_route`` (the slug, on route clusters) and ``darklaunch_role`` (the base cluster,
on every cluster), so ``{darklaunch_role="live"}`` is all of live's traffic and
``{darklaunch_role="live",darklaunch_route="detail"}`` one route of it.

>>> from pytest_darklaunch.core.spec import Route
>>> from pytest_darklaunch.core.spec import Sources, build_spec
>>> from pytest_darklaunch.backends.local.envoy import envoy_config
>>> spec = build_spec({"target": "default/sample-app"}, Sources("test"))
>>> config = with_routes(envoy_config(spec, live_port=8081, dark_port=8082),
...                      [Route("detail", "^/items/[0-9]+$", ("GET",))])
>>> first = virtual_host(config)["routes"][0]
>>> first["match"]["safe_regex"], first["match"]["headers"][0], first["route"]["cluster"]
({'regex': '^/items/[0-9]+$'}, {'name': ':method', 'string_match': {'exact': 'GET'}}, \
'live~detail')
>>> [c["name"] for c in config["static_resources"]["clusters"]]
['live', 'dark', 'live~detail', 'dark~detail']
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from pytest_darklaunch.core.routes import window_key
from pytest_darklaunch.core.spec.model import ROLES, Route, Spec

SEPARATOR = "~"
ROUTE_TAG = "darklaunch_route"
ROLE_TAG = "darklaunch_role"


def route_cluster(base: str, route: Route) -> str:
    """The name of ``route``'s copy of cluster ``base``: ``live~detail``."""
    return f"{base}{SEPARATOR}{route.slug}"


def route_labels(role: str, route: Route | None) -> dict[str, str]:
    """Prometheus label matchers for one role's traffic, on one route or (``None``) on all."""
    labels = {ROLE_TAG: role}
    if route is not None:
        labels[ROUTE_TAG] = route.slug
    return labels


def stack_labels(spec: Spec) -> dict[str, dict[str, str]]:
    """Label matchers per window key: each role (all its traffic) and, with routes, each role
    on each route (``dark~detail``), by the stats tags the per-route config adds."""
    if not spec.routes:
        return {role: {"envoy_cluster_name": role} for role in ROLES}
    labels = {role: route_labels(role, None) for role in ROLES}
    for route in spec.routes:
        for role in ROLES:
            labels[window_key(role, route.name)] = route_labels(role, route)
    return labels


def virtual_host(config: dict[str, Any]) -> dict[str, Any]:
    """The one virtual host of a bootstrap made by ``envoy_config``."""
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    host: dict[str, Any] = hcm["route_config"]["virtual_hosts"][0]
    return host


def route_match(route: Route) -> dict[str, Any]:
    """Envoy's match for ``route``: path (regex on the path without query, or exact for a
    target, with its query parameters) and ``:method``."""
    match: dict[str, Any]
    if route.target:
        match = {"path": route.path_literal}
        if route.query:
            match["query_parameters"] = [
                {"name": name, "string_match": {"exact": value}} for name, value in route.query
            ]
    elif route.path is not None:
        match = {"safe_regex": {"regex": route.path}}
    else:
        match = {"prefix": "/"}
    if len(route.methods) == 1:
        match["headers"] = [{"name": ":method", "string_match": {"exact": route.methods[0]}}]
    elif route.methods:
        alternatives = "|".join(re.escape(m) for m in route.methods)
        match["headers"] = [
            {"name": ":method", "string_match": {"safe_regex": {"regex": f"^({alternatives})$"}}}
        ]
    return match


def _restricted(base_match: dict[str, Any], route: Route) -> dict[str, Any]:
    """``route``'s match and whatever else ``base_match`` requires (its headers, say): Envoy
    requires all header matchers of a route to hold."""
    if base_match.get("prefix", "/") != "/" or set(base_match) & {"path", "safe_regex"}:
        raise ValueError(f"a base route matching {base_match} cannot be split by route")
    match = route_match(route)
    extra_headers = base_match.get("headers", [])
    if extra_headers:
        match["headers"] = [*match.get("headers", []), *extra_headers]
    for key, value in base_match.items():
        if key not in ("prefix", "headers"):
            match[key] = value
    return match


def _renamed_action(action: dict[str, Any], route: Route) -> dict[str, Any]:
    out = copy.deepcopy(action)
    out["cluster"] = route_cluster(out["cluster"], route)
    for policy in out.get("request_mirror_policies", []):
        policy["cluster"] = route_cluster(policy["cluster"], route)
    return out


def mirrored(route: Route, mirror_methods: Sequence[str] | None) -> bool:
    """Whether any request of ``route`` is mirrored: a route declared only for methods outside
    ``mirror.methods`` (``None``: every method is mirrored) never reaches dark."""
    if mirror_methods is None or not route.methods:
        return True
    return bool(set(route.methods) & set(mirror_methods))


def with_routes(
    config: dict[str, Any], routes: Sequence[Route], mirror_methods: Sequence[str] | None = None
) -> dict[str, Any]:
    """``config`` (a bootstrap from ``envoy_config``) with one Envoy route and one cluster
    copy per route in ``routes``, ahead of the catch-all; unchanged when ``routes`` is empty.

    A mirrored route takes only the base routes that mirror, so its live clusters count the
    requests eligible for mirroring (the mirror check's base) and its other methods stay on
    the catch-all; a route that is never mirrored takes the base routes without a mirror.
    """
    if not routes:
        return config
    out = copy.deepcopy(config)
    host = virtual_host(out)
    base_routes = host["routes"]
    used: list[str] = []
    split = []
    for route in routes:
        wanted = mirrored(route, mirror_methods)
        for base in base_routes:
            if bool(base["route"].get("request_mirror_policies")) != wanted:
                continue
            action = _renamed_action(base["route"], route)
            split.append(
                {"name": route.slug, "match": _restricted(base["match"], route), "route": action}
            )
            for name in _clusters_of(base["route"]):
                if name not in used:
                    used.append(name)
    host["routes"] = split + base_routes
    resources = out["static_resources"]
    by_name = {c["name"]: c for c in resources["clusters"]}
    for route in routes:
        for name in used:
            resources["clusters"].append(_cluster_copy(by_name[name], route_cluster(name, route)))
    _tag_and_bucket(out, used)
    return out


def _clusters_of(action: dict[str, Any]) -> list[str]:
    return [action["cluster"], *(p["cluster"] for p in action.get("request_mirror_policies", []))]


def _cluster_copy(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(cluster)
    out["name"] = name
    out["load_assignment"]["cluster_name"] = name
    return out


def _tag_and_bucket(config: dict[str, Any], bases: Sequence[str]) -> None:
    """Stats tags for role and route, and the latency buckets for the route clusters too."""
    roles = "|".join(re.escape(b) for b in bases)
    stats = config.setdefault("stats_config", {})
    stats.setdefault("stats_tags", []).extend(
        [
            # The first group is what the tag takes out of the name, the second its value;
            # Envoy's own envoy.cluster_name tag still holds the whole cluster name.
            {"tag_name": ROLE_TAG, "regex": rf"^cluster\.(({roles})(?:~[A-Za-z0-9_-]+)?\.)"},
            {"tag_name": ROUTE_TAG, "regex": rf"^cluster\.(?:{roles})(~([A-Za-z0-9_-]+))\."},
        ]
    )
    settings = stats.get("histogram_bucket_settings", [])
    if settings:
        settings.append(
            {
                "match": {
                    "safe_regex": {
                        "regex": rf"^cluster\.(?:{roles})~[A-Za-z0-9_-]+\.upstream_rq_time$"
                    }
                },
                "buckets": list(settings[0]["buckets"]),
            }
        )
