"""A/A verdicts in a loop: how often ``max_increase: 10%`` passes when dark is live's code.

Each run is a fresh ``python -m pytest`` process in a temporary project whose
``darklaunch.yaml`` runs dark with live's own command, mirrors 100% and sets ``max_increase:
"10%"`` on mean-latency and on the 95th percentile, with ``--darklaunch-full-duration`` (the
whole planned time, one look). Latency is paired with live-2 (live's command receiving exactly
dark's requests), as it is by default with a latency ``max_increase``. Per run it prints both
verdicts with dark's change and its interval, the number of pairs and the host's CPU steal
over the run (on a virtual machine); at the end, how many passed, and the range of the
changes. Reproduce with::

    python benchmarks/aa_runs.py --runs 10 --app http.server --rate 150 --seconds 60
    python benchmarks/aa_runs.py --runs 10 --app sample --rate 250 --seconds 16
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from steal import steal_mark, steal_share

APPS: dict[str, dict[str, Any]] = {
    "sample": {"env": {"SAMPLEAPP_BODY": "json", "T_VERSION": "app",
                       "SAMPLEAPP_LATENCY_MS": "2"}},
    "http.server": {"command": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                "{port}"]},
}
PATHS = {"sample": "/cart", "http.server": "/"}
TESTS = """
def test_objective(darklaunch, darklaunch_objective):
    darklaunch.assert_objective(darklaunch_objective)
"""


CHANGE = re.compile(r": (\S+) \(interval (\S+)\.\.(\S+),")


def _spec(app: str, rate: float, seconds: int) -> str:
    version = APPS[app]
    return yaml.safe_dump({
        "target": "default/sample-app",
        "versions": {"live": version, "dark": dict(version)},
        "mirror": {"percent": 100, "host": "customdomain.com"},
        "traffic": {"rate": rate, "path": PATHS[app]},
        "duration": {"interval": "1s", "iterations": seconds},
        "objectives": [{"metric": "mean-latency", "max_increase": "10%"},
                       {"metric": "95th-percentile-tail-latency", "max_increase": "10%"}],
    }, sort_keys=False)


def _run(project: Path) -> dict[str, Any] | None:
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
         "--darklaunch-report", "report.json", "--darklaunch-full-duration"],
        cwd=project, capture_output=True, check=False,
    )
    report = project / "report.json"
    return json.loads(report.read_text()) if report.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--app", choices=list(APPS), default="http.server")
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    print(f"A/A, {args.app}, {args.rate:g} requests/s, 100% mirrored, {args.seconds} s, "
          "full duration")
    passed: dict[str, int] = {}
    changes: dict[str, list[float]] = {}
    crashed = 0
    for i in range(args.runs):
        project = Path(tempfile.mkdtemp(prefix="darklaunch-aa-"))
        try:
            (project / "darklaunch.yaml").write_text(_spec(args.app, args.rate, args.seconds))
            (project / "test_aa.py").write_text(TESTS)
            mark = steal_mark()
            report = _run(project)
            steal = steal_share(mark)
        finally:
            shutil.rmtree(project, ignore_errors=True)
        if report is None:
            crashed += 1
            print(f"  run {i + 1}: no report (pytest did not finish)")
            continue
        parts = []
        for verdict in report["verdicts"]:
            metric, outcome = verdict["metric"], verdict["outcome"]
            passed[metric] = passed.get(metric, 0) + (outcome == "pass")
            found = CHANGE.search(verdict["reason"])
            if found:
                changes.setdefault(metric, []).append(float(found.group(1).rstrip("%")))
                parts.append(f"{metric} {outcome} {found.group(1)} "
                             f"({found.group(2)}..{found.group(3)})")
            else:
                parts.append(f"{metric} {outcome}: {verdict['reason'][:80]}")
        pairs = (report.get("comparison") or {}).get("latency", {}).get("pairs")
        print(f"  run {i + 1}: " + " | ".join(parts) + f" | {pairs} pairs | steal {steal:.1%}",
              flush=True)
    for metric, count in passed.items():
        seen = changes.get(metric, [])
        spread = f", dark {min(seen):+.1f}%..{max(seen):+.1f}%" if seen else ""
        print(f"{metric}: passed {count} of {args.runs - crashed}{spread}")
    if crashed:
        print(f"{crashed} runs produced no report")


if __name__ == "__main__":
    main()
