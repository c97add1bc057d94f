"""Where and when a benchmark ran, and its results written beside the code that measured them.

Every benchmark prints its figures and, through ``Results``, writes them to
``benchmarks/results/<name>.json`` and ``<name>.md`` (the printed lines), stamped with the CPU
model, core count, load average, date and commit: seconds depend on the machine and its load,
so compare ratios measured in one run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit(root: Path = RESULTS.parent.parent) -> str:
    """The checkout's commit, ``+dirty`` when the working tree has uncommitted changes."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else "unknown"


def stamp() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit(),
    }


class Results:
    """Printed lines and figures of one benchmark run. ``path``: the JSON file to write (default
    ``benchmarks/results/<name>.json``, with the printed lines beside it as ``<name>.md``)."""

    def __init__(self, name: str, path: str | Path | None = None) -> None:
        self.name, self.path = name, Path(path) if path else RESULTS / f"{name}.json"
        self.stamp, self.lines, self.data = stamp(), [], {}

    def print(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self) -> Path:
        """Write the JSON (stamp and figures) and the Markdown (stamp and printed lines)."""
        self.stamp["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"stamp": self.stamp, **self.data}, indent=1) + "\n")
        s = self.stamp
        head = (
            f"# {self.name}\n\n{s['cpu']}, {s['cores']} cores, load average {s['load_average'][0]} before and "
            f"{s['load_average_after'][0]} after, {s['date']}, commit {s['commit']}.\n\n"
        )
        self.path.with_suffix(".md").write_text(head + "```\n" + "\n".join(self.lines) + "\n```\n")
        return self.path
