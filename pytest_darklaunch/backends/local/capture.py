"""Envoy config pieces that make every upstream answer, live's and the shadow's, land in a log.

Measured with the bundled Envoy 1.40: the router's ``upstream_log`` writes one entry per
upstream request, mirrored (shadow) requests included, with the same ``x-request-id`` for the
live request and its copies; ``%COMMON_DURATION(US_TX_BEG:US_RX_END:us)%`` is the upstream
request's duration in microseconds. A Lua filter among the router's ``upstream_http_filters``
runs for live's and for the shadow's responses and reads their bodies; it hands a copy to the
log through the response header :data:`CAPTURE_HEADER` (dynamic metadata does not show in the
upstream log), which the route removes before the answer reaches the client.

The capture header holds ``v1;<length>;<kind>;<headers>;<payload>``: headers as base64 of
``name\\nvalue\\n`` lines; kind ``b`` (payload: base64 of the whole body, at most max_body
bytes), ``h`` (larger: ``<hash>:<base64 of the first bytes>``, the hash a 64-bit pair of
FNV-1a sums over the whole body, computed in Lua) or ``u`` (not read: no Content-Length, or
one over :data:`CAPTURE_LIMIT`; the length is the announced one, -1 when unknown).

>>> cfg = {"static_resources": {"clusters": [], "listeners": [{"filter_chains": [{"filters": [
...     {"typed_config": {"route_config": {"virtual_hosts": [{"routes": [{"route": {
...         "request_mirror_policies": []}}]}]}, "http_filters": [{"typed_config": {}}]}}]}]}]}}
>>> add_capture(cfg, log_path="/tmp/u.log", bodies=True, max_body=1024, live2_port=8083)
>>> router = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
>>> [f["name"] for f in router["typed_config"]["http_filters"][0]["typed_config"][
...     "upstream_http_filters"]]
['envoy.filters.http.lua', 'envoy.filters.http.upstream_codec']
>>> [c["name"] for c in cfg["static_resources"]["clusters"]]
['live-2']
"""

from __future__ import annotations

import copy
from typing import Any

from pytest_darklaunch.core.compare.model import LIVE2 as LIVE2

CAPTURE_HEADER = "x-darklaunch-capture"
PREFIX_BYTES = 512  # of a body over max_body: kept for examples, the hash decides
# Envoy buffers a body to hand it to Lua, and answers 500 to the client when a body exceeds the
# connection's buffer limit (measured: a 3 MB body through the default 1 MiB limit). So only
# bodies that announce a Content-Length up to this are read, under a buffer limit above it;
# others (streams, chunked answers of unknown length, huge files) pass untouched and compare
# by their Content-Length only.
CAPTURE_LIMIT = 8 * 1024 * 1024
BUFFER_LIMIT = CAPTURE_LIMIT + 64 * 1024
LOG_FLUSH_MS = 100  # --file-flush-interval-msec: the reader sees entries within this
LIVE2_FIRST = "~live-2-first"  # the name's suffix of a route sending live-2's copy first
UNMIRRORED = "~unmirrored"  # the name's suffix of a route that mirrors nothing
LUA_FILTER = "envoy.filters.http.lua"

LOG_FORMAT = {
    "id": "%REQ(X-REQUEST-ID)%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "status": "%RESPONSE_CODE%",
    "us": "%COMMON_DURATION(US_TX_BEG:US_RX_END:us)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "flags": "%RESPONSE_FLAGS%",
    "route": "%ROUTE_NAME%",
    "capture": f"%RESP({CAPTURE_HEADER.upper()})%",
}

# FNV-1a, 32 bits twice with two offset bases (a 64-bit digest). The prime 16777619 is
# 2^24 + 403, so h * prime = (h << 24) + h * 403: exact in LuaJIT's doubles, then mod 2^32.
_LUA = r"""
local MAX_BODY = %(max_body)d
local PREFIX = %(prefix)d
local CAPTURE_LIMIT = %(capture_limit)d
local bxor, lshift, tobit, tohex = bit.bxor, bit.lshift, bit.tobit, bit.tohex

local function digest(s)
  local a, b = tobit(2166136261), tobit(84696351)
  for i = 1, #s do
    local c = string.byte(s, i)
    a = bxor(a, c); a = tobit(lshift(a, 24) + (a %% 4294967296) * 403)
    b = bxor(b, c); b = tobit(lshift(b, 24) + (b %% 4294967296) * 403)
  end
  return tohex(a) .. tohex(b)
end

function envoy_on_response(handle)
  local parts = {}
  for name, value in pairs(handle:headers()) do
    parts[#parts + 1] = name .. "\n" .. value .. "\n"
  end
  local headers = handle:base64Escape(table.concat(parts))
  local announced = tonumber(handle:headers():get("content-length"))
  if announced == nil or announced > CAPTURE_LIMIT then
    -- never buffer a stream or a body over the limit: the client would get a 500 or wait
    handle:headers():replace("%(header)s", "v1;" .. (announced or -1) .. ";u;" .. headers .. ";")
    return
  end
  local body = handle:body()
  local bytes = ""
  if body ~= nil and body:length() > 0 then bytes = body:getBytes(0, body:length()) end
  local kind, payload = "b", handle:base64Escape(bytes)
  if #bytes > MAX_BODY then
    kind = "h"
    payload = digest(bytes) .. ":" .. handle:base64Escape(string.sub(bytes, 1, PREFIX))
  end
  handle:headers():replace("%(header)s", "v1;" .. #bytes .. ";" .. kind .. ";" ..
    headers .. ";" .. payload)
end
"""


def capture_lua(max_body: int) -> str:
    """The Lua source of the upstream filter that copies answers into the capture header."""
    return _LUA % {"max_body": max_body, "prefix": PREFIX_BYTES, "header": CAPTURE_HEADER,
                   "capture_limit": CAPTURE_LIMIT}


def _upstream_filters(max_body: int) -> list[dict[str, Any]]:
    return [
        {
            "name": LUA_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": capture_lua(max_body)},
            },
        },
        {
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec."
                "v3.UpstreamCodec"
            },
        },
    ]


def upstream_log(log_path: str) -> list[dict[str, Any]]:
    """The router's ``upstream_log``: one JSON line per upstream request, shadows included."""
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                "FileAccessLog",
                "path": log_path,
                "log_format": {"json_format": LOG_FORMAT},
            },
        }
    ]


def add_capture(
    config: dict[str, Any], *, log_path: str, bodies: bool, max_body: int,
    live2_port: int | None,
) -> None:
    """Turn :func:`~pytest_darklaunch.backends.local.envoy.envoy_config`'s output into a
    capturing one (in place): the upstream log, the body filter when ``bodies``, a ``live-2``
    cluster receiving the requests dark receives when ``live2_port`` is given (noise, latency
    baseline), and the mirror decided by route (see :func:`_decided_by_route`)."""
    resources = config["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    router = hcm["http_filters"][-1]["typed_config"]
    router["upstream_log"] = upstream_log(log_path)
    virtual_host = hcm["route_config"]["virtual_hosts"][0]
    if bodies:
        router["upstream_http_filters"] = _upstream_filters(max_body)
        # On the virtual host: every route (the unmirrored one for writes too) removes it.
        virtual_host["response_headers_to_remove"] = [CAPTURE_HEADER]
        # Live's answer is held against the client connection's limit, a shadow's against
        # its cluster's.
        resources["listeners"][0]["per_connection_buffer_limit_bytes"] = BUFFER_LIMIT
        for cluster in resources["clusters"]:
            cluster["per_connection_buffer_limit_bytes"] = BUFFER_LIMIT
    if live2_port is not None:
        endpoint = {"address": {"socket_address": {"address": "127.0.0.1",
                                                   "port_value": live2_port}}}
        resources["clusters"].append({
            "name": LIVE2,
            "type": "STATIC",
            **({"per_connection_buffer_limit_bytes": BUFFER_LIMIT} if bodies else {}),
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": LIVE2,
                                "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}]},
        })
    virtual_host["routes"] = [
        copied for route_entry in virtual_host["routes"]
        for copied in _decided_by_route(route_entry, bodies=bodies, live2=live2_port is not None)
    ]


def not_mirrored(route_name: str) -> bool:
    """Whether live's log entry of route ``route_name`` has no copy to wait for."""
    return route_name.endswith(UNMIRRORED)


def _decided_by_route(
    route_entry: dict[str, Any], *, bodies: bool, live2: bool
) -> list[dict[str, Any]]:
    """The route as routes that each mirror all or none of their requests.

    A mirroring route becomes one that takes its mirror fraction of the requests (the same
    fraction, now on the match) and mirrors every one of them, then one without a mirror
    policy for the rest: the share mirrored is unchanged, and the Lua capture is switched off
    on the unmirrored route (Envoy honours ``LuaPerRoute`` for the router's upstream filters),
    so live's answers that have no copy to be compared with are neither read nor encoded, and
    their log entries name a route ending in :data:`UNMIRRORED` (the reader settles them at
    once). A route that does not mirror (writes) is such an unmirrored route.

    With ``live2``, live-2's mirror policy is added next to dark's: it gets exactly the
    requests dark gets, and serves dark's load. The copy sent first was measured slower (A/A
    with ``python -m http.server``: dark +4% over live-2 on average sent first, -3% sent
    second), so the order alternates: a first route takes half of the mirrored share (Envoy
    tests every route's fraction against one random value per request, so a fraction half as
    large selects half of the same requests) and sends live-2's copy first.
    """
    unmirrored = copy.deepcopy(route_entry)
    unmirrored["route"].pop("request_mirror_policies", None)
    unmirrored["name"] = f"{route_entry.get('name') or 'route'}{UNMIRRORED}"
    if bodies:
        unmirrored.setdefault("typed_per_filter_config", {})[LUA_FILTER] = {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
            "disabled": True,
        }
    policies = route_entry["route"].get("request_mirror_policies")
    if not policies:
        return [unmirrored]
    fraction = policies[0].get("runtime_fraction")
    mirrored = copy.deepcopy(route_entry)
    order = mirrored["route"]["request_mirror_policies"]
    for policy in order:
        policy.pop("runtime_fraction", None)  # every request of this route is mirrored
    if fraction is not None:
        mirrored["match"]["runtime_fraction"] = copy.deepcopy(fraction)
    if not live2:
        return [mirrored, unmirrored]
    order.append({"cluster": LIVE2})
    swapped = copy.deepcopy(mirrored)
    first = swapped["route"]["request_mirror_policies"]
    first.insert(0, first.pop())
    share = fraction or {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    half = copy.deepcopy(share)
    half["default_value"]["numerator"] = share["default_value"]["numerator"] // 2
    swapped["match"]["runtime_fraction"] = half
    swapped["name"] = f"{route_entry.get('name') or 'mirrored'}{LIVE2_FIRST}"
    return [swapped, mirrored, unmirrored]
