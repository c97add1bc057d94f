"""PSNR, SSIM and PSNR-B exactly as the published JPEG-artifact-removal protocol scores them.

Inputs are uint8 RGB (H, W, 3) arrays: ``gt`` the ground truth, ``pred`` the image scored.
``space="rgb"`` scores the three channels; ``space="y"`` scores BT.601 luma on both images.
No border is cropped. SSIM is scikit-image with the protocol's settings (Gaussian 11x11,
sigma 1.5, valid region); PSNR-B is written here because no library has it.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from skimage.metrics import structural_similarity

from pipeline.core.images import rgb_to_y

Space = Literal["rgb", "y"]


def _prepare(gt: np.ndarray, pred: np.ndarray, space: Space) -> tuple[np.ndarray, np.ndarray]:
    if gt.shape != pred.shape:
        raise ValueError(f"size mismatch: ground truth {gt.shape} vs image {pred.shape}")
    if space == "y":
        return rgb_to_y(gt), rgb_to_y(pred)
    if space == "rgb":
        return gt.astype(np.float64), pred.astype(np.float64)
    raise ValueError(f"unknown metric space {space!r} (use 'rgb' or 'y')")


def _psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def psnr(gt: np.ndarray, pred: np.ndarray, space: Space = "rgb") -> float:
    """Peak signal-to-noise ratio in dB over the whole image (peak 255)."""
    a, b = _prepare(gt, pred, space)
    return _psnr_from_mse(float(np.mean((a - b) ** 2)))


def ssim(gt: np.ndarray, pred: np.ndarray, space: Space = "rgb") -> float:
    """SSIM (Wang et al. 2004) with Gaussian weights; the mean of the per-channel values."""
    a, b = _prepare(gt, pred, space)
    return float(
        structural_similarity(
            a,
            b,
            channel_axis=2 if a.ndim == 3 else None,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
    )


def blocking_effect_factor(y: np.ndarray, block: int = 8) -> float:
    """Yim & Bovik (2011) blocking effect factor of a single-channel image (0..255 values).

    Mean squared difference across 8x8 block boundaries minus the mean across the other
    neighbouring pixel pairs, scaled by log2(block) / log2(min(H, W)); zero when negative.
    """
    y = np.asarray(y, dtype=np.float64)
    h, w = y.shape
    dh = (y[:, :-1] - y[:, 1:]) ** 2  # horizontal neighbours: column j vs j+1
    dv = (y[:-1, :] - y[1:, :]) ** 2
    col_boundary = (np.arange(w - 1) % block) == block - 1
    row_boundary = (np.arange(h - 1) % block) == block - 1
    n_b = h * (w // block - 1) + w * (h // block - 1)
    n_bc = h * (w - 1) + w * (h - 1) - n_b
    d_b = dh[:, col_boundary].sum() + dv[row_boundary, :].sum()
    d_bc = dh[:, ~col_boundary].sum() + dv[~row_boundary, :].sum()
    d_b, d_bc = d_b / max(n_b, 1), d_bc / max(n_bc, 1)
    if d_b <= d_bc:
        return 0.0
    return float(math.log2(block) / math.log2(min(h, w)) * (d_b - d_bc))


def psnrb(gt: np.ndarray, pred: np.ndarray, space: Space = "rgb") -> float:
    """PSNR-B: MSE plus the blocking effect factor of ``pred``'s luma, in dB."""
    a, b = _prepare(gt, pred, space)
    mse = float(np.mean((a - b) ** 2))
    bef = blocking_effect_factor(b if b.ndim == 2 else rgb_to_y(pred))
    return _psnr_from_mse(mse + bef)


def score(gt: np.ndarray, pred: np.ndarray, space: Space = "rgb") -> dict[str, float]:
    """All three metrics: {"psnr", "ssim", "psnrb"}."""
    return {"psnr": psnr(gt, pred, space), "ssim": ssim(gt, pred, space), "psnrb": psnrb(gt, pred, space)}
