"""Quantization tables of JPEG encoders, and the IJG quality a table set restores like.

Tables are 64 steps in natural (row-major) order, as Pillow's ``qtables`` and
``jpeg.read_header`` use them. The restoration network was trained on IJG tables only; a photo
saved with other tables (cameras, mozjpeg, flat tables, luma and chroma at different qualities)
is restored at the IJG quality whose quantization noise matches (``noise_qf``): the nearest
table by entries (``jpeg.qf_from_tables``) follows the wrong plane when luma and chroma differ.
"""

from __future__ import annotations

import numpy as np

from pipeline.core import jpeg

# mozjpeg's default tables (jcparam.c, index 3: N. Robidoux's for ImageMagick), luma and chroma alike.
MOZJPEG = np.array(
    [16, 16, 16, 18, 25, 37, 56, 85, 16, 17, 20, 27, 34, 40, 53, 75,
     16, 20, 24, 31, 43, 62, 91, 135, 18, 27, 31, 40, 53, 74, 106, 156,
     25, 34, 43, 53, 69, 94, 131, 189, 37, 40, 62, 74, 94, 124, 169, 238,
     56, 53, 91, 106, 131, 169, 226, 311, 85, 75, 135, 156, 189, 238, 311, 418],
    dtype=np.int64,
)  # fmt: skip
# RMS of 8x8 DCT coefficients of training photos (BSD200 every 4th, train-extra; chroma at 4:2:0):
# measured while the detector was developed. DC is always there: a large value, so its noise counts in full.
SIGMA_LUMA = np.array(
    [200, 81, 45, 30, 22, 16, 13, 10, 84, 44, 30, 22, 17, 13, 10, 8, 48, 31, 23, 18, 14, 11, 9, 7,
     33, 23, 19, 15, 12, 10, 8, 7, 24, 18, 15, 13, 10, 9, 7, 6, 18, 14, 12, 10, 9, 7, 7, 6,
     14, 11, 10, 8, 7, 6, 6, 5, 11, 9, 8, 7, 6, 5, 5, 4], dtype=np.float64)  # fmt: skip
SIGMA_CHROMA = np.array(
    [200, 24, 13, 8, 5, 4, 3, 3, 27, 13, 8, 6, 4, 3, 2, 2, 14, 9, 6, 4, 3, 3, 2, 2, 8, 6, 5, 3, 3, 2, 2, 1,
     6, 4, 3, 3, 2, 2, 2, 1, 4, 3, 3, 2, 2, 2, 1, 1, 3, 2, 2, 2, 2, 1, 1, 1, 3, 2, 2, 2, 1, 1, 1, 1],
    dtype=np.float64)  # fmt: skip
# How the noise of a table set is weighed (fitted on 13 table probes on training photos, each
# restored at every QF to find its best: mean share of the best QF's gain 0.991, lowest 0.975; the nearest IJG
# table by entries keeps 0.41-0.72 of it on flat and split tables): each frequency's share of
# energy lost to its step, weighted by its RMS cubed (the restoring QF follows the strong low
# frequencies), chroma counted like luma.
SIGMA_POWER = 3.0
CHROMA_WEIGHT = 1.0
KINDS = ("ijg", "scaled", "flat", "mozjpeg", "split")


def scale_table(base: np.ndarray, qf: int) -> np.ndarray:
    """IJG's quality scaling of any base table (what libjpeg does with ``-quality``), baseline-clipped."""
    scale = 5000 // qf if qf < 50 else 200 - 2 * qf
    return np.clip((np.asarray(base, np.int64) * scale + 50) // 100, 1, 255)


def make_tables(kind: str, qf: int, rng: np.random.Generator, chroma_qf: int | None = None) -> tuple[np.ndarray, ...]:
    """(luma, chroma) tables of an encoder ``kind`` at about quality ``qf``:
    ijg: libjpeg's; scaled: IJG's with each entry scaled by 0.7-1.3 (cameras, editors);
    flat: every step the same (``qf`` is ignored: a step of 2-40 drawn); mozjpeg: its default;
    split: IJG luma at ``qf``, IJG chroma at ``chroma_qf``."""
    if kind == "ijg":
        return jpeg.ijg_tables(qf)
    if kind == "scaled":
        return tuple(
            np.clip(np.rint(t * rng.uniform(0.7, 1.3, 64)), 1, 255).astype(np.int64) for t in jpeg.ijg_tables(qf)
        )
    if kind == "flat":
        step = int(rng.integers(2, 41))
        return np.full(64, step, np.int64), np.full(64, step, np.int64)
    if kind == "mozjpeg":
        t = scale_table(MOZJPEG, qf)
        return t, t.copy()
    if kind == "split":
        return jpeg.ijg_tables(qf)[0], jpeg.ijg_tables(chroma_qf if chroma_qf is not None else qf)[1]
    raise ValueError(f"table kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _noise(table: np.ndarray, sigma: np.ndarray) -> float:
    """How much a table's quantization takes from coefficients of RMS ``sigma``: per frequency
    the share of its energy lost (about q^2/12 over its variance while the step is small, all of
    it once the step empties it), weighted by ``sigma ** SIGMA_POWER``."""
    q2 = np.asarray(table, np.float64).ravel() ** 2 / 12.0
    s2 = sigma**2
    return float((sigma**SIGMA_POWER * q2 / (q2 + s2)).sum())


_IJG_NOISE = np.array(
    [
        _noise(lt, SIGMA_LUMA) + CHROMA_WEIGHT * _noise(ct, SIGMA_CHROMA)
        for lt, ct in map(jpeg.ijg_tables, range(1, 101))
    ]
)  # decreasing with the quality


def noise_qf(luma: np.ndarray, chroma: np.ndarray | None = None) -> float:
    """The IJG quality (1..100, interpolated) whose tables leave the same quantization noise as
    ``luma`` (and ``chroma``; None: a grayscale JPEG, luma against luma)."""
    if chroma is None:
        ijg = np.array([_noise(jpeg.ijg_tables(q)[0], SIGMA_LUMA) for q in range(1, 101)])
        target = _noise(luma, SIGMA_LUMA)
    else:
        ijg, target = _IJG_NOISE, _noise(luma, SIGMA_LUMA) + CHROMA_WEIGHT * _noise(chroma, SIGMA_CHROMA)
    # np.interp needs increasing x: the noise falls as the quality rises.
    return float(np.clip(np.interp(target, ijg[::-1], np.arange(100, 0, -1)), 1, 100))
