"""Score a folder of JPEGs against ground truth: the JPEG itself, or a model's restorations.

    python -m pipeline.test --input data/testsets/LIVE1/color/qf_10 --gt data/testsets/LIVE1/refimgs \
        [--ckpt models/model.pt] [--output results/] [--metric rgb|y] [--tta] [--q 40] [--blind] \
        [--tile 1024] [--projection auto|on|off] [--engine auto|torch|onnxruntime|openvino]
        [--precision auto|f32|bf16] [--device auto|cpu|cuda] [--json FILE]

Without --ckpt it scores the JPEG input (the baseline). With a model, the QF comes from --q,
else the decision ``restore`` makes (pipeline/restoration/photo.py): the file's quantization tables (header
mode) unless the pixels show an earlier, stronger compression; --blind ignores the header and
decides from the pixels alone (lattice at any grid offset, else the estimator). Prints a table
per image and the mean; the first line names the engine that ran the network. The options and
their defaults are ``restore``'s (``RestoreOptions``), so both restore a photo alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.core.device import DeviceError
from pipeline.core.images import ImageError
from pipeline.data.datasets import eval_pairs
from pipeline.evaluation.scoring import evaluate_pairs, save_outputs
from pipeline.models.checkpoint import CheckpointError
from pipeline.restoration.engines import EngineError
from pipeline.restoration.options import DEVICES, ENGINES, PRECISIONS, PROJECTIONS, OptionsError, RestoreOptions
from pipeline.restoration.restorer import Restorer


def main(argv: list[str] | None = None) -> int:
    d = RestoreOptions()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, required=True, help="folder of degraded images (e.g. qf_10)")
    ap.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images, same names")
    ap.add_argument("--ckpt", type=Path, help="model checkpoint; without it the input itself is scored")
    ap.add_argument("--output", type=Path, help="write restored PNGs here")
    ap.add_argument("--metric", choices=("rgb", "y"), default="rgb")
    ap.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    ap.add_argument("--q", type=float, help="condition the model on this QF")
    ap.add_argument("--blind", action="store_true", help="ignore the files' QF; use the estimator")
    ap.add_argument("--tile", type=int, help=f"tile size for large images (0: whole image; default {d.tile})")
    ap.add_argument(
        "--projection",
        choices=PROJECTIONS,
        help=f"clip outputs into the JPEG's quantization cells (pipeline/restoration/photo.py; default {d.projection})",
    )
    ap.add_argument("--device", choices=DEVICES, help=f"default {d.device}")
    ap.add_argument("--engine", choices=ENGINES, help=f"what runs the network (default {d.engine}: the fastest)")
    ap.add_argument("--precision", choices=PRECISIONS, help=f"OpenVINO's precision (default {d.precision})")
    ap.add_argument("--json", type=Path, help='write {"n", "psnr", "ssim", "psnrb", "per_image": [...]}')
    args = ap.parse_args(argv)
    mode = "blind" if args.blind else "header"
    try:
        options = d.replace(
            qf=args.q,
            tile=args.tile,
            tta=args.tta or None,
            projection=args.projection,
            engine=args.engine,
            precision=args.precision,
            device=args.device,
        )
        pairs = eval_pairs(args.input, args.gt)
        restorer = Restorer.load(args.ckpt, options) if args.ckpt else None
        if restorer is not None:
            print(f"engine: {restorer.label}")
        on_restored = save_outputs(args.output) if args.output else None
        rows = evaluate_pairs(pairs, restorer, (mode,), on_restored)
    except (ImageError, CheckpointError, DeviceError, EngineError, OptionsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    wanted = mode if restorer is not None else "jpeg"
    sel = [r for r in rows if r["mode"] == wanted]
    suffix = "_y" if args.metric == "y" else ""
    keys = [f"psnr{suffix}", f"ssim{suffix}", f"psnrb{suffix}"]
    print(f"{'image':24} {'QF':>5} {'PSNR':>7} {'SSIM':>6} {'PSNR-B':>7}   ({args.metric.upper()}, {wanted})")
    for r in sel:
        q = r["qf_used"] if r["qf_used"] is not None else r["qf_header"]
        print(
            f"{r['image'][:24]:24} {q if q is not None else '-':>5} "
            f"{r[keys[0]]:7.2f} {r[keys[1]]:6.4f} {r[keys[2]]:7.2f}"
        )
    mean = {k.removesuffix(suffix): sum(r[k] for r in sel) / len(sel) for k in keys}
    print(
        f"{'mean (' + str(len(sel)) + ' images)':24} {'':>5} "
        f"{mean['psnr']:7.2f} {mean['ssim']:6.4f} {mean['psnrb']:7.2f}"
    )
    if args.json:
        per_image = [
            {"image": r["image"], "qf": r["qf_used"], **{k.removesuffix(suffix): r[k] for k in keys}} for r in sel
        ]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"n": len(sel), **mean, "mode": wanted, "metric": args.metric, "per_image": per_image}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
