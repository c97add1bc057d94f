"""Training pairs made on the fly: shapes, labels, determinism, sharding, validation crops."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image

from pipeline.core import images, jpeg
from pipeline.data import degrade
from pipeline.data.degrade import Degradation, StreamSampler, TrainPairs, make_pair
from pipeline.evaluation.metrics import psnr


@pytest.fixture(scope="module")
def src() -> np.ndarray:
    return smooth_image(112, 144, seed=2)


def test_make_pair_shapes_and_label(src: np.ndarray) -> None:
    deg = Degradation(qf_min=20, qf_max=30, double_jpeg_prob=0.5, gray_prob=0.2)
    rng = np.random.default_rng(0)
    for _ in range(12):
        lq, gt, qf = make_pair(src, 48, deg, rng)
        assert lq.shape == gt.shape == (48, 48, 3)
        assert lq.dtype == gt.dtype == np.uint8
        assert lq.flags.c_contiguous and gt.flags.c_contiguous
        assert isinstance(qf, int) and 20 <= qf <= 30
        assert not np.array_equal(lq, gt)


def test_make_pair_is_deterministic(src: np.ndarray) -> None:
    deg = Degradation(double_jpeg_prob=0.5, gray_prob=0.5)
    a, b, c = (make_pair(src, 48, deg, np.random.default_rng(s)) for s in (7, 7, 8))
    for x, y in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(x, y)
    assert a[2] == b[2]
    assert not np.array_equal(a[1], c[1])


def test_double_jpeg_label_is_the_lower_quality(src: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = degrade.jpeg_roundtrip

    def spy(rgb: np.ndarray, qf: int, gray: bool = False) -> np.ndarray:
        seen.append(qf)
        return real(rgb, qf, gray)

    monkeypatch.setattr(degrade, "jpeg_roundtrip", spy)
    rng = np.random.default_rng(3)
    for _ in range(8):
        seen.clear()
        lq, _, qf = make_pair(src, 48, Degradation(qf_min=5, qf_max=95, double_jpeg_prob=1.0), rng)
        assert len(seen) == 2
        assert qf == min(seen)
        assert lq.shape == (48, 48, 3)


def test_gray_prob_one_gives_gray_pairs(src: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for _ in range(4):
        lq, gt, _ = make_pair(src, 32, Degradation(gray_prob=1.0, double_jpeg_prob=0.5), rng)
        for img in (lq, gt):
            assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_alignment_offsets(src: np.ndarray) -> None:
    """Aligned crops keep the JPEG lattice at the origin (the QF is readable from the pixels);
    with align_prob=0 the 8x8 grid is shifted by 0..7 px, and mostly no longer readable."""

    def readable(align_prob: float) -> list[bool]:
        rng, out = np.random.default_rng(1), []
        for _ in range(8):
            lq, _, qf = make_pair(src, 64, Degradation(qf_min=10, qf_max=40, align_prob=align_prob), rng)
            found, score = jpeg.qf_from_pixels(lq)
            out.append(score >= 0.05 and abs(found - qf) <= 1)
        return out

    assert all(readable(1.0))
    assert sum(readable(0.0)) <= 2  # (0, 0) is one of the 64 offsets


def test_augment_gives_eight_distinct_views() -> None:
    img = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    views = {images.augment(img, k).tobytes() for k in range(8)}
    assert len(views) == 8


def test_train_pairs_items(src: np.ndarray) -> None:
    ds = TrainPairs([src, src[:80, :90]], patch=32, deg=Degradation(qf_min=10, qf_max=50), seed=0, per_item=3)
    lq, gt, qf = ds[5]
    assert lq.shape == gt.shape == (3, 3, 32, 32)
    assert lq.dtype == gt.dtype == torch.float32
    assert 0 <= float(lq.min()) and float(lq.max()) <= 1
    assert qf.shape == (3,) and ((qf >= 10) & (qf <= 50)).all()
    batch = degrade.collate([ds[0], ds[1]])
    assert [t.shape[0] for t in batch] == [6, 6, 6]


def test_train_pairs_are_determined_by_seed_and_index(src: np.ndarray) -> None:
    deg = Degradation(double_jpeg_prob=0.3)
    a, b = (TrainPairs([src], 32, deg, seed=4, per_item=2) for _ in range(2))
    for x, y in zip(a[9], b[9]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(a[9][1], a[10][1])
    assert not torch.equal(a[9][1], TrainPairs([src], 32, deg, seed=5, per_item=2)[9][1])


def test_train_pairs_needs_images() -> None:
    with pytest.raises(images.ImageError, match="no training images"):
        TrainPairs([], 32, Degradation(), seed=0)


def test_stream_sampler_shards_and_resumes() -> None:
    def first(sampler: StreamSampler, n: int = 6) -> list[int]:
        return list(itertools.islice(iter(sampler), n))

    r0, r1 = first(StreamSampler(rank=0, world=2)), first(StreamSampler(rank=1, world=2))
    assert r0 == [0, 2, 4, 6, 8, 10]
    assert r1 == [1, 3, 5, 7, 9, 11]
    assert sorted(r0 + r1) == list(range(12))
    assert first(StreamSampler()) == list(range(6))
    # Resuming after 3 steps of 2 items per rank, 2 ranks: the stream goes on where it stopped.
    assert first(StreamSampler(start=3 * 2 * 2, rank=1, world=2), 3) == [13, 15, 17]


def test_load_training_images_skips_small_ones(tmp_path: Path) -> None:
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    images.write_png(big, smooth_image(80, 100))
    images.write_png(small, smooth_image(40, 100))
    loaded, skipped = degrade.load_training_images([big, small], min_side=64)
    assert [im.shape for im in loaded] == [(80, 100, 3)]
    assert skipped == [small]


def test_validation_pairs_crop_multiples_of_8() -> None:
    imgs = [smooth_image(101, 75), smooth_image(300, 270, seed=1)]
    pairs = degrade.validation_pairs(imgs, qfs=(10, 50), crop=256)
    assert len(pairs) == 4
    assert [p[1].shape[:2] for p in pairs] == [(96, 72), (96, 72), (256, 256), (256, 256)]
    assert [p[2] for p in pairs] == [10, 50, 10, 50]
    for lq, gt, q in pairs:
        np.testing.assert_array_equal(lq, images.jpeg_roundtrip(gt, q))
    # The centre crop starts on the 8x8 grid: y = (300 - 256) // 2 // 8 * 8 = 16, x = 7 // 8 * 8 = 0.
    np.testing.assert_array_equal(pairs[2][1], imgs[1][16:272, 0:256])


def test_clean_patches_are_untouched_with_label_100(src: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for _ in range(4):
        lq, gt, qf = make_pair(src, 48, Degradation(clean_prob=1.0), rng)
        np.testing.assert_array_equal(lq, gt)
        assert qf == degrade.CLEAN_LABEL == 100


def test_resized_patches_shrink_a_larger_jpeg(src: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resized case compresses a region larger than the patch, then shrinks JPEG and ground
    truth alike: the label is that JPEG's quality and the pair stays aligned (high PSNR)."""
    sizes: list[tuple[int, int]] = []
    real = degrade.jpeg_roundtrip

    def spy(rgb: np.ndarray, qf: int, gray: bool = False) -> np.ndarray:
        sizes.append(rgb.shape[:2])
        return real(rgb, qf, gray)

    monkeypatch.setattr(degrade, "jpeg_roundtrip", spy)
    rng = np.random.default_rng(5)
    for _ in range(6):
        sizes.clear()
        lq, gt, qf = make_pair(src, 48, Degradation(qf_min=30, qf_max=40, resize_prob=1.0), rng)
        assert lq.shape == gt.shape == (48, 48, 3) and 30 <= qf <= 40
        assert len(sizes) == 1 and sizes[0][0] > 48 + 16  # compressed before shrinking
        assert 20 < psnr(gt, lq) < 60


def test_case_shares_follow_the_probabilities(src: np.ndarray) -> None:
    deg = Degradation(double_jpeg_prob=0.3, resize_prob=0.1, clean_prob=0.2)
    rng = np.random.default_rng(11)
    pairs = [make_pair(src, 32, deg, rng) for _ in range(300)]
    clean = sum(np.array_equal(lq, gt) for lq, gt, _ in pairs) / len(pairs)
    assert 0.13 < clean < 0.27
    assert sum(q == 100 for *_, q in pairs) / len(pairs) == pytest.approx(clean)


def test_double_jpeg_is_mostly_a_resave_at_higher_quality(src: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    qualities: list[int] = []
    real = degrade.jpeg_roundtrip

    def spy(rgb: np.ndarray, qf: int, gray: bool = False) -> np.ndarray:
        qualities.append(qf)
        return real(rgb, qf, gray)

    monkeypatch.setattr(degrade, "jpeg_roundtrip", spy)
    rng = np.random.default_rng(2)
    resaves = 0
    for _ in range(60):
        qualities.clear()
        make_pair(src, 32, Degradation(qf_min=5, qf_max=95, double_jpeg_prob=1.0), rng)
        resaves += qualities[1] >= qualities[0]
    assert resaves / 60 > degrade.RESAVE_SHARE - 0.15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"double_jpeg_prob": 0.6, "resize_prob": 0.3, "clean_prob": 0.2}, "at most 1"),
        ({"clean_prob": -0.1}, "clean_prob"),
        ({"align_prob": 1.5}, "align_prob"),
    ],
)
def test_bad_probabilities_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Degradation(**kwargs)
