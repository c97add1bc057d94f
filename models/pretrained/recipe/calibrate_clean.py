"""When a photo without a quantization lattice is restored: the figures behind photo.py's
no-lattice rule (BLOCKING_MIN, UNIQUE_MIN, ESTIMATE_ALONE_MAX),
measured on training images only.

    python -m models.pretrained.recipe.calibrate_clean --ckpt models/pretrained/model.pt \
        --clean ../shared/datasets/train-extra --jpeg ../shared/datasets/train/BSD200 --json FILE

Three groups, each image in a few variants drawn at random (seeded):
- clean: photos never compressed (train-extra: its README's JPEG-history screen found none),
  whole, a 768x512 crop, downscaled, upscaled, gamma-edited; they must come back unchanged;
- hq: a JPEG at QF 80-95, then resized, gamma-edited or moved by half a pixel (the lattice is
  gone); restoring them gains about nothing, so either answer is fine;
- jpeg: a JPEG at QF 10-90, then resized or gamma-edited, or saved with non-IJG tables; kept when
  no lattice is found, and restored at the estimate to measure what restoring them gains.
Prints the features per group and, for the rule as shipped, how many clean photos it restores
(must be 0) and the share of the jpeg group's gain it keeps.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from pipeline.core import images, jpeg
from pipeline.data.degrade import RESIZE_FILTERS
from pipeline.evaluation import metrics
from pipeline.restoration import photo
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer

_MODEL: dict = {}


def _resize(img: np.ndarray, f: float, interp: int) -> np.ndarray:
    return cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=interp)


def _gamma(img: np.ndarray, g: float) -> np.ndarray:
    return np.clip(255.0 * (img / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)


def _custom_tables(img: np.ndarray, qf: int, rng: np.random.Generator) -> np.ndarray:
    """A JPEG whose tables are IJG's at ``qf``, each entry scaled by 0.7 to 1.3 (cameras, editors)."""
    tables = [
        np.clip(np.rint(t * rng.uniform(0.7, 1.3, t.shape)), 1, 255).astype(int).ravel().tolist()
        for t in jpeg.ijg_tables(qf)
    ]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", qtables=tables, subsampling=2)
    return images.decode_jpeg(buf.getvalue())


def variants(group: str, img: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(variant, input, reference) for one image of ``group``."""
    interp = int(rng.choice(RESIZE_FILTERS))
    if group == "clean":
        clean = [
            ("whole", img),
            ("gamma", _gamma(img, rng.uniform(0.7, 1.4))),
            ("down", _resize(img, float(rng.choice([0.5, 0.75, 0.9])), interp)),
            ("up", _resize(img, float(rng.choice([1.25, 1.5, 2.0])), int(rng.choice(RESIZE_FILTERS[1:])))),
        ]
        return [(v, a, a) for v, a in clean]  # the photo is its own reference
    qf = int(rng.choice([80, 85, 90, 95] if group == "hq" else [10, 20, 30, 40, 50, 60, 70, 80, 90]))
    dec = images.jpeg_roundtrip(img, qf)
    f = float(rng.choice([0.5, 0.6, 0.75, 0.9, 1.25, 1.5]))
    g = float(rng.uniform(0.7, 1.4))
    out = [
        (f"resized {qf}", _resize(dec, f, interp), _resize(img, f, interp)),
        (f"gamma {qf}", _gamma(dec, g), _gamma(img, g)),
    ]
    if group == "hq":
        m = np.float32([[1, 0, 0.5], [0, 1, 0.5]])
        move = lambda a: cv2.warpAffine(a, m, (a.shape[1], a.shape[0]), borderMode=cv2.BORDER_REFLECT)  # noqa: E731
        out.append((f"half-pixel {qf}", move(dec), move(img)))
    else:
        out.append((f"tables {qf}", _custom_tables(img, qf, rng), img))
    return out


def features(restorer: Restorer, img: np.ndarray) -> dict:
    """What ``photo.decide`` sees in a photo without a header."""
    ev = photo.search_all_offsets(img, jpeg.find_grid(img))
    offset = photo.estimation_grid(ev)
    return {
        "lattice": ev.lattice_qf,
        "blocking": ev.blocking,
        "unique": ev.unique,
        "estimate": photo.estimate_on_grid(restorer.estimate, img, offset),
        "offset": list(offset),
    }


def job(args: tuple[str, str, str, int]) -> list[dict]:
    ckpt, group, path, seed = args
    if not _MODEL:
        torch.set_num_threads(1)
        _MODEL["m"] = Restorer.load(Path(ckpt), RestoreOptions(tile=0, engine="torch", device="cpu"))
    model, rng = _MODEL["m"], np.random.default_rng(seed)
    img = images.read_image(path)
    rows = []
    if max(img.shape[:2]) > 1100:  # DIV2K: a LIVE1-sized crop at full resolution, the rest halved
        y, x = rng.integers(0, img.shape[0] - 512), rng.integers(0, img.shape[1] - 768)
        crop = np.ascontiguousarray(img[y : y + 512, x : x + 768])
        if group == "clean":
            rows.append({"variant": "crop"} | features(model, crop))
        img = _resize(img, 0.5, cv2.INTER_AREA) if group == "clean" else crop
    for variant, lq, gt in variants(group, img, rng):
        lq = np.ascontiguousarray(lq)
        row = {"variant": variant} | features(model, lq)
        if group == "jpeg":
            if row["lattice"] is not None:
                continue  # the lattice decides these: not what the rule is for
            decision = photo.Decision(row["estimate"], "estimated", tuple(row["offset"]), "")
            out = np.clip(model.restore(lq, decision) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            row["gain"] = metrics.psnr(gt, out) - metrics.psnr(gt, lq)
        rows.append(row)
    return [{"group": group, "image": Path(path).name} | r for r in rows]


def _images(folders: list[Path]) -> list[Path]:
    return sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES)


def restored(row: dict) -> bool:
    """Whether photo.decide's no-lattice rule restores a photo with these features."""
    return photo.no_lattice_reason(row["blocking"], row["unique"], row["estimate"]) is not None


def summary(rows: list[dict]) -> dict:
    out = {}
    for group in ("clean", "hq", "jpeg"):
        g = [r for r in rows if r["group"] == group and r["lattice"] is None]
        pct = {
            k: {f"p{p}": round(float(np.percentile([r[k] for r in g], p)), 3) for p in (1, 50, 99)}
            | {"max": round(max(r[k] for r in g), 3), "min": round(min(r[k] for r in g), 3)}
            for k in ("blocking", "unique", "estimate")
        }
        out[group] = {"n": len(g), "restored": sum(map(restored, g)), "features": pct}
    jp = [r for r in rows if r["group"] == "jpeg"]
    total = sum(r["gain"] for r in jp)
    out["jpeg"]["gain_all_restored"] = round(total / len(jp), 3)
    out["jpeg"]["gain_rule"] = round(sum(r["gain"] for r in jp if restored(r)) / len(jp), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--clean", type=Path, nargs="+", required=True)
    ap.add_argument("--jpeg", type=Path, nargs="+", required=True)
    ap.add_argument("--rows", type=Path, help="reuse the rows of an earlier --json instead of measuring")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.rows:
        rows = json.loads(args.rows.read_text())["rows"]
    else:
        clean = _images(args.clean)
        jp = _images(args.jpeg + args.clean)
        jobs = [(str(args.ckpt), "clean", str(p), i) for i, p in enumerate(clean)]
        jobs += [
            (str(args.ckpt), g, str(p), 1000 * (k + 1) + i)
            for k, g in enumerate(("hq", "jpeg"))
            for i, p in enumerate(jp[k::2])
        ]
        with ProcessPoolExecutor(args.workers) as pool:
            rows = [r for rs in pool.map(job, jobs) for r in rs]
    result = {"summary": summary(rows), "rows": rows}
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        images.write_bytes(args.json, json.dumps(result, indent=0).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
