"""The histories people's photos have, made from training photos: training samples for the detector.

A history is one JPEG (or none), then edits (crop, resize, tone, sharpening), then the file it
ends in (PNG, or a second JPEG). ``apply`` makes the photo (RGB uint8) and, for the gains, the
reference that went through the same edits without the compression; ``labels`` gives what the
detector learns: was it compressed, the QF to restore it at, and whether a header hides an
earlier, stronger compression.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from pipeline.core import images, jpeg
from pipeline.core.tables import KINDS, make_tables, noise_qf

INTERP = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
          "lanczos": cv2.INTER_LANCZOS4}  # fmt: skip


@dataclass(frozen=True)
class History:
    """qf: the first JPEG's quality (None: never compressed), with tables of an encoder kind
    (``tables``: tables.KINDS; ``luma``/``chroma``: the steps, natural order) and ``subsampling``;
    then ``crop`` (rows, columns cut from the top-left), ``scale`` with filter ``interp``, tone edits (gamma, contrast,
    saturation: 1 = none), unsharp masking ``sharpen`` (0 = none); qf2: saved again as an IJG JPEG
    at that quality (None: as PNG) with ``subsampling2``."""

    qf: int | None
    tables: str = "ijg"
    luma: tuple[int, ...] = ()
    chroma: tuple[int, ...] = ()
    subsampling: str = "4:2:0"
    crop: tuple[int, int] = (0, 0)
    scale: float = 1.0
    interp: str = "area"
    gamma: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    sharpen: float = 0.0
    qf2: int | None = None
    subsampling2: str = "4:2:0"


def resize(rgb: np.ndarray, scale: float, interp: str) -> np.ndarray:
    """``rgb`` resized by ``scale`` with filter ``interp`` (INTERP), at least 8 px a side."""
    h, w = rgb.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=INTERP[interp]) if size != (w, h) else rgb


def _tone(rgb: np.ndarray, h: History) -> np.ndarray:
    """Gamma, contrast about mid-grey, saturation about the pixel's grey: float in, float out."""
    x = np.clip(rgb, 0.0, 255.0) / 255.0
    if h.gamma != 1.0:
        x = x**h.gamma
    if h.contrast != 1.0:
        x = 0.5 + (x - 0.5) * h.contrast
    if h.saturation != 1.0:
        grey = x @ np.array([0.299, 0.587, 0.114])
        x = grey[..., None] + (x - grey[..., None]) * h.saturation
    return x * 255.0


def edit(rgb: np.ndarray, h: History) -> np.ndarray:
    """The edits of ``h`` (crop, resize, tone, sharpening) on RGB uint8, rounded to uint8."""
    out = np.ascontiguousarray(rgb[h.crop[0] :, h.crop[1] :])
    if h.scale != 1.0:
        out = resize(out, h.scale, h.interp)
    if h.gamma == h.contrast == h.saturation == 1.0 and h.sharpen == 0.0:
        return out
    x = _tone(out.astype(np.float64), h)
    if h.sharpen > 0:
        x = x + h.sharpen * (x - cv2.GaussianBlur(x, (0, 0), 1.2))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def apply(h: History, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
    """(photo, reference, header): the photo ``gt`` (RGB uint8) becomes under history ``h``, the
    reference (``gt`` through the same edits, never compressed), and the file's JPEG header
    (``jpeg.Header``; None for a PNG)."""
    lq = gt
    if h.qf is not None:
        lq = images.decode_jpeg(images.encode_jpeg_tables(gt, np.array(h.luma), np.array(h.chroma), h.subsampling))
    lq, ref = edit(lq, h), edit(gt, h)
    header = None
    if h.qf2 is not None:
        data = images.encode_jpeg(lq, h.qf2, subsampling=h.subsampling2)
        lq, header = images.decode_jpeg(data), jpeg.read_header(data)
    return lq, ref, header


def draw(rng: np.random.Generator, clean_share: float = 0.35, recompressed_share: float = 0.12) -> History:
    """A random history: never compressed (``clean_share``), else a first JPEG of QF 5-95; then
    each edit with its own probability, and a second JPEG for a third of them. ``recompressed_share``
    of the compressed ones are a JPEG cut off its grid and compressed again, nothing else (a
    second grid under the header's: the hardest history to see)."""
    u = rng.random
    qf = None if u() < clean_share else int(rng.integers(5, 96))
    h = History(qf, subsampling="4:4:4" if u() < 0.25 else "4:2:0")
    if qf is not None:
        h = first_jpeg(h, "ijg" if u() < 0.6 else str(rng.choice(KINDS[1:])), rng)
        if u() < recompressed_share:
            crop = (0, 0)
            while crop[0] % 8 == 0 and crop[1] % 8 == 0:
                crop = (int(rng.integers(0, 8)), int(rng.integers(0, 8)))
            return replace(h, crop=crop, qf2=int(rng.integers(min(qf + 5, 95), 99)))
    if u() < 0.5:
        h = replace(h, crop=(int(rng.integers(0, 8)), int(rng.integers(0, 8))))
    if u() < 0.6:
        scale = float(rng.uniform(0.4, 1.0) if u() < 0.65 else rng.uniform(1.0, 1.6))
        h = replace(h, scale=round(scale, 3), interp=str(rng.choice(list(INTERP))))
    if u() < 0.3:
        h = replace(h, gamma=float(rng.uniform(0.6, 1.6)), contrast=float(rng.uniform(0.8, 1.25)),
                    saturation=float(rng.uniform(0.7, 1.4)))  # fmt: skip
    if u() < 0.1:
        h = replace(h, sharpen=float(rng.uniform(0.3, 1.2)))
    if u() < 0.35:  # saved again: mostly at high quality (a re-save), else anywhere from 30 (50 for a clean photo)
        qf2 = int(rng.integers(85, 99)) if u() < 0.6 else int(rng.integers(50 if qf is None else 30, 85))
        h = replace(h, qf2=qf2, subsampling2="4:4:4" if u() < 0.3 else "4:2:0")
    return h


def first_jpeg(h: History, kind: str, rng: np.random.Generator) -> History:
    """``h`` with its first JPEG's tables drawn for encoder ``kind`` at quality ``h.qf`` (split:
    chroma at a quality drawn above or below)."""
    chroma_qf = int(rng.integers(5, 96)) if kind == "split" else None
    lt, ct = make_tables(kind, h.qf, rng, chroma_qf)
    return replace(h, tables=kind, luma=tuple(int(v) for v in lt), chroma=tuple(int(v) for v in ct))


def first_qf(h: History) -> float | None:
    """The first compression's IJG-equivalent quality (``tables.noise_qf`` of its tables)."""
    if h.qf is None:
        return None
    return float(h.qf) if h.tables == "ijg" else noise_qf(np.array(h.luma), np.array(h.chroma))


def cut(src: np.ndarray, h: History, rng: np.random.Generator, sides: tuple[int, int] = (256, 640)) -> np.ndarray:
    """A region of training photo ``src`` (RGB uint8) sized so that after ``h``'s crop and resize
    the photo is about ``sides`` pixels a side (height and width drawn apart; less where ``src``
    is smaller). Large photos (DIV2K) are first shrunk by a random factor, half of the time, so
    their content comes at several scales (an area shrink of a clean photo keeps it clean)."""
    if max(src.shape[:2]) > 1200 and rng.random() < 0.5:
        src = resize(src, float(rng.uniform(0.35, 0.8)), "area")
    out = [int(rng.integers(sides[0], sides[1] + 1)) for _ in range(2)]
    need = [min(s, round(o / h.scale) + c + 1) for s, o, c in zip(src.shape[:2], out, h.crop)]
    y, x = (int(rng.integers(0, s - n + 1)) for s, n in zip(src.shape[:2], need))
    return np.ascontiguousarray(src[y : y + need[0], x : x + need[1]])


def ijg_scale(qf: float) -> float:
    """IJG's table scale in percent at quality ``qf`` (continuous): 5000/qf below 50, 200 - 2 qf above."""
    qf = min(max(qf, 1.0), 100.0)
    return 5000.0 / qf if qf < 50 else 200.0 - 2.0 * qf


def qf_of_scale(scale: float) -> float:
    """Inverse of ``ijg_scale``, clipped to 1..100."""
    return float(np.clip(5000.0 / scale if scale >= 100 else (200.0 - scale) / 2.0, 1.0, 100.0))


def _noise_scale(h: History) -> float:
    """The first JPEG's quantization noise after the edits, as an IJG table scale: a resize by
    f scales it by f when it averages (area filter, any upscale) and leaves it when it only
    samples (bilinear/bicubic/Lanczos shrinking); contrast and sharpening amplify it."""
    s = ijg_scale(first_qf(h))
    if h.scale > 1.0 or h.interp == "area":
        s *= h.scale
    return s * h.contrast * (1.0 + 0.6 * h.sharpen)


def qf_eff(h: History) -> float | None:
    """The QF to restore a photo of history ``h`` at: a fitted rule (the best QF of the shipped model
    on training photos per kind of history, within its flat optimum). A second
    JPEG's noise adds to the first's (root of the summed squares of the table scales)."""
    if h.qf is None and h.qf2 is None:
        return None
    s = 0.0 if h.qf is None else _noise_scale(h)
    if h.qf2 is not None:
        s = float(np.hypot(s, ijg_scale(h.qf2)))
    return qf_of_scale(s)


EARLIER_MARGIN = 10.0  # an earlier compression counts when restoring at its QF beats the header's by this much


def labels(h: History) -> dict[str, float]:
    """What the detector learns for a photo of history ``h``: jpeg (1: JPEG-compressed), qf (the
    restoring QF; 100 for a clean photo), earlier (1: a JPEG file whose header hides an earlier,
    stronger compression), log2_scale (the resize), and jpeg_weight: how much the sample counts
    in the jpeg loss (a compression that leaves nothing to restore, QF 85 and up, counts less)."""
    q = qf_eff(h)
    first = None if h.qf is None else qf_of_scale(_noise_scale(h))
    earlier = h.qf2 is not None and first is not None and first <= h.qf2 - EARLIER_MARGIN
    weight = 1.0 if q is None else float(np.clip((100.0 - q) / 30.0, 0.1, 1.0))
    return {"jpeg": float(q is not None), "qf": 100.0 if q is None else q, "earlier": float(earlier),
            "log2_scale": float(np.log2(h.scale)), "jpeg_weight": weight}  # fmt: skip
