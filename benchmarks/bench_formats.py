"""What each output format keeps of the restoration's gain: a restored photo written as PNG
(lossless), as JPEG at --quality (4:4:4, optimised Huffman tables) and as lossless WebP.

    python -m benchmarks.bench_formats [--live1 ../shared/datasets/LIVE1] [--qfs 10,20,30,40]
        [--quality 95] [--ckpt models/pretrained/model.pt] [--limit N] [--json FILE]

Each LIVE1 reference is compressed at each QF as the test sets are (OpenCV, 4:2:0), restored as
``restore`` restores it (its defaults: the header's QF, projection, the fastest engine) and
written in each format; the figures are the mean RGB PSNR gain of each file over the JPEG input,
the share of the lossless gain the JPEG keeps, and the mean file size.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.stamp import Results
from pipeline.core import images
from pipeline.evaluation import metrics
from pipeline.restoration import writer
from pipeline.restoration.options import OutputOptions
from pipeline.restoration.restorer import Restorer

ROOT = Path(__file__).resolve().parent.parent


def measure(restorer: Restorer, refs: Sequence[np.ndarray], qf: int, quality: int) -> dict[str, dict[str, float]]:
    """Mean gain (dB) and size (bytes) per format over ``refs`` compressed at ``qf``."""
    outputs = {"png": OutputOptions("png"), "jpeg": OutputOptions("jpeg", quality), "webp": OutputOptions("webp")}
    gains: dict[str, list[float]] = {f: [] for f in outputs}
    sizes: dict[str, list[int]] = {f: [] for f in outputs}
    for ref in refs:
        decoded = images.decode_image(images.encode_jpeg(ref, qf))
        pixels = restorer.restore(decoded.rgb, restorer.decide(decoded.rgb, decoded.header))
        before = metrics.psnr(ref, decoded.rgb)
        for fmt, output in outputs.items():
            data = writer.encode(pixels.copy(), decoded, output).data
            gains[fmt].append(metrics.psnr(ref, images.decode_image(data).rgb) - before)
            sizes[fmt].append(len(data))
    return {f: {"gain": float(np.mean(gains[f])), "bytes": float(np.mean(sizes[f]))} for f in outputs}


def share(part: float, whole: float) -> float | None:
    """``part`` / ``whole``, None when there is no whole (a model that changes nothing)."""
    return float(part / whole) if whole else None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--live1", type=Path, default=ROOT.parent / "shared" / "datasets" / "LIVE1")
    ap.add_argument("--qfs", default="10,20,30,40")
    ap.add_argument("--quality", type=int, default=OutputOptions.quality, help="the JPEG output's quality")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "models" / "pretrained" / "model.pt")
    ap.add_argument("--limit", type=int, help="only the first N images (a quick look)")
    ap.add_argument("--json", type=Path, help="results file (default benchmarks/results/bench_formats.json)")
    args = ap.parse_args(argv)
    paths = images.list_images(args.live1)[: args.limit]
    if not paths:
        print(f"no images in {args.live1}", file=sys.stderr)
        return 2
    refs = [images.read_image(p) for p in paths]
    restorer = Restorer.load(args.ckpt)
    out = Results("bench_formats", args.json)
    out.print(f"{len(refs)} images of {args.live1.name}, {args.ckpt}, engine {restorer.label}")
    head = f"{'QF':>4} {'PNG gain':>9} {f'JPEG {args.quality}':>9} {'kept':>6} {'WebP':>7}"
    out.print(head + "   mean bytes PNG / JPEG / WebP")
    rows = {}
    for qf in (int(q) for q in args.qfs.split(",")):
        r = rows[qf] = measure(restorer, refs, qf, args.quality)
        r["kept"] = share(r["jpeg"]["gain"], r["png"]["gain"])
        size = " / ".join(f"{r[f]['bytes'] / 1000:.0f} kB" for f in ("png", "jpeg", "webp"))
        gains = f"{r['png']['gain']:>8.3f}  {r['jpeg']['gain']:>8.3f} {r['kept'] or 0:>6.1%} {r['webp']['gain']:>7.3f}"
        out.print(f"{qf:>4} {gains}   {size}")
    lossless, lossy = (np.mean([r[f]["gain"] for r in rows.values()]) for f in ("png", "jpeg"))
    kept = share(lossy, lossless)
    out.print(f"JPEG {args.quality} keeps {kept or 0:.0%} of the mean gain over QF {args.qfs}")
    out.data = {"images": len(refs), "quality": args.quality, "engine": restorer.label, "kept": kept, "qfs": rows}
    print(f"written {out.write()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
