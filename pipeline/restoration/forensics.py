"""Hand-made JPEG-history features of a photo: periodic blocking at any scale, block-DCT
statistics, spectra. All scale-free (ratios, logs), so exposure and contrast edits move them little.

What a JPEG leaves that survives edits: 8x8 blocking, which a resize by f turns into blocking
with a period of 8f pixels (a peak at frequency 1/(8f) in the mean step profile, whatever f);
block-DCT coefficients emptied or pulled onto quantization steps; missing high frequencies.
What clean photos show that must not be taken for it: an interpolation's own periodicity (an
upscale by 1.25 repeats every 5 pixels), periodic textures (on one axis, seldom on both at the
same period), soft photos.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import jpeg

CROP = 256  # side of each crop the block statistics are read on (a multiple of 8)
MAX_CROPS = 4
PROFILE = 768  # side of the centre region whose step profiles the periodicity is read on
# Block periods searched: a resize by 0.4 to 1.7 after compression.
PERIODS = 8.0 * np.geomspace(0.4, 1.7, 160)
STEP_CLIP = 24.0  # |luma step| counted at most this much: strong content edges do not drown the grid
DCT_BANDS = 15  # u + v = 0..14
PERIOD_INDEX = 25  # in ``periodicity``: log2 of the resize factor the luma blocking implies


def crop_origins(h: int, w: int, n: int = MAX_CROPS) -> list[tuple[int, int]]:
    """Up to ``n`` crop origins spread over an (h, w) photo: the centre, then the centres of the
    quadrants (which overlap the centre on photos under two crops a side)."""
    if h < CROP or w < CROP:
        return [(0, 0)]
    # On multiples of 8: a crop's phase 0 is the file's own 8x8 grid.
    quads = [((h // 2 - CROP) // 2 + dy, (w // 2 - CROP) // 2 + dx) for dy in (0, h // 2) for dx in (0, w // 2)]
    out = [((h - CROP) // 2, (w - CROP) // 2)] + [
        (min(max(y, 0), h - CROP), min(max(x, 0), w - CROP)) for y, x in quads
    ]
    return list(dict.fromkeys((y // 8 * 8, x // 8 * 8) for y, x in out))[:n]


def centre(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return a[y : y + side, x : x + side]


def _profile(plane: np.ndarray, axis: int, order: int, clip: float) -> np.ndarray:
    """Mean clipped |difference| of ``order`` along ``axis`` per position, over its mean, minus 1
    (zeros for a flat plane: a grey photo's chroma)."""
    d = np.minimum(np.abs(np.diff(plane, n=order, axis=axis)), clip).mean(axis=1 - axis)
    m = d.mean()
    return d / m - 1.0 if m > 1e-6 else np.zeros_like(d)


def _waves(periods: np.ndarray, n: int) -> np.ndarray:
    """cos and sin of 2 pi x / period for x < n: (2 len(periods), n)."""
    t = 2 * np.pi * np.outer(1.0 / periods, np.arange(n))
    return np.concatenate([np.cos(t), np.sin(t)])


_WAVES = {k: _waves(k * PERIODS, PROFILE) for k in (1, 2)}  # every profile is at most PROFILE - 1 long


def amplitudes(prof: np.ndarray, periods: np.ndarray | int = 1) -> np.ndarray:
    """Relative amplitude of the profile's component at each period (a windowed DFT at
    1/period); ``periods`` 1 or 2: PERIODS or twice them (4:2:0 chroma's 16-px blocks)."""
    w = np.hanning(len(prof))
    waves = _WAVES[periods][:, : len(prof)] if isinstance(periods, int) else _waves(periods, len(prof))
    re_im = waves @ (prof * w)
    half = len(re_im) // 2
    return np.hypot(re_im[:half], re_im[half:]) / max(w.sum(), 1e-9)


def prominence(plane: np.ndarray, order: int, clip: float, periods: int = 1) -> np.ndarray:
    """(2, len(PERIODS)): per axis (x, y), the profile's amplitude at each period over its median
    there (the floor of non-periodic content)."""
    out = []
    for axis in (1, 0):
        a = amplitudes(_profile(plane, axis, order, clip), periods)
        out.append(a / max(float(np.median(a)), 1e-9))
    return np.stack(out)


def _read(prom: np.ndarray, k: int) -> list[float]:
    """Joint (the weaker axis), x and y prominence at period index ``k``."""
    return [prom[:, k].min(), prom[0, k], prom[1, k]]


def periodicity(ycc: np.ndarray) -> np.ndarray:
    """(28,): block periods in the step profiles of a photo's centre (YCbCr float, ``jpeg.to_ycc``).

    A resize moves both axes alike: a period counts by its weaker axis (joint prominence). Read on
    the luma steps clipped at 3 (the small steps of blocking in flat regions) at their own
    strongest period P: joint, x, y there, at P/2 and 2P (blocking has its fundamental; a 3-px
    interpolation pattern is only a harmonic of 6), the runner-up elsewhere; on luma steps clipped
    at 24 (texture) and the chroma steps (4:2:0 blocks of 16 px, 4:4:4 of 8) at P, 2P and their own
    peaks; the curvature (second difference: an interpolation's mark) at P and its own peak; the
    resize factors those peaks imply (log2)."""
    y, chroma = ycc[..., 0], np.abs(ycc[..., 1] - 128.0) + np.abs(ycc[..., 2] - 128.0)
    fine = prominence(y, 1, 3.0)
    k = int(np.argmax(fine.min(axis=0)))
    p = PERIODS[k]
    around = np.array([[amplitudes(_profile(y, axis, 1, 3.0), np.array([p / 2, 2 * p]))
                        for axis in (1, 0)]])[0]  # fmt: skip
    floor = np.array([np.median(amplitudes(_profile(y, axis, 1, 3.0))) for axis in (1, 0)])
    around = around / np.maximum(floor[:, None], 1e-9)
    far = np.abs(np.log(PERIODS / p)) > 0.08
    joint = fine.min(axis=0)
    coarse = prominence(y, 1, 24.0)
    c16, c8 = prominence(chroma, 1, 4.0, 2), prominence(chroma, 1, 4.0, 1)
    curv = prominence(y, 2, 24.0)
    kc, kv = int(np.argmax(c16.min(axis=0))), int(np.argmax(curv.min(axis=0)))
    vals = (_read(fine, k) + [around[:, 0].min(), around[:, 1].min(), joint[far].max()]
            + _read(coarse, k) + [coarse.min(axis=0).max()]
            + _read(c16, k) + _read(c8, k) + _read(c16, kc)
            + _read(curv, k) + _read(curv, kv))  # fmt: skip
    factors = [np.log2(p / 8.0), np.log2(PERIODS[kc] / 8.0), np.log2(PERIODS[kv] / 8.0)]
    return np.concatenate([np.log(np.maximum(vals, 1e-6)), factors])


def _phase_means(y: np.ndarray, axis: int) -> np.ndarray:
    """Mean |luma step| across the boundaries of each 8-px phase along ``axis``: (8,)."""
    d = np.abs(np.diff(y, axis=axis)).mean(axis=1 - axis)
    n = len(d) // 8 * 8
    return np.array([d[(p - 1) % 8 : n : 8].mean() for p in range(8)])


def grid_features(y: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(6,) per axis: 8x8 blocking (the strongest phase's step over the others' mean, minus 1, as
    ``jpeg.blockiness``), how far it stands out from the runner-up (``jpeg.uniqueness``), and the
    share of the strongest step that phase 0 carries (a JPEG file's own grid: below 1 when an
    earlier compression's blocking sits elsewhere); and the blocking's grid (dy, dx). No lattice
    search: ``photo.decide`` has looked for one before it asks the detector."""
    feats, phase = [], []
    for axis in (0, 1):
        m = _phase_means(y, axis)
        top = np.sort(m)[::-1]
        best = int(np.argmax(m))
        phase.append(best)
        feats += [m[best] / max(np.delete(m, best).mean(), 1e-6) - 1.0, top[0] / max(top[1], 1e-6) - 1.0,
                  m[0] / max(top[0], 1e-6)]  # fmt: skip
    return np.array(feats), (phase[0], phase[1])


_BAND = np.add.outer(np.arange(8), np.arange(8)).ravel()  # u + v of each of the 64 frequencies


def dct_stats(y: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """(2, DCT_BANDS): per band of u + v of the 8x8 blocks at ``offset``, log mean |coefficient| and
    the share within 0.5 of zero (what quantization empties)."""
    c = np.abs(jpeg.block_dct(y, offset).reshape(-1, 64))
    mag = np.bincount(_BAND, np.log1p(c).mean(axis=0), DCT_BANDS) / np.bincount(_BAND, minlength=DCT_BANDS)
    zero = np.bincount(_BAND, (c < 0.5).mean(axis=0), DCT_BANDS) / np.bincount(_BAND, minlength=DCT_BANDS)
    return np.stack([mag, zero])


def dct_contrast(y: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """(2, DCT_BANDS): ``dct_stats`` on the grid at ``offset`` minus on the grid 4 px off it. A JPEG
    empties coefficients on its own grid only; content (a smooth sky, a texture) looks the same on
    any grid: the difference leaves the content out."""
    off = ((offset[0] + 4) % 8, (offset[1] + 4) % 8)
    return dct_stats(y, offset) - dct_stats(y, off)


def unresized(y: np.ndarray, factor: float) -> np.ndarray:
    """``y`` resized by 1 / ``factor``: a photo resized by ``factor`` after compression gets its
    8x8 blocks back (approximately; bicubic)."""
    if abs(np.log2(factor)) < 0.03:
        return y
    h, w = y.shape
    size = (max(16, round(w / factor)), max(16, round(h / factor)))
    return cv2.resize(y.astype(np.float32), size, interpolation=cv2.INTER_CUBIC).astype(np.float64)


def crop_features(rgb: np.ndarray, factor: float) -> np.ndarray:
    """(126,) of one crop (RGB uint8, at most CROP a side, cut on the file's 8x8 grid): blocking
    (6), block-DCT statistics on the blocking grid (30), their contrast with the grid 4 px off
    there (30) and on the file's own grid (30: a header's compression against an earlier one on
    another grid), and the contrast on the crop resized back by 1 / ``factor`` (the resize the
    periodicity reads) on its own blocking grid (30)."""
    y = jpeg.luma(rgb)
    grid, offset = grid_features(y)
    back = unresized(y, factor)
    back_offset = grid_features(back)[1] if back is not y else offset
    return np.concatenate([grid, dct_stats(y, offset).ravel(), dct_contrast(y, offset).ravel(),
                           dct_contrast(y, (0, 0)).ravel(), dct_contrast(back, back_offset).ravel()])  # fmt: skip


def photo_features(rgb: np.ndarray, n: int = MAX_CROPS) -> np.ndarray:
    """The pixel features of a photo (RGB uint8, at least 64 px a side): the periodicity of its
    centre (up to PROFILE px square, 28), then the block statistics averaged over up to ``n``
    crops (126)."""
    h, w = rgb.shape[:2]
    per = periodicity(jpeg.to_ycc(centre(rgb, PROFILE)))
    factor = float(2.0 ** per[PERIOD_INDEX])
    crops = [
        crop_features(np.ascontiguousarray(rgb[y : y + CROP, x : x + CROP]), factor) for y, x in crop_origins(h, w, n)
    ]
    return np.concatenate([per, np.mean(crops, axis=0)]).astype(np.float32)
