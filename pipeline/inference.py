"""restore(): a whole photo through a model, any size, with tiling, blending and x8 TTA.

Images are RGB uint8 (H, W, 3). The QF is decided once per image (the caller's, else the
model's estimator on the whole image), so every tile and every TTA view uses the same one.
Tile origins sit on multiples of 8, so each tile keeps the photo's JPEG 8x8 grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.degrade import augment

ProgressFn = Callable[[int, int], None]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255.0)
    return t.to(device).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def estimate_qf_net(model: nn.Module, image: np.ndarray) -> float | None:
    """The model's learned QF estimate for the whole image, or None if it has no estimator."""
    device = _device(model)
    if hasattr(model, "estimator"):  # QACNet: a cheap head that runs at 1/8 resolution
        x = _to_tensor(image, device)
        ph, pw = (-x.shape[2]) % 8, (-x.shape[3]) % 8
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return float(model.estimator(x)[0])
    h, w = image.shape[:2]  # other models predict it in the forward pass: use a centre crop
    ch, cw = min(h, 512), min(w, 512)
    y, x0 = (h - ch) // 2 // 8 * 8, (w - cw) // 2 // 8 * 8
    out = model(_to_tensor(image[y : y + ch, x0 : x0 + cw], device))
    return None if out.qf is None else float(out.qf[0])


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins on multiples of 8 covering [0, size); the last tile may be up to 7 px longer."""
    if size <= tile:
        return [0]
    stride = max(8, (tile - overlap) // 8 * 8)
    last = (size - tile) // 8 * 8
    starts = list(range(0, last, stride))
    return starts + [last]


def _ramp(n: int, overlap: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D blending weights: rising over ``overlap`` px where a neighbour tile overlaps."""
    w = np.ones(n, np.float32)
    r = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
    k = min(overlap, n)
    if lead and k:
        w[:k] = np.minimum(w[:k], r[:k])
    if trail and k:
        w[-k:] = np.minimum(w[-k:], r[:k][::-1])
    return w


@torch.inference_mode()
def _restore_once(model: nn.Module, image: np.ndarray, qf: float | None, tile: int, overlap: int, amp: bool,
                  progress: ProgressFn | None) -> np.ndarray:  # fmt: skip
    device = _device(model)
    h, w = image.shape[:2]

    def run(x: np.ndarray) -> np.ndarray:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            pred = model(_to_tensor(x, device), qf).preds[-1]
        return pred[0].float().clamp_(0, 1).permute(1, 2, 0).cpu().numpy()

    if tile <= 0 or (h <= tile and w <= tile):
        out = run(image)
        if progress:
            progress(1, 1)
        return out
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    acc = np.zeros((h, w, 3), np.float32)
    wsum = np.zeros((h, w, 1), np.float32)
    total, done = len(ys) * len(xs), 0
    for i, y in enumerate(ys):
        y1 = h if i == len(ys) - 1 else y + tile
        wy = _ramp(y1 - y, overlap, i > 0, i < len(ys) - 1)
        for j, x in enumerate(xs):
            x1 = w if j == len(xs) - 1 else x + tile
            wx = _ramp(x1 - x, overlap, j > 0, j < len(xs) - 1)
            weight = (wy[:, None] * wx[None, :])[:, :, None]
            acc[y:y1, x:x1] += run(image[y:y1, x:x1]) * weight
            wsum[y:y1, x:x1] += weight
            done += 1
            if progress:
                progress(done, total)
    acc /= wsum  # in place: no second full-size float copy
    return acc


def restore_float(model: nn.Module, image: np.ndarray, qf: float | None = None, tile: int = 0, overlap: int = 64,
                  tta: bool = False, amp: bool = True, progress: ProgressFn | None = None) -> np.ndarray:  # fmt: skip
    """Restore RGB uint8 ``image``; returns float32 (H, W, 3) in [0, 1].

    qf: the JPEG quality to condition on; None = the model's learned estimate (the grid and the
    QF of a user's photo are decided by ``pipeline.photo.restore_photo``, which calls this).
    tile: process in tiles of this size (multiple of 8) with ``overlap`` px blended; 0 = whole.
    tta: average the 8 flips/rotations (the image is padded to a multiple of 8 first so every
    view keeps the 8x8 grid aligned).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    model.eval()
    if qf is None:
        qf = estimate_qf_net(model, image)
    if not tta:
        return _restore_once(model, image, qf, tile, overlap, amp, progress)
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, (-h) % 8), (0, (-w) % 8), (0, 0)), mode="edge")
    acc = np.zeros(padded.shape, np.float32)
    for k in range(8):
        step = None if progress is None else (lambda d, t, k=k: progress(k * t + d, 8 * t))
        out = _restore_once(model, augment(padded, k), qf, tile, overlap, amp, step)
        acc += _invert(out, k)
    return acc[:h, :w] / 8.0


def _invert(img: np.ndarray, k: int) -> np.ndarray:
    """Undo augment(img, k)."""
    if k >= 4:
        img = img[:, ::-1]
    return np.rot90(img, -(k % 4))


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def restore(model: nn.Module, image: np.ndarray, qf: float | None = None, tile: int = 0, overlap: int = 64,
            tta: bool = False, amp: bool = True, progress: ProgressFn | None = None) -> np.ndarray:  # fmt: skip
    """Like restore_float, rounded to RGB uint8."""
    return to_uint8(restore_float(model, image, qf, tile, overlap, tta, amp, progress))
