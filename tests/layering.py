"""The layering check of tests/test_package_hygiene.py: every import a package makes of itself,
at any depth, against an order of layers, and the circles among them. Works on any package
directory, so the check itself is tested on small planted packages."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path


def package_modules(package_dir: Path) -> dict[str, Path]:
    """``{module name relative to the package ('' for its __init__): path}``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def package_imports(package_dir: Path) -> dict[str, list[tuple[int, str]]]:
    """``{module: [(line, imported module)]}`` for the package's imports of itself, at any
    depth (in functions and under ``if TYPE_CHECKING:`` too); names relative to the package."""
    package = package_dir.name
    modules = package_modules(package_dir)

    def relative(name: str) -> str | None:
        if name == package:
            return ""
        return name[len(package) + 1 :] if name.startswith(package + ".") else None

    out: dict[str, list[tuple[int, str]]] = {}
    for name, path in modules.items():
        here = [package, *name.split(".")] if name else [package]
        if path.name != "__init__.py":
            here.pop()  # relative imports start from the module's package
        found = out.setdefault(name, [])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                # ``from a import b`` imports the module a.b when there is one, else from a
                targets = [
                    f"{source}.{a.name}" if relative(f"{source}.{a.name}") in modules else source
                    for a in node.names
                ]
            else:
                continue
            found += [(node.lineno, t) for t in map(relative, targets) if t is not None]
    return out


def _layer(module: str, order: Sequence[Sequence[str]]) -> int | None:
    for index, layer in enumerate(order):
        for entry in layer:
            stem = entry[:-2] if entry.endswith(".*") else None
            if module == entry or (stem is not None and (module + ".").startswith(stem + ".")):
                return index
    return None


def layering_problems(package_dir: Path, order: Sequence[Sequence[str]]) -> list[str]:
    """Every import against ``order`` (a module imports only layers after its own; ``x.*`` is a
    package whose insides are not ordered), every module not in ``order``, every circle."""
    imports = package_imports(package_dir)
    problems = [f"{m or '__init__'}: not in the order" for m in imports if _layer(m, order) is None]
    for module, found in imports.items():
        mine = _layer(module, order)
        for line, target in found:
            theirs = _layer(target, order)
            if mine is None or theirs is None or target == module:
                continue
            inside = any(e.endswith(".*") for e in order[mine])
            if theirs < mine or (theirs == mine and not inside):
                where = "above" if theirs < mine else "beside"
                problems.append(f"{module}:{line} imports {target or '__init__'}, {where} it")
    problems += [f"circle among {', '.join(c)}" for c in _circles(imports)]
    return problems


def _circles(imports: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """One path per import circle (strongly connected group of modules), found by DFS."""
    graph = {
        m: sorted({t for _, t in found if t != m and t in imports}) for m, found in imports.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups
