"""Score a folder of JPEGs against ground truth: the JPEG itself, or a model's restorations.

    python -m pipeline.test --input data/testsets/LIVE1/color/qf_10 --gt data/testsets/LIVE1/refimgs \
        [--ckpt models/model.pt] [--output results/] [--metric rgb|y] [--tta] [--q 40] [--blind] \
        [--tile 1024] [--projection auto|on|off] [--engine auto|torch|onnxruntime|openvino]
        [--precision f32|bf16] [--json FILE]

Without --ckpt it scores the JPEG input (the baseline). With a model, the QF comes from --q,
else the decision ``restore`` makes (pipeline/photo.py): the file's quantization tables (header
mode) unless the pixels show an earlier, stronger compression; --blind ignores the header and
decides from the pixels alone (lattice at any grid offset, else the estimator). Prints a table
per image and the mean; the first line names the engine that ran the network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.checkpoint import CheckpointError, load_checkpoint
from pipeline.datasets import eval_pairs
from pipeline.device import DeviceError, pick_device
from pipeline.engines import ENGINE_CHOICES, PRECISIONS, EngineError, build_engine
from pipeline.evaluation import evaluate_pairs, save_outputs
from pipeline.images import ImageError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, required=True, help="folder of degraded images (e.g. qf_10)")
    ap.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images, same names")
    ap.add_argument("--ckpt", type=Path, help="model checkpoint; without it the input itself is scored")
    ap.add_argument("--output", type=Path, help="write restored PNGs here")
    ap.add_argument("--metric", choices=("rgb", "y"), default="rgb")
    ap.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    ap.add_argument("--q", type=float, help="condition the model on this QF")
    ap.add_argument("--blind", action="store_true", help="ignore the files' QF; use the estimator")
    ap.add_argument("--tile", type=int, default=0, help="tile size for large images (0: whole image)")
    ap.add_argument(
        "--projection",
        choices=("auto", "on", "off"),
        default="auto",
        help="clip outputs into the JPEG's quantization cells (pipeline/photo.py)",
    )
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="what runs the network (auto: fastest)")
    ap.add_argument("--precision", choices=PRECISIONS, default="f32", help="OpenVINO's precision")
    ap.add_argument("--json", type=Path, help='write {"n", "psnr", "ssim", "psnrb", "per_image": [...]}')
    args = ap.parse_args(argv)
    try:
        pairs = eval_pairs(args.input, args.gt)
        model = load_checkpoint(args.ckpt, pick_device(args.device))[0] if args.ckpt else None
        engine = build_engine(args.engine, model, args.ckpt, args.precision) if model is not None else None
        if engine is not None:
            print(f"engine: {engine.label}")
        mode = "blind" if args.blind else "header"
        rows = evaluate_pairs(
            pairs, model, (mode,), args.q, args.tta, args.tile,
            on_restored=save_outputs(args.output) if args.output else None, projection=args.projection, engine=engine,
        )  # fmt: skip
    except (ImageError, CheckpointError, DeviceError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    wanted = mode if model is not None else "jpeg"
    sel = [r for r in rows if r["mode"] == wanted]
    suffix = "_y" if args.metric == "y" else ""
    keys = [f"psnr{suffix}", f"ssim{suffix}", f"psnrb{suffix}"]
    print(f"{'image':24} {'QF':>5} {'PSNR':>7} {'SSIM':>6} {'PSNR-B':>7}   ({args.metric.upper()}, {wanted})")
    for r in sel:
        q = r["qf_used"] if r["qf_used"] is not None else r["qf_header"]
        print(
            f"{r['image'][:24]:24} {q if q is not None else '-':>5} {r[keys[0]]:7.2f} {r[keys[1]]:6.4f} {r[keys[2]]:7.2f}"
        )
    mean = {k.removesuffix(suffix): sum(r[k] for r in sel) / len(sel) for k in keys}
    print(
        f"{'mean (' + str(len(sel)) + ' images)':24} {'':>5} {mean['psnr']:7.2f} {mean['ssim']:6.4f} {mean['psnrb']:7.2f}"
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
