"""Pairing through a real Envoy: the upstream log, the Lua capture, live-2, real sample apps.

Each test starts sample apps (live, dark and, for noise, live-2), an Envoy whose config is the
local backend's plus the capture pieces, sends real requests through it, waits until the log
holds every upstream request Envoy counted, and reads the comparison from the log reader.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_darklaunch.backends.local.capture import (
    CAPTURE_HEADER,
    LIVE2,
    LIVE2_FIRST,
    not_mirrored,
)
from pytest_darklaunch.backends.local.comparing import upstream_requests
from pytest_darklaunch.backends.local.envoy import (
    EnvoyAddresses,
    pairing_amendment,
    start_envoy,
    wait_for_envoy,
)
from pytest_darklaunch.backends.local.pairing import PairingReader
from pytest_darklaunch.backends.local.processes import ManagedProcess, free_port, stop_all
from pytest_darklaunch.core.compare import Comparer, Settings, Summary
from tests.local.helpers import envoy_stats, make_spec, start_sampleapp, wait_for

JSON_APP = ("--body", "json", "--version", "app")


@dataclass
class Proxy:
    envoy: EnvoyAddresses
    log_path: str

    def send(self, paths: list[str], headers: dict[str, str] | None = None) -> list[Any]:
        """Every path once through Envoy, four at a time; the responses the client saw."""

        def one(path: str) -> Any:
            response = requests.get(
                f"{self.envoy.ingress_url}{path}", headers=headers, timeout=10)
            response.close()
            return response

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, paths))

    def read(self, settings: Settings, **comparer: Any) -> tuple[Summary, dict[str, int]]:
        """The comparison of the whole log, once it holds every request Envoy completed (the
        client has its answers before the shadows are done: wait for those too)."""
        expected = wait_for(lambda: _quiet(self.envoy.admin), "no upstream request in flight")
        reader = PairingReader(
            self.log_path, Comparer(settings, **comparer),
            live2=settings.live2, timeout_s=30)
        reader.start()
        try:
            wait_for(lambda: reader.counts()["entries"] >= expected,
                     f"{expected} entries in the upstream log")
        finally:
            summary = reader.finish()
        counts = reader.counts()
        assert counts["entries"] == expected and counts["unreadable"] == 0, counts
        return summary, counts


def _quiet(admin: str) -> int | None:
    completed, active = upstream_requests(admin)
    return None if active else completed


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Start live, dark (and live-2) with the given flags and an Envoy capturing their answers;
    everything is stopped afterwards."""
    started: list[ManagedProcess] = []

    def make(
        live: tuple[str, ...] = JSON_APP, dark: tuple[str, ...] = JSON_APP, *,
        live2: bool = False, percent: float = 40, max_body: int = 65536,
        bodies: bool = True,
    ) -> Proxy:
        ports = {}
        for role, flags in (("live", live), ("dark", dark), (LIVE2, live if live2 else None)):
            if flags is None:
                continue
            proc, url = start_sampleapp(str(tmp_path / f"{role}.log"), *flags)
            started.append(proc)
            ports[role] = int(url.rsplit(":", 1)[1])
        log_path = str(tmp_path / "upstream.log")
        amend, argv = pairing_amendment(
            log_path, bodies=bodies, max_body=max_body, live2_port=ports.get(LIVE2))
        spec = make_spec(mirror={"percent": percent})
        envoy_proc, admin = start_envoy(
            spec, str(tmp_path), live_port=ports["live"], dark_port=ports["dark"],
            amend=amend, extra_argv=argv)
        started.append(envoy_proc)
        return Proxy(wait_for_envoy(envoy_proc, admin), log_path)

    yield make
    for proc in reversed(started):
        proc.stop()


BODY = Settings(responses="body", body="json")


def test_live_and_dark_answers_pair_by_request_id(proxy: Callable[..., Proxy]) -> None:
    p = proxy()
    seen = p.send([f"/cart/{i}" for i in range(300)])
    assert all(r.status_code == 200 and CAPTURE_HEADER not in r.headers for r in seen)
    assert all(json.loads(r.content)["total"] == 17 for r in seen)  # body intact after capture
    summary, counts = p.read(BODY)
    stats = envoy_stats(p.envoy.admin_url, "cluster.")  # after read: no shadow in flight
    assert summary.paired == stats["cluster.dark.upstream_rq_completed"]
    assert 60 <= summary.paired <= 180  # 40% of 300, far outside binomial noise otherwise
    assert counts["not_mirrored"] == 300 - summary.paired
    assert summary.unpaired == 0
    assert summary.response_mismatches == 0 and summary.fields == []
    latency = summary.latency
    assert latency.pairs == summary.paired and latency.live.total > 0 and latency.dark.total > 0
    assert latency.all_live.n == 300
    # The mirror is decided by route: live's answers without a copy are not captured, and
    # their entries name a route that mirrors nothing (the reader settles them at once).
    entries = _log(p.log_path)
    mirrored = {e["id"] for e in entries if e["cluster"] == "dark"}
    for entry in (e for e in entries if e["cluster"] == "live"):
        captured = entry["capture"] not in (None, "", "-")
        assert captured == (entry["id"] in mirrored) == (not not_mirrored(entry["route"] or ""))


def _log(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_a_changed_field_is_counted_and_named(proxy: Callable[..., Proxy]) -> None:
    p = proxy(dark=(*JSON_APP, "--change-share", "0.2", "--seed", "7"))
    p.send([f"/cart/{i}" for i in range(300)])
    summary, _ = p.read(BODY)
    [row] = summary.fields
    assert row.field == "$.total" and row.counted and row.raw == summary.response_mismatches
    assert 0.08 < row.raw_share < 0.35
    assert summary.examples and all("$.total: 17 -> 18" in e.line() for e in summary.examples)
    assert summary.status_mismatches == 0


def test_a_timestamp_and_nonce_are_noise_with_live2(proxy: Callable[..., Proxy]) -> None:
    nonce = (*JSON_APP, "--nonce", "1")
    p = proxy(live=nonce, dark=nonce, live2=True)
    p.send([f"/cart/{i}" for i in range(200)])
    with_noise, counts = p.read(Settings(responses="body", noise=True))
    stats = envoy_stats(p.envoy.admin_url, "cluster.")
    # live-2 gets exactly the requests dark gets (both copies are made on the same routes)
    assert stats[f"cluster.{LIVE2}.upstream_rq_completed"] == (
        stats["cluster.dark.upstream_rq_completed"]) < 200
    ids: dict[str, set[str]] = {}
    route_of: dict[str, str] = {}  # live's entry names the route; copies' entries do not
    for entry in _log(p.log_path):
        ids.setdefault(entry["cluster"], set()).add(entry["id"])
        if entry["cluster"] == "live":
            route_of[entry["id"]] = entry["route"] or ""
    assert ids[LIVE2] == ids["dark"] and len(ids["live"]) == 200
    # the two copies go out in either order, each for about half of the requests
    live2_first = sum(route_of[i].endswith(LIVE2_FIRST) for i in ids["dark"])
    assert 0.25 * len(ids["dark"]) <= live2_first <= 0.75 * len(ids["dark"])
    assert with_noise.unpaired == 0 and with_noise.noise_requests == with_noise.paired > 0
    rows = {row.field: row for row in with_noise.fields}
    assert set(rows) == {"$.ts", "$.nonce"}
    assert not any(row.counted for row in rows.values())
    assert with_noise.response_mismatches == 0
    without, _ = p.read(Settings(responses="body", noise=False))
    assert without.response_mismatches == without.paired == with_noise.paired
    assert {row.field for row in without.fields if row.counted} == {"$.ts", "$.nonce"}


def test_a_500_on_one_path_is_a_status_mismatch_there(proxy: Callable[..., Proxy]) -> None:
    p = proxy(dark=(*JSON_APP, "--error-path", "/checkout"), percent=100)
    p.send(["/checkout"] * 20 + ["/cart"] * 80)
    summary, _ = p.read(Settings(responses="status"))
    assert summary.paired == 100 and summary.status_mismatches == 20
    assert summary.examples and {e.path for e in summary.examples} == {"/checkout"}
    assert all("status 200 -> 500" in e.line() for e in summary.examples)


def test_a_body_over_max_body_compares_by_hash(proxy: Callable[..., Proxy]) -> None:
    p = proxy(dark=(*JSON_APP, "--change-share", "0.5", "--seed", "3"), percent=100,
              max_body=40)
    p.send([f"/cart/{i}" for i in range(60)])
    summary, _ = p.read(BODY)
    [row] = summary.fields
    assert row.field == "body" and 10 < row.raw < 50
    example = summary.examples[0]
    assert "hash" in example.differences[0].live and "bytes" in example.live_body


def test_secrets_in_requests_never_show(proxy: Callable[..., Proxy]) -> None:
    p = proxy(dark=(*JSON_APP, "--change-share", "1"), percent=100)
    p.send(["/cart?token=s3cr3t-query&x=1"] * 20,
           headers={"Authorization": "Bearer s3cr3t-header", "Cookie": "sid=s3cr3t-cookie"})
    summary, _ = p.read(BODY)
    shown = json.dumps(summary.as_dict()) + "\n".join(e.line() for e in summary.examples)
    assert summary.examples and "token=***" in shown
    assert "s3cr3t" not in shown


def test_large_bodies_reach_the_client_intact_and_compare_by_hash(tmp_path: Path) -> None:
    """Envoy answers 500 when a buffered body exceeds the connection's limit (measured with a
    3 MB file and the default 1 MiB): the capture must never do that to live's clients. Over
    max_body a body compares by hash; over the capture limit it is not read at all."""
    rng = random.Random(1)
    sizes = {"3mb.bin": 3_000_000, "9mb.bin": 9_000_000}
    content = {name: rng.randbytes(size) for name, size in sizes.items()}
    started: list[ManagedProcess] = []
    try:
        ports = {}
        for role in ("live", "dark"):
            files = tmp_path / role
            files.mkdir()
            for name, data in content.items():
                # dark's files differ from live's in their last byte
                (files / name).write_bytes(data if role == "live" else data[:-1] + b"!")
                # the same Last-Modified for both: only the bytes differ
                os.utime(files / name, (1_700_000_000, 1_700_000_000))
            ports[role] = free_port()
            started.append(ManagedProcess.start(role, [
                sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(ports[role]),
                "-d", str(files)], log_path=str(tmp_path / f"{role}.log")))
            url = f"http://127.0.0.1:{ports[role]}/"
            wait_for(lambda u=url: _answers(u), f"{role} answering")
        log_path = str(tmp_path / "upstream.log")
        amend, argv = pairing_amendment(log_path, bodies=True, max_body=65536, live2_port=None)
        envoy_proc, admin = start_envoy(make_spec(mirror={"percent": 100}), str(tmp_path),
                                        live_port=ports["live"], dark_port=ports["dark"],
                                        amend=amend, extra_argv=argv)
        started.append(envoy_proc)
        p = Proxy(wait_for_envoy(envoy_proc, admin), log_path)
        seen = p.send([f"/{name}" for name in sizes])
        assert [r.status_code for r in seen] == [200, 200]
        assert [r.content for r in seen] == list(content.values())  # live's, untouched
        summary, _ = p.read(Settings(responses="body", body="bytes"))
        assert summary.paired == 2 and summary.response_mismatches == 1
        [example] = summary.examples
        assert example.path == "/3mb.bin" and "3000000 bytes, hash" in example.differences[0].live
        with open(log_path, encoding="utf-8") as handle:
            kinds = {json.loads(line)["capture"].split(";")[2] for line in handle}
        assert kinds == {"h", "u"}  # 3 MB hashed, 9 MB (over the 8 MiB limit) not read
    finally:
        stop_all(started)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1).close()
    except requests.ConnectionError:
        return False
    return True


def test_per_route_clusters_pair_by_role() -> None:
    """With routes, Envoy names clusters ``<role>~<route>``: entries pair by role."""
    from pytest_darklaunch.backends.local.pairing import Joiner

    comparer = Comparer(Settings())
    joiner = Joiner(comparer, live2=False, timeout_s=5.0)
    joiner.feed('{"id": "a", "cluster": "live~detail", "status": 200, "us": 900}', now=0.0)
    joiner.feed('{"id": "a", "cluster": "dark~detail", "status": 503, "us": 800}', now=0.1)
    joiner.settle_all()
    summary = comparer.summary()
    assert (summary.paired, summary.status_mismatches, summary.unpaired) == (1, 1, 0)


def _line(request_id: str, cluster: str, capture: str, status: int = 200) -> str:
    return json.dumps({"id": request_id, "cluster": cluster, "status": status, "us": 900,
                       "method": "GET", "path": "/cart", "route": "r", "capture": capture})


def _capture(body: bytes, headers: bytes = b"content-type\napplication/json\n") -> str:
    import base64

    return (f"v1;{len(body)};b;{base64.b64encode(headers).decode()};"
            f"{base64.b64encode(body).decode()}")


class _Rule:
    """A user's rule that may or may not be implemented, like the pytest hooks' callables."""

    def __init__(self, implemented: bool) -> None:
        self.implemented = implemented
        self.calls = 0

    def applies(self) -> bool:
        return self.implemented

    def __call__(self, request: Any, live: Any, dark: Any) -> bool:
        self.calls += 1
        return False  # different, whatever the bytes say


@pytest.mark.parametrize("implemented", [False, True])
def test_answers_captured_alike_count_as_same_unless_a_rule_applies(implemented: bool) -> None:
    """Identical captures are counted as a matching pair without decoding; an implemented
    rule still sees every pair, and its verdict counts."""
    from pytest_darklaunch.backends.local.pairing import Joiner

    rule = _Rule(implemented)
    comparer = Comparer(Settings(responses="body"), decide=rule)
    joiner = Joiner(comparer, live2=False, timeout_s=5.0)
    same = _capture(b'{"total": 17}')
    joiner.feed(_line("a", "live", same), now=0.0)
    joiner.feed(_line("a", "dark", same), now=0.0)
    joiner.feed(_line("b", "live", same), now=0.0)
    joiner.feed(_line("b", "dark", _capture(b'{"total": 18}')), now=0.0)
    summary = comparer.summary()
    assert summary.paired == 2 and summary.targets["GET /cart"]["paired"] == 2
    assert summary.response_mismatches == (2 if implemented else 1)
    assert rule.calls == (2 if implemented else 1)


def test_live2_captured_alike_counts_as_a_noise_request() -> None:
    from pytest_darklaunch.backends.local.pairing import Joiner

    comparer = Comparer(Settings(responses="body", noise=True))
    joiner = Joiner(comparer, live2=True, timeout_s=5.0)
    same, other = _capture(b'{"ts": 1}'), _capture(b'{"ts": 2}')
    for request_id, live2 in (("a", same), ("b", other)):
        for cluster, capture in (("live", same), ("dark", same), (LIVE2, live2)):
            joiner.feed(_line(request_id, cluster, capture), now=0.0)
    summary = comparer.summary()
    assert (summary.paired, summary.noise_requests, summary.response_mismatches) == (2, 2, 0)
    assert [(row.field, row.raw, row.noise) for row in summary.fields] == [("$.ts", 0, 1)]


def test_an_unreadable_capture_is_counted_when_its_pair_is_compared() -> None:
    from pytest_darklaunch.backends.local.pairing import Joiner

    comparer = Comparer(Settings(responses="body"))
    joiner = Joiner(comparer, live2=False, timeout_s=5.0)
    joiner.feed(_line("a", "live", "v1;3;b;QQ;YWJj"), now=0.0)  # QQ: bad padding
    joiner.feed(_line("a", "dark", _capture(b"abc")), now=0.0)
    joiner.feed(_line("b", "live", "v2;3;b"), now=0.0)  # not a capture at all: refused at once
    summary = comparer.summary()
    assert (summary.paired, summary.unpaired, joiner.counts["unreadable"]) == (0, 1, 2)


def test_live_alone_is_unpaired_after_the_timeout_unless_its_route_mirrors_nothing() -> None:
    """The route says whether a copy was sent: live's entry of a mirroring route waits for
    dark's and, alone after the timeout, counts as unpaired; of an unmirrored route it is
    settled at once as not mirrored."""
    from pytest_darklaunch.backends.local.pairing import Joiner

    comparer = Comparer(Settings())
    joiner = Joiner(comparer, live2=False, timeout_s=5.0)
    joiner.feed(_line("a", "live", "-"), now=0.0)
    joiner.feed(_line("b", "live", "-").replace('"r"', '"r~unmirrored"'), now=0.0)
    assert list(joiner.pending) == ["a"] and joiner.counts["not_mirrored"] == 1
    joiner.expire(now=4.9)
    assert comparer.summary().unpaired == 0
    joiner.expire(now=5.0)
    assert (comparer.summary().unpaired, comparer.summary().paired, joiner.pending) == (1, 0, {})
