"""What the JPEG-history detector costs: its reading (features + network) of a 768x512 and a 12 MP
photo, the whole decision with and without it, and the train_detector stage's time (from the
detector file's own record).

    python -m benchmarks.bench_detector [--detector models/pretrained/detector.npz] [--repeats 5]

Photos are generated in memory (a 12 MP smooth photo compressed at QF 30, resized by 0.75, as a
PNG: the case where the detector decides), so it needs no data set. Figures are medians of
``--repeats`` runs; compare the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.core import images
from pipeline.restoration import history, photo
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer

from .stamp import Results

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"768x512": (512, 768), "12 MP (4000x3000)": (3000, 4000)}


def resized_jpeg(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like image compressed at QF 30 and resized by 0.75 to (h, w): the detector's case."""
    rng = np.random.default_rng(seed)
    H, W = round(h / 0.75), round(w / 0.75)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / (9 + 9 * rng.random()) + y / 50), 128 + 90 * np.cos(y / 13 - x / 70),
                    128 + 60 * np.sin((x + y) / 23)], -1) + rng.normal(0, 6, (H, W, 3))  # fmt: skip
    lq = images.decode_jpeg(images.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), 30))
    return cv2.resize(lq, (w, h), interpolation=cv2.INTER_AREA)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", type=Path, default=ROOT / "models" / "pretrained" / "detector.npz")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "models" / "pretrained" / "model.pt")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default=",".join(SIZES), help="which of: " + ", ".join(SIZES))
    ap.add_argument("--json", type=Path, help="results file (default benchmarks/results/bench_detector.json)")
    args = ap.parse_args(argv)
    det = history.load(args.detector)
    restorer = Restorer.load(args.ckpt, RestoreOptions())
    out = Results("bench_detector", args.json)
    out.print(f"detector {args.detector.name} ({det.meta.get('samples', '?')} training samples), "
              f"estimator engine {restorer.label}, median of {args.repeats}")  # fmt: skip
    out.print(f"{'photo':20} {'reading':>9} {'decision, rules':>16} {'decision, detector':>19} {'added':>7}")
    rows = {}
    for name in args.sizes.split(","):
        rgb = resized_jpeg(*SIZES[name])
        read = median_seconds(lambda rgb=rgb: det.read(rgb), args.repeats)
        rules = median_seconds(lambda rgb=rgb: photo.decide(restorer.estimate, rgb), args.repeats)
        full = median_seconds(lambda rgb=rgb: photo.decide(restorer.estimate, rgb, detector=det), args.repeats)
        decision = photo.decide(restorer.estimate, rgb, detector=det)
        rows[name] = {"reading_s": read, "rules_s": rules, "detector_s": full, "decision": decision.message}
        out.print(f"{name:20} {read:8.3f}s {rules:15.3f}s {full:18.3f}s {full - rules:+6.3f}s  {decision.message}")
    seconds = det.meta.get("seconds", {})
    if seconds:
        p = det.meta["params"]
        out.print(f"training (train_detector, from the file's record): {seconds['total']:.0f} s for "
                  f"{det.meta['samples']} samples and {p['steps']} steps with {p['workers']} processes "
                  f"(synthesis {seconds['synthesis']:.0f} s, network {seconds['training']:.0f} s)")  # fmt: skip
    out.data = {"detector": str(args.detector), "rows": rows, "training_seconds": seconds}
    print(f"written {out.write()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
