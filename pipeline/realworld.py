"""The photos users actually have, made from a test set's references, and how the restore path
does on them.

Each case turns a reference image (RGB uint8) and a quality into the file a user would bring
(JPEG or PNG bytes) and the reference it should be compared with (cropped or resized like the
file). ``make_files`` writes them (the test-set stage); ``evaluate_folder`` restores them with
``pipeline.photo.restore_photo``, exactly as ``restore`` and the app do, and scores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch import nn

from pipeline import images, jpeg, metrics
from pipeline.engines import Engine
from pipeline.photo import restore_photo

CROP = (3, 5)  # rows, columns cut from the top-left after decoding: the grid moves to (5, 3)
SHIFT = 4  # double JPEG: pixels cut before the second compression
RESAVE_QF = 95  # an edited photo saved again at high quality
RESIZE = 0.75
IDENTICAL_PSNR = 100.0  # PSNR reported for identical images (instead of infinity)


def _jpeg(rgb: np.ndarray, qf: int, subsampling: str = "4:2:0") -> bytes:
    return images.encode_jpeg(np.ascontiguousarray(rgb), qf, subsampling=subsampling)


def _decoded(rgb: np.ndarray, qf: int) -> np.ndarray:
    return images.decode_jpeg(_jpeg(rgb, qf))


def _resize(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(8, round(w * RESIZE)), max(8, round(h * RESIZE)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _cropped(rgb: np.ndarray, n: tuple[int, int] = CROP) -> np.ndarray:
    return np.ascontiguousarray(rgb[n[0] :, n[1] :])


@dataclass(frozen=True)
class Case:
    """make(gt, qf) -> file bytes; reference(gt) -> what the restored file is compared with;
    per_qf: False for the cases made once (their ``fixed_qf``, or never compressed)."""

    title: str
    ext: str
    make: Callable[[np.ndarray, int], bytes]
    reference: Callable[[np.ndarray], np.ndarray] = lambda gt: gt
    per_qf: bool = True
    fixed_qf: int | None = None


CASES: dict[str, Case] = {
    "aligned": Case("JPEG as saved", ".jpg", lambda gt, q: _jpeg(gt, q)),
    "resaved_png": Case("JPEG re-saved as PNG", ".png", lambda gt, q: images.encode_png(_decoded(gt, q))),
    "cropped_png": Case(f"cropped by {CROP} after decoding, PNG", ".png",
                        lambda gt, q: images.encode_png(_cropped(_decoded(gt, q))), _cropped),
    "cropped_resaved": Case(f"cropped, then re-saved as JPEG {RESAVE_QF}", ".jpg",
                            lambda gt, q: _jpeg(_cropped(_decoded(gt, q)), RESAVE_QF), _cropped),
    "double_shifted": Case(f"JPEG, shifted {SHIFT} px, JPEG again at QF + 20", ".jpg",
                           lambda gt, q: _jpeg(_cropped(_decoded(gt, q), (SHIFT, SHIFT)), min(95, q + 20)),
                           lambda gt: _cropped(gt, (SHIFT, SHIFT))),
    "resized": Case(f"resized by {RESIZE} after decoding, PNG", ".png",
                    lambda gt, q: images.encode_png(_resize(_decoded(gt, q))), _resize),
    "never_compressed": Case("never compressed (PNG)", ".png", lambda gt, q: images.encode_png(gt), per_qf=False),
    "q90_444": Case("JPEG 90, 4:4:4 chroma", ".jpg", lambda gt, q: _jpeg(gt, 90, "4:4:4"), per_qf=False, fixed_qf=90),
}  # fmt: skip


def case_folders(root: Path, qfs: Sequence[int]) -> list[tuple[str, int | None, Path]]:
    """(case, qf, folder) for every case and quality: ``root/<case>/qf_<q>`` or ``root/<case>``."""
    out = []
    for name, case in CASES.items():
        if case.per_qf:
            out += [(name, q, root / name / f"qf_{q}") for q in qfs]
        else:
            out.append((name, case.fixed_qf, root / name))
    return out


def make_file(name: str, gt: np.ndarray, qf: int | None) -> bytes:
    return CASES[name].make(gt, qf if qf is not None else 100)


def has_jpeg_history(gt: np.ndarray) -> bool:
    """A reference that itself carries a quantization lattice (BSDS500's are JPEG 95s) cannot
    stand for a never-compressed photo."""
    return jpeg.find_grid(gt).lattice_qf is not None


def psnr_or_cap(gt: np.ndarray, img: np.ndarray) -> float:
    return IDENTICAL_PSNR if np.array_equal(gt, img) else min(IDENTICAL_PSNR, metrics.psnr(gt, img))


def evaluate_folder(model: nn.Module, case: str, qf: int | None, folder: Path, refs: Path, tile: int = 0,
                    overlap: int = 64, projection: str = "auto", engine: Engine | None = None) -> list[dict]:  # fmt: skip
    """Restore every file of one case folder as ``restore`` would (header read) and score it
    against its reference (``refs/<stem>.*``, cropped or resized like the file)."""
    ref_by_stem = {p.stem: p for p in images.list_images(refs)}
    rows = []
    for path in images.list_images(folder):
        gt = CASES[case].reference(images.read_image(ref_by_stem[path.stem]))
        dec = images.read_decoded(path)
        t = time.perf_counter()
        pred, d = restore_photo(
            model, dec.rgb, dec.header, tile=tile, overlap=overlap, projection=projection, engine=engine
        )
        out = (np.clip(pred, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        rows.append({
            "case": case, "qf": qf, "image": path.stem, "psnr_in": psnr_or_cap(gt, dec.rgb),
            "psnr_out": psnr_or_cap(gt, out), "qf_true": qf if case != "never_compressed" else None,
            "qf_used": d.qf, "source": d.source, "offset": f"{d.offset[0]},{d.offset[1]}",
            "unchanged": bool(np.array_equal(out, dec.rgb)), "seconds": time.perf_counter() - t, "message": d.message,
        })  # fmt: skip
        rows[-1]["gain"] = rows[-1]["psnr_out"] - rows[-1]["psnr_in"]
    return rows


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Means per (case, qf): PSNR in/out, gain, the QF chosen against the truth, unchanged share."""
    out = []
    for key in dict.fromkeys((r["case"], r["qf"]) for r in rows):
        sel = [r for r in rows if (r["case"], r["qf"]) == key]
        used = [r["qf_used"] for r in sel if r["qf_used"] is not None]
        errors = [abs(r["qf_used"] - r["qf_true"]) for r in sel if r["qf_used"] is not None and r["qf_true"]]
        out.append({
            "case": key[0], "title": CASES[key[0]].title, "qf": key[1], "n": len(sel),
            "psnr_in": float(np.mean([r["psnr_in"] for r in sel])), "psnr_out": float(np.mean([r["psnr_out"] for r in sel])),
            "gain": float(np.mean([r["gain"] for r in sel])),
            "qf_used_mean": float(np.mean(used)) if used else None, "qf_abs_error": float(np.mean(errors)) if errors else None,
            "unchanged": float(np.mean([r["unchanged"] for r in sel])),
            "sources": {s: sum(r["source"] == s for r in sel) for s in dict.fromkeys(r["source"] for r in sel)},
        })  # fmt: skip
    return out
