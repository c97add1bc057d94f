"""Every command the README's researcher section shows is run, as written, by some test (a string
literal in tests/), or marked in the README as needing the data or a GPU. The restore section's
commands are run by tests/test_restore_photos.py; the researcher's journey is tests/test_dvc.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = ("## Reproduce and extend (researchers)", "## Serve and batch with MLflow")
MARKS = ("needs the data", "a GPU")  # a comment saying the command cannot run here


def researcher_blocks() -> list[tuple[str, str]]:
    """(command, its comment) of every line of the section's ``bash`` blocks; ``a; b`` and
    ``a && b`` are two commands with the same comment."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION[0]) : text.index(SECTION[1])]
    found = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            found += [(c.strip(), comment.strip()) for c in re.split(r";|&&", command) if c.strip()]
    return found


def researcher_commands() -> list[str]:
    return [c for c, _ in researcher_blocks()]


def test_every_researcher_command_is_run_by_a_test_or_marked() -> None:
    tests = "\n".join(p.read_text() for p in sorted((ROOT / "tests").glob("*.py")) if p.name != Path(__file__).name)
    shown = researcher_blocks()
    assert len(shown) > 15 and "dvc repro --dry --force-downstream" in dict(shown)
    missing = [c for c, comment in shown if f'"{c}"' not in tests and not any(m in comment for m in MARKS)]
    assert not missing, f"README commands no test runs (or mark them as needing the data or a GPU): {missing}"
