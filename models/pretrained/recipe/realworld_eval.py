"""The evaluate stage's real-world evaluation, on reference folders outside a DVC checkout.

    python -m models.pretrained.recipe.realworld_eval --ckpt models/pretrained/model.pt \
        --set LIVE1=../shared/datasets/LIVE1 --set BSDS500=../shared/datasets/BSDS500/test \
        --qfs 10,30 [--projection auto] --json models/pretrained/real_world.json

Builds the references and the real-world files with the test-set stage's own code
(``stages.make_testsets``: make_refs, make_realworld) in a temporary project root, then runs the
evaluate stage's ``real_world_results`` on them: the same files and numbers ``dvc repro`` gives
for ``evaluate.real_world_sets``, without training a model first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from pipeline import params
from pipeline.core import images
from pipeline.data import datasets
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from stages import evaluate, make_testsets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument(
        "--set",
        action="append",
        required=True,
        help="NAME=FOLDER: a test set of the catalog (LIVE1, BSDS500, ...) and its reference images",
    )
    ap.add_argument("--qfs", default="10,30,50")
    ap.add_argument("--projection", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sets = dict(s.split("=", 1) for s in args.set)
    p = params.load(args.params)
    qfs = tuple(int(q) for q in args.qfs.split(","))
    p = dataclasses.replace(
        p,
        data=dataclasses.replace(p.data, test_sets=tuple(sets)),
        evaluate=dataclasses.replace(
            p.evaluate, real_world_sets=tuple(sets), real_world_qfs=qfs, projection=args.projection
        ),
    )
    restorer = Restorer.load(args.ckpt, RestoreOptions.from_params(p.evaluate))
    with tempfile.TemporaryDirectory() as tmp:
        testsets = Path(tmp)
        for name, folder in sets.items():
            make_testsets.make_refs(Path(folder), datasets.refs_dir(testsets, name))
            make_testsets.make_realworld(
                list(qfs), datasets.refs_dir(testsets, name), datasets.realworld_dir(testsets, name)
            )
        out, _ = evaluate.real_world_results(p, testsets, restorer)
    result = {"checkpoint": str(args.ckpt), "projection": args.projection, "qfs": list(qfs), "real_world": out}
    if args.json:
        images.write_bytes(args.json, json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
