"""A run whose pytest dies before teardown is still deleted from the cluster (API emulator).

The backend starts the guardian process when it loads its credentials from kubeconfig; should
pytest die, the guardian runs ``python -m pytest_darklaunch delete`` for the run. The same
command is there for people: what ``--darklaunch-keep`` left, or a run killed on a machine
without a guardian.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_darklaunch import cli
from pytest_darklaunch.backends import RunContext
from pytest_darklaunch.backends.kubernetes import KubernetesBackend
from tests.local.helpers import wait_for

from .conftest import FAST, RUN_LABEL, BackendFactory, make_spec, other_app_spec, run_objects
from .emulator import Emulator
from .test_k8s_cli import SPEC as CLI_SPEC


def test_delete_command_removes_one_run_and_leaves_the_other(
    emulator: Emulator, make_backend: BackendFactory, kubeconfig: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_backend(make_spec(target="default/cart"), run_id="run-a", keep=True).provision()
    make_backend(other_app_spec(), run_id="run-b", keep=True).provision()
    other = sorted(run_objects(emulator, "run-b"))

    code = cli.main(["delete", "--run-id", "run-a", "--namespace", "default"])

    assert code == 0
    assert capsys.readouterr().out == "deleted the objects of run run-a in namespace default\n"
    assert run_objects(emulator, "run-a") == []
    assert sorted(run_objects(emulator, "run-b")) == other
    deletes = [d.qualified for d in emulator.calls("deletecollection")]
    assert deletes == [
        "httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io",
        "jobs.batch", "secrets", "services.serving.knative.dev",
    ]


@pytest.mark.parametrize("argv, message", [
    (["--run-id", "no spaces"], "invalid run id 'no spaces' (from --run-id)"),
    (["--run-id", "r1", "--namespace", "Shop"], "invalid --namespace 'Shop' (from command line)"),
])
def test_delete_command_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["delete", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_delete_command_without_credentials_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cli.main(["delete", "--run-id", "r1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set KUBECONFIG or --context" in err, err


def test_guardian_deletes_the_run_when_pytest_is_gone(
    emulator: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "darklaunch-run"
    (run_dir / "stack").mkdir(parents=True)
    backend = KubernetesBackend(
        make_spec(),
        RunContext(run_id="run-g", workdir=str(run_dir / "stack"), run_dir=str(run_dir),
                   prometheus_url="http://prometheus.test:9090"),
        settings=FAST,
    )
    try:
        backend.provision()
        assert len(run_objects(emulator, "run-g")) == 8
        guardian = backend._guardian
        assert guardian is not None
        assert guardian.popen.stdin is not None

        # What pytest's death does to the guardian's pipe: closed, without "done".
        guardian.popen.stdin.close()

        assert guardian.popen.wait(timeout=60) == 0, (run_dir / "stack" / "guardian.log")
        assert run_objects(emulator, "run-g") == []
        assert not run_dir.exists()
    finally:
        backend.teardown()


def test_guardian_is_dismissed_by_teardown_and_not_started_for_keep(
    emulator: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    def backend(run_id: str, keep: bool) -> KubernetesBackend:
        return KubernetesBackend(
            make_spec(
                target=f"default/{run_id}", mirror={"percent": 40, "host": f"{run_id}.test"}
            ),
            RunContext(run_id=run_id, workdir=str(tmp_path / run_id), keep=keep,
                       prometheus_url="http://prometheus.test:9090"),
            settings=FAST,
        )

    kept = backend("kept", keep=True)
    kept.provision()
    assert kept._guardian is None
    kept.teardown()
    assert len(run_objects(emulator, "kept")) == 8

    normal = backend("normal", keep=False)
    normal.provision()
    guardian = normal._guardian
    assert guardian is not None
    normal.teardown()
    assert guardian.popen.returncode == 0  # dismissed and reaped
    assert run_objects(emulator, "normal") == []
    assert os.path.isdir(tmp_path / "normal")  # no run_dir given: nothing of ours removed


SPEC = CLI_SPEC + "duration: {interval: 1s, iterations: 30}\n"


def test_pytest_killed_mid_run_leaves_nothing_in_the_cluster(
    emulator: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    """The whole product: ``pytest --darklaunch-backend kubernetes`` provisions through its
    kubeconfig, is killed with SIGKILL once the traffic Job exists, and the run's objects and
    temp dir are gone all the same."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "darklaunch.yaml").write_text(SPEC, encoding="utf-8")
    (project / "test_dark.py").write_text(
        "def test_error_rate(darklaunch):\n"
        "    darklaunch.assert_objective('error-rate', upper=0.01)\n",
        encoding="utf-8",
    )
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TMPDIR"] = str(tmpdir)
    output = tmp_path / "pytest-output.txt"
    with open(output, "wb") as out:
        run = subprocess.Popen(  # noqa: S603 - argv list
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--darklaunch-backend",
             "kubernetes", "--darklaunch-prometheus-url", "http://127.0.0.1:9",
             "--darklaunch-scrape-interval=20s"],
            cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
        )

    def job() -> list[dict[str, object]]:
        if run.poll() is not None:
            pytest.fail(f"the run ended before it was killed:\n{output.read_text()}")
        return emulator.objects("jobs", "batch")

    try:
        jobs = wait_for(job, "the run's traffic Job", 60)
        run_id = jobs[0]["metadata"]["labels"][RUN_LABEL]
        # the option reached the backend: 30 intervals of one 20 s scrape each, the first
        # scrape's 30 s and the slack
        assert jobs[0]["spec"]["activeDeadlineSeconds"] == 30 + 30 * 20 + 120
        wait_for(lambda: len(run_objects(emulator, run_id)) == 8, "the run's objects", 30)
        run.kill()
        assert run.wait(timeout=30) == -signal.SIGKILL

        wait_for(lambda: run_objects(emulator, run_id) == [], "the run's objects deleted", 60)
        wait_for(lambda: not list(tmpdir.glob("darklaunch-*")), "the run's temp dir removed", 30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    deletes = [d.qualified for d in emulator.calls("deletecollection")]
    assert deletes == [
        "httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io",
        "jobs.batch", "secrets", "services.serving.knative.dev",
    ]
