"""Time and peak memory of restoring large photos on this machine.

    python -m benchmarks.bench_restore [--ckpt models/pretrained/model.pt] [--sizes 4000x3000,768x512]
        [--tile 1024] [--overlap 64] [--qf 30]

Each size runs in a fresh process (so its peak RSS is its own) on a photo-like image made from
scikit-image's bundled photos (tiled and resized to the size), JPEG-compressed at --qf. Prints
seconds and peak resident memory per size. Figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import cv2
import numpy as np


def photo(w: int, h: int) -> np.ndarray:
    from pipeline.datasets import sample_images

    tiles = list(sample_images("sample_train").values())
    row = np.hstack([cv2.resize(t, (512, 512), interpolation=cv2.INTER_AREA) for t in tiles[:4]])
    return cv2.resize(np.vstack([row, row[:, ::-1]]), (w, h), interpolation=cv2.INTER_CUBIC)


def one(ckpt: str, w: int, h: int, tile: int, overlap: int, qf: int) -> dict:
    import torch

    from pipeline import images
    from pipeline.checkpoint import load_checkpoint
    from pipeline.inference import restore

    torch.set_num_threads(torch.get_num_threads())
    lq = images.decode_jpeg(images.encode_jpeg(photo(w, h), qf))
    model, _ = load_checkpoint(ckpt)
    model = model.to(memory_format=torch.channels_last)
    t = time.perf_counter()
    out = restore(model, lq, qf=qf, tile=tile, overlap=overlap)
    seconds = time.perf_counter() - t
    assert out.shape == lq.shape
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": f"{w}x{h}", "megapixels": w * h / 1e6, "tile": tile, "seconds": seconds, "peak_rss_MiB": rss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="models/pretrained/model.pt")
    ap.add_argument("--sizes", default="4000x3000,768x512")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--qf", type=int, default=30)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        w, h = map(int, args.one.split("x"))
        print(json.dumps(one(args.ckpt, w, h, args.tile, args.overlap, args.qf)))
        return 0
    print(f"{'size':>10} {'MP':>5} {'tile':>5} {'seconds':>8} {'peak RSS MiB':>13}")
    for size in args.sizes.split(","):
        cmd = [sys.executable, "-m", "benchmarks.bench_restore", "--one", size, "--ckpt", args.ckpt,
               "--tile", str(args.tile), "--overlap", str(args.overlap), "--qf", str(args.qf)]  # fmt: skip
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(
            f"{r['size']:>10} {r['megapixels']:5.1f} {r['tile']:5} {r['seconds']:8.1f} {r['peak_rss_MiB']:13.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
