"""``python -m pytest_darklaunch render``: multi-document YAML; bad input is one line, exit 2."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_darklaunch import cli
from pytest_darklaunch.backends.kubernetes.render import render
from pytest_darklaunch.core.config import load_spec

SPEC = """\
target: default/sample-app
versions:
  live: {image: "gcr.io/knative-samples/knative-route-demo:blue", env: {T_VERSION: blue}}
  dark: {image: "gcr.io/knative-samples/knative-route-demo:green", env: {T_VERSION: green}}
mirror: {percent: 40, host: customdomain.com}
traffic: {rate: 20}
"""
# The seed's experiment.yaml, verbatim in substance.
EXPERIMENT = """\
apiVersion: iter8.tools/v2alpha1
kind: Experiment
metadata:
  name: mirroring
spec:
  target: default/sample-app
  strategy:
    testingPattern: Conformance
  criteria:
    objectives:
    - metric: mean-latency
      upperLimit: 50
    - metric: 95th-percentile-tail-latency
      upperLimit: 100
    - metric: error-rate
      upperLimit: "0.01"
  duration:
    intervalSeconds: 10
    iterationsPerLoop: 10
  versionInfo:
    baseline:
      name: current
      variables:
      - name: revision
        value: sample-app-v2
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-m", "pytest_darklaunch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_render_prints_the_documents_render_returns(tmp_path: Path) -> None:
    spec_file = write(tmp_path / "darklaunch.yaml", SPEC)
    done = run_cli("render", "--spec", spec_file, "--run-id", "review-1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    docs = list(yaml.safe_load_all(done.stdout))
    assert docs == render(load_spec(spec_path=spec_file), "review-1")
    assert [d["kind"] for d in docs] == [
        "Service",
        "Service",
        "VirtualService",
        "Job",
    ]


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    done = run_cli("render", "--spec", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert "missing.yaml" in done.stderr


@pytest.mark.parametrize(
    "spec_text, args, expected",
    [
        (SPEC.replace("default/sample-app", "Default/App"), (), "invalid target 'Default/App'"),
        (SPEC.replace("percent: 40", "percent: 140"), (), "mirror.percent"),
        (
            SPEC.replace('image: "gcr.io/knative-samples/knative-route-demo:green", ', ""),
            (),
            "versions.dark.image",
        ),
        (SPEC, ("--run-id", "Not OK"), "invalid run id 'Not OK' (from --run-id)"),
        (SPEC, ("--namespace", "Prod_1"), "invalid namespace 'Prod_1' (from --namespace)"),
        (SPEC, ("--colour",), "unrecognized arguments: --colour"),
    ],
)
def test_invalid_input_never_reaches_the_output(
    spec_text: str,
    args: tuple[str, ...],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec_file = write(tmp_path / "darklaunch.yaml", spec_text)
    try:
        code = cli.main(["render", "--spec", spec_file, *args])
    except SystemExit as exit_:
        code = int(str(exit_.code))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and expected in err, err


def test_an_invalid_spec_is_refused_before_rendering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    render_module = importlib.import_module("pytest_darklaunch.backends.kubernetes.render")

    def must_not_render(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("rendering reached with an invalid spec")

    monkeypatch.setattr(render_module, "render_yaml", must_not_render)
    spec_file = write(tmp_path / "darklaunch.yaml", SPEC.replace("rate: 20", "rate: fast"))
    assert cli.main(["render", "--spec", spec_file]) == 2
    assert "traffic.rate" in capsys.readouterr().err


def test_an_iter8_experiment_with_a_spec_for_the_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = write(tmp_path / "experiment.yaml", EXPERIMENT)
    images = write(
        tmp_path / "images.yaml",
        "\n".join(line for line in SPEC.splitlines() if not line.startswith(("mirror", "traffic"))),
    )
    assert cli.main(["render", "--experiment", experiment, "--spec", images]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert docs[1]["spec"]["template"]["metadata"]["name"] == "sample-app-v2"
    assert docs[0]["metadata"]["labels"]["darklaunch.dev/run-id"] == cli.DEFAULT_RUN_ID


def test_an_experiment_alone_names_the_missing_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = write(tmp_path / "experiment.yaml", EXPERIMENT)
    assert cli.main(["render", "--experiment", experiment]) == 2
    assert "versions.live.image" in capsys.readouterr().err


def test_darklaunch_yaml_in_the_current_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["render"]) == 2
    assert "no darklaunch.yaml in the current directory" in capsys.readouterr().err
    write(tmp_path / "darklaunch.yaml", SPEC)
    assert cli.main(["render", "--namespace", "staging"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["metadata"]["namespace"] for d in docs} == {"staging"}
