"""The package's layering and safety rules, checked on its source and in fresh interpreters.

- ``core/``, ``backends/`` and ``sampleapp.py`` never import pytest (by AST, and at runtime).
- Imports inside the package run one way, in the order of :data:`LAYERS`, inside functions and
  under ``if TYPE_CHECKING:`` too, and close no circle.
- Importing the plugin module imports no heavy or network library.
- No shell: no ``shell=True``, ``os.system``, ``os.popen``, ``create_subprocess_shell``, and no
  command line built as a string.
- ``py.typed`` ships.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.layering import layering_problems, package_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytest_darklaunch"
PYTEST_FREE = sorted(
    [
        *(PACKAGE / "core").rglob("*.py"),
        *(PACKAGE / "backends").rglob("*.py"),
        PACKAGE / "sampleapp.py",
    ]
)
HEAVY = ("kubernetes", "requests", "urllib3", "aiohttp", "yaml", "tenacity")
SUBPROCESS_CALLS = {
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "getoutput",
    "getstatusoutput",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def run_python(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter from the repository root; it prints one JSON value."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- pytest stays out of core, backends and the sample app -----------------------------------


def pytest_imports(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: import`` for every import of pytest or _pytest, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        for name in names:
            if name.split(".")[0] in ("pytest", "_pytest"):
                found.append(f"{filename}:{node.lineno}: {name}")
    return found


def test_the_pytest_import_scan_finds_every_form() -> None:
    source = (
        "import os\nimport pytest\nfrom _pytest.config import Config\n"
        "def f():\n    import pytest as p\n    importlib.import_module('pytest')\n"
    )
    assert [hit.split(": ")[1] for hit in pytest_imports(source)] == [
        "pytest",
        "_pytest.config",
        "pytest",
        "pytest",
    ]
    assert pytest_imports("import pytest_darklaunch\nfrom pytest_darklaunch import core\n") == []


def test_pytest_free_modules_are_all_found() -> None:
    names = {module_name(p) for p in PYTEST_FREE}
    assert {
        "pytest_darklaunch.core.spec",
        "pytest_darklaunch.core.config",
        "pytest_darklaunch.backends",
        "pytest_darklaunch.sampleapp",
    } <= names


def test_core_backends_and_sampleapp_do_not_import_pytest_in_source() -> None:
    hits = [
        hit
        for path in PYTEST_FREE
        for hit in pytest_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert hits == []


def pytest_importers(modules: list[str]) -> dict[str, object]:
    """Import ``modules`` in order in a fresh interpreter; the first one that pulled in pytest."""
    code = (
        "import importlib, json, sys\n"
        "def loaded():\n"
        "    return 'pytest' in sys.modules or '_pytest' in sys.modules\n"
        "before = loaded()\n"
        "culprits = []\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if loaded() and not culprits:\n"
        "        culprits.append(name)\n"
        f"imported = [m for m in {modules!r} if m in sys.modules]\n"
        "print(json.dumps({'before': before, 'culprits': culprits, 'imported': imported}))\n"
    )
    return run_python(code)


def test_core_backends_and_sampleapp_do_not_import_pytest_at_runtime() -> None:
    modules = [module_name(p) for p in PYTEST_FREE]
    result = pytest_importers(modules)
    assert result["before"] is False  # the interpreter itself starts without pytest
    assert result["imported"] == modules  # every module really was imported
    assert result["culprits"] == []


def test_the_runtime_check_names_the_module_that_imports_pytest() -> None:
    modules = ["pytest_darklaunch.core.units", "pytest_darklaunch.fixtures"]
    assert pytest_importers(modules)["culprits"] == ["pytest_darklaunch.fixtures"]


def test_package_import_is_lazy() -> None:
    result = run_python(
        "import json, sys\nimport pytest_darklaunch\n"
        "print(json.dumps({'loaded': sorted(m for m in sys.modules "
        "if m.startswith(('pytest', '_pytest')))}))"
    )
    assert result["loaded"] == ["pytest_darklaunch"]


# --- imports run one way -------------------------------------------------------------------------

# A module may import only the layers after its own. ``x.*`` is a package and everything in it
# (its insides are not ordered here). The package's face (``__init__``) comes first; ``report``
# is the empty face of report/, which nobody needs to import.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "__main__"),
    ("plugin", "cli"),
    ("fixtures",),
    ("assertions",),
    ("report.terminal",),
    ("report.files",),
    ("report.html",),
    ("report.plots", "report.json_report", "report.github", "report.junit"),
    ("report.assessment",),
    ("report.progress",),
    ("report",),
    ("runstate",),
    ("interrupts",),
    ("session",),
    ("hookspecs",),
    ("backends.*",),
    ("core.*",),
    ("errors", "sampleapp", "version"),
)


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under ``tmp_path`` made of ``{relative path: source}``."""
    for name, source in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return tmp_path / "pkg"


def test_the_layering_check_refuses_a_planted_upward_import(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "from pkg.low import leaf\n",
            "low/__init__.py": "",
            "low/leaf.py": "def f():\n    from pkg.top import x\n",  # upward, in a function
            "low/other.py": "from . import leaf\nfrom .leaf import f\n",  # relative, inside
        },
    )
    order = (("", "top"), ("low.*",))
    assert layering_problems(package, order) == [
        "low.leaf:2 imports top, above it",
        "circle among low.leaf, top",
    ]
    assert package_imports(package)["low.other"] == [(1, "low.leaf"), (2, "low.leaf")]
    # in its right place, the same import is accepted
    (package / "low" / "leaf.py").write_text("x = 1\n", encoding="utf-8")
    assert layering_problems(package, order) == []


def test_the_layering_check_refuses_sideways_imports_circles_and_strays(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import pkg.b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
            "stray.py": "",
        },
    )
    assert layering_problems(package, (("a", "b"), ("",))) == [
        "stray: not in the order",
        "a:1 imports b, beside it",
        "b:3 imports a, beside it",
        "circle among a, b",
    ]


def test_imports_in_the_package_follow_the_layers() -> None:
    imports = package_imports(PACKAGE)
    # the scan sees function-level imports: the plugin imports report/ only inside hooks
    assert "report.files" in {target for _, target in imports["plugin"]}
    assert layering_problems(PACKAGE, LAYERS) == []


# --- the plugin module is cheap to import --------------------------------------------------------


def test_importing_the_plugin_imports_no_heavy_library() -> None:
    result = run_python(
        "import json, sys\nimport pytest_darklaunch.plugin\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps({'heavy': sorted({m.split('.')[0] for m in sys.modules} & set(heavy)),\n"
        "                  'plugin': 'pytest_darklaunch.plugin' in sys.modules}))"
    )
    assert result["plugin"] is True
    assert result["heavy"] == []


# What a run without an experiment never needs: loaded by the plugin module, they would cost
# every pytest run of anyone who installed the plugin (benchmarks/import_overhead.py).
RUN_ONLY = (
    "pytest_darklaunch.core.spec", "pytest_darklaunch.core.traffic",
    "pytest_darklaunch.core.compare", "pytest_darklaunch.core.verdict",
    "pytest_darklaunch.core.stats", "pytest_darklaunch.report", "pytest_darklaunch.backends",
)


def test_importing_the_plugin_loads_none_of_the_run_only_modules() -> None:
    result = run_python(
        "import json, sys\nimport pytest_darklaunch.plugin\n"
        "print(json.dumps({'loaded': sorted(m for m in sys.modules "
        "if m.startswith('pytest_darklaunch.'))}))"
    )
    assert "pytest_darklaunch.plugin" in result["loaded"]
    assert [m for m in result["loaded"] if m.startswith(RUN_ONLY)] == []


# --- no shell ------------------------------------------------------------------------------------


def shell_uses(source: str, filename: str = "<source>") -> list[str]:
    """Shell invocations and string-built command lines in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = (
            func.value.id
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            else ""
        )
        where = f"{filename}:{node.lineno}"
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                found.append(f"{where}: shell=")
        if owner == "os" and (name in ("system", "popen") or name.startswith("spawn")):
            found.append(f"{where}: os.{name}")
        if name in ("create_subprocess_shell", "getoutput", "getstatusoutput"):
            found.append(f"{where}: {name}")
        if name in SUBPROCESS_CALLS and owner in ("subprocess", "") and node.args:
            first = node.args[0]
            if isinstance(first, (ast.JoinedStr, ast.BinOp)) or (
                isinstance(first, ast.Constant) and isinstance(first.value, str)
            ):
                found.append(f"{where}: {name} with a string command line")
    return found


def test_the_shell_scan_finds_every_form() -> None:
    source = (
        "import os, subprocess, asyncio\n"
        "subprocess.run(['ls'], shell=True)\n"
        "subprocess.Popen(cmd, shell=flag)\n"
        "os.system('ls')\n"
        "os.popen('ls')\n"
        "asyncio.create_subprocess_shell('ls')\n"
        "subprocess.check_output(f'ls {d}')\n"
        "subprocess.run('ls ' + d)\n"
        "subprocess.run(['ls', d], shell=False)\n"
        "subprocess.Popen(argv)\n"
    )
    assert [hit.split(": ", 1)[1] for hit in shell_uses(source)] == [
        "shell=",
        "shell=",
        "os.system",
        "os.popen",
        "create_subprocess_shell",
        "check_output with a string command line",
        "run with a string command line",
    ]


def test_no_shell_anywhere_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    hits = [
        hit
        for path in files
        for hit in shell_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert hits == []


# --- typing marker -------------------------------------------------------------------------------


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'pytest_darklaunch = ["py.typed"]' in pyproject


@pytest.mark.parametrize("module", ["pytest_darklaunch.core.spec", "pytest_darklaunch.core.config"])
def test_core_modules_are_typed(module: str) -> None:
    """``from __future__ import annotations`` and annotated public functions (mypy --strict);
    a package is checked module by module."""
    base = ROOT / module.replace(".", "/")
    paths = sorted(base.glob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert paths
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        future = [
            n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"
        ]
        assert future and any(a.name == "annotations" for a in future[0].names), path
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                assert node.returns is not None, f"{path}: {node.name} has no return annotation"
