"""The house in wings: each module imports its own wing and lower floors only (``pipeline.FLOORS``),
and no two modules import each other. Read from the source with the closure code of the DVC deps
test (tests/import_graph.py), every import counted, lazy ones included."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import ROOT, imports

from pipeline import FLOORS

DOORS = ("stages", "app_pages", "benchmarks")


def wing(path: Path) -> str:
    """The wing a project file belongs to (a key of ``pipeline.FLOORS``)."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "pipeline":
        if len(parts) == 2:  # pipeline/params.py, the CLIs pipeline/restore.py and pipeline/test.py
            return "params" if parts[1] == "params.py" else "doors" if parts[1] != "__init__.py" else "core"
        return parts[1]
    if parts[0] in DOORS or parts == ("app.py",):
        return "doors"
    return "scripts"


def project_files() -> list[Path]:
    roots = [ROOT / "pipeline", *(ROOT / d for d in DOORS), ROOT / "scripts", ROOT / "models"]
    found = [p for r in roots if r.is_dir() for p in r.rglob("*.py")]
    return sorted([*found, ROOT / "app.py"])


def edges() -> list[tuple[Path, Path]]:
    return [(a, b) for a in project_files() for b in imports(a, lazy=True)]


def violations(pairs: list[tuple[Path, Path]]) -> list[str]:
    """The imports that go up a floor, or sideways into another wing of the same floor."""
    bad = []
    for a, b in pairs:
        wa, wb = wing(a), wing(b)
        if wa != wb and FLOORS[wb] >= FLOORS[wa]:
            bad.append(f"{a.relative_to(ROOT)} ({wa}) imports {b.relative_to(ROOT)} ({wb})")
    return bad


def test_every_file_has_a_known_wing() -> None:
    unknown = {str(p.relative_to(ROOT)): wing(p) for p in project_files() if wing(p) not in FLOORS}
    assert not unknown, f"add these wings to pipeline.FLOORS or move the files: {unknown}"


def test_imports_go_down_or_stay_in_the_wing() -> None:
    bad = violations(edges())
    assert not bad, "imports against pipeline.FLOORS:\n" + "\n".join(bad)


def test_no_import_circle() -> None:
    graph: dict[Path, set[Path]] = {}
    for a, b in edges():
        graph.setdefault(a, set()).add(b)
    state: dict[Path, int] = {}

    def visit(node: Path, trail: list[Path]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt.name == "__init__.py":
                continue
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                pytest.fail("import circle: " + " -> ".join(str(p.relative_to(ROOT)) for p in cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_the_rule_catches_imports_up_and_sideways() -> None:
    """The check itself: core importing restoration (up), data importing models (sideways, the
    same floor) and mlops importing training are reported; restoration importing core is not."""
    p = ROOT / "pipeline"
    core, restorer = p / "core" / "jpeg.py", p / "restoration" / "restorer.py"
    data, models, mlops, training = (
        p / "data" / "degrade.py",
        p / "models" / "qacnet.py",
        p / "mlops" / "registry.py",
        p / "training" / "loop.py",
    )
    assert len(violations([(core, restorer), (data, models), (mlops, training)])) == 3
    assert violations([(restorer, core), (training, models), (ROOT / "stages" / "train.py", training)]) == []
    assert (
        wing(p / "restore.py") == "doors"
        and wing(p / "params.py") == "params"
        and wing(ROOT / "scripts" / "summary.py") == "scripts"
    )
