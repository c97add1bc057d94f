"""The project's import graph, read from the source with ``ast`` (never by importing): shared by
tests/test_dvc_deps.py (each stage's deps) and tests/test_layout.py (which wing may import which)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stages", "app_pages", "benchmarks", "scripts", "models")


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (``pipeline.models`` -> pipeline/models/__init__.py)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _eager(node: ast.AST):
    """The nodes that run at import time: everything but function bodies and ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        yield child
        yield from _eager(child)


def imports(path: Path, lazy: bool = False) -> set[Path]:
    """Project files imported by one file (``from pipeline.core import images`` counts
    pipeline/core/images.py and the packages' __init__.py); ``lazy``: also the imports inside
    functions (a dependency all the same, though not one that runs when the module is imported)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if lazy else _eager(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*parts, *([mod] if mod else [])])
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for name in names:
            for i in range(1, len(name.split(".")) + 1):  # a package's __init__ runs too
                if (f := module_file(".".join(name.split(".")[:i]))) is not None:
                    found.add(f)
    return found - {path}


def closure(path: Path) -> set[Path]:
    """Every project file that runs when ``path`` is imported."""
    seen, todo = set(), [path]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += imports(p)
    return seen


def is_marker(path: Path) -> bool:
    """A package's ``__init__.py`` that runs no code (a docstring and constants): importing it
    cannot change what a stage computes."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, (ast.Expr, ast.Assign, ast.AnnAssign)) for n in body)
