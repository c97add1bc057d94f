"""A whole image through an engine, any size, in tiles, with x8 TTA.

Images are RGB uint8 (H, W, 3). The QF is decided once per image (by the caller, else the
engine's learned estimator on the whole image), so every tile and every TTA view uses the same
one. Tile origins sit on multiples of 8, so each tile keeps the photo's JPEG 8x8 grid.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from pipeline.core.images import augment, unaugment
from pipeline.restoration.engines import Engine

ProgressFn = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised by a ``progress`` callback to stop a restoration between tiles (the app's cancel)."""


def _spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of ``size`` (a multiple of 8): (start, stop, keep_from, keep_to).

    As few tiles as cover ``size`` with at least ``overlap`` px shared, all of one length (a
    multiple of 8, at most ``tile``, so one shape for the runtimes), origins on multiples of 8.
    Each output pixel is kept from exactly one tile, the seam in the middle of the overlap: no
    blending, and each tile's kept part has at least ``overlap // 2`` px of context around it.
    """
    if size <= tile:
        return [(0, size, 0, size)]
    n = -(-(size - overlap) // (tile - overlap))
    length = -(-size // n) // 8 * 8
    while (n - 1) * ((length - overlap) // 8 * 8) + length < size:
        length += 8
    stride = (length - overlap) // 8 * 8
    starts = [min(i * stride, size - length) for i in range(n)]
    seams = [0] + [(a + length + b) // 2 for a, b in zip(starts, starts[1:])] + [size]
    return [(s, s + length, seams[i], seams[i + 1]) for i, s in enumerate(starts)]


def _restore_once(
    engine: Engine, image: np.ndarray, qf: float | None, tile: int, overlap: int, progress: ProgressFn | None
) -> np.ndarray:
    """One pass of ``engine`` over ``image`` in tiles; float32 (H, W, 3). Memory: the output
    and the tiles in flight (``engines.MAX_IN_FLIGHT`` at most), whatever the image size."""
    h, w = image.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8  # as the network pads (reflect, bottom/right): the grid stays put
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect" if ph < h and pw < w else "edge")
    size = max(image.shape[:2]) if tile <= 0 else tile
    ys, xs = _spans(image.shape[0], size, overlap), _spans(image.shape[1], size, overlap)
    out = np.empty((h, w, 3), np.float32)
    spans = [(y, x) for y in ys for x in xs]
    tiles = (np.ascontiguousarray(image[None, y0:y1, x0:x1]) for (y0, y1, _, _), (x0, x1, _, _) in spans)
    for done, ((y0, _, ky0, ky1), (x0, _, kx0, kx1)), pred in zip(itertools.count(1), spans, engine.map(tiles, qf)):
        ky, kx = min(ky1, h), min(kx1, w)
        out[ky0:ky, kx0:kx] = pred[0, ky0 - y0 : ky - y0, kx0 - x0 : kx - x0]
        if progress:
            progress(done, len(spans))
    return out


def restore_float(
    engine: Engine,
    image: np.ndarray,
    qf: float | None = None,
    tile: int = 0,
    overlap: int = 64,
    tta: bool = False,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Restore RGB uint8 ``image`` with ``engine``; returns float32 (H, W, 3) in [0, 1].

    qf: the JPEG quality to condition on; None = the engine's learned estimate (the grid and the
    QF of a user's photo are decided by ``Restorer.decide``). tile: process in tiles of at most
    this size (multiple of 8) sharing at least ``overlap`` px; 0 = whole. tta: average the 8
    flips/rotations (the image is padded to a multiple of 8 first so every view keeps the 8x8
    grid aligned). ``progress(done, total)`` is called after each tile; it may raise Cancelled.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if tile > 0 and (tile % 8 or not 0 <= overlap < tile):
        raise ValueError(f"tile must be a multiple of 8 and overlap in 0..tile-1, got {tile}, {overlap}")
    if qf is None:
        qf = engine.estimate(image)
    if not tta:
        return _restore_once(engine, image, qf, tile, overlap, progress)
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, (-h) % 8), (0, (-w) % 8), (0, 0)), mode="edge")
    acc = np.zeros(padded.shape, np.float32)
    for k in range(8):
        step = None if progress is None else (lambda d, t, k=k: progress(k * t + d, 8 * t))
        out = _restore_once(engine, augment(padded, k), qf, tile, overlap, step)
        acc += unaugment(out, k)
    return acc[:h, :w] / 8.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
