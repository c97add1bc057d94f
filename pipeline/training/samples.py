"""Training and calibration samples of the JPEG-history detector: training photos through random
histories (``histories.draw``), as the detector's features and labels.

Runs in worker processes (``make``), each with its own photo cache; a sample is fully determined
by its chunk's seed, so a rerun makes the same samples. Photos are drawn set by set (each set its
share), then uniformly within the set; large photos (DIV2K) give a random region each time
(``histories.cut``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core import images
from pipeline.params import DetectorParams
from pipeline.restoration import history
from pipeline.training import histories as H

OTHER_HOLDOUT_EVERY = 10


@dataclass(frozen=True)
class Photos:
    """clean: (set, path) of photos never compressed; sources: (set, path) of the photos compressed
    samples are made from (any photo whose own history, if any, is weaker than the one applied)."""

    clean: tuple[tuple[str, str], ...]
    sources: tuple[tuple[str, str], ...]

    def summary(self) -> dict:
        def count(items: tuple[tuple[str, str], ...]) -> dict[str, int]:
            return {s: sum(1 for t, _ in items if t == s) for s in sorted({t for t, _ in items})}

        return {"clean": count(self.clean), "sources": count(self.sources)}


def split(set_dirs: Sequence[Path], p: DetectorParams) -> tuple[Photos, Photos]:
    """(training photos, held-out photos) of the set folders ``set_dirs`` (a set is named by its folder)."""
    found = sorted(
        (Path(d).name, str(f)) for d in set_dirs if Path(d).name not in p.skip_sets for f in images.list_images(d)
    )
    clean = [f for f in found if f[0] in p.clean_sets and Path(f[1]).stem not in p.not_clean]
    other = [f for f in found if f not in clean]
    if len(clean) < 2:
        raise ValueError(
            f"detector.clean_sets {list(p.clean_sets)}: {len(clean)} never-compressed photos under "
            f"{', '.join(map(str, set_dirs))}; the detector needs at least 2 (one held out to calibrate on)"
        )
    held_clean, held_other = set(clean[:: p.holdout_every]), set(other[::OTHER_HOLDOUT_EVERY])
    train_clean = [f for f in clean if f not in held_clean]
    train_other = [f for f in other if f not in held_other]
    return (
        Photos(tuple(train_clean), tuple(train_clean + train_other)),
        Photos(tuple(sorted(held_clean)), tuple(sorted(held_clean | held_other))),
    )


def worker_init() -> None:
    # One process per core: keep OpenCV and torch from starting threads of their own.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


_CACHE: dict[str, np.ndarray] = {}


def photo(path: str) -> np.ndarray:
    if path not in _CACHE:
        _CACHE[path] = images.read_image(path)
    return _CACHE[path]


def pick(items: tuple[tuple[str, str], ...], rng: np.random.Generator) -> str:
    """A photo path: a set drawn uniformly, then a photo of it."""
    sets = sorted({s for s, _ in items})
    s = sets[int(rng.integers(len(sets)))]
    paths = [p for t, p in items if t == s]
    return paths[int(rng.integers(len(paths)))]


def make(args: tuple[Photos, int, int, float, tuple[int, int]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(features (n, F) float32, labels (``histories.labels`` + header) as arrays of n) for ``n``
    random histories seeded with ``seed`` (worker side)."""
    photos, n, seed, clean_share, sides = args
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for _ in range(n):
        h = H.draw(rng, clean_share)
        path = pick(photos.clean if h.qf is None else photos.sources, rng)
        lq, _, header = H.apply(h, H.cut(photo(path), h, rng, sides))
        xs.append(history.features(lq, header))
        labels.append(H.labels(h) | {"header": float(header is not None)})
    x = np.stack(xs) if xs else np.zeros((0, history.n_features()), np.float32)
    return x, {k: np.array([lab[k] for lab in labels], np.float32) for k in (labels[0] if labels else {})}


def synthesize(p: DetectorParams, photos: Photos, n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` samples over ``p.workers`` processes, in 8 chunks seeded apart."""
    chunks = [(photos, len(c), seed * 1000 + i, p.clean_share, tuple(p.sides))
              for i, c in enumerate(np.array_split(np.arange(n), 8))]  # fmt: skip
    with ProcessPoolExecutor(p.workers, initializer=worker_init) as pool:
        parts = list(pool.map(make, chunks))
    parts = [part for part in parts if len(part[0])]
    x = np.concatenate([a for a, _ in parts])
    return x, {k: np.concatenate([b[k] for _, b in parts]) for k in parts[0][1]}


def held_out_samples(p: DetectorParams, held: Photos) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Random histories of the held-out photos (a fifth never compressed), for calibration: a
    sixth as many as the training samples, at least 600 (or all of them when fewer)."""
    return synthesize(replace(p, clean_share=0.2), held, max(min(600, p.samples), p.samples // 6), p.seed + 7)
