"""Mixes, recorded files and mirrored methods through the real stack (Envoy, two sample apps).

Every figure is checked against the apps' own request logs (method, path, query, body hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.backends.local import LocalBackend
from pytest_darklaunch.core.spec import Sources, Spec, build_spec
from pytest_darklaunch.errors import ProvisioningError
from tests.local.helpers import (
    binomial_acceptance,
    envoy_stats,
    pid_alive,
    read_jsonl,
    wait_for_quiet_upstreams,
    wait_for_sent,
)

HOST = "customdomain.com"
CREATE_BODY = '{"sku": "a1", "qty": 2}'
AVATAR = bytes(range(256)) * 64  # 16 KiB, not text


def spec_in(tmp_path: Path, **overrides: Any) -> Spec:
    raw: dict[str, Any] = {
        "target": "default/sample-app",
        "duration": {"interval": "1s", "iterations": 5},
        "versions": {
            "live": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "live.jsonl")}},
            "dark": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "dark.jsonl")}},
        },
    }
    raw.update(overrides)
    return build_spec(raw, Sources("test"), base_dir=str(tmp_path))


def key(line: dict[str, Any]) -> tuple[str, str, str, str]:
    return line["method"], line["path"], line["query"], line["body_sha256"]


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


MIX = [
    {"name": "list", "method": "GET", "path": "/items?page=2", "weight": 7},
    {
        "name": "create",
        "method": "POST",
        "path": "/items",
        "weight": 2,
        "headers": {"content-type": "application/json"},
        "body": CREATE_BODY,
    },
    {
        "name": "avatar",
        "method": "PUT",
        "path": "/users/7/avatar",
        "weight": 1,
        "body_file": "avatar.png",
    },
]
KEYS = {
    "list": ("GET", "/items", "page=2", sha(b"")),
    "create": ("POST", "/items", "", sha(CREATE_BODY.encode())),
    "avatar": ("PUT", "/users/7/avatar", "", sha(AVATAR)),
}


def run_mix(
    stack: Callable[..., LocalBackend], tmp_path: Path, mirror: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], dict[str, int]]:
    (tmp_path / "avatar.png").write_bytes(AVATAR)
    spec = spec_in(tmp_path, mirror={"host": HOST, **mirror}, traffic={"rate": 500, "targets": MIX})
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 2200)
    backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])
    details = backend.traffic_details()
    assert details is not None
    counters = envoy_stats(env.endpoints["envoy_admin"], "vhost.app.vcluster.mirrored.")
    live, dark = read_jsonl(tmp_path / "live.jsonl"), read_jsonl(tmp_path / "dark.jsonl")
    return live, dark, details, counters


def test_mix_shares_exact_bodies_and_no_mirrored_writes(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    live, dark, details, counters = run_mix(stack, tmp_path, {"percent": 40})
    total = len(live)
    assert total == details["sent"] + details["warmup"]["sent"] >= 2000
    seen = Counter(key(line) for line in live)
    assert set(seen) == set(KEYS.values())  # every body arrived byte-exact, nothing else did
    for target in MIX:
        low, high = binomial_acceptance(target["weight"] / 10, total)
        assert low <= seen[KEYS[target["name"]]] / total <= high, (target["name"], seen, total)
        assert details["targets"][target["name"]]["errors"] == 0
    assert sum(t["sent"] for t in details["targets"].values()) == details["sent"]

    # Writes stay on live; dark gets percent of the GETs, and Envoy counts exactly those.
    assert {line["method"] for line in dark} == {"GET"}
    gets = seen[KEYS["list"]]
    low, high = binomial_acceptance(0.40, gets)
    assert low <= len(dark) / gets <= high
    assert counters["vhost.app.vcluster.mirrored.upstream_rq_total"] == gets
    assert {key(line) for line in dark} == {KEYS["list"]}


def test_methods_all_mirrors_writes_at_percent(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    live, dark, _, counters = run_mix(stack, tmp_path, {"percent": 40, "methods": "all"})
    live_posts = sum(line["method"] == "POST" for line in live)
    dark_posts = [line for line in dark if line["method"] == "POST"]
    low, high = binomial_acceptance(0.40, live_posts)
    assert live_posts >= 400 and low <= len(dark_posts) / live_posts <= high
    assert {key(line) for line in dark_posts} == {KEYS["create"]}  # the same body, byte-exact
    assert counters["vhost.app.vcluster.mirrored.upstream_rq_total"] == len(live)


def replayed(
    stack: Callable[..., LocalBackend], tmp_path: Path, name: str, count: int
) -> list[tuple[str, str, str, str]]:
    """The first ``count`` requests live received from ``name``, replayed at 20 requests/s."""
    spec = spec_in(tmp_path, mirror={"host": HOST}, traffic={"rate": 20, "targets_file": name})
    backend = stack(spec, name=name.replace(".", "-"))
    env = backend.provision()
    wait_for_sent(backend, count)
    backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])
    # Credentials of the recording are sent, never written to our logs or stats.
    for written in ("generator.log", "traffic.json", "envoy.log"):
        assert "s3cret" not in Path(backend.workdir, written).read_text(encoding="utf-8")
    return [key(line) for line in read_jsonl(tmp_path / "live.jsonl")][:count]


def test_har_file_replays_exactly_its_requests(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    entries = [
        ("GET", "https://shop.example.com/items?page=2&sort=price", None),
        ("POST", "https://shop.example.com/items", '{"sku": "b2"}'),
        ("DELETE", "https://shop.example.com/items/9?force=1", None),
    ]
    har = {
        "log": {
            "version": "1.2",
            "entries": [
                {
                    "startedDateTime": f"2024-05-01T10:00:0{i}.000Z",
                    "request": {
                        "method": method,
                        "url": url,
                        "headers": [
                            {"name": "Host", "value": "shop.example.com"},
                            {"name": "Authorization", "value": "Bearer s3cret"},
                        ],
                        **(
                            {"postData": {"mimeType": "application/json", "text": body}}
                            if body
                            else {}
                        ),
                    },
                }
                for i, (method, url, body) in enumerate(entries)
            ],
        }
    }
    (tmp_path / "rec.har").write_text(json.dumps(har), encoding="utf-8")
    got = replayed(stack, tmp_path, "rec.har", 9)
    want = [
        ("GET", "/items", "page=2&sort=price", sha(b"")),
        ("POST", "/items", "", sha(b'{"sku": "b2"}')),
        ("DELETE", "/items/9", "force=1", sha(b"")),
    ]
    assert got == want * 3


def test_vegeta_targets_file_replays_exactly_its_requests(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    lines = [
        {"method": "GET", "url": "http://goku:9090/path/to/dragon?item=balls"},
        {
            "method": "PUT",
            "url": "http://goku:9090/things/1",
            "body": base64.b64encode(AVATAR[:1000]).decode(),
            "header": {"X-Account-ID": ["8675309"]},
        },
    ]
    (tmp_path / "targets.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    got = replayed(stack, tmp_path, "targets.jsonl", 6)
    want = [
        ("GET", "/path/to/dragon", "item=balls", sha(b"")),
        ("PUT", "/things/1", "", sha(AVATAR[:1000])),
    ]
    assert got == want * 3


CURL_LOOP = (
    'while true; do curl -s -o /dev/null -H "Host: $DARKLAUNCH_HOST" "$DARKLAUNCH_URL/x"; '
    "sleep 0.02; done"
)


def test_own_command_is_counted_by_the_proxy_and_stopped_with_the_traffic(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = spec_in(
        tmp_path, mirror={"host": HOST}, traffic={"rate": 5, "command": ["sh", "-c", CURL_LOOP]}
    )
    backend = stack(spec)
    env = backend.provision()
    wait_for_sent(backend, 150, deadline_s=60)
    stats = backend.stop_traffic()
    wait_for_quiet_upstreams(env.endpoints["envoy_admin"])
    assert stats is not None and stats.counted_by == "proxy"
    assert stats.measured_since is not None and stats.measured_until is not None
    live = read_jsonl(tmp_path / "live.jsonl")
    assert {(line["host"], line["path"]) for line in live} == {(HOST, "/x")}
    # The proxy counted exactly what live got in the same window.
    inside = sum(stats.measured_since <= line["arrived"] <= stats.measured_until for line in live)
    assert abs(stats.sent - inside) <= max(1, 0.01 * inside)
    command = backend.started_pids[-1]  # started last: once the entry point was known
    assert not pid_alive(command)  # the loop (its whole group) went with the traffic
    assert "DARKLAUNCH" not in Path(backend.workdir, "traffic-command.log").read_text()


def test_own_command_failing_at_once_stops_provisioning_with_its_log_tail(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = spec_in(tmp_path, traffic={"command": ["sh", "-c", "echo no such script >&2; exit 3"]})
    backend = stack(spec)
    with pytest.raises(ProvisioningError) as info:
        backend.provision()
    message = str(info.value)
    assert "traffic command" in message and "exited with status 3" in message
    assert "no such script" in message
