"""Training pairs made on the fly: random crop, flips/rotations, JPEG (single, double with a shifted
grid, resized after compression) or none (clean), grayscale.

Item ``k`` of ``TrainPairs`` is fully determined by (seed, k): the same pairs whatever the
number of workers or processes, and a resumed run continues the very same stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pipeline.core.images import ImageError, augment, jpeg_roundtrip, read_image


@dataclass(frozen=True)
class Degradation:
    """How a clean patch becomes a degraded one (see params.yaml ``train``).

    Each patch is one of four cases, drawn with these probabilities (single JPEG takes the rest):
    clean (never compressed, label 100), double JPEG with a shifted grid, resized after
    compression, and a single JPEG. Independently: grayscale, and whether the 8x8 grid is aligned.
    """

    qf_min: int = 5
    qf_max: int = 95
    double_jpeg_prob: float = 0.0
    gray_prob: float = 0.0
    align_prob: float = 0.5
    resize_prob: float = 0.0
    clean_prob: float = 0.0

    def __post_init__(self) -> None:
        probs = {
            "double_jpeg_prob": self.double_jpeg_prob,
            "resize_prob": self.resize_prob,
            "clean_prob": self.clean_prob,
        }
        for name, v in {**probs, "gray_prob": self.gray_prob, "align_prob": self.align_prob}.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"train.{name} must be in [0, 1], got {v}")
        if sum(probs.values()) > 1.0 + 1e-9:
            raise ValueError(f"train.double_jpeg_prob + resize_prob + clean_prob must be at most 1, got {probs}")


CLEAN_LABEL = 100  # the QF label of a patch that was never compressed
RESIZE_MIN = 0.5  # resized cases shrink the compressed image by a factor in [RESIZE_MIN, 1)
RESIZE_FILTERS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)  # what photo tools use
RESAVE_SHARE = 0.75  # double JPEG: share whose second quality is at least the first (a re-save)


def _crop(src: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = src.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return src[y : y + size, x : x + size]


def make_pair(
    src: np.ndarray, patch: int, deg: Degradation, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut a (patch x patch) pair from RGB uint8 ``src`` (each side >= patch + 16).

    Returns (lq, gt, qf_label) with lq, gt uint8 (patch, patch, 3). A region 16 px larger is
    compressed, so that after an optional grid shift (double JPEG) and an offset of 0..7 px
    (the 8x8 grid not always aligned with the patch) no pixel comes from the JPEG's padded border.
    Labels: double JPEG, the lower (stronger) of the two qualities; resized, the JPEG's quality;
    clean, 100.
    """
    big = patch + 16
    case = rng.random()
    is_clean = case < deg.clean_prob
    is_double = deg.clean_prob <= case < deg.clean_prob + deg.double_jpeg_prob
    is_resized = not (is_clean or is_double) and case < deg.clean_prob + deg.double_jpeg_prob + deg.resize_prob
    region = big
    if is_resized:  # compress a larger region, then shrink it (and the ground truth) to ``big``
        region = min(int(np.ceil(big / rng.uniform(RESIZE_MIN, 1.0))), *src.shape[:2])
    gt = augment(_crop(src, region, rng), int(rng.integers(8)))
    gray = rng.random() < deg.gray_prob
    if gray:
        gt = np.repeat(cv2.cvtColor(gt, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    qf = int(rng.integers(deg.qf_min, deg.qf_max + 1))
    lq = gt if is_clean else jpeg_roundtrip(gt, qf, gray)
    if is_clean:
        qf = CLEAN_LABEL
    elif is_double:
        sy, sx = rng.integers(0, 8, size=2)
        if sy == sx == 0:
            sy = 1 + rng.integers(7)
        gt, lq = gt[sy : sy + patch + 8, sx : sx + patch + 8], lq[sy : sy + patch + 8, sx : sx + patch + 8]
        low = qf if rng.random() < RESAVE_SHARE else deg.qf_min
        qf2 = int(rng.integers(low, deg.qf_max + 1))
        lq = jpeg_roundtrip(np.ascontiguousarray(lq), qf2, gray)
        qf = min(qf, qf2)
    elif is_resized and region > big:
        interp = RESIZE_FILTERS[int(rng.integers(len(RESIZE_FILTERS)))]
        gt, lq = (cv2.resize(np.ascontiguousarray(a), (big, big), interpolation=interp) for a in (gt, lq))
    oy, ox = (0, 0) if rng.random() < deg.align_prob else rng.integers(0, 8, size=2)
    return (
        np.ascontiguousarray(lq[oy : oy + patch, ox : ox + patch]),
        np.ascontiguousarray(gt[oy : oy + patch, ox : ox + patch]),
        qf,
    )


def load_training_images(paths: Sequence[Path], min_side: int) -> tuple[list[np.ndarray], list[Path]]:
    """Decode the training images; those with a side under ``min_side`` are returned as skipped."""
    images, skipped = [], []
    for p in paths:
        img = read_image(p)
        if min(img.shape[:2]) < min_side:
            skipped.append(p)
        else:
            images.append(img)
    return images, skipped


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float (3, H, W) in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)


class TrainPairs(Dataset):
    """Item k -> (lq, gt, qf): ``per_item`` patches from one image, drawn with probability
    proportional to its area, all determined by (seed, k). Shapes (n, 3, P, P) float in [0, 1]
    and (n,) float."""

    def __init__(self, images: list[np.ndarray], patch: int, deg: Degradation, seed: int, per_item: int = 1) -> None:
        if not images:
            raise ImageError("no training images")
        self.images, self.patch, self.deg, self.seed, self.per_item = images, patch, deg, seed, per_item
        areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.probs = areas / areas.sum()

    def __len__(self) -> int:
        return 2**62  # a stream: the sampler decides how far to go

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, k])
        src = self.images[int(rng.choice(len(self.images), p=self.probs))]
        pairs = [make_pair(src, self.patch, self.deg, rng) for _ in range(self.per_item)]
        lq = torch.stack([to_tensor(p[0]) for p in pairs])
        gt = torch.stack([to_tensor(p[1]) for p in pairs])
        return lq, gt, torch.tensor([float(p[2]) for p in pairs])


class StreamSampler(Sampler[int]):
    """Item indices start, start+1, ... sharded over DDP ranks (rank r takes every world-th).

    Resuming at optimizer step s with B items per step per rank: start = s * B * world.
    """

    def __init__(self, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.start, self.rank, self.world = start, rank, world

    def __iter__(self) -> Iterator[int]:
        k = self.start + self.rank
        while True:
            yield k
            k += self.world


def collate(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Concatenate items of several patches each into one batch."""
    return tuple(torch.cat(parts) for parts in zip(*batch))


def worker_init(_: int) -> None:
    # Each DataLoader worker is one process: keep OpenCV and torch from oversubscribing cores.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def validation_pairs(
    images: list[np.ndarray], qfs: Sequence[int] = (10, 30, 50), crop: int = 256
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Deterministic (lq, gt, qf) for validation: a centre crop (multiple of 8) per image and QF."""
    out = []
    for img in images:
        h, w = img.shape[:2]
        ch, cw = min(h, crop) // 8 * 8, min(w, crop) // 8 * 8
        y, x = (h - ch) // 2 // 8 * 8, (w - cw) // 2 // 8 * 8
        gt = np.ascontiguousarray(img[y : y + ch, x : x + cw])
        out += [(jpeg_roundtrip(gt, q), gt, q) for q in qfs]
    return out
