"""Retrain only the QF-estimator head of a checkpoint, on the CPU, on the inputs it meets in use.

    python -m models.pretrained.recipe.train_estimator --ckpt models/pretrained/model.pt \
        --out models/pretrained/model.pt \
        --jpeg ../shared/datasets/train/BSD200 ../shared/datasets/train-extra \
        --clean ../shared/datasets/train-extra --steps 3000

The restoration weights are not touched. The head sees what ``pipeline.restoration.photo.decide`` shows it:
the image shifted onto its detected 8x8 grid (or, when detection fails, a random offset). Cases,
each a 160x160 crop: single JPEG (QF 5..95), double JPEG with a shifted grid (label: the
stronger compression; aligned with either grid), resized by 0.5..1 after compression, and never
compressed (label 100, only from --clean folders, which must hold no JPEG history). Every 10th
image of each folder is held out; the accuracy per case on those goes into the checkpoint's
``meta["estimator"]`` and is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core import images
from pipeline.data.degrade import CLEAN_LABEL, RESIZE_FILTERS, augment
from pipeline.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

CASES = ("single", "double", "resized", "clean")
PROBS = (0.45, 0.25, 0.1, 0.2)
SIZE = 160


def paths_of(folders: list[Path]) -> list[Path]:
    return sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES)


def sample(src: np.ndarray, case: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One (input, label) as the estimator sees it in use."""
    big = SIZE + 16
    scale = rng.uniform(0.5, 1.0) if case == "resized" else 1.0
    region = min(int(np.ceil(big / scale)), *src.shape[:2])
    y, x = rng.integers(0, src.shape[0] - region + 1), rng.integers(0, src.shape[1] - region + 1)
    img = augment(src[y : y + region, x : x + region], int(rng.integers(8)))
    q = int(rng.integers(5, 96))
    aligned = rng.random() < 0.85
    if case == "clean":
        return img[:SIZE, :SIZE], float(CLEAN_LABEL)
    lq = images.jpeg_roundtrip(img, q)
    if case == "double":
        s = rng.integers(1, 8, size=2)
        q2 = int(rng.integers(q, 96)) if rng.random() < 0.75 else int(rng.integers(5, 96))
        lq = images.jpeg_roundtrip(np.ascontiguousarray(lq[s[0] :, s[1] :]), q2)
        first = (8 - s) % 8  # where the first compression's grid is in the shifted image
        oy, ox = (first if rng.random() < 0.5 else (0, 0)) if aligned else rng.integers(0, 8, size=2)
        return lq[oy : oy + SIZE, ox : ox + SIZE], float(min(q, q2))
    if case == "resized":
        lq = cv2.resize(lq, (big, big), interpolation=RESIZE_FILTERS[int(rng.integers(3))])
        aligned = False
    oy, ox = (0, 0) if aligned else rng.integers(0, 8, size=2)
    return lq[oy : oy + SIZE, ox : ox + SIZE], float(q)


def batch(
    srcs: list[np.ndarray], clean: list[np.ndarray], n: int, rng: np.random.Generator, case: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for _ in range(n):
        c = case or CASES[int(rng.choice(4, p=PROBS))]
        pool = clean if c == "clean" else srcs
        img, label = sample(pool[int(rng.integers(len(pool)))], c, rng)
        xs.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0)
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


@torch.no_grad()
def accuracy(head: torch.nn.Module, srcs: list, clean: list, seed: int = 1, n: int = 256) -> dict[str, float]:
    """Mean absolute QF error per case on held-out images (fixed seed: comparable)."""
    head.eval()
    rng = np.random.default_rng(seed)
    out = {}
    for case in CASES:
        x, y = batch(srcs, clean, n, rng, case)
        out[case] = float((head(x) - y).abs().mean())
    head.train()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jpeg", type=Path, nargs="+", required=True, help="sources of the compressed cases")
    ap.add_argument("--clean", type=Path, nargs="+", required=True, help="sources without JPEG history")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3.0e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    ckpt = read_checkpoint(args.ckpt)
    model, _ = load_checkpoint(args.ckpt, "cpu")
    head = model.estimator
    split = {}
    for kind, folders in (("jpeg", args.jpeg), ("clean", args.clean)):
        ps = paths_of(folders)
        split[kind] = (
            [images.read_image(p) for i, p in enumerate(ps) if i % 10],
            [images.read_image(p) for i, p in enumerate(ps) if i % 10 == 0],
        )
    (train_j, val_j), (train_c, val_c) = split["jpeg"], split["clean"]
    before = accuracy(head, val_j, val_c)
    print("held-out QF error before: " + ", ".join(f"{k} {v:.1f}" for k, v in before.items()), flush=True)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)
    rng = np.random.default_rng(args.seed)
    head.train()
    for step in range(1, args.steps + 1):
        x, y = batch(train_j, train_c, args.batch, rng)
        loss = torch.nn.functional.l1_loss(head(x) / 100.0, y / 100.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step}: loss {float(loss) * 100:.2f} QF, {time.time() - t0:.0f} s", flush=True)
    after = accuracy(head, val_j, val_c)
    print("held-out QF error after:  " + ", ".join(f"{k} {v:.1f}" for k, v in after.items()), flush=True)
    meta = dict(ckpt["meta"])
    meta["estimator"] = {
        "steps": args.steps,
        "batch": args.batch,
        "wall_s": round(time.time() - t0, 1),
        "device": "cpu",
        "data_jpeg": [str(f) for f in args.jpeg],
        "data_clean": [str(f) for f in args.clean],
        "cases": dict(zip(CASES, PROBS)),
        "held_out_mae_before": before,
        "held_out_mae_after": after,
    }
    save_checkpoint(args.out, ckpt["arch"], ckpt["kwargs"], model.eval(), meta, half=True)
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
