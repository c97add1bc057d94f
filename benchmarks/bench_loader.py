"""How many training patches per second the data loader makes (the other half of the GPU's
idle share: a training step that outruns this rate waits for data).

    python -m benchmarks.bench_loader FOLDER [FOLDER ...] [--workers 4,8,14] [--batch 64]
        [--seconds 10] [--json FILE]

Decodes the images, then runs the training DataLoader (``pipeline.data.degrade.TrainPairs`` with
params.yaml's ``train`` degradations: single, double, resized and clean patches) for
``--seconds`` after a warm-up, for each worker count. Prints patches/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.stamp import Results
from pipeline import params
from pipeline.core import images
from pipeline.data.degrade import Degradation, StreamSampler, TrainPairs, collate, load_training_images, worker_init


def degradation(t: params.TrainParams) -> Degradation:
    return Degradation(t.qf_min, t.qf_max, t.double_jpeg_prob, t.gray_prob, t.align_prob, t.resize_prob, t.clean_prob)


def loader_rate(imgs: list, t: params.TrainParams, batch: int, workers: int, seconds: float) -> float:
    ds = TrainPairs(imgs, t.patch_size, degradation(t), t.seed, t.patches_per_image)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch // t.patches_per_image,
        sampler=StreamSampler(),
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_init,
        prefetch_factor=4 if workers else None,
    )
    it = iter(loader)
    for _ in range(max(2, workers)):  # warm-up: workers started, first batches queued
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += next(it)[0].shape[0]
    rate = n / (time.perf_counter() - t0)
    del it
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", help="write the results here (default: benchmarks/results/bench_loader.json)")
    args = ap.parse_args(argv)
    t = params.load(args.params).train
    paths = sorted(p for f in args.folders for p in f.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES)
    imgs, skipped = load_training_images(paths, t.patch_size + 16)
    res = Results("bench_loader", args.json)
    res.print(f"{len(imgs)} images ({len(skipped)} too small), batch {args.batch} of {t.patch_size}^2")
    rows = []
    for w in (int(v) for v in args.workers.split(",")):
        rate = loader_rate(imgs, t, args.batch, w, args.seconds)
        rows.append({"workers": w, "patches_per_s": rate})
        res.print(f"workers {w:3d}: {rate:8.0f} patches/s")
    res.data = {"images": len(imgs), "batch": args.batch, "rows": rows}
    res.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
