"""Pieces shared by the architectures: the model output type, padding, the QF estimator."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Restored(NamedTuple):
    """What every architecture returns.

    preds: one (B, 3, H, W) image per stage, RGB in [0, 1] (not clamped), the last is final.
    qf: (B,) estimated JPEG quality in [0, 100], or None for architectures without an estimator.
    """

    preds: list[Tensor]
    qf: Tensor | None


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, int, int]:
    """Pad bottom/right by reflection (replicate when too small) so H and W divide ``multiple``.

    Padding only at the bottom/right keeps the JPEG 8x8 grid where it was.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class QFEstimator(nn.Module):
    """Predicts the JPEG quality factor from pixels.

    The image is folded into 8x8 blocks (PixelUnshuffle(8): 192 channels at 1/8 size), which
    puts each JPEG block's pixels side by side, as the DCT does; a few convolutions and a global
    average give one QF per image. Input (B, 3, H, W) in [0, 1], H and W multiples of 8.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.PixelUnshuffle(8),
            nn.Conv2d(192, width, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, 1))

    def forward(self, x: Tensor) -> Tensor:
        feat = self.body(x - 0.5).mean(dim=(2, 3))
        return torch.sigmoid(self.head(feat)).squeeze(1) * 100.0


class QFEmbedding(nn.Module):
    """Maps a QF in [0, 100] of shape (B,) to a (B, dim) embedding."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim), nn.ReLU(inplace=True))

    def forward(self, qf: Tensor) -> Tensor:
        return self.net((qf.float() / 100.0).unsqueeze(1))


def as_qf_tensor(qf: Tensor | float | int | None, batch: int, device: torch.device) -> Tensor | None:
    """A user's QF (a number, or a (B,) tensor) as a float tensor of shape (B,)."""
    if qf is None or isinstance(qf, Tensor):
        return qf
    return torch.full((batch,), float(qf), device=device)
