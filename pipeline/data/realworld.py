"""The photos users actually have, made from a test set's references (making them is data;
scoring them is ``pipeline/evaluation/scoring.py``'s ``evaluate_case``).

Each case turns a reference image (RGB uint8) and a quality into the file a user would bring
(JPEG or PNG bytes) and the reference it should be compared with (cropped or resized like the
file). ``make_file`` makes one (the test-set stage writes them). The cases edited after
compression (resized, recompressed on a shifted grid) have no exact QF to restore at: the
evaluate stage also searches the QF at which restoring them gains most (``Case.search``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core import images, jpeg
from pipeline.core.tables import MOZJPEG, scale_table

CROP = (3, 5)  # rows, columns cut from the top-left after decoding: the grid moves to (5, 3)
SHIFT = 4  # double JPEG: pixels cut before the second compression
RESAVE_QF = 95  # an edited photo saved again at high quality
RESIZE = 0.75  # the ``resized`` case's scale; the others' are in their names
DOWN, UP = 0.5, 1.5  # never-compressed photos scaled down (INTER_AREA) and up (INTER_CUBIC)


def _jpeg(rgb: np.ndarray, qf: int, subsampling: str = "4:2:0") -> bytes:
    return images.encode_jpeg(np.ascontiguousarray(rgb), qf, subsampling=subsampling)


def _decoded(rgb: np.ndarray, qf: int) -> np.ndarray:
    return images.decode_jpeg(_jpeg(rgb, qf))


def _resize(rgb: np.ndarray, scale: float = RESIZE, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=interpolation)


def _cropped(rgb: np.ndarray, n: tuple[int, int] = CROP) -> np.ndarray:
    return np.ascontiguousarray(rgb[n[0] :, n[1] :])


@dataclass(frozen=True)
class Case:
    """make(gt, qf) -> file bytes; reference(gt) -> what the restored file is compared with;
    per_qf: False for the cases made once (their ``fixed_qf``, or never compressed); search: no
    exact QF to restore at, so the evaluate stage also finds the best hand-picked one;
    clean_truth: scored only against references without a JPEG history of their own (a
    never-compressed photo, or a high-quality JPEG whose restoration would remove the
    reference's own artifacts too: BSDS500's references are JPEG 95s)."""

    title: str
    ext: str
    make: Callable[[np.ndarray, int], bytes]
    reference: Callable[[np.ndarray], np.ndarray] = lambda gt: gt
    per_qf: bool = True
    fixed_qf: int | None = None
    search: bool = False
    clean_truth: bool = False

    @property
    def never_compressed(self) -> bool:
        """Made from the reference alone: one with a JPEG history of its own is left out."""
        return not self.per_qf and self.fixed_qf is None


def _resized_png(scale: float) -> Case:
    return Case(
        f"resized by {scale} after decoding, PNG",
        ".png",
        lambda gt, q: images.encode_png(_resize(_decoded(gt, q), scale)),
        lambda gt: _resize(gt, scale),
        search=True,
    )


def _resized_jpeg(scale: float) -> Case:
    return Case(
        f"resized by {scale} after decoding, JPEG {RESAVE_QF}",
        ".jpg",
        lambda gt, q: _jpeg(_resize(_decoded(gt, q), scale), RESAVE_QF),
        lambda gt: _resize(gt, scale),
        search=True,
    )


def _double_shifted(title: str, second: Callable[[int], int]) -> Case:
    """JPEG at q, ``SHIFT`` px cut, JPEG again at ``second(q)``; scored against the cut reference."""
    return Case(
        title,
        ".jpg",
        lambda gt, q: _jpeg(_cropped(_decoded(gt, q), (SHIFT, SHIFT)), second(q)),
        lambda gt: _cropped(gt, (SHIFT, SHIFT)),
        search=True,
    )


def _never_compressed(title: str, scale: float, interpolation: int) -> Case:
    return Case(
        title,
        ".png",
        lambda gt, q: images.encode_png(_resize(gt, scale, interpolation)),
        lambda gt: _resize(gt, scale, interpolation),
        per_qf=False,
        clean_truth=True,
    )


# Other encoders' tables at about QF q (natural order): a camera's (IJG's, each step scaled by a
# fixed 0.7-1.3), mozjpeg's default (scaled like IJG's), luma and chroma at different qualities,
# and flat tables (every step the IJG luma DC step at q).
_CAMERA = np.random.default_rng(0).uniform(0.7, 1.3, 64)
TABLES: dict[str, tuple[str, Callable[[int], tuple[np.ndarray, np.ndarray]]]] = {
    "tables_camera": ("a camera's tables (IJG's, each step scaled 0.7-1.3)",
                      lambda q: tuple(np.clip(np.rint(t * _CAMERA), 1, 255) for t in jpeg.ijg_tables(q))),
    "tables_mozjpeg": ("mozjpeg's default tables", lambda q: (scale_table(MOZJPEG, q), scale_table(MOZJPEG, q))),
    "tables_split": ("luma tables of QF q, chroma tables of QF q + 50",
                     lambda q: (jpeg.ijg_tables(q)[0], jpeg.ijg_tables(min(95, q + 50))[1])),
    "tables_flat": ("flat tables (every step the IJG luma DC step of QF q)",
                    lambda q: (np.full(64, jpeg.ijg_tables(q)[0].ravel()[0]),) * 2),
}  # fmt: skip


def _tables(key: str) -> Case:
    title, make = TABLES[key]
    return Case(f"JPEG with {title}", ".jpg", lambda gt, q: images.encode_jpeg_tables(gt, *make(q)), search=True)


def _high(qf: int, subsampling: str) -> Case:
    """A single JPEG at a quality where restoring has little to gain: never made worse."""
    return Case(
        f"JPEG {qf}, {subsampling} chroma",
        ".jpg",
        lambda gt, q: _jpeg(gt, qf, subsampling),
        per_qf=False,
        fixed_qf=qf,
        clean_truth=True,
    )


CASES: dict[str, Case] = {
    "aligned": Case("JPEG as saved", ".jpg", lambda gt, q: _jpeg(gt, q)),
    "resaved_png": Case("JPEG re-saved as PNG", ".png", lambda gt, q: images.encode_png(_decoded(gt, q))),
    "cropped_png": Case(
        f"cropped by {CROP} after decoding, PNG",
        ".png",
        lambda gt, q: images.encode_png(_cropped(_decoded(gt, q))),
        _cropped,
    ),
    "cropped_resaved": Case(
        f"cropped, then re-saved as JPEG {RESAVE_QF}",
        ".jpg",
        lambda gt, q: _jpeg(_cropped(_decoded(gt, q)), RESAVE_QF),
        _cropped,
    ),
    "double_shifted": _double_shifted(f"JPEG, shifted {SHIFT} px, JPEG again at QF + 20", lambda q: min(95, q + 20)),
    "double_shifted_90": _double_shifted(f"JPEG, shifted {SHIFT} px, JPEG again at 90", lambda q: 90),
    "resized": _resized_png(RESIZE),
    "resized_050": _resized_png(0.5),
    "resized_090": _resized_png(0.9),
    "resized_050_jpeg95": _resized_jpeg(0.5),
    "resized_075_jpeg95": _resized_jpeg(0.75),
    "resized_090_jpeg95": _resized_jpeg(0.9),
    **{key: _tables(key) for key in TABLES},
    "never_compressed": Case(
        "never compressed (PNG)", ".png", lambda gt, q: images.encode_png(gt), per_qf=False, clean_truth=True
    ),
    "never_compressed_down": _never_compressed(f"never compressed, downscaled by {DOWN} (PNG)", DOWN, cv2.INTER_AREA),
    "never_compressed_up": _never_compressed(f"never compressed, upscaled by {UP} (PNG)", UP, cv2.INTER_CUBIC),
    "q90_444": Case("JPEG 90, 4:4:4 chroma", ".jpg", lambda gt, q: _jpeg(gt, 90, "4:4:4"), per_qf=False, fixed_qf=90),
    "q95_420": _high(95, "4:2:0"),
    "q95_444": _high(95, "4:4:4"),
    "q98_420": _high(98, "4:2:0"),
    "q98_444": _high(98, "4:4:4"),
}


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
