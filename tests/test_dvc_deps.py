"""dvc.yaml lists, for every stage, each project module the stage imports (directly or not).

A module missing from a stage's deps means `dvc repro` keeps stale outputs after that module
changes. The closure is computed from the source with `ast`, never by importing. It follows the
imports that run when a module is imported (module and class level); an import inside a function
is lazy on purpose: the train stage logs its model as an MLflow pyfunc model, whose restore code it
imports only there, so that editing the restore path never invalidates a training run. A stage
whose outputs depend on such a module lists it itself. Packages' ``__init__.py`` files that run
no code need not be listed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from import_graph import ROOT, closure, imports, is_marker, module_file

PACKAGES = ("pipeline", "stages")


def stage_modules() -> dict[str, tuple[Path, list[str]]]:
    """Stage name -> (its module, its deps as written in dvc.yaml)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = re.search(r"-m (stages\.\w+)", body["cmd"])[1]
        out[name] = (module_file(module), [d for d in body["deps"] if "${" not in d])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(stage_modules()))
def test_every_imported_module_is_a_dep(stage: str) -> None:
    module, deps = stage_modules()[stage]
    missing = sorted(str(p.relative_to(ROOT)) for p in closure(module) if not covered(p, deps) and not is_marker(p))
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
    """The check would fail on deps that list the modules a stage names but not what those import."""
    evaluate = closure(ROOT / "stages" / "evaluate.py")
    assert ROOT / "pipeline" / "core" / "images.py" in evaluate
    assert not covered(ROOT / "pipeline" / "core" / "images.py", ["stages/evaluate.py", "pipeline/evaluation"])


def test_test_set_stages_do_not_depend_on_the_restore_code() -> None:
    """Making the test sets and the real-world cases is data: editing the restore path (the
    decision, engines, tiles) must not mark them stale and re-encode identical files."""
    for stage in ("refs", "jpeg", "realworld"):
        module, _ = stage_modules()[stage]
        wings = {p.relative_to(ROOT).parts[1] for p in closure(module) if p.relative_to(ROOT).parts[0] == "pipeline"}
        assert not wings & {"restoration", "evaluation", "models", "training"}, (stage, wings)


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
