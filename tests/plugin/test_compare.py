"""Response comparison end to end: pytest runs on the real local stack with ``compare:``.

Live and dark are the bundled sample app answering JSON (``SAMPLEAPP_BODY=json``) with the same
``T_VERSION``, so they answer identically unless dark is told otherwise: one field changed in a
share of answers, a timestamp and a random nonce in every answer, a 500 on one path. 100
requests/s, 1 s intervals; runs that need many pairs mirror 100%.

The A/A runs pair dark with live-2 (live's command receiving exactly dark's requests, so both
are mirrored copies under the same load) and mirror 100% for the number of pairs: about 5,000
in 16 s, enough for a 95th percentile's interval to be well inside a 10% tolerance.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from tests.plugin.conftest import Spawned

JSON_APP = {"SAMPLEAPP_BODY": "json", "T_VERSION": "app", "SAMPLEAPP_LATENCY_MS": "2"}
TESTS = """
def test_objective(darklaunch, darklaunch_objective):
    darklaunch.assert_objective(darklaunch_objective)
"""


def spec(
    *, dark: Mapping[str, str] = JSON_APP, live: Mapping[str, str] = JSON_APP,
    compare: Mapping[str, Any] | None = None, objectives: Sequence[Mapping[str, Any]] = (),
    mirror: float = 100, iterations: int = 8, path: str = "/cart",
    headers: Mapping[str, str] | None = None, targets: Sequence[Mapping[str, Any]] = (),
) -> str:
    raw: dict[str, Any] = {
        "target": "default/sample-app",
        "versions": {"live": {"env": dict(live)}, "dark": {"env": dict(dark)}},
        "mirror": {"percent": mirror, "host": "customdomain.com"},
        "traffic": {"rate": 100, "path": path, "headers": dict(headers or {})},
        "duration": {"interval": "1s", "iterations": iterations},
        "objectives": [dict(o) for o in objectives],
    }
    if targets:
        raw["traffic"] = {"rate": 100, "targets": [dict(t) for t in targets]}
    if compare is not None:
        raw["compare"] = dict(compare)
    return yaml.safe_dump(raw, sort_keys=False)


@pytest.fixture
def start(pytester: pytest.Pytester, spawn: Callable[..., Spawned]) -> Callable[..., Spawned]:
    """``start(name, spec, conftest="")``: a project in ``pytester.path / name``, started."""

    def run(name: str, text: str, conftest: str = "", *args: str) -> Spawned:
        project = pytester.mkdir(name)
        (project / "darklaunch.yaml").write_text(text)
        (project / "test_dl.py").write_text(TESTS)
        if conftest:
            (project / "conftest.py").write_text(conftest)
        return spawn(project, ["-p", "no:xdist", "--junitxml", "junit.xml",
                               "--darklaunch-report", "report.json", *args])

    return run


def outcomes(spawned: Spawned) -> dict[str, tuple[str, str]]:
    spawned.result()
    out = {}
    for case in ElementTree.parse(spawned.cwd / "junit.xml").getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, text = child.tag, child.text or ""
        out[case.get("name", "")] = (outcome, text)
    return out


def comparison(spawned: Spawned) -> dict[str, Any]:
    report = json.loads((spawned.cwd / "report.json").read_text())
    found: dict[str, Any] = report["comparison"]
    return found


MISMATCH = {"metric": "response-mismatch-rate", "upper": 0.01}
STATUS = {"metric": "status-mismatch-rate", "upper": 0.01}
BODY = {"responses": "body"}


def test_one_changed_field_fails_and_is_named_a_user_hook_can_accept_it(
    start: Callable[..., Spawned]
) -> None:
    changed = {**JSON_APP, "SAMPLEAPP_CHANGE_SHARE": "0.03", "SAMPLEAPP_SEED": "11"}
    text = spec(dark=changed, compare=BODY, objectives=[MISMATCH])
    plain = start("changed", text)
    hooked = start("hooked", text, "def pytest_darklaunch_compare(request, live, dark):\n"
                   "    return True  # this app's totals may differ\n")

    [(outcome, message)] = outcomes(plain).values()
    assert outcome == "failure", message
    assert "darklaunch objective FAILED: response-mismatch-rate <= 0.01" in message
    assert "$.total: 17 -> 18" in message and "GET /cart id=" in message
    section = comparison(plain)
    [row] = section["fields"]
    assert row["field"] == "$.total" and row["counted"] and 0.01 < row["live_vs_dark_share"] < 0.06
    assert 1 <= len(section["examples"]) <= 5 and section["unpaired"] == 0
    assert "Response comparison" in "\n".join(plain.result().outlines)

    [(outcome, message)] = outcomes(hooked).values()
    assert outcome == "passed", message
    hooked_section = comparison(hooked)
    assert hooked_section["response_mismatches"] == 0
    assert hooked_section["hook_decisions"]["same"] == hooked_section["paired"] > 0


def test_a_timestamp_and_a_nonce_are_noise_with_live2_and_mismatches_without(
    start: Callable[..., Spawned]
) -> None:
    nonce = {**JSON_APP, "SAMPLEAPP_NONCE": "1"}
    learned = start("noise", spec(live=nonce, dark=nonce, compare={**BODY, "noise": True},
                                  objectives=[MISMATCH]))
    raw = start("raw", spec(live=nonce, dark=nonce, compare=BODY, objectives=[MISMATCH]))

    [(outcome, message)] = outcomes(learned).values()
    assert outcome == "passed", message
    rows = {r["field"]: r for r in comparison(learned)["fields"]}
    assert set(rows) == {"$.ts", "$.nonce"} and not any(r["counted"] for r in rows.values())
    # the timestamp has microseconds: live and live-2 may answer within the same one
    assert all(r["live_vs_live_share"] > 0.95 for r in rows.values())

    [(outcome, message)] = outcomes(raw).values()
    assert outcome == "failure" and "$.nonce" in message and "$.ts" in message


def test_a_500_on_one_target_fails_the_status_mismatch_rate_naming_it(
    start: Callable[..., Spawned]
) -> None:
    broken = {**JSON_APP, "SAMPLEAPP_ERROR_PATH": "/checkout"}
    mix = [{"name": "cart", "path": "/cart", "weight": 4},
           {"name": "checkout", "path": "/checkout", "weight": 1}]
    run = start("status", spec(dark=broken, targets=mix, compare={"responses": "status"},
                               objectives=[STATUS]))
    [(outcome, message)] = outcomes(run).values()
    assert outcome == "failure" and "status-mismatch-rate <= 0.01" in message
    assert "GET /checkout id=" in message and "status 200 -> 500" in message
    assert "GET /cart id=" not in message
    section = comparison(run)
    assert 0.1 < section["status_mismatches"] / section["paired"] < 0.3  # checkout's share
    by_request = section["targets"]
    assert set(by_request) == {"GET /cart", "GET /checkout"}
    assert by_request["GET /cart"]["status_mismatches"] == 0
    checkout = by_request["GET /checkout"]
    assert checkout["status_mismatches"] == checkout["paired"] > 0


HTTP_SERVER = {"command": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]}


@pytest.mark.parametrize("app", ["sample app", "python -m http.server"])
def test_a_a_relative_latency_bounds_pass_on_pairs_with_live2(
    start: Callable[..., Spawned], app: str
) -> None:
    # A/A: dark runs live's command. Live-2 (live's command too) receives exactly dark's
    # requests, so both are mirrored copies under the same load; against live itself the
    # mirrored path alone showed +10..+47% on this machine (see latency_baseline).
    versions: dict[str, Any] = {"env": JSON_APP} if app == "sample app" else HTTP_SERVER
    text = yaml.safe_dump({
        "target": "default/sample-app",
        "versions": {"live": versions, "dark": dict(versions)},
        "mirror": {"percent": 100, "host": "customdomain.com"},
        # Three processes of http.server serve every request on two cores: at 250 requests/s
        # they saturated a slower machine of this kind (p95 55 ms, 503s for 3% of requests),
        # at 150 they did not (p95 4.9 ms); benchmarks/comparison.py --modes baseline shows it.
        "traffic": {"rate": 250 if app == "sample app" else 150,
                    "path": "/cart" if app == "sample app" else "/"},
        # http.server's answers vary more than the sample app's: at 150 requests/s, 60 s give
        # about 9,000 pairs (see below)
        "duration": {"interval": "1s", "iterations": 16 if app == "sample app" else 60},
        "objectives": [{"metric": "mean-latency", "max_increase": "10%"},
                       {"metric": "95th-percentile-tail-latency", "max_increase": "10%"}],
    }, sort_keys=False)
    run = start("aa", text, "", "--darklaunch-full-duration")
    run.result()
    report = json.loads((run.cwd / "report.json").read_text())
    mean, p95 = report["verdicts"]
    assert all("paired over" in v["reason"] and "against live-2's" in v["reason"]
               for v in (mean, p95)), report["verdicts"]
    # What every run must show: the mean passes, and the p95 never fails, its paired change
    # well inside the tolerance. That the p95 passes too is a rate, measured by
    # benchmarks/aa_runs.py (10 runs per series): dark's p95 is one process's against
    # another's, and on a virtual machine whose host steals 1-30% of the CPU between runs two
    # processes of the same code can differ within a run by more than the sampling error.
    # Sample app (250 requests/s, 16 s): 16/16, 6/6, then 9/10, the tenth undecided (mean
    # +1.7%, p95 +6.2%, interval +1.9%..+10.7%). http.server (150 requests/s, 60 s, ~9,500
    # pairs): 9/10 on a slower machine, the tenth undecided (+7.2%, interval +2.8%..+11.8%;
    # 15 runs -3.4%..+7.2%), then 10/10 (-4.4%..+3.6%). The mean passed in every run; no
    # run failed either.
    assert mean["outcome"] == "pass", mean
    assert p95["outcome"] in ("pass", "inconclusive"), p95  # never a false alarm
    assert abs(report["comparison"]["latency"]["paired"]["p95_increase"]) < 0.10, p95
    latency = report["comparison"]["latency"]
    assert latency["baseline"] == "live-2" and latency["pairs"] > 2000
    # the paired and the unpaired difference side by side, and what the mirrored path adds
    assert latency["paired"]["mean_increase"] is not None
    assert latency["unpaired"]["mean_increase"] is not None
    assert latency["mirrored_path"]["mean_increase"] is not None


def test_secrets_never_show(start: Callable[..., Spawned]) -> None:
    changed = {**JSON_APP, "SAMPLEAPP_CHANGE_SHARE": "0.5", "SAMPLEAPP_SEED": "5"}
    run = start("secrets", spec(
        dark=changed, compare={**BODY, "redact": ["total"]}, objectives=[MISMATCH],
        iterations=4, headers={"Authorization": "Bearer s3cr3t-hdr", "Cookie": "sid=s3cr3t-ck"},
    ))
    [(outcome, message)] = outcomes(run).values()
    assert outcome == "failure" and "$.total: *** -> ***" in message
    shown = [
        "\n".join(run.result().outlines), (run.cwd / "report.json").read_text(),
        (run.cwd / "junit.xml").read_text(),
    ]
    for text in shown:
        assert "s3cr3t" not in text
        assert "17 -> 18" not in text
