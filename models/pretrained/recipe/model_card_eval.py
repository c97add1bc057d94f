"""The model card's LIVE1 table: a checkpoint on LIVE1 at QF 10..90, three QF modes.

    python -m models.pretrained.recipe.model_card_eval --ckpt models/pretrained/model.pt \
        --gt ../shared/datasets/LIVE1 --json models/pretrained/live1.json

Makes the JPEGs exactly as the test-set stage does (OpenCV 4:2:0), then scores the JPEG input,
header mode (QF from the file), blind mode (QF from the pixels: quantization lattice at any grid
offset, else the learned estimator; pipeline/restoration/photo.py) and blind_net mode (the learned
estimator alone), RGB and Y, with ``--projection`` (default auto, as restore does).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pipeline.core import images
from pipeline.data.datasets import eval_pairs
from pipeline.evaluation.scoring import evaluate_pairs, qf_error, summarize
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images")
    ap.add_argument("--qfs", default="10,20,30,40,50,60,70,80,90")
    ap.add_argument("--modes", default="header,blind,blind_net")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--projection", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--key", default="live1", help="the JSON key of the table (the set's name)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    options = RestoreOptions(tile=0, projection=args.projection, engine="torch", device=args.device)
    restorer = Restorer.load(args.ckpt, options)
    meta = restorer.meta
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for q in (int(v) for v in args.qfs.split(",")):
            folder = Path(tmp) / f"qf_{q}"
            for p in images.list_images(args.gt):
                images.write_bytes(folder / f"{p.stem}.jpg", images.encode_jpeg(images.read_image(p), q))
            rows = evaluate_pairs(eval_pairs(folder, args.gt), restorer, tuple(args.modes.split(",")))
            s = summarize(rows)
            s["qf_est_mae"], s["qf_net_mae"] = qf_error(rows, q), qf_error(rows, q, "qf_net")
            table[str(q)] = s
            line = "  ".join(
                f"{m} {v['psnr']:.2f}/{v['ssim']:.4f}/{v['psnrb']:.2f}" for m, v in s.items() if isinstance(v, dict)
            )
            print(f"QF {q}: {line}  QF MAE blind {s['qf_est_mae']:.1f} net {s['qf_net_mae']:.1f}", flush=True)
    if args.json:
        images.write_bytes(
            args.json,
            json.dumps(
                {
                    "checkpoint": str(args.ckpt),
                    "steps": meta.get("steps"),
                    "projection": args.projection,
                    args.key: table,
                },
                indent=1,
            ).encode(),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
