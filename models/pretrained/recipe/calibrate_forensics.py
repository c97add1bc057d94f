"""The numbers behind pipeline/restoration/photo.py's thresholds, measured on training images only.

    python -m models.pretrained.recipe.calibrate_forensics --ckpt models/pretrained/model.pt \
        --clean ../shared/datasets/train-extra --jpeg ../shared/datasets/train/BSD200 --json FILE

Whole images: single JPEGs (QF 50 to 90) whose blocking shows off the origin (textures), its
strength and the lattice score there (the false alarms FAINT_LATTICE_MIN and STRONG_BLOCKING
must reject); JPEGs cropped by (3, 5) and re-saved at QF 95 (what they must accept). Crops of
256x256: the learned estimator's reading on clean crops and on aligned JPEGs at QF <= 85
(CLEAN_MIN_QF must separate them), and the blockiness of clean crops (BLOCKING_MIN).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.core import images, jpeg
from pipeline.restoration import photo
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer

PCTS = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def crops(folders: list[Path], size: int = 256, per_image: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for p in sorted(q for f in folders for q in f.rglob("*") if q.suffix.lower() in images.IMAGE_SUFFIXES):
        img = images.read_image(p)
        if min(img.shape[:2]) < size:
            continue
        for _ in range(per_image):
            y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
            out.append(np.ascontiguousarray(img[y : y + size, x : x + size]))
    return out


def pct(values: list[float]) -> dict[str, float]:
    return {f"p{p}": round(float(np.percentile(values, p)), 3) for p in PCTS} | {"n": len(values)}


def whole(folders: list[Path]) -> list[np.ndarray]:
    return [
        images.read_image(p) for f in folders for p in sorted(f.rglob("*")) if p.suffix.lower() in images.IMAGE_SUFFIXES
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--clean", type=Path, nargs="+", required=True)
    ap.add_argument("--jpeg", type=Path, nargs="+", required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    restorer = Restorer.load(args.ckpt, RestoreOptions(engine="torch", device="cpu"))
    rng = np.random.default_rng(1)
    stats: dict[str, list[float]] = {
        k: []
        for k in (
            "single_offgrid_blocking",
            "single_offgrid_lattice",
            "resaved_blocking",
            "resaved_faint_lattice",
            "clean_blocking",
            "clean_estimate",
            "jpeg_le85_estimate",
        )
    }
    singles = 0
    for img in whole(args.jpeg + args.clean):
        for q in (50, 70, 90):
            lq = images.jpeg_roundtrip(img, q)
            phase, strength = jpeg.blockiness(jpeg.luma(lq))
            singles += 1
            if phase != (0, 0):
                stats["single_offgrid_blocking"].append(min(strength))
                stats["single_offgrid_lattice"].append(float(jpeg.lattice_scores(jpeg.luma(lq), phase).max()))
        for q in (10, 30, 50):
            d = images.jpeg_roundtrip(np.ascontiguousarray(images.jpeg_roundtrip(img, q)[3:, 5:]), 95)
            stats["resaved_blocking"].append(min(jpeg.blockiness(jpeg.luma(d))[1]))
            stats["resaved_faint_lattice"].append(float(jpeg.lattice_scores(jpeg.luma(d), (5, 3))[q - 1]))
    for img in crops(args.clean):
        stats["clean_blocking"].append(min(jpeg.blockiness(jpeg.luma(img))[1]))
        stats["clean_estimate"].append(restorer.estimate(img))
    for img in crops(args.jpeg + args.clean):
        stats["jpeg_le85_estimate"].append(restorer.estimate(images.jpeg_roundtrip(img, int(rng.integers(5, 86)))))
    out: dict = {k: pct(v) for k, v in stats.items() if v}
    arr = {k: np.array(v) for k, v in stats.items()}
    out["shares"] = {
        "single_jpegs_with_offgrid_blocking": len(stats["single_offgrid_blocking"]) / singles,
        "single_offgrid_lattice_over_faint_min": float(
            np.mean(arr["single_offgrid_lattice"] >= photo.FAINT_LATTICE_MIN)
        ),
        "single_offgrid_blocking_over_strong": float(np.mean(arr["single_offgrid_blocking"] >= photo.STRONG_BLOCKING)),
        "resaved_faint_lattice_over_min": float(np.mean(arr["resaved_faint_lattice"] >= photo.FAINT_LATTICE_MIN)),
        "clean_estimate_over_clean_min": float(np.mean(arr["clean_estimate"] >= photo.CLEAN_MIN_QF)),
        "jpeg_estimate_over_clean_min": float(np.mean(arr["jpeg_le85_estimate"] >= photo.CLEAN_MIN_QF)),
    }
    out["thresholds"] = {
        k: getattr(photo, k) for k in ("BLOCKING_MIN", "FAINT_LATTICE_MIN", "STRONG_BLOCKING", "CLEAN_MIN_QF")
    }
    for k, v in out.items():
        print(f"{k}: {v}", flush=True)
    if args.json:
        images.write_bytes(args.json, json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
