"""Compare the inference engines on this machine: speed, peak memory, and agreement on LIVE1.

    python -m benchmarks.bench_restore [--ckpt models/pretrained/model.pt] [--engines torch,onnxruntime,openvino]
        [--precisions f32,bf16] [--tiles 512,1024] [--size 4000x3000] [--qf 30] [--old-rev REV]
        [--live1 ../shared/datasets/LIVE1 --live1-qfs 10,40] [--skip-large] [--json FILE]

1. ms per 768x512 image per engine (network only, after a warm-up; median of --repeats), its
   speed-up over torch eager and its largest difference from torch in grey levels.
2. A 12 MP photo (--size, photo-like, JPEG at --qf) restored file to file as ``restore`` does
   (decode, QF/grid decision, tiles, projection, PNG), model already loaded: seconds and peak
   RSS, each engine and tile in its own process so each peak is its own. The same is run with
   the code of --old-rev (today's ``restore``: torch, tile 1024, blended tiles) for the speed-up.
3. --live1: mean RGB PSNR per engine over LIVE1 compressed at each --live1-qfs (OpenCV JPEG,
   the network conditioned on that QF, whole images, no projection), and the difference to torch.
Figures are measured, never asserted: timings on a shared machine are noisy, compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.stamp import Results

ROOT = Path(__file__).resolve().parent.parent
OLD_REV = ""  # set with --old-rev: a git revision whose restore is timed beside this one


def photo(w: int, h: int) -> np.ndarray:
    from pipeline.data.datasets import sample_images

    tiles = list(sample_images("sample_train").values())
    row = np.hstack([cv2.resize(t, (512, 512), interpolation=cv2.INTER_AREA) for t in tiles[:4]])
    return cv2.resize(np.vstack([row, row[:, ::-1]]), (w, h), interpolation=cv2.INTER_CUBIC)


def configs(engines: str, precisions: str) -> list[tuple[str, str]]:
    """(engine, precision) pairs: bf16 only where the engine has it (OpenVINO)."""
    out = []
    for e in engines.split(","):
        out += [(e, p) for p in precisions.split(",") if p == "f32" or e == "openvino"]
    return out


def small(ckpt: str, cfgs: list[tuple[str, str]], qf: int, repeats: int) -> list[dict]:
    """ms per 768x512 per engine, network only."""
    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.restoration.engines import build_engine

    model, _ = load_checkpoint(ckpt)
    x = np.ascontiguousarray(photo(768, 512)[None])
    rows, ref = [], None
    for name, precision in cfgs:
        engine = build_engine(name, model, ckpt, precision)
        out = engine.run(x, qf)  # warm-up (and compilation)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            engine.run(x, qf)
            times.append(time.perf_counter() - t)
        ref = out if ref is None and name == "torch" else ref
        diff = None if ref is None else float(np.abs(out - ref).max() * 255)
        rows.append({"engine": engine.label, "ms": 1000 * float(np.median(times)), "max_diff_grey": diff})
    return rows


def large(ckpt: str, name: str, precision: str, w: int, h: int, tile: int, qf: int) -> dict:
    """One engine on a 12 MP JPEG file, as ``restore`` runs it (in a process of its own)."""
    from pipeline.restoration.batch import restore_paths
    from pipeline.restoration.options import RestoreOptions
    from pipeline.restoration.restorer import Restorer

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.jpg"
        cv2.imwrite(str(src), photo(w, h)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, qf])
        t = time.perf_counter()
        restorer = Restorer.load(ckpt, RestoreOptions(tile=tile, engine=name, precision=precision))
        load = time.perf_counter() - t
        t = time.perf_counter()
        summary = restore_paths(restorer, [src], Path(tmp) / "out")
        seconds = time.perf_counter() - t
        assert summary.count("restored") == 1, summary.results
    label = restorer.label
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": label, "tile": tile, "seconds": seconds, "load_s": load, "peak_rss_MiB": rss}


def _child(args: argparse.Namespace, spec: str, old: Path | None = None) -> dict:
    """Run ``large`` in a fresh process; ``old``: a folder holding today's ``pipeline`` package,
    run from there (the working folder comes first on sys.path) with this benchmark after it."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_restore",
        "--one",
        spec,
        "--ckpt",
        str(Path(args.ckpt).resolve()),
        "--size",
        args.size,
        "--qf",
        str(args.qf),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if old else None
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=old)
    if res.returncode:
        return {"engine": spec, "error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def old_tree(rev: str, dest: Path) -> Path:
    """The ``pipeline`` package as it was at ``rev`` (git archive), for today's restore path."""
    tar = subprocess.run(["git", "archive", rev, "pipeline"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def live1(ckpt: str, folder: Path, cfgs: list[tuple[str, str]], qfs: list[int]) -> list[dict]:
    """Mean RGB PSNR per engine and QF on LIVE1 (whole images, the network alone)."""
    from pipeline.core import images
    from pipeline.evaluation import metrics
    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.restoration.engines import build_engine
    from pipeline.restoration.tiles import restore_float, to_uint8

    model, _ = load_checkpoint(ckpt)
    refs = [images.read_image(p) for p in images.list_images(folder)]
    rows = []
    for name, precision in cfgs:
        engine = build_engine(name, model, ckpt, precision)
        for q in qfs:
            scores = [metrics.psnr(gt, to_uint8(restore_float(engine, images.jpeg_roundtrip(gt, q), q))) for gt in refs]
            rows.append({"engine": engine.label, "qf": q, "n": len(refs), "psnr": float(np.mean(scores))})
            print(f"{engine.label:>16} QF {q:3}: {rows[-1]['psnr']:.4f} dB ({len(refs)} images)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="models/pretrained/model.pt")
    ap.add_argument("--engines", default="torch,onnxruntime,openvino")
    ap.add_argument("--precisions", default="f32,bf16", help="bf16 applies to OpenVINO only")
    ap.add_argument("--tiles", default="512,1024")
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--qf", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old-rev", default=OLD_REV, help="git revision of today's restore ('' to skip)")
    ap.add_argument("--skip-large", action="store_true", help="only ms per 768x512 (and --live1)")
    ap.add_argument("--live1", type=Path, help="LIVE1 reference folder: PSNR per engine")
    ap.add_argument("--live1-qfs", default="10,40")
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/bench_restore.json)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    w, h = map(int, args.size.split("x"))
    if args.one:  # a child: ENGINE:PRECISION:TILE
        name, precision, tile = args.one.split(":")
        print(json.dumps(large(args.ckpt, name, precision, w, h, int(tile), args.qf)))
        return 0
    cfgs = configs(args.engines, args.precisions)
    res = Results("bench_restore", args.json)
    report: dict = {"small": small(args.ckpt, cfgs, args.qf, args.repeats)}
    torch_ms = next((r["ms"] for r in report["small"] if r["engine"] == "torch"), None)
    res.print(f"{'engine':>16} {'ms/768x512':>11} {'x torch':>8} {'max diff (grey)':>16}")
    for r in report["small"]:
        ratio = f"{torch_ms / r['ms']:8.2f}" if torch_ms else f"{'-':>8}"
        diff = "-" if r["max_diff_grey"] is None else f"{r['max_diff_grey']:.4f}"
        res.print(f"{r['engine']:>16} {r['ms']:11.0f} {ratio} {diff:>16}")
    if not args.skip_large:
        rows = []
        if args.old_rev:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(_child(args, "old:f32:1024", old_tree(args.old_rev, Path(tmp))))
        for name, precision in cfgs:
            rows += [_child(args, f"{name}:{precision}:{t}") for t in args.tiles.split(",")]
        report["large"] = rows
        base = rows[0].get("seconds") if args.old_rev else None
        res.print(f"\n{args.size} JPEG -> PNG, model loaded (each row its own process)")
        res.print(f"{'engine':>16} {'tile':>5} {'seconds':>8} {'x today':>8} {'peak RSS MiB':>13}")
        for r in rows:
            if "error" in r:
                res.print(f"{r['engine']:>16} error: {r['error']}")
                continue
            ratio = f"{base / r['seconds']:8.2f}" if base else f"{'-':>8}"
            res.print(f"{r['engine']:>16} {r['tile']:5} {r['seconds']:8.1f} {ratio} {r['peak_rss_MiB']:13.0f}")
    if args.live1:
        report["live1"] = live1(args.ckpt, args.live1, cfgs, [int(q) for q in args.live1_qfs.split(",")])
    res.data = report
    res.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
