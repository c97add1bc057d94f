"""The ablation table: every finished experiment of ``dvc exp show``, queued ones included, with
its headline metrics and the params it changed relative to the commit it started from::

    python -m pipeline.ablations [-o FILE]     # Markdown on stdout, or into FILE

Run it in the repo once ``dvc queue status`` says the experiments are done
(``pipeline/evaluation/experiments.py``; docs/experiments.md shows DVC's own comparisons).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core import files
from pipeline.evaluation import experiments, reporting


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.ablations", description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, help="write the Markdown here (default: stdout)")
    args = ap.parse_args(argv)
    parsed = experiments.from_dvc(Path.cwd())
    text = reporting.to_markdown([("h", 2, "Ablations (dvc exp show)"), *experiments.ablation_blocks(parsed)])
    if args.out:
        files.write_bytes(args.out, text.encode())
        print(f"ablations: {args.out}")
    else:
        print(text, end="")
    return 1 if isinstance(parsed, str) else 0


if __name__ == "__main__":
    sys.exit(main())
