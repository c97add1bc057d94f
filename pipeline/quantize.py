"""Make the int8 graph of a model for OpenVINO: post-training quantization with NNCF, calibrated
on training photos, measured on held-out training photos.

    python -m pipeline.quantize (--ckpt FILE | --model-uri URI) --photos DIR [DIR...]
        [--patches 300] [--seed 0]

Calibration: ``--patches`` random 128x128 crops of the photos (every 5th photo held out), each a
JPEG at a quality drawn from 5..95. The held-out photos (a 256x256 centre crop each, at most 40)
are restored at QF 10, 20, ..., 90 by the f32 and the int8 graph: the PSNR the int8 graph loses
at each QF is its report. The graph (OpenVINO IR, ``model.<hash>.int8.xml/.bin``) and its report
(``.int8.json``) go beside the checkpoint's ONNX graph, where the engines look, and registered
versions carry them. ``--precision int8`` runs it; ``auto`` takes it only where the report shows
at most 0.02 dB at every QF and the CPU has int8 dot products (``engines.pick_precision``).
Test images are never used: they are for the benchmark (``benchmarks/bench_restore.py --live1``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.core import files, images
from pipeline.evaluation import metrics
from pipeline.restoration import engines

QFS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
CALIB_SIZE, HELD_OUT_SIZE, HELD_OUT_MAX = 128, 256, 40


def calibration(photos: list[Path], n: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """``n`` graph inputs: random crops (on the 8x8 grid) of the photos, JPEG at QF 5..95."""
    out: list[dict[str, np.ndarray]] = []
    usable = [p for p in photos if min(images.read_image(p).shape[:2]) >= CALIB_SIZE]
    if not usable:
        raise ValueError(f"no photo of at least {CALIB_SIZE}x{CALIB_SIZE} px among {len(photos)} for calibration")
    while len(out) < n:
        img = images.read_image(usable[int(rng.integers(len(usable)))])
        y = int(rng.integers(0, img.shape[0] - CALIB_SIZE + 1)) // 8 * 8
        x = int(rng.integers(0, img.shape[1] - CALIB_SIZE + 1)) // 8 * 8
        q = int(rng.integers(5, 96))
        lq = images.jpeg_roundtrip(np.ascontiguousarray(img[y : y + CALIB_SIZE, x : x + CALIB_SIZE]), q)
        out.append({"image": lq[None], "qf": np.array([q], np.float32)})
    return out


def held_out(photos: list[Path]) -> list[np.ndarray]:
    """A centre crop (at most 256x256, on the 8x8 grid) of each held-out photo."""
    crops = []
    for p in photos[:HELD_OUT_MAX]:
        img = images.read_image(p)
        h, w = min(HELD_OUT_SIZE, img.shape[0] // 8 * 8), min(HELD_OUT_SIZE, img.shape[1] // 8 * 8)
        if h >= 64 and w >= 64:
            y, x = (img.shape[0] - h) // 16 * 8, (img.shape[1] - w) // 16 * 8
            crops.append(np.ascontiguousarray(img[y : y + h, x : x + w]))
    return crops


def psnr_by_qf(compiled, crops: list[np.ndarray]) -> dict[int, float]:
    """Mean PSNR of the crops restored by a compiled graph at each QF (the network alone)."""

    def run(img: np.ndarray, qf: int) -> np.ndarray:
        out = compiled({"image": img[None], "qf": np.array([qf], np.float32)})[compiled.output(0)][0]
        return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)

    return {q: float(np.mean([metrics.psnr(gt, run(images.jpeg_roundtrip(gt, q), q)) for gt in crops])) for q in QFS}


def quantize(ckpt: Path, photos: list[Path], patches: int = 300, seed: int = 0) -> dict:
    """Write the int8 graph of ``ckpt`` and its report beside its ONNX graph; returns the report."""
    import nncf
    import openvino as ov

    from pipeline.models.checkpoint import load_checkpoint

    graph, _ = engines.graphs(ckpt, lambda: load_checkpoint(ckpt)[0])
    photos = sorted(photos)
    held, calib = photos[::5], [p for i, p in enumerate(photos) if i % 5]
    if not calib or not held:
        raise ValueError(f"need at least 2 photos (calibration and held out), got {len(photos)}")
    t = time.perf_counter()
    data = calibration(calib, patches, np.random.default_rng(seed))
    core = ov.Core()
    # MIXED: symmetric weights, asymmetric activations (the network's are not centred on zero).
    model = nncf.quantize(
        core.read_model(str(graph)), nncf.Dataset(data), subset_size=len(data), preset=nncf.QuantizationPreset.MIXED
    )
    seconds = time.perf_counter() - t
    crops = held_out(held)
    f32 = psnr_by_qf(core.compile_model(str(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), crops)
    int8 = psnr_by_qf(core.compile_model(model, "CPU"), crops)
    drop = {q: int8[q] - f32[q] for q in QFS}
    report = {
        "worst_drop_db": -min(drop.values()),
        "drop_db": {str(q): round(d, 4) for q, d in drop.items()},
        "held_out_crops": len(crops),
        "calibration_patches": len(data),
        "calibration_photos": len(calib),
        "quantize_seconds": round(seconds, 1),
        "nncf": nncf.__version__,
        "preset": "mixed",
        "checkpoint_sha256": files.sha256_file(ckpt),
    }
    xml = engines.int8_path(graph)
    tmp = xml.with_name(f".{xml.stem}.tmp.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)
    files.write_bytes(xml.with_suffix(".json"), json.dumps(report, indent=1).encode())
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.quantize",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", type=Path, help="a checkpoint file (model.pt)")
    src.add_argument("--model-uri", help="models:/<name>@<alias> or models:/<name>/<version>")
    ap.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of training photos")
    ap.add_argument("--patches", type=int, default=300, help="calibration patches")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not engines.installed("openvino") or not engines.installed("nncf"):
        print("error: int8 graphs need OpenVINO and NNCF (pip install openvino nncf)", file=sys.stderr)
        return 2
    try:
        if args.ckpt:
            ckpt = args.ckpt
        else:
            from pipeline.mlops import registry

            ckpt = registry.checkpoint_from_uri(args.model_uri)
        photos = [
            p for folder in args.photos for p in sorted(folder.rglob("*")) if p.suffix.lower() in images.IMAGE_SUFFIXES
        ]
        report = quantize(ckpt, photos, args.patches, args.seed)
    except (LookupError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"int8 graph of {ckpt}: {report['calibration_patches']} calibration patches, "
        f"{report['held_out_crops']} held-out crops, quantized in {report['quantize_seconds']} s"
    )
    print(
        "PSNR it costs on held-out training photos, by QF: "
        + ", ".join(f"{q} {d:+.3f}" for q, d in report["drop_db"].items())
    )
    verdict = (
        "free: auto takes it" if report["worst_drop_db"] <= engines.INT8_FREE_DB else "not free: auto keeps bf16/f32"
    )
    print(f"worst {report['worst_drop_db']:.3f} dB ({verdict}; --precision int8 runs it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
