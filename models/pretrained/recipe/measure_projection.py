"""Measure the quantization-constraint projection: PSNR with and without it, per QF and set.

    python -m models.pretrained.recipe.measure_projection --ckpt models/pretrained/model.pt \
        --gt ../shared/datasets/LIVE1 ../shared/datasets/BSDS500/test --qfs 10,20,...,95 [--every N] --json FILE

Each reference is compressed as the protocol does (OpenCV 4:2:0) and restored once in header
mode (``pipeline.restoration.photo``), then scored as it is ("off"), with the luma projected ("luma"), and
with luma and chroma projected ("on", what ``evaluate.projection: on`` does). Also a 4:4:4 row
at QF 90 (the chroma projection's exact case).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.core import images, jpeg
from pipeline.evaluation import metrics
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from pipeline.restoration.tiles import to_uint8


def variants(restorer: Restorer, gt: np.ndarray, qf: int, subsampling: str) -> dict[str, float]:
    data = images.encode_jpeg(gt, qf, subsampling=subsampling)
    dec = images.decode_image(data)
    d = restorer.decide(dec.rgb, dec.header)
    out = restorer.restore(dec.rgb, d) * 255.0
    if d.luma_table is None:  # decided without tables (never for a single JPEG): nothing to project
        raise RuntimeError(f"QF {qf}: {d.message}")
    luma = jpeg.project(out, dec.rgb, d.luma_table, None, d.offset)
    full = jpeg.project(out, dec.rgb, d.luma_table, d.chroma_table, d.offset, d.subsampling)
    score = {
        "jpeg": dec.rgb,
        "off": to_uint8(out / 255.0),
        "luma": to_uint8(luma / 255.0),
        "on": to_uint8(full / 255.0),
    }
    return {k: metrics.psnr(gt, v) for k, v in score.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--gt", type=Path, nargs="+", required=True)
    ap.add_argument("--qfs", default="10,20,30,40,50,60,70,80,90,95")
    ap.add_argument("--every", type=int, default=1, help="every Nth image of each folder (1: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    restorer = Restorer.load(args.ckpt, RestoreOptions(tile=0, projection="off", engine="torch", device="cpu"))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for folder in args.gt:
        refs = [images.read_image(p) for p in images.list_images(folder)[:: args.every]]
        name = folder.name if folder.name != "test" else folder.parent.name
        table[name] = {}
        runs = [(str(q), q, "4:2:0") for q in map(int, args.qfs.split(","))] + [("90 (4:4:4)", 90, "4:4:4")]
        for key, q, ss in runs:
            rows = [variants(restorer, gt, q, ss) for gt in refs]
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            worse = {k: int(sum(r[k] < r["off"] - 1e-9 for r in rows)) for k in ("luma", "on")}
            table[name][key] = {**mean, "n": len(rows), "images_worse": worse}
            print(
                f"{name} QF {key}: JPEG {mean['jpeg']:.3f}  off {mean['off']:.3f}  luma {mean['luma']:.3f} "
                f"({mean['luma'] - mean['off']:+.3f})  on {mean['on']:.3f} ({mean['on'] - mean['off']:+.3f})  "
                f"worse images: luma {worse['luma']}, on {worse['on']} of {len(rows)}",
                flush=True,
            )
            if args.json:
                images.write_bytes(args.json, json.dumps(table, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
