"""What ``dvc repro`` would download, store and train with a params file, before it runs::

    python -m pipeline.plan [--params presets/full.yaml]

Prints each data set's download size (where ``pipeline/data/datasets.py`` pins it), the disk
needed, the training steps with the time measured on each GPU (``models/pretrained/provenance/``)
and what runs on a CPU (``pipeline/training/plan.py``). ``dvc repro --dry --force-downstream``
lists the stages themselves.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.params import ParamsError, load
from pipeline.training.plan import plan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="the configuration to plan (default: params.yaml)")
    args = ap.parse_args(argv)
    try:
        print("\n".join(plan(load(args.params))))
    except (ParamsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
