"""Reports of a real run of the example on the local backend: progress, terminal summary, JSON,
JUnit properties, GitHub step summary and annotations, SVG charts.

Two pytest runs in subprocesses, started together once for the module: the example's tests on
a short experiment whose dark version is slow (one objective fails, two pass), with every
report switched on; and a small run under ``-q``. Every objective gets decided within a few
intervals, so the experiment stops early; the tests read how many intervals ran from the report.
Each run gets its own ``TMPDIR``, so whatever it leaves behind (processes, work directories) is
found exactly.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from pytest_darklaunch.core.units import format_value as fmt
from pytest_darklaunch.report.assessment import BUILTIN_ROWS
from pytest_darklaunch.report.files import Outputs
from pytest_darklaunch.report.github import github_annotations, markdown_summary
from pytest_darklaunch.report.json_report import report_document
from pytest_darklaunch.report.terminal import terminal_summary
from tests import chromium
from tests.procfs import processes_with_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "conformance"
DOC = Path(__file__).resolve().parents[2] / "docs" / "report.md"
SVG = "{http://www.w3.org/2000/svg}"
TIMEOUT_S = 120
OBJECTIVES = [
    {"metric": "mean-latency", "upper": 5},  # dark answers in ~20 ms: fails
    {"metric": "95th-percentile-tail-latency", "upper": 100},  # passes
    {"metric": "error-rate", "upper": 0.1},  # passes after ~50 requests
]
OUTCOMES = {"mean-latency": "fail", "95th-percentile-tail-latency": "pass", "error-rate": "pass"}
CUSTOM = {
    "name": "upstream-connections",
    "query": 'sum(envoy_cluster_upstream_cx_total{envoy_cluster_name="$cluster"})',
    "units": "connections",
}
SECRETS = ("hunter2-token", "Bearer s3cr3t")


def example_spec(**changes: Any) -> dict[str, Any]:
    """The example's darklaunch.yaml, shortened: 1 s intervals (at most 10), 100 requests/s."""
    spec: dict[str, Any] = yaml.safe_load((EXAMPLE / "darklaunch.yaml").read_text())
    spec["traffic"].update(rate=100, warmup="1s")
    spec["duration"] = {"interval": "1s", "iterations": 10}
    for key, value in changes.items():
        spec[key] = value
    return spec


@dataclass
class Run:
    dir: Path
    returncode: int
    lines: list[str]
    leftovers: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_DARKLAUNCH_", "GITHUB_", "PYTEST_ADDOPTS", "PYTEST_XDIST"))
    }
    env.update(TMPDIR=str(tmp), COLUMNS="100", **extra)
    return env


def _start(directory: Path, args: list[str], **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    tmp = directory / "tmp"
    tmp.mkdir()
    out = directory / "output.txt"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603 - argv list
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=directory,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_clean_env(tmp, **env),
        )
    return proc, out


def _finish(directory: Path, proc: subprocess.Popen[bytes], out: Path) -> Run:
    try:
        returncode = proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    tmp = directory / "tmp"
    left = [f"pid {pid}" for pid in processes_with_env("TMPDIR", str(tmp))]
    left += [f"directory {p}" for p in sorted(tmp.glob("darklaunch-*"))]
    for pid in processes_with_env("TMPDIR", str(tmp)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # ended meanwhile
            pass
    lines = out.read_text(errors="replace").splitlines()
    print(f"--- {directory}", *lines, sep="\n")
    return Run(directory, returncode, lines, left)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Both runs, started at once (they take ~15 s together)."""
    main = tmp_path_factory.mktemp("reports")
    spec = example_spec(objectives=OBJECTIVES, metrics=[CUSTOM])
    spec["versions"]["dark"]["env"]["SAMPLEAPP_LATENCY_MS"] = "20"
    spec["versions"]["live"]["env"]["API_TOKEN"] = SECRETS[0]
    spec["traffic"]["headers"] = {"Authorization": SECRETS[1], "X-Run": "ci"}
    (main / "darklaunch.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(EXAMPLE / "test_conformance.py", main)
    (main / "pytest.ini").write_text("[pytest]\n")
    started = {
        "main": (
            main,
            *_start(
                main,
                [
                    "--darklaunch-report",
                    "out/report.json",
                    "--darklaunch-plots",
                    "out/plots",
                    "--junitxml",
                    "out/junit.xml",
                    "--html",
                    "out/report.html",
                    "--self-contained-html",
                ],
                GITHUB_STEP_SUMMARY=str(main / "step-summary.md"),
            ),
        )
    }

    quiet = tmp_path_factory.mktemp("quiet")
    small = example_spec(objectives=[{"metric": "error-count", "upper": 1000}])
    small["traffic"]["rate"] = 20
    small["duration"]["iterations"] = 2
    (quiet / "darklaunch.yaml").write_text(yaml.safe_dump(small, sort_keys=False))
    (quiet / "test_quiet.py").write_text(
        "def test_waits_for_the_experiment(darklaunch):\n    assert darklaunch.data.intervals\n"
    )
    (quiet / "pytest.ini").write_text("[pytest]\n")
    started["quiet"] = (quiet, *_start(quiet, ["-q"]))
    try:
        return {name: _finish(*args) for name, args in started.items()}
    finally:  # after a timeout, the other run must not outlive the module either
        for _, proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def run(runs: dict[str, Run]) -> Run:
    return runs["main"]


@pytest.fixture(scope="module")
def report(run: Run) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((run.dir / "out" / "report.json").read_text())
    return document


def verdict(report: dict[str, Any], metric: str) -> dict[str, Any]:
    (found,) = [v for v in report["verdicts"] if v["metric"] == metric]
    return found


def _section(run: Run) -> list[str]:
    """The darklaunch terminal summary, up to pytest's short test summary."""
    start = next(i for i, line in enumerate(run.lines) if re.match(r"^=+ darklaunch: ", line))
    end = next(i for i, line in enumerate(run.lines) if "short test summary info" in line)
    return run.lines[start:end]


def _flat(lines: list[str]) -> str:
    return " ".join(" ".join(lines).split())


# -- the runs themselves --------------------------------------------------------------------------


def test_the_run_has_the_expected_outcomes_and_leaves_nothing_behind(runs: dict[str, Run]) -> None:
    main, quiet = runs["main"], runs["quiet"]
    assert main.returncode == 1
    assert main.lines[-1].startswith("=") and "2 failed, 3 passed" in main.lines[-1]
    assert "FAILED test_conformance.py::test_objective[mean-latency]" in main.text
    assert "FAILED test_conformance.py::test_dark_is_not_slower_than_live" in main.text
    assert quiet.returncode == 0, quiet.text
    assert main.leftovers == [] and quiet.leftovers == []


def test_one_progress_line_per_interval(run: Run, report: dict[str, Any]) -> None:
    pattern = re.compile(
        r"^darklaunch (\d+)/10 t\+\d+s \| requests live (\d+), dark (\d+) \(\d+\.\d%\)"
        r" \| mean-latency dark [\d.]+ ms live [\d.]+ ms (fail|undecided)"
        r" \| 95th-percentile-tail-latency dark [\d.]+ ms live [\d.]+ ms (pass|undecided)"
        r" \| error-rate dark [\d.]+ live [\d.]+ (pass|undecided)$"
    )
    progress = [line for line in run.lines if re.match(r"^darklaunch \d+/", line)]
    matches = [pattern.match(line) for line in progress]
    assert all(matches), progress
    completed = report["intervals"]["completed"]
    assert [int(m.group(1)) for m in matches if m] == list(range(1, completed + 1))
    last = matches[-1]
    assert last is not None
    requests = report["metrics"]["request-count"]
    assert (float(last.group(2)), float(last.group(3))) == (
        requests["live"]["value"],
        requests["dark"]["value"],
    )
    assert last.groups()[3:] == ("fail", "pass", "pass")  # all decided: the experiment stopped


def test_quiet_run_prints_no_progress_but_the_summary(runs: dict[str, Run]) -> None:
    quiet = runs["quiet"]
    assert not [line for line in quiet.lines if re.match(r"^darklaunch \d+/", line)]
    assert any(re.match(r"^=+ darklaunch: 1 passed =+$", line) for line in quiet.lines)
    assert any(re.match(r"^  iterations    [12] of 2 completed$", line) for line in quiet.lines)
    assert "Files" not in quiet.lines  # nothing was asked to be written
    assert not [line for line in quiet.lines if line.startswith("::")]  # not on GitHub


# -- terminal summary -----------------------------------------------------------------------------


def test_summary_sections_in_order_and_at_most_100_columns(
    run: Run, report: dict[str, Any]
) -> None:
    section = _section(run)
    assert re.match(r"^=+ darklaunch: 2 passed, 1 failed =+$", section[0])
    headings = [line for line in section if line and not line.startswith((" ", "=", "::", "-"))]
    window = f"(cumulative window {report['intervals']['completed']:.1f} s)"
    assert headings == [
        "Overview",
        "Progress",
        f"Objective assessment {window}",
        f"Metrics assessment {window}",
        "Mirror check",
        "Response comparison",  # status codes and latencies, paired on every local run
        "Generator",
        "Files",
    ]
    too_wide = [line for line in section if len(line) > 100 and not line.startswith("::")]
    assert too_wide == []


def test_summary_overview_and_progress(run: Run, report: dict[str, Any]) -> None:
    section = _section(run)
    k = report["intervals"]["completed"]
    for expected in (
        "  target        default/sample-app",
        "  versions      live sample-app-v1, dark sample-app-v2",
        "  mirror        40% of live's GET/HEAD/OPTIONS requests (host customdomain.com)",
        "  traffic       100 requests/s, GET /",
        f"  iterations    {k} of 10 completed",
        "  stage         completed",
        f"  stop reason   all objectives decided after {k} of 10 intervals",
    ):
        assert expected in section
    (backend,) = [line for line in section if line.startswith("  backend ")]
    assert re.match(
        r"^  backend       local \(Prometheus http://127\.0\.0\.1:\d+, envoy metrics\)$", backend
    )
    assert any(line.startswith("  duration      10 x 1 s planned (10 s); ran ") for line in section)


def test_summary_objective_assessment(run: Run, report: dict[str, Any]) -> None:
    section = _section(run)
    section = section[: next(i for i, line in enumerate(section) if line.startswith("Metrics"))]
    for metric, limit in (
        ("mean-latency", "<= 5 ms"),
        ("95th-percentile-tail-latency", "<= 100 ms"),
        ("error-rate", "<= 0.1"),
    ):
        v = verdict(report, metric)
        units = v["units"]
        (row,) = [line for line in section if line.startswith(f"  {metric} ")]
        cells = [c.strip() for c in re.split(r"\s{2,}", row.strip())]
        assert cells == [
            metric,
            limit,
            fmt(v["value"], units),
            fmt(v["live_value"], units),
            str(v["samples"]),
            OUTCOMES[metric].upper(),
        ]
        reason = section[section.index(row) + 1]
        assert reason.startswith("      ") and reason.split()[0] in v["reason"]
    assert "breaching <= 5" in _flat(section)


def test_summary_metrics_assessment(run: Run, report: dict[str, Any]) -> None:
    section = _section(run)
    start = next(i for i, line in enumerate(section) if line.startswith("Metrics assessment"))
    assert section[start + 1].split() == [
        "METRIC",
        "DARK",
        "LIVE",
        "DARK",
        "VS",
        "LIVE",
        "UNITS",
        "SAMPLES",
        "DARK/LIVE",
    ]
    rows = {line.split()[0]: line.split() for line in section[start + 2 : start + 10]}
    assert list(rows) == [*BUILTIN_ROWS, "upstream-connections"]
    for metric, cells in rows.items():
        m = report["metrics"][metric]
        assert cells[1:3] == [fmt(m["dark"]["value"]), fmt(m["live"]["value"])], metric
        assert cells[-2:] == [m["units"] or "-", f"{m['dark']['samples']}/{m['live']['samples']}"]
    assert rows["mean-latency"][3].startswith("+")  # dark is slower than live


def test_summary_mirror_and_generator(run: Run, report: dict[str, Any]) -> None:
    text = _flat(_section(run))
    mirror, gen = report["mirror"], report["generator"]
    assert (
        f"share configured 40%, observed {mirror['observed_percent']:.1f}% "
        f"(dark {fmt(mirror['dark_requests'])} of live {fmt(mirror['live_requests'])} requests; "
    ) in text
    assert text.count("): ok") == 1
    assert f"rate target 100 requests/s, achieved {fmt(gen['achieved_rps'], 'requests/s')}" in text
    assert f"requests sent {gen['sent']}, errors 0, late {gen['late']}; lag p50 " in text
    assert "report out/report.json" in text and "plots 3 SVG charts in out/plots" in text


def test_github_annotation_for_the_failed_objective(run: Run, report: dict[str, Any]) -> None:
    annotations = [line for line in run.lines if line.startswith("::")]
    reason = verdict(report, "mean-latency")["reason"].replace("%", "%25")
    assert annotations == [
        f"::error title=darklaunch mean-latency::mean-latency <= 5: fail: {reason}"
    ]


# -- JSON report ----------------------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "list": (list,),
    "object": (dict,),
    "null": (type(None),),
}
_MAP_KEYS = {
    "metrics": "<metric>",
    "series": "<metric>",
    "series.<metric>": "<version>",
    "plots": "<objective id>",
    "generator.targets": "<name>",
    "comparison.targets": "<request>",
}


def documented_keys() -> dict[str, tuple[type, ...]]:
    """``{path: allowed types}`` from the tables of docs/report.md's JSON section."""
    text = DOC.read_text().split("## The JSON report format", 1)[1]
    out = {}
    for path, kinds in re.findall(r"^\| `([^`]+)` \| ([a-z ]+) \|", text, re.MULTILINE):
        out[path] = tuple(t for word in kinds.split(" or ") for t in _TYPES[word])
    return out


def report_paths(
    value: Any, path: str = "", out: dict[str, list[Any]] | None = None
) -> dict[str, list[Any]]:
    """Every key path of the report in the doc's notation, with the values found there."""
    out = {} if out is None else out
    if path:
        out.setdefault(path, []).append(value)
    if path.startswith("spec."):
        return out
    if isinstance(value, dict):
        for key, item in value.items():
            name = _MAP_KEYS.get(path, key)
            if path == "metrics.<metric>" and key in ("dark", "live"):
                name = "<version>"
            report_paths(item, f"{path}.{name}" if path else name, out)
    elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        for item in value:
            for key, sub in item.items():
                report_paths(sub, f"{path}[].{key}", out)
    return out


def test_json_keys_and_types_are_the_documented_ones(report: dict[str, Any]) -> None:
    documented = documented_keys()
    found = report_paths(report)
    # Keys inside a list that is empty in this report (no field differed) cannot be seen.
    empty = [path for path, values in found.items() if all(v == [] for v in values)]
    seen = [d for d in documented if not any(d.startswith(f"{e}[].") for e in empty)]
    assert sorted(found) == sorted(seen)
    wrong = {
        path: values
        for path, values in found.items()
        if any(type(v) not in documented[path] for v in values)
    }
    assert wrong == {}


def test_json_verdicts_match_the_measurements(report: dict[str, Any]) -> None:
    assert {v["metric"]: v["outcome"] for v in report["verdicts"]} == OUTCOMES
    mean = verdict(report, "mean-latency")
    assert mean["value"] > 5 and mean["upper"] == 5 and mean["lower"] is None
    assert mean["lo"] <= mean["value"] <= mean["hi"]
    assert mean["value"] == pytest.approx(report["metrics"]["mean-latency"]["dark"]["value"])
    assert mean["value"] > mean["live_value"]
    assert "envoy_cluster_upstream_rq_time_sum" in mean["query"]
    assert verdict(report, "95th-percentile-tail-latency")["value"] <= 100
    rate = verdict(report, "error-rate")
    assert rate["samples"] == report["metrics"]["request-count"]["dark"]["value"]
    assert rate["value"] == 0 and rate["hi"] <= 0.1
    assert report["stage"] == "completed" and report["error"] is None
    assert report["intervals"]["planned"] == 10 and report["intervals"]["interval_s"] == 1.0
    assert 1 <= report["intervals"]["completed"] < 10
    assert report["started_at"] == mean["window"][0] < mean["window"][1] <= report["finished_at"]


def test_json_series_add_up_to_the_cumulative_values(report: dict[str, Any]) -> None:
    assert set(report["series"]) == {*BUILTIN_ROWS, "upstream-connections"}
    for version in ("dark", "live"):
        points = report["series"]["request-count"][version]
        assert len(points) == report["intervals"]["completed"]
        ends = [p["end"] for p in points]
        assert ends == sorted(ends) and points[0]["start"] == report["started_at"]
        assert [p["start"] for p in points[1:]] == ends[:-1]
        # exact differences of counters: the intervals add up to the whole window
        total = report["metrics"]["request-count"][version]["value"]
        assert sum(p["value"] for p in points) == total


def test_json_mirror_generator_and_no_credentials(run: Run, report: dict[str, Any]) -> None:
    mirror = report["mirror"]
    requests = report["metrics"]["request-count"]
    assert mirror["configured_percent"] == 40
    assert (mirror["dark_requests"], mirror["live_requests"]) == (
        requests["dark"]["value"],
        requests["live"]["value"],
    )
    assert mirror["observed_percent"] == pytest.approx(
        100 * mirror["dark_requests"] / mirror["live_requests"]
    )
    assert mirror["ok"] is True
    gen = report["generator"]
    assert gen["target_rps"] == 100 and gen["sent"] > 0 and gen["errors"] == 0
    assert gen["achieved_rps"] > 90
    raw = (run.dir / "out" / "report.json").read_text()
    assert not [s for s in SECRETS if s in raw]
    assert report["spec"]["traffic"]["headers"] == {"Authorization": "***", "X-Run": "ci"}
    assert report["spec"]["versions"]["live"]["env"]["API_TOKEN"] == "***"
    assert report["spec"]["versions"]["dark"]["env"]["SAMPLEAPP_LATENCY_MS"] == "20"


# -- JUnit, step summary, plots -------------------------------------------------------------------


def test_junit_properties_per_asserted_objective(run: Run, report: dict[str, Any]) -> None:
    tree = ET.parse(run.dir / "out" / "junit.xml")
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in tree.iter("testcase")
    }
    mean = verdict(report, "mean-latency")
    assert {
        k: v
        for k, v in props["test_objective[mean-latency]"].items()
        if k in ("darklaunch_metric", "darklaunch_upper", "darklaunch_lower", "darklaunch_outcome")
    } == {
        "darklaunch_metric": "mean-latency",
        "darklaunch_upper": "5.0",
        "darklaunch_lower": "",
        "darklaunch_outcome": "fail",
    }
    assert float(props["test_objective[mean-latency]"]["darklaunch_value"]) == mean["value"]
    p95 = props["test_objective[95th-percentile-tail-latency]"]
    assert (p95["darklaunch_outcome"], p95["darklaunch_upper"]) == ("pass", "100.0")
    assert props["test_objective[error-rate]"]["darklaunch_outcome"] == "pass"
    relative = props["test_dark_is_not_slower_than_live"]
    assert (
        relative["darklaunch_metric"],
        relative["darklaunch_max_increase"],
        relative["darklaunch_upper"],
        relative["darklaunch_outcome"],
    ) == ("mean-latency", "50%", "", "fail")
    helper = props["test_module_level_helper"]
    assert (
        helper["darklaunch_metric"],
        helper["darklaunch_upper"],
        helper["darklaunch_value"],
        helper["darklaunch_outcome"],
    ) == ("error-count", "5.0", "0.0", "pass")


def test_step_summary_holds_both_tables_and_links_the_plots(
    run: Run, report: dict[str, Any]
) -> None:
    text = (run.dir / "step-summary.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "### darklaunch default/sample-app: 2 passed, 1 failed"
    assert "| Objective | Limit | Dark | Live | Samples | Outcome | Reason |" in lines
    mean = verdict(report, "mean-latency")
    (row,) = [line for line in lines if line.startswith("| mean-latency | <= 5 ms |")]
    assert f"| {fmt(mean['value'], 'ms')} |" in row and "| ❌ fail |" in row
    assert "| Metric | Dark | Live | Dark vs live | Units | Samples (dark / live) |" in lines
    for metric in (*BUILTIN_ROWS, "upstream-connections"):
        m = report["metrics"][metric]
        assert any(
            line.startswith(f"| {metric} | {fmt(m['dark']['value'])} | ") for line in lines
        ), metric
    links = re.findall(r"^- \[([^\]]+)\]\(([^)]+)\)", text, re.MULTILINE)
    assert [label for label, _ in links] == [v["label"] for v in report["verdicts"]]
    assert [target for _, target in links] == list(report["plots"].values())
    assert all((run.dir / target).is_file() for _, target in links)


def _mermaid_blocks(text: str) -> list[list[str]]:
    return [b.strip("\n").splitlines() for b in re.findall(r"```mermaid\n(.*?)```", text, re.S)]


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.fullmatch(r"\[(.*)\]", text.strip()).group(1).split(", ")]


def test_step_summary_has_a_mermaid_trend_chart_per_objective(
    run: Run, report: dict[str, Any]
) -> None:
    text = (run.dir / "step-summary.md").read_text(encoding="utf-8")
    blocks = _mermaid_blocks(text)
    assert len(blocks) == len(report["verdicts"]) == 3
    captions = re.findall(r"^<sub>(.*)</sub>$", text, re.MULTILINE)
    assert len(captions) == 3
    for block, caption, v in zip(blocks, captions, report["verdicts"], strict=True):
        assert block.index("xychart-beta") > 0  # after the front matter with the colours
        fields = {
            line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1]
            for line in block
            if line.startswith("  ") and " " in line.strip()
        }
        assert fields["title"] == f'"{v["label"].replace("<=", "≤")}"'
        series = report["series"][v["metric"]]
        ends = [p["end"] - report["started_at"] for p in series["dark"]]
        axis = re.fullmatch(r'"seconds since the experiment started" \[(.*)\]', fields["x-axis"])
        assert axis
        labels = [float(x.strip('"')) for x in axis.group(1).split(", ")]
        assert labels == pytest.approx(ends, abs=0.06)  # one label per interval
        lines = [_numbers(line.split(" ", 3)[3]) for line in block if line.startswith("  line ")]
        expected, names = [], []
        for version in ("dark", "live"):
            values = [p["value"] for p in series[version]]
            if None not in values:
                expected.append(values)
                names.append(version)
        expected.append([v["upper"]] * len(ends))  # the limit as a flat line
        names.append(f"upper limit {v['upper']:g}")
        assert [len(line) for line in lines] == [len(ends)] * len(expected)
        for line, values in zip(lines, expected, strict=True):
            assert line == pytest.approx(values, rel=1e-5)
        colours = {"dark": "purple", "live": "blue"}
        assert caption.startswith(", ".join(f"{colours.get(n, 'red')}: {n}" for n in names)), (
            caption
        )
        low, high = (float(x) for x in fields["y-axis"].rsplit(" ", 3)[-3::2])
        assert low <= min(min(line) for line in lines) and high >= max(max(line) for line in lines)
    # the charts come right after the tables they illustrate, before the plot links
    assert (
        text.index("#### Metrics assessment") < text.index("```mermaid") < text.index("#### Plots")
    )


def test_each_plot_is_svg_with_one_series_per_version_and_the_limit(
    run: Run, report: dict[str, Any]
) -> None:
    files = sorted(p.name for p in (run.dir / "out" / "plots").iterdir())
    assert files == ["95th-percentile-tail-latency.svg", "error-rate.svg", "mean-latency.svg"]
    for v in report["verdicts"]:
        root = ET.parse(run.dir / "out" / "plots" / f"{v['metric']}.svg").getroot()
        assert root.tag == f"{SVG}svg" and root.get("data-outcome") == v["outcome"]
        series = {
            p.get("data-version"): p.get("d") or ""
            for p in root.iter(f"{SVG}path")
            if p.get("class") == "series"
        }
        assert sorted(series) == ["dark", "live"]
        for version, d in series.items():
            values = [p["value"] for p in report["series"][v["metric"]][version]]
            assert len(re.findall(r"[ML]", d)) == len([x for x in values if x is not None]) > 0
        limits = [
            (e.get("data-limit"), float(e.get("data-value") or "nan"))
            for e in root.iter(f"{SVG}line")
            if e.get("class") == "limit"
        ]
        assert limits == [("upper", v["upper"])]
    root = ET.parse(run.dir / "out" / "plots" / "mean-latency.svg").getroot()
    mean_y = {
        version: statistics.mean(float(y) for y in re.findall(r",([\d.]+)", d))
        for version, d in (
            (p.get("data-version"), p.get("d") or "")
            for p in root.iter(f"{SVG}path")
            if p.get("class") == "series"
        )
    }
    assert mean_y["dark"] < mean_y["live"]  # SVG y grows downwards: dark is drawn higher


# -- pytest-html ----------------------------------------------------------------------------------

# Appended to a copy of the report: what the browser laid out, as JSON in the DOM it dumps.
PROBE = """<script>
(() => {
  const shown = (e) => {
    const r = e.getBoundingClientRect(), s = getComputedStyle(e);
    return r.width > 0 && r.height > 0 && r.top >= 0 && s.display !== "none"
      && s.visibility !== "hidden" && Number(s.opacity) > 0;
  };
  const all = (selector) => Array.from(document.querySelectorAll(selector));
  const probe = {
    heading: all("#darklaunch h2").map((h) => [h.innerText, shown(h)]),
    objectives: all("#darklaunch table.darklaunch-objectives tbody tr").map((r) =>
      [r.cells[0].innerText, r.cells[5].innerText, shown(r)]),
    metrics: all("#darklaunch table.darklaunch-metrics tbody tr").map((r) => r.cells[0].innerText),
    mirror: all("#darklaunch .darklaunch-mirror").map((e) => [e.innerText, shown(e)]),
    generator: all("#darklaunch .darklaunch-generator").map((e) => [e.innerText, shown(e)]),
    charts: all("#darklaunch figure.darklaunch-chart").map((f) => {
      const svg = f.querySelector("svg");
      return [f.dataset.objective, shown(svg), svg.getBoundingClientRect().width,
              svg.querySelectorAll("path.series").length,
              svg.querySelectorAll("line.limit").length];
    }),
  };
  const out = document.createElement("pre");
  out.id = "darklaunch-probe";
  out.textContent = JSON.stringify(probe);
  document.body.appendChild(out);
})();
</script>"""


def _probe(page: Path, tmp_path: Path) -> dict[str, Any]:
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    found = re.search(r'<pre id="darklaunch-probe">(.*?)</pre>', chromium.dump_dom(probed), re.S)
    assert found, "the probe did not run"
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def test_pytest_html_report_shows_the_assessment_and_charts_in_chromium(
    run: Run, report: dict[str, Any], tmp_path: Path
) -> None:
    page = run.dir / "out" / "report.html"
    probe = _probe(page, tmp_path)
    assert probe["heading"] == [["darklaunch: 2 passed, 1 failed", True]]
    assert probe["objectives"] == [
        [v["metric"], OUTCOMES[v["metric"]].upper(), True] for v in report["verdicts"]
    ]
    assert probe["metrics"] == list(report["metrics"])
    ((mirror, mirror_shown),) = probe["mirror"]
    assert mirror_shown and mirror.startswith("configured 40%, observed ") and mirror.endswith("ok")
    ((generator, generator_shown),) = probe["generator"]
    assert generator_shown and generator.startswith("target 100 requests/s, achieved ")
    # one chart per objective, laid out at a readable size, each with both versions and a limit
    assert probe["charts"] == [
        [v["metric"], True, pytest.approx(600, abs=1), 2, 1] for v in report["verdicts"]
    ]
    # ...and painted: the screenshot holds the charts' line colours
    _, _, rows = chromium.read_png(chromium.screenshot(page, tmp_path / "report.png"))
    for colour in ("#7b2cbf", "#1f77b4", "#c0392b"):  # dark, live, the limit
        assert chromium.count_color(rows, colour) > 300, colour


def test_the_html_hooks_load_only_with_pytest_html(tmp_path: Path) -> None:
    (tmp_path / "darklaunch.yaml").write_text("target: default/sample-app\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    code = (
        "import sys, pytest\n"
        "pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *sys.argv[1:]])\n"
        "print('hooks-loaded', 'pytest_darklaunch.report.html' in sys.modules)\n"
    )
    loaded = {}
    for args in ((), ("-p", "no:html")):
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=tmp_path,
            env=_clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        loaded[args] = done.stdout.splitlines()[-1]
    assert loaded == {(): "hooks-loaded True", ("-p", "no:html"): "hooks-loaded False"}


# -- without a run: a failed provisioning, credentials, annotation escaping -----------------------


@pytest.fixture
def failed_state(tmp_path: Path) -> Any:
    from pytest_darklaunch.core.config import resolve

    spec = example_spec(objectives=OBJECTIVES)
    spec["traffic"]["headers"] = {"Authorization": SECRETS[1]}
    (tmp_path / "darklaunch.yaml").write_text(yaml.safe_dump(spec))
    resolved = resolve(
        {"spec": str(tmp_path / "darklaunch.yaml"), "prometheus-url": "https://prom.example/prom"},
        {},
        {},
        "pytest.ini",
        tmp_path,
    )
    # A URL with credentials is refused as the run is configured (tests/plugin/test_bad_input);
    # the reports redact one all the same, should one ever get this far.
    settings = dataclasses.replace(
        resolved.settings, prometheus_url="https://admin:pw-s3cret@prom.example/prom"
    )
    resolved = dataclasses.replace(resolved, settings=settings)
    return SimpleNamespace(
        spec=resolved.spec,
        resolved=resolved,
        data=None,
        environment=None,
        run_id="r1",
        error="provisioning failed: no route to the cluster",
        kept_dir=None,
        flush_progress=lambda write: None,
    )


def test_report_of_a_failed_provisioning_is_complete_and_hides_the_url_password(
    failed_state: Any,
) -> None:
    document = report_document(failed_state)
    raw = json.dumps(document, allow_nan=False)
    assert "pw-s3cret" not in raw and SECRETS[1] not in raw
    assert document["prometheus_url"] == "https://***@prom.example/prom"
    assert document["error"] == "provisioning failed: no route to the cluster"
    assert [(v["metric"], v["outcome"], v["reason"]) for v in document["verdicts"]] == [
        (o["metric"], "inconclusive", "provisioning failed: no route to the cluster")
        for o in OBJECTIVES
    ]
    assert set(report_paths(document)) <= set(documented_keys())
    markdown = markdown_summary(failed_state, [], [])
    assert "**Error:** provisioning failed: no route to the cluster" in markdown


def test_terminal_summary_of_a_failed_provisioning(failed_state: Any) -> None:
    written: list[str] = []
    reporter = SimpleNamespace(
        write_line=lambda line, **markup: written.append(line),
        write_sep=lambda sep, title: written.append(f"{sep * 3} {title} {sep * 3}"),
    )
    terminal_summary(reporter, failed_state, Outputs())
    assert written[0] == "=== darklaunch: 3 inconclusive ==="
    assert "  error         provisioning failed: no route to the cluster" in written
    assert sum("no route to the cluster" in line for line in written) == 1  # shown once
    assert "  stage         the experiment did not run" in written
    assert "  no interval was completed" in written
    assert not [line for line in written if "s3cret" in line]


def test_annotation_is_one_line_with_escaped_data() -> None:
    from pytest_darklaunch.core.spec import Objective
    from pytest_darklaunch.core.verdict import Verdict

    lines = github_annotations(
        [
            Verdict(Objective("p99", upper=10), "fail", "dark p99 is 12 ms (99%\nof it)"),
            Verdict(Objective("error-rate", upper=0.01), "pass", "fine"),
            Verdict(Objective("a:b,c", upper=1), "inconclusive", "no data"),
        ],
        inconclusive="skip",
    )
    assert lines == [
        "::error title=darklaunch p99::p99 <= 10: fail: dark p99 is 12 ms (99%25%0Aof it)",
        "::warning title=darklaunch a%3Ab%2Cc::a:b,c <= 1: inconclusive: no data",
    ]
