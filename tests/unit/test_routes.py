"""Routes: parsing, one-line errors, overlap detection and which route a request is on."""

from __future__ import annotations

import doctest
import json
import re
from typing import Any

import pytest

import pytest_darklaunch.backends.local.routes_envoy
import pytest_darklaunch.core.regexes
import pytest_darklaunch.core.routes
import pytest_darklaunch.core.spec.model
from pytest_darklaunch.core.regexes import re2_unsupported, regex_samples
from pytest_darklaunch.core.routes import (
    check_unambiguous,
    objective_routes,
    parse_routes,
    route_of,
    target_route,
)
from pytest_darklaunch.core.spec import Route, Sources
from pytest_darklaunch.errors import ConfigError

SRC = "conf/darklaunch.yaml"


def parse(raw: Any) -> tuple[Route, ...]:
    return parse_routes(raw, Sources(SRC))


def error_of(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    message = str(info.value)
    assert "\n" not in message and message.startswith("invalid ")
    assert f"(from {SRC})" in message
    return message


def test_docstring_examples() -> None:
    for module in (
        pytest_darklaunch.core.spec.model,
        pytest_darklaunch.core.routes,
        pytest_darklaunch.core.regexes,
        pytest_darklaunch.backends.local.routes_envoy,
    ):
        assert doctest.testmod(module).failed == 0


def test_declared_routes_keep_their_order_and_normalise_methods() -> None:
    routes = parse(
        {
            "detail": {"path": "^/items/[0-9]+$", "methods": ["get"]},
            "writes": {"methods": ["POST", "PUT", "PATCH", "DELETE", "POST"]},
            "health": {"path": "/healthz", "methods": ["GET"]},
        }
    )
    assert [r.name for r in routes] == ["detail", "writes", "health"]
    assert routes[0] == Route("detail", "^/items/[0-9]+$", ("GET",))
    assert routes[1].methods == ("POST", "PUT", "PATCH", "DELETE")
    assert routes[2].methods == ("GET",) and routes[2].path == "/healthz"
    assert parse(None) == ()


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/items/42", "detail"),
        ("GET", "/items/42?full=1&x=2", "detail"),  # the regex sees the path without query
        ("get", "/items/42", "detail"),
        ("HEAD", "/items/42", None),  # method not declared for detail
        ("GET", "/items/42/reviews", None),  # the regex must match the whole path
        ("GET", "/v1/items/42", None),
        ("DELETE", "/items/42", "writes"),
        ("POST", "/anything", "writes"),
        ("GET", "/", None),
    ],
)
def test_route_of(method: str, path: str, expected: str | None) -> None:
    routes = parse(
        {
            "detail": {"path": "^/items/[0-9]+$", "methods": ["GET"]},
            "writes": {"methods": ["POST", "PUT", "PATCH", "DELETE"]},
        }
    )
    assert route_of(routes, method, path) == expected


def test_unanchored_regex_still_matches_the_whole_path_like_envoy() -> None:
    (route,) = parse({"items": {"path": "/items/[0-9]+"}})
    assert route.matches("GET", "/items/7")
    assert not route.matches("GET", "/x/items/7")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], "invalid routes [] (from conf/darklaunch.yaml): expected a mapping of route names"),
        ({"a b": {"path": "/"}}, "invalid routes 'a b' (from conf/darklaunch.yaml): expected a "
         "route name of letters"),
        ({"detail": {}}, "invalid routes.detail {} (from conf/darklaunch.yaml): expected a mapping"
         " with path (a regex), methods or both"),
        ({"detail": {"paht": "/"}}, "invalid key routes.detail.paht 'unknown'"),
        ({"detail": {"path": "^/items/[0-9+$"}}, "invalid routes.detail.path '^/items/[0-9+$' "
         "(from conf/darklaunch.yaml): expected a regular expression RE2 accepts"),
        ({"detail": {"path": "^/(?!admin).*$"}}, "(found a lookaround)"),
        ({"detail": {"path": r"^/(a)/\1$"}}, "(found a backreference)"),
        ({"detail": {"path": ""}}, "invalid routes.detail.path ''"),
        ({"detail": {"methods": ["FETCH"]}}, "invalid routes.detail.methods 'FETCH' (from "
         "conf/darklaunch.yaml): expected a list of methods among GET, HEAD, POST"),
        ({"detail": {"methods": []}}, "invalid routes.detail.methods []"),
        ({"detail": {"methods": [1]}}, "invalid routes.detail.methods 1"),
    ],
)
def test_bad_declarations_are_one_line_errors(raw: Any, expected: str) -> None:
    assert expected in error_of(raw)


def test_invalid_regex_names_the_parser_error() -> None:
    assert "unterminated character set" in error_of({"d": {"path": "^/items/[0-9+$"}})


@pytest.mark.parametrize(
    ("raw", "clash"),
    [
        # Methods in common and neither has a path: every such request is on both.
        ({"reads": {"methods": ["GET"]}, "all": {"methods": ["GET", "POST"]}}, "GET /"),
        # One path-less route with a method in common swallows the other's paths.
        (
            {"detail": {"path": "^/items/[0-9]+$"}, "reads": {"methods": ["GET"]}},
            "GET /items/0",
        ),
        # Two regexes with a common string: a sample of one is matched by the other.
        ({"any": {"path": "^/items/.*$"}, "detail": {"path": "^/items/[0-9]+$"}}, "/items/0"),
        ({"ab": {"path": "^/(a|b)$"}, "b": {"path": "^/b$"}}, "/b"),
        ({"n": {"path": r"^/a/\d+$"}, "one": {"path": "^/a/1[0-9]*$"}}, "/a/1"),
    ],
)
def test_overlapping_declarations_are_refused(raw: Any, clash: str) -> None:
    message = error_of(raw)
    first, second = list(raw)
    assert f"invalid routes.{second} " in message
    assert f"a route no request shares with route {first} " in message
    assert clash in message


@pytest.mark.parametrize(
    "raw",
    [
        {"reads": {"methods": ["GET", "HEAD"]}, "writes": {"methods": ["POST"]}},
        {"detail": {"path": "^/items/[0-9]+$"}, "list": {"path": "^/items$"}},
        {"detail": {"path": "^/items/[0-9]+$", "methods": ["GET"]}, "writes": {"methods": ["PUT"]}},
        {"a": {"path": "^/a/.*$"}, "b": {"path": "^/b/.*$"}},
    ],
)
def test_disjoint_declarations_are_accepted(raw: Any) -> None:
    assert len(parse(raw)) == len(raw)


def test_a_request_on_two_routes_is_refused_naming_it() -> None:
    # Samples do not reveal this overlap ('/ac' and '/cc'), a known request does.
    routes = parse({"x": {"path": "^/[ab]c$"}, "y": {"path": "^/[cb]c$"}})
    assert route_of(routes, "GET", "/bc") == "x"  # first declared, as in the proxy
    with pytest.raises(ConfigError) as info:
        check_unambiguous(routes, [("GET", "/bc", "entry 3 of rec.har")], Sources(SRC), ("routes",))
    assert str(info.value) == (
        "invalid routes.y 'GET /bc' (from conf/darklaunch.yaml): expected one route per request,"
        " but entry 3 of rec.har matches routes x and y"
    )


def test_target_routes_match_method_exact_path_and_query() -> None:
    route = target_route("list", [("get", "/items?page=2")])
    assert route.matches("GET", "/items?page=2")
    assert route.matches("GET", "/items?sort=asc&page=2")
    assert not route.matches("GET", "/items?page=3")
    assert not route.matches("GET", "/items/")
    assert not route.matches("POST", "/items?page=2")
    assert target_route("dot", [("GET", "/a.b")]).matches("GET", "/a.b")
    assert not target_route("dot", [("GET", "/a.b")]).matches("GET", "/axb")
    assert route.describe() == "GET /items?page=2"


def test_slugs_are_safe_for_cluster_names_and_distinct() -> None:
    names = ["detail", "GET /items", "GET /items/", "a.b", "x" * 60]
    slugs = [Route(n).slug for n in names]
    assert slugs[0] == "detail"
    assert len(set(slugs)) == len(names)
    for slug in slugs:
        assert all(c.isalnum() or c in "-_" for c in slug) and len(slug) <= 48


TARGETS = [
    ("list", "GET", "/items?page=2"),
    ("create", "POST", "/items"),
    ("GET /users", "GET", "/users?id=1"),
    ("GET /users", "GET", "/users?id=2"),
    ("mixed", "GET", "/a"),
    ("mixed", "GET", "/b"),
]


def named(*names: str) -> list[tuple[tuple[str, ...], str]]:
    return [(("objectives", f"[{i}]", "route"), n) for i, n in enumerate(names)]


def test_objective_routes_are_named_targets_then_declared_routes() -> None:
    declared = parse({"detail": {"path": "^/items/[0-9]+$"}})
    routes = objective_routes(named("list", "detail", "list"), declared, TARGETS, Sources(SRC))
    assert [r.name for r in routes] == ["list", "detail"]
    assert routes[0].target and not routes[1].target


def test_unknown_route_of_an_objective_lists_the_known_ones() -> None:
    declared = parse({"detail": {"path": "^/items/[0-9]+$"}})
    with pytest.raises(ConfigError) as info:
        objective_routes(named("detial"), declared, TARGETS, Sources(SRC))
    assert str(info.value) == (
        "invalid objectives[0].route 'detial' (from conf/darklaunch.yaml): expected a route "
        "among GET /users, create, detail, list, mixed (declare it under routes: or name a "
        "target of the mix)"
    )


def test_a_target_also_matched_by_a_declared_route_is_refused() -> None:
    declared = parse({"writes": {"methods": ["POST"]}})
    with pytest.raises(ConfigError, match="target create matches routes create and writes"):
        objective_routes(named("create"), declared, TARGETS, Sources(SRC))
    # A target no objective names is no route, so the same declaration is fine then.
    assert [r.name for r in objective_routes(named("writes"), declared, TARGETS, Sources(SRC))] == [
        "writes"
    ]


def test_a_name_both_target_and_declared_is_refused() -> None:
    declared = parse({"list": {"path": "^/items$"}})
    with pytest.raises(ConfigError, match="a route name that is not also a target's name"):
        objective_routes(named("list"), declared, TARGETS, Sources(SRC))


def test_regex_samples_match_their_regex() -> None:
    for regex in ["^/items/[0-9]+$", "/(a|bb|ccc)/x*", "/u/[^/]+/avatar", r"/\d{2,4}", ".*"]:
        samples = regex_samples(regex)
        assert samples
        assert all(re.fullmatch(regex, s) for s in samples), (regex, samples)
    assert {"/a/", "/bb/x", "/ccc/"} <= set(regex_samples("/(a|bb|ccc)/x*"))
    assert re2_unsupported("^/items/(?P<id>[0-9]+)$") is None


def test_a_recorded_name_groups_its_queries_and_one_on_two_paths_is_refused() -> None:
    (route,) = objective_routes(named("GET /users"), (), TARGETS, Sources(SRC))
    assert route.query == () and route.matches("GET", "/users?id=9")
    with pytest.raises(ConfigError) as info:
        objective_routes(named("mixed"), (), TARGETS, Sources(SRC))
    assert str(info.value) == (
        "invalid objectives[0].route 'mixed' (from conf/darklaunch.yaml): expected a target name"
        " on one method and path (target name 'mixed' names requests on different paths "
        "(GET /a, GET /b))"
    )


# --- in the spec ---------------------------------------------------------------------------


def spec_of(**rest: Any) -> Any:
    from pytest_darklaunch.core.metrics import is_builtin
    from pytest_darklaunch.core.spec import build_spec

    return build_spec({"target": "default/sample-app", **rest}, Sources(SRC), is_builtin)


def test_spec_routes_and_objectives_with_a_route() -> None:
    spec = spec_of(
        routes={"detail": {"path": "^/items/[0-9]+$", "methods": ["GET"]}},
        objectives=[
            {"metric": "95th-percentile-tail-latency", "upper": 100},
            {"metric": "95th-percentile-tail-latency", "upper": 100, "route": "detail"},
        ],
    )
    assert [r.name for r in spec.routes] == ["detail"]
    assert spec.route("detail") is spec.routes[0] and spec.route("x") is None
    assert [o.route for o in spec.objectives] == [None, "detail"]
    assert spec.objectives[1].label == "95th-percentile-tail-latency <= 100 on route detail"
    # Declared routes are measured even when no objective names them (reports show them).
    assert [r.name for r in spec_of(routes={"a": {"path": "/a"}}).routes] == ["a"]


def test_spec_errors_for_routes_are_one_line_with_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        spec_of(objectives=[{"metric": "mean-latency", "upper": 5, "route": "detail"}])
    assert str(info.value).startswith(
        "invalid objectives[0].route 'detail' (from conf/darklaunch.yaml): expected a route "
    )
    with pytest.raises(ConfigError, match=r"invalid objectives\[0\].route 5 "):
        spec_of(objectives=[{"metric": "mean-latency", "upper": 5, "route": 5}])
    with pytest.raises(ConfigError, match="did you mean 'routes'"):
        spec_of(route={"a": {"path": "/a"}})
    with pytest.raises(ConfigError, match=r"invalid routes.a.path '\(' "):
        spec_of(routes={"a": {"path": "("}})


def test_an_objective_on_a_route_that_is_never_mirrored_is_refused() -> None:
    declared = parse(
        {"writes": {"methods": ["POST", "PUT"]}, "a": {"path": "^/a$", "methods": ["GET"]}}
    )
    with pytest.raises(ConfigError) as info:
        objective_routes(named("writes"), declared, (), Sources(SRC), ("GET", "HEAD"))
    assert str(info.value) == (
        "invalid objectives[0].route 'writes' (from conf/darklaunch.yaml): expected a route "
        "dark receives (route writes is POST, PUT; mirror.methods is GET, HEAD)"
    )
    with pytest.raises(ConfigError, match="route create is POST"):
        objective_routes(named("create"), (), TARGETS, Sources(SRC), ("GET",))
    assert objective_routes(named("a"), declared, (), Sources(SRC), ("GET",))


def test_a_recorded_request_on_two_declared_routes_is_refused(tmp_path: Any) -> None:
    from pytest_darklaunch.core.spec import build_spec

    entries = [{"request": {"method": "GET", "url": f"http://x{p}"}} for p in ("/ac", "/bc")]
    (tmp_path / "rec.har").write_text(json.dumps({"log": {"entries": entries}}))
    raw = {
        "target": "default/sample-app",
        "traffic": {"targets_file": "rec.har"},
        # No sample string of one regex is matched by the other: the recording shows it.
        "routes": {"x": {"path": "^/[ab]c$"}, "y": {"path": "^/[cb]c$"}},
    }
    with pytest.raises(ConfigError) as info:
        build_spec(raw, Sources(SRC), base_dir=str(tmp_path))
    assert str(info.value) == (
        "invalid routes.y 'GET /bc' (from conf/darklaunch.yaml): expected one route per request,"
        " but target GET /bc matches routes x and y"
    )


def test_a_target_route_another_target_shares_is_refused() -> None:
    targets = [("small", "POST", "/items"), ("large", "POST", "/items"), ("list", "GET", "/items")]
    with pytest.raises(ConfigError) as info:
        objective_routes(named("small"), (), targets, Sources(SRC))
    assert str(info.value) == (
        "invalid objectives[0].route 'small' (from conf/darklaunch.yaml): expected a target whose "
        "requests no other target sends (target large sends POST /items too; declare a route for "
        "both under routes:)"
    )
    assert [r.name for r in objective_routes(named("list"), (), targets, Sources(SRC))] == ["list"]
