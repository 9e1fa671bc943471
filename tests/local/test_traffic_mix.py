"""The generator's mixes against a real sample app: shares, exact bodies, recorded timing."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from pytest_darklaunch.backends.local.processes import ManagedProcess
from pytest_darklaunch.core.traffic.model import Target, dump_targets
from tests.local.helpers import binomial_acceptance, read_jsonl, start_sampleapp

GENERATOR = [sys.executable, "-m", "pytest_darklaunch.backends.local.generator"]


def run_generator(
    tmp_path: Path, url: str, targets: list[Target], *flags: str
) -> dict[str, object]:
    """Run the generator on ``targets`` until its ``--max-duration``; its final stats."""
    mix = tmp_path / "targets.json"
    dump_targets(targets, str(mix))
    stats = tmp_path / "stats.json"
    argv = [*GENERATOR, "--url", url, "--stats", str(stats), "--targets", str(mix), *flags]
    proc = ManagedProcess.start("generator", argv, log_path=str(tmp_path / "gen.log"))
    try:
        proc.popen.wait(timeout=60)
    finally:
        proc.stop()
    assert proc.popen.returncode == 0, proc.log_tail()
    data: dict[str, object] = json.loads(stats.read_text(encoding="utf-8"))
    return data


def test_weighted_mix_shares_and_exact_bodies(tmp_path: Path) -> None:
    app, url = start_sampleapp(str(tmp_path / "app.out"), "--log", str(tmp_path / "app.jsonl"))
    upload = bytes(range(256)) * 40
    targets = [
        Target("list", "GET", "/items?page=2", weight=7),
        Target(
            "create",
            "POST",
            "/items",
            (("content-type", "application/json"),),
            b'{"sku": "a1", "qty": 2}',
            weight=2,
        ),
        Target("avatar", "PUT", "/users/7/avatar", body=upload, weight=1),
    ]
    try:
        stats = run_generator(tmp_path, url, targets, "--rate", "500", "--max-duration", "5")
    finally:
        app.stop()
    log = read_jsonl(tmp_path / "app.jsonl")
    total = len(log)
    assert total == stats["sent"] >= 2000 and stats["errors"] == 0
    seen = Counter((r["method"], r["path"], r["query"], r["body_sha256"]) for r in log)
    per_target = stats["targets"]
    assert isinstance(per_target, dict)
    for target in targets:
        key = (
            target.method,
            target.path.split("?")[0],
            target.path.partition("?")[2],
            hashlib.sha256(target.body).hexdigest(),
        )
        low, high = binomial_acceptance(target.weight / 10, total)
        assert low <= seen[key] / total <= high, (target.name, seen[key], total)
        assert per_target[target.name] == {"sent": seen[key], "errors": 0, "late": 0}
    assert sum(seen.values()) == total  # nothing arrived that was not one of the targets


def test_recorded_timing_at_speed_2_within_20_ms(tmp_path: Path) -> None:
    app, url = start_sampleapp(str(tmp_path / "app.out"), "--log", str(tmp_path / "app.jsonl"))
    offsets = [0.0, 0.1, 0.35, 0.4, 0.41, 0.9, 1.2, 1.5]
    targets = [Target(f"t{i}", "GET", f"/r/{i}", offset_s=o) for i, o in enumerate(offsets)]
    try:
        # One round of the recording (it lasts 0.75 s at speed 2; the next starts at 0.857 s).
        stats = run_generator(
            tmp_path,
            url,
            targets,
            "--rate",
            "1",
            "--timing",
            "recorded",
            "--speed",
            "2",
            "--max-duration",
            "0.8",
        )
    finally:
        app.stop()
    log = read_jsonl(tmp_path / "app.jsonl")
    assert [r["path"] for r in log] == [t.path for t in targets]
    started = float(stats["started_at"])  # type: ignore[arg-type]
    for record, offset in zip(log, offsets, strict=False):
        early_or_late_s = record["arrived"] - started - offset / 2
        assert -0.002 <= early_or_late_s <= 0.020, (record["path"], early_or_late_s)
    assert stats["target_rps"] == round(8 / (1.5 * 8 / 7 / 2), 6)
