"""Traffic mixes and a bring-your-own generator through the plugin, on the real local stack."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.plugin.conftest import WELL_BEHAVED, Spawned

TESTS = """
def test_objective(darklaunch, darklaunch_objective):
    darklaunch.assert_objective(darklaunch_objective)
"""


@pytest.fixture
def start(pytester: pytest.Pytester, spawn: Callable[..., Spawned]) -> Callable[..., Spawned]:
    def start(name: str, spec: dict[str, Any], *args: str) -> Spawned:
        project = pytester.mkdir(name)
        for role in ("live", "dark"):
            env = {**WELL_BEHAVED, "SAMPLEAPP_LOG": str(project / f"{role}.jsonl")}
            spec["versions"][role] = {"env": env}
        (project / "darklaunch.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (project / "test_dl.py").write_text(TESTS)
        return spawn(project, ["-p", "no:xdist", "--darklaunch-report", "report.json", *args])

    return start


def base_spec(traffic: dict[str, Any], iterations: int = 8) -> dict[str, Any]:
    return {
        "target": "default/sample-app",
        "versions": {},
        "mirror": {"percent": 40, "host": "customdomain.com"},
        "traffic": traffic,
        "duration": {"interval": "1s", "iterations": iterations},
        "objectives": [{"metric": "mean-latency", "upper": 50}],
    }


def report(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / "report.json").read_text())
    return data


def log(project: Path, role: str) -> list[dict[str, Any]]:
    text = (project / f"{role}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line]


def test_mix_with_writes_passes_its_mirror_check_on_the_mirrored_methods(
    start: Callable[..., Spawned],
) -> None:
    mix = [
        {"name": "list", "method": "GET", "path": "/items?page=2", "weight": 7},
        {
            "name": "create",
            "method": "POST",
            "path": "/items",
            "weight": 3,
            "headers": {"content-type": "application/json", "authorization": "Bearer s3cret"},
            "body": '{"sku": "a1"}',
        },
    ]
    run = start("mix", base_spec({"rate": 150, "targets": mix}), "--darklaunch-full-duration")
    result = run.result()
    result.assert_outcomes(passed=1)
    data = report(run.cwd)
    mirror, generator = data["mirror"], data["generator"]
    assert mirror["ok"] is True and mirror["methods"] == ["GET", "HEAD", "OPTIONS"]
    # The share is of live's GETs: 40% of all live requests would be ~30% off.
    assert mirror["live_eligible_requests"] < 0.8 * mirror["live_requests"]
    assert abs(mirror["observed_percent"] - 40) < 5
    assert set(generator["targets"]) == {"list", "create"}
    assert sum(t["sent"] for t in generator["targets"].values()) == generator["sent"]
    assert all(t["errors"] == 0 for t in generator["targets"].values())
    assert {line["method"] for line in log(run.cwd, "dark")} == {"GET"}
    text = "\n".join(result.outlines)
    assert "per target" in text and "list: sent" in text and "create: sent" in text
    assert "s3cret" not in text + json.dumps(data)
    # Progress lines give the same share as the mirror check, not dark's share of every request.
    shares = re.findall(r"dark [\d,.]+ \(([\d.]+)% of mirrored methods\)", text)
    assert shares and abs(float(shares[-1]) - 40) < 8, shares


def test_curl_loop_drives_an_experiment_to_a_verdict(start: Callable[..., Spawned]) -> None:
    loop = (
        'while true; do curl -s -o /dev/null -H "Host: $DARKLAUNCH_HOST" "$DARKLAUNCH_URL/"; '
        "sleep 0.02; done"
    )
    run = start(
        "byo",
        base_spec({"rate": 5, "command": ["sh", "-c", loop]}, iterations=10),
        "--darklaunch-full-duration",
    )
    result = run.result()
    result.assert_outcomes(passed=1)
    generator = report(run.cwd)["generator"]
    assert generator["counted_by"] == "proxy"
    since, until = generator["measured_since"], generator["measured_until"]
    arrived = [line["arrived"] for line in log(run.cwd, "live")]
    app_rps = sum(since <= t <= until for t in arrived) / (until - since)
    assert len(arrived) >= 100
    assert abs(generator["achieved_rps"] - app_rps) <= 0.01 * app_rps
