"""Options as users meet them: ``--help``, the report header with origins, inert mode, test ids."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

import pytest_darklaunch
from pytest_darklaunch.core.config import OPTIONS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_OBJECTIVES = "mean-latency <= 50, 95th-percentile-tail-latency <= 100, error-rate <= 0.01"
GROUP_TITLE = "dark launch experiments (pytest-darklaunch):"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Also xdist's worker variables: a nested run is no worker (plugins check them).
    for name in list(os.environ):
        if name.startswith(("PYTEST_DARKLAUNCH_", "PYTEST_XDIST_")):
            monkeypatch.delenv(name)


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Records experiment starts (instead of provisioning) and points TMPDIR at a fresh dir."""
    from pytest_darklaunch.session import DarklaunchSession

    calls: list[str] = []
    monkeypatch.setattr(DarklaunchSession, "start", lambda self: calls.append(self.run_id))
    monkeypatch.setattr("pytest_darklaunch.interrupts.SignalGuard.install", lambda self: None)
    tmp = tmp_path_factory.mktemp("TMPDIR")
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return calls


def header(result: pytest.RunResult) -> dict[str, tuple[str, str]]:
    """``{name: (value, origin)}`` from the ``darklaunch: name=value (origin), ...`` line."""
    lines = [line for line in result.outlines if line.startswith("darklaunch: ")]
    assert len(lines) == 1, result.outlines
    body = lines[0][len("darklaunch: ") :]
    pairs = re.findall(r"([a-z-]+)=(\S*) \(([^()]*)\)(?:, |$)", body)
    parsed = {name: (value, origin) for name, value, origin in pairs}
    rebuilt = ", ".join(f"{n}={v} ({o})" for n, (v, o) in parsed.items())
    assert rebuilt == body, body  # every part of the line was understood
    return parsed


def objectives_line(result: pytest.RunResult) -> str:
    lines = [line for line in result.outlines if line.startswith("darklaunch objectives: ")]
    assert len(lines) == 1, result.outlines
    return lines[0][len("darklaunch objectives: ") :]


# --- --help --------------------------------------------------------------------------------------


def test_help_lists_the_group_with_every_option_and_its_twins(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    text = result.stdout.str()
    assert GROUP_TITLE in text
    # The group's section runs from its title to the next unindented line.
    section = text.split(GROUP_TITLE, 1)[1]
    section = re.split(r"\n(?=\S)", section, maxsplit=1)[0]
    flat = " ".join(section.split())
    for opt in OPTIONS:
        assert re.search(rf"(^|\s){re.escape(opt.cli)}(=|\s)", section), opt.cli
        assert f"Also env {opt.env} and ini {opt.ini}." in flat, opt.name
        if opt.default and not opt.flag:
            assert f"(default: {opt.default})" in flat, opt.name
    # "[pytest] ini-options ..." (pytest 7/8) or "[pytest] configuration options ..." (pytest 9)
    ini_section = re.split(r"^\[pytest\] ", text, maxsplit=1, flags=re.MULTILINE)[1]
    for opt in OPTIONS:
        assert re.search(rf"^\s+{opt.ini} \(", ini_section, re.MULTILINE), opt.ini


def test_every_option_is_registered_in_the_darklaunch_group(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    group = config._parser.getgroup("darklaunch")
    names = {name for option in group.options for name in option.names()}
    assert names == {opt.cli for opt in OPTIONS}
    for opt in OPTIONS:
        assert config.getoption(opt.dest) is None  # unset means "not given": env and ini may rule


# --- report header with origins ------------------------------------------------------------------


def test_header_shows_each_value_with_its_origin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, starts: list[str]
) -> None:
    pytester.makefile(
        ".yaml",
        spec="target: shop/cart\nduration: {interval: 4s, iterations: 4}\nmirror: {percent: 4}\n"
        "objectives: [{metric: error-rate, upper: 0.02}]\n"
        "versions: {live: {image: 'cart:1'}, dark: {image: 'cart:2'}}\n",
    )
    pytester.makefile(
        ".ini", pytest="[pytest]\ndarklaunch_mirror_percent = 7\ndarklaunch_inconclusive = skip\n"
    )
    monkeypatch.setenv("PYTEST_DARKLAUNCH_ITERATIONS", "3")
    monkeypatch.setenv("PYTEST_DARKLAUNCH_BACKEND", "kubernetes")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--collect-only",
        "--darklaunch-spec",
        "spec.yaml",
        "--darklaunch-rate",
        "9",
    )
    assert result.ret == pytest.ExitCode.OK
    h = header(result)
    assert h["target"] == ("shop/cart", "target in spec.yaml")
    assert h["spec"] == ("spec.yaml", "--darklaunch-spec")
    assert h["interval"] == ("4s", "duration.interval in spec.yaml")
    assert h["iterations"] == ("3", "env PYTEST_DARKLAUNCH_ITERATIONS")
    assert h["mirror-percent"] == ("7", "darklaunch_mirror_percent in pytest.ini")
    assert h["rate"] == ("9", "--darklaunch-rate")
    assert h["confidence"] == ("0.95", "default")
    assert h["backend"] == ("kubernetes", "env PYTEST_DARKLAUNCH_BACKEND")
    assert h["inconclusive"] == ("skip", "darklaunch_inconclusive in pytest.ini")
    assert h["keep"] == ("false", "default")
    assert objectives_line(result) == "error-rate <= 0.02"
    assert f"darklaunch version: {pytest_darklaunch.__version__}" in result.outlines
    run_ids = [line for line in result.outlines if line.startswith("darklaunch run id: ")]
    assert len(run_ids) == 1 and re.fullmatch(r"darklaunch run id: [0-9a-f]{10}", run_ids[0])
    # --collect-only provisions nothing.
    assert starts == []
    assert list(Path(tempfile.gettempdir()).iterdir()) == []


def test_cli_beats_env_beats_ini_in_the_header(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, starts: list[str]
) -> None:
    pytester.makefile(
        ".toml",
        pyproject='[tool.pytest.ini_options]\ndarklaunch_interval = "3s"\n'
        'darklaunch_iterations = "3"\ndarklaunch_rate = "3"\n',
    )
    monkeypatch.setenv("PYTEST_DARKLAUNCH_INTERVAL", "2s")
    monkeypatch.setenv("PYTEST_DARKLAUNCH_ITERATIONS", "2")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--co",
        "--darklaunch-target",
        "default/sample-app",
        "--darklaunch-interval",
        "1s",
    )
    assert result.ret == pytest.ExitCode.OK
    h = header(result)
    assert h["target"] == ("default/sample-app", "--darklaunch-target")
    assert h["interval"] == ("1s", "--darklaunch-interval")
    assert h["iterations"] == ("2", "env PYTEST_DARKLAUNCH_ITERATIONS")
    assert h["rate"] == ("3", "darklaunch_rate in pyproject.toml")
    assert h["mirror-percent"] == ("40", "default")
    assert objectives_line(result) == "none in the spec"
    assert starts == []


def test_spec_in_the_rootdir_is_used_by_default(
    pytester: pytest.Pytester, starts: list[str]
) -> None:
    shutil.copy(EXAMPLES / "conformance" / "darklaunch.yaml", pytester.path / "darklaunch.yaml")
    pytester.makeini("[pytest]\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--co")
    h = header(result)
    assert h["spec"] == (str(pytester.path / "darklaunch.yaml"), "found in rootdir")
    assert h["interval"][0] == "2s" and h["mirror-percent"][0] == "40"
    assert objectives_line(result) == SEED_OBJECTIVES
    assert starts == []


def test_a_real_run_does_start_the_experiment(pytester: pytest.Pytester, starts: list[str]) -> None:
    """The control for the ``starts == []`` checks above."""
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--darklaunch-target", "a/b")
    assert result.ret == pytest.ExitCode.OK
    assert len(starts) == 1


# --- inert without target or spec ----------------------------------------------------------------


def test_without_target_the_fixture_skips_and_other_tests_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, starts: list[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the skip reasons in full
    pytester.makepyfile(
        """
        import pytest

        def test_plain():
            assert 1 + 1 == 2

        def test_needs_experiment(darklaunch):
            raise AssertionError("must not run")

        def test_per_objective(darklaunch, darklaunch_objective):
            raise AssertionError("must not run")

        @pytest.mark.darklaunch("error-rate", upper=0.01)
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", "-v")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*test_plain PASSED*", "*test_needs_experiment SKIPPED*"])
    skips = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert len(skips) == 3 and all("--darklaunch-target" in line for line in skips), skips
    assert not any(line.startswith("darklaunch: target=") for line in result.outlines)
    assert starts == []


def test_inert_header_only_when_verbose(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    quiet = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--co")
    assert not any(line.startswith("darklaunch") for line in quiet.outlines)
    verbose = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--co", "-v")
    assert "darklaunch: inactive (no target, spec file or Iter8 experiment)" in verbose.outlines


# --- the seed's Iter8 experiment -----------------------------------------------------------------


@pytest.fixture
def seed_experiment(pytester: pytest.Pytester) -> str:
    (pytester.path / "examples" / "iter8").mkdir(parents=True)
    shutil.copy(EXAMPLES / "iter8" / "experiment.yaml", pytester.path / "examples" / "iter8")
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_objectives="""
        def test_objective(darklaunch, darklaunch_objective):
            pass

        def test_other():
            pass
        """
    )
    return "examples/iter8/experiment.yaml"


def test_seed_experiment_loads(
    pytester: pytest.Pytester, seed_experiment: str, starts: list[str]
) -> None:
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--darklaunch-experiment", seed_experiment, "--collect-only"
    )
    assert result.ret == pytest.ExitCode.OK
    h = header(result)
    assert h["target"] == ("default/sample-app", f"spec.target in {seed_experiment}")
    assert h["interval"] == ("10s", f"spec.duration.intervalSeconds in {seed_experiment}")
    assert h["iterations"][0] == "10"
    assert h["experiment"] == (seed_experiment, "--darklaunch-experiment")
    assert objectives_line(result) == SEED_OBJECTIVES
    assert starts == []


def test_one_test_per_objective_selectable_with_k(
    pytester: pytest.Pytester, seed_experiment: str, starts: list[str]
) -> None:
    args = ("-p", "no:cacheprovider", "--darklaunch-experiment", seed_experiment, "--co", "-q")
    result = pytester.runpytest_inprocess(*args)
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "test_objectives.py::test_objective[mean-latency]",
        "test_objectives.py::test_objective[95th-percentile-tail-latency]",
        "test_objectives.py::test_objective[error-rate]",
        "test_objectives.py::test_other",
    ]
    for metric in ("error-rate", "mean-latency", "95th-percentile-tail-latency"):
        selected = pytester.runpytest_inprocess(*args, "-k", metric)
        assert [line for line in selected.outlines if "::" in line] == [
            f"test_objectives.py::test_objective[{metric}]"
        ], metric
    assert starts == []
