"""The evaluate stage's real-world evaluation, on reference folders outside a DVC checkout.

    python -m models.pretrained.recipe.realworld_eval --ckpt models/pretrained/model.pt \
        --set LIVE1=../shared/datasets/LIVE1 --set BSDS500=../shared/datasets/BSDS500/test \
        --qfs 10,30,50 [--params presets/full.yaml] [--precision bf16] [--jsonl progress.jsonl] \
        --json models/pretrained/provenance/real_world.json

Builds the references and the real-world files with the test-set stage's own code
(``stages.make_testsets``: make_refs, make_realworld) in a temporary folder, then scores each
case as the evaluate stage's ``real_world_results`` does (``scoring.evaluate_case``, and for the
cases without an exact QF the best hand-picked QF of ``evaluate.best_qf_grid``): the same files
and numbers ``dvc repro`` gives for ``evaluate.real_world_sets``, without training a model first.
``--jsonl`` appends each case's summary as it finishes, and a rerun skips the cases already
there (a run of an hour survives an interruption).
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
from pipeline.data import datasets, realworld
from pipeline.evaluation.scoring import best_qf, evaluate_case, summarize_cases
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from stages import make_testsets


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
    ap.add_argument("--precision", choices=("f32", "bf16"), help="instead of the params' evaluate.precision")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--jsonl", type=Path, help="append each case's summary here; skip the cases already in it")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sets = dict(s.split("=", 1) for s in args.set)
    p = params.load(args.params)
    qfs = tuple(int(q) for q in args.qfs.split(","))
    ev = dataclasses.replace(p.evaluate, projection=args.projection, precision=args.precision or p.evaluate.precision)
    restorer = Restorer.load(args.ckpt, RestoreOptions.from_params(ev))
    done = (
        [json.loads(line) for line in args.jsonl.read_text().splitlines()] if args.jsonl and args.jsonl.exists() else []
    )
    out = {}
    for name, folder in sets.items():
        summaries = [d for d in done if d["set"] == name]
        out[name] = {"cases": summaries, "excluded": {}}
        with tempfile.TemporaryDirectory() as tmp:
            refs, root = datasets.refs_dir(Path(tmp), name), datasets.realworld_dir(Path(tmp), name)
            make_testsets.make_refs(Path(folder), refs)
            make_testsets.make_realworld(list(qfs), refs, root)
            for case, qf, sub in realworld.case_folders(root, qfs):
                if (sub / "excluded.json").is_file():
                    out[name]["excluded"][case] = json.loads((sub / "excluded.json").read_text())
                if not (sub.is_dir() and images.list_images(sub)) or any(
                    s["case"] == case and s["qf"] == qf for s in summaries
                ):
                    continue
                rows = evaluate_case(restorer, case, qf, sub, refs)
                best = {}
                if realworld.CASES[case].search and ev.best_qf_grid:
                    best[case, qf] = best_qf(restorer, rows, sub, refs, ev.best_qf_grid)
                summary = {"set": name, **summarize_cases(rows, best)[0]}
                summaries.append(summary)
                print(f"{name} {case} QF {qf}: gain {summary['gain']:+.3f}, best {summary['best_qf']} "
                      f"({summary['best_gain']}), sources {summary['sources']}", flush=True)  # fmt: skip
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(summary) + "\n")
    result = {"checkpoint": str(args.ckpt), "projection": args.projection, "precision": restorer.label,
              "qfs": list(qfs), "real_world": out}  # fmt: skip
    if args.json:
        images.write_bytes(args.json, json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
