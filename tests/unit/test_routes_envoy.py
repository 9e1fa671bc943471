"""The per-route Envoy config, as data: which routes, clusters, tags and buckets it adds."""

from __future__ import annotations

import copy
import re
from typing import Any

from pytest_darklaunch.backends.local.envoy import envoy_config, series_labels
from pytest_darklaunch.backends.local.routes_envoy import (
    route_cluster,
    route_labels,
    route_match,
    virtual_host,
    with_routes,
)
from pytest_darklaunch.core.routes import target_route
from pytest_darklaunch.core.spec import Route, Sources, build_spec

SPEC = build_spec({"target": "default/sample-app"}, Sources("test"))
DETAIL = Route("detail", "^/items/[0-9]+$", ("GET",))
WRITES = Route("writes", None, ("POST", "PUT"))
ANY = Route("health", "/healthz")


def base() -> dict[str, Any]:
    """The bootstrap with one mirroring route for every request (every method mirrored)."""
    config = envoy_config(SPEC, live_port=8081, dark_port=8082)
    host = virtual_host(config)
    entry = copy.deepcopy(host["routes"][0])
    entry["match"] = {"prefix": "/"}
    host["routes"] = [entry]
    return config


def method_split(config: dict[str, Any]) -> dict[str, Any]:
    """A base that mirrors GET/HEAD only, as with mirror.methods: a mirroring route for those
    methods, then the same route without a mirror policy for the rest."""
    out = copy.deepcopy(config)
    host = virtual_host(out)
    (entry,) = host["routes"]
    mirrored = copy.deepcopy(entry)
    mirrored["match"]["headers"] = [
        {"name": ":method", "string_match": {"safe_regex": {"regex": "^(GET|HEAD)$"}}}
    ]
    plain = copy.deepcopy(entry)
    del plain["route"]["request_mirror_policies"]
    host["routes"] = [mirrored, plain]
    return out


def summary(config: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(name, live cluster, mirrored) per Envoy route, in order."""
    return [
        (
            r.get("name", ""),
            r["route"]["cluster"],
            bool(r["route"].get("request_mirror_policies")),
        )
        for r in virtual_host(config)["routes"]
    ]


def test_no_routes_leave_the_config_as_it_was() -> None:
    assert with_routes(base(), []) == base()


def test_each_route_gets_its_entry_and_cluster_pair_before_the_catch_all() -> None:
    config = with_routes(base(), [DETAIL, WRITES])
    assert summary(config) == [
        ("detail", "live~detail", True),
        ("writes", "live~writes", True),
        ("", "live", True),
    ]
    entry = virtual_host(config)["routes"][0]["route"]
    assert entry["request_mirror_policies"][0]["cluster"] == "dark~detail"
    assert entry["timeout"] == virtual_host(base())["routes"][0]["route"]["timeout"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert set(clusters) == {"live", "dark", "live~detail", "dark~detail", "live~writes",
                             "dark~writes"}
    port = clusters["dark~writes"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert port["endpoint"]["address"]["socket_address"]["port_value"] == 8082
    assert clusters["dark~writes"]["load_assignment"]["cluster_name"] == "dark~writes"


def test_matches_path_regex_methods_and_target_query() -> None:
    assert route_match(WRITES) == {
        "prefix": "/",
        "headers": [
            {"name": ":method", "string_match": {"safe_regex": {"regex": "^(POST|PUT)$"}}}
        ],
    }
    assert route_match(ANY) == {"safe_regex": {"regex": "/healthz"}}
    assert route_match(target_route("list", [("GET", "/a.b?page=2")])) == {
        "path": "/a.b",
        "query_parameters": [{"name": "page", "string_match": {"exact": "2"}}],
        "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
    }


def test_with_mirrored_methods_a_route_takes_only_the_mirroring_base_route() -> None:
    config = with_routes(method_split(base()), [DETAIL, ANY, WRITES], ("GET", "HEAD"))
    assert summary(config) == [
        ("detail", "live~detail", True),
        ("health", "live~health", True),
        ("writes", "live~writes", False),  # never mirrored: live's only
        ("", "live", True),
        ("", "live", False),
    ]
    detail, health = virtual_host(config)["routes"][:2]
    # Both matchers must hold: the route's method and the mirrored methods.
    assert [h["string_match"] for h in detail["match"]["headers"]] == [
        {"exact": "GET"},
        {"safe_regex": {"regex": "^(GET|HEAD)$"}},
    ]
    assert health["match"]["safe_regex"] == {"regex": "/healthz"}
    assert len(health["match"]["headers"]) == 1


def test_stats_tags_and_buckets_cover_the_route_clusters() -> None:
    config = with_routes(base(), [DETAIL])
    tags = {t["tag_name"]: re.compile(t["regex"]) for t in config["stats_config"]["stats_tags"]}
    role = tags["darklaunch_role"].match("cluster.live~detail.upstream_rq_200")
    route = tags["darklaunch_route"].match("cluster.dark~detail.upstream_rq_time")
    assert role is not None and role.group(2) == "live"
    assert route is not None and route.group(2) == "detail"
    catch_all = tags["darklaunch_role"].match("cluster.dark.upstream_rq_200")
    assert catch_all is not None and catch_all.group(2) == "dark"
    assert tags["darklaunch_route"].match("cluster.dark.upstream_rq_200") is None
    settings = config["stats_config"]["histogram_bucket_settings"]
    route_setting = re.compile(settings[-1]["match"]["safe_regex"]["regex"])
    assert route_setting.fullmatch("cluster.dark~detail.upstream_rq_time")
    assert not route_setting.fullmatch("cluster.dark.upstream_rq_time")
    assert settings[-1]["buckets"] == settings[0]["buckets"]
    assert route_cluster("dark", DETAIL) == "dark~detail"
    assert route_labels("dark", DETAIL) == {"darklaunch_role": "dark", "darklaunch_route": "detail"}
    assert route_labels("live", None) == {"darklaunch_role": "live"}


def test_histograms_flush_several_times_per_scrape() -> None:
    """Envoy's histograms reach its Prometheus endpoint on a flush only. Measured: polling the
    endpoint every 0.97 s (a flush timer 3% slower than the scrape, as on a loaded machine),
    dark's histogram count stood still while its requests grew in 3 of 70 polls with a 1 s
    flush, 0 of 70 with 0.25 s: every scrape interval must hold flushes to spare."""
    from pytest_darklaunch.backends.local.prometheus import SCRAPE_INTERVAL_S

    flush = envoy_config(SPEC, live_port=8081, dark_port=8082)["stats_flush_interval"]
    assert re.fullmatch(r"[0-9.]+s", flush)
    assert float(flush[:-1]) <= SCRAPE_INTERVAL_S / 4


def test_live_s_mirrored_methods_are_counted_apart_only_when_others_may_be_sent() -> None:
    def labels(raw: dict[str, Any]) -> dict[str, dict[str, str]]:
        return series_labels(build_spec({"target": "default/sample-app", **raw}, Sources("t")))

    eligible = {"envoy_virtual_host": "app", "envoy_virtual_cluster": "mirrored"}
    # GETs only, all of them mirrored: live's requests are the base, no second counter
    assert "eligible" not in labels({"traffic": {"rate": 10, "path": "/"}})
    writes = {"rate": 10, "targets": [{"path": "/a", "weight": 3},
                                      {"path": "/b", "method": "POST", "weight": 1}]}
    assert labels({"traffic": writes})["eligible"] == eligible
    command = {"rate": 10, "command": ["true", "{ingress}"]}  # its methods are not known
    assert labels({"traffic": command})["eligible"] == eligible
    # every method mirrored: every request of live is eligible
    everything = {"methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]}
    assert "eligible" not in labels({"traffic": writes, "mirror": everything})
    assert labels({})["live"] == {"envoy_cluster_name": "live"}
