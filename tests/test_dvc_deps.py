"""dvc.yaml lists, for every stage, each project module the stage imports (directly or not).

A module missing from a stage's deps means `dvc repro` keeps stale outputs after that module
changes. The closure is computed from the source with `ast`, never by importing. It follows the
imports that run when a module is imported (module and class level); an import inside a function
is lazy on purpose (``tracking.log_checkpoint`` loads the pyfunc model code only when a stage logs
a model), so a stage that calls such a function lists that module itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stages")


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


def imports(path: Path) -> set[Path]:
    """Project files imported by one file (``from pipeline import images`` counts pipeline/images.py)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in _eager(ast.parse(path.read_text())):
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
    return found


def closure(path: Path) -> set[Path]:
    seen, todo = set(), [path]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += imports(p)
    return seen


def stage_modules() -> dict[str, tuple[Path, list[str]]]:
    """Stage name -> (its module, its deps as written in dvc.yaml)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = re.search(r"python -m (stages\.\w+)", body["cmd"])[1]
        out[name] = (module_file(module), [d for d in body["deps"] if "${" not in d])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(stage_modules()))
def test_every_imported_module_is_a_dep(stage: str) -> None:
    module, deps = stage_modules()[stage]
    missing = sorted(str(p.relative_to(ROOT)) for p in closure(module) if not covered(p, deps))
    missing = [m for m in missing if not m.endswith("__init__.py") or not m.count("/") == 1]  # empty packages
    assert not missing, f"dvc.yaml stage {stage}: add to deps: {', '.join(missing)}"


def test_no_dep_is_stale() -> None:
    """Every code dep exists and is imported (a removed module must leave deps too)."""
    for stage, (module, deps) in stage_modules().items():
        code = [d for d in deps if d.startswith(PACKAGES)]
        used = closure(module)
        for d in code:
            assert (ROOT / d).exists(), f"{stage}: dep {d} does not exist"
            assert any(p == ROOT / d or ROOT / d in p.parents for p in used), f"{stage}: {d} is not imported"


def test_closure_finds_images_through_other_modules() -> None:
    """The check would fail on the old evaluate deps, which missed pipeline/images.py."""
    evaluate = closure(ROOT / "stages" / "evaluate.py")
    assert ROOT / "pipeline" / "images.py" in evaluate
    assert not covered(ROOT / "pipeline" / "images.py", ["stages/evaluate.py", "pipeline/evaluation.py"])


def test_stages_never_import_each_other() -> None:
    for path in sorted((ROOT / "stages").glob("*.py")):
        others = {p for p in imports(path) if p.parent.name == "stages" and p.name != "__init__.py"}
        assert not others - {path}, f"{path.name} imports {sorted(p.name for p in others)}: move it to pipeline/"


def test_stages_hold_no_path_literals() -> None:
    """dvc.yaml names every path; a stage gets its paths from argv."""
    pattern = re.compile(r"^(data|models|reports|reference)/")
    for path in sorted((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not pattern.match(node.value), f"{path.name}: path literal {node.value!r}"
