"""pipeline.photo: every branch of the QF/grid decision, restoring on the grid, leaving clean photos alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import smooth_image

from pipeline import images, jpeg, photo
from pipeline.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def model_reading(qf: float) -> torch.nn.Module:
    """A tiny QACNet whose estimator reads ``qf`` on any image (its last layer's weights zero,
    the bias set so that 100 * sigmoid(bias) = qf): a real model with a known estimator."""
    torch.manual_seed(0)
    model = build_model("qacnet", width=8, mid_blocks=1, emb_dim=16, estimator_width=16).eval()
    last = model.estimator.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(float(np.log(qf / (100 - qf))))
        for p in model.stages.parameters():  # not the identity: restoring changes pixels
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    return smooth_image(256, 256, seed=4)


def crop(img: np.ndarray, n: tuple[int, int] = (3, 5)) -> np.ndarray:
    return np.ascontiguousarray(img[n[0] :, n[1] :])


def decoded(data: bytes) -> images.Decoded:
    return images.decode_image(data, "test")


def test_user_qf_wins_and_the_grid_is_still_found(gt: np.ndarray) -> None:
    dec = decoded(images.encode_png(crop(images.jpeg_roundtrip(gt, 20))))
    d = photo.decide(model_reading(80), dec.rgb, dec.header, user_qf=45)
    assert (d.qf, d.source, d.offset) == (45, "user", (5, 3))
    assert "set by the user" in d.message


def test_header_of_an_aligned_jpeg(gt: np.ndarray) -> None:
    dec = decoded(images.encode_jpeg(gt, 35, subsampling="4:4:4"))
    d = photo.decide(model_reading(80), dec.rgb, dec.header)
    assert (d.qf, d.source, d.offset, d.subsampling) == (35, "header", (0, 0), "4:4:4")
    np.testing.assert_array_equal(d.luma_table, jpeg.ijg_tables(35)[0])
    assert d.message == "QF 35 from the JPEG header"


@pytest.mark.parametrize("qf", [10, 30])
def test_re_saved_jpeg_decided_by_the_earlier_lattice(gt: np.ndarray, qf: int) -> None:
    """At QF 10 the lattice under the QF 95 re-save is faint; the blocking on its grid corroborates it."""
    dec = decoded(images.encode_jpeg(crop(images.jpeg_roundtrip(gt, qf)), 95))
    d = photo.decide(model_reading(80), dec.rgb, dec.header)
    assert (d.qf, d.source, d.offset) == (qf, "pixels", (5, 3))
    assert d.message == f"QF {qf} at grid offset (5, 3) from pixels; header says 95 (re-saved)"
    assert d.chroma_table is None  # the earlier JPEG's chroma is unknown: luma-only projection


def test_recompressed_after_a_crop_decided_by_the_estimator(gt: np.ndarray) -> None:
    """QF 5, cropped, saved at QF 50: the QF 5 blocking still dominates, on its shifted grid,
    but no lattice survives; the estimator reads that grid, and decides when clearly below 50."""
    dec = decoded(images.encode_jpeg(crop(images.jpeg_roundtrip(gt, 5)), 50))
    assert jpeg.blockiness(jpeg.luma(dec.rgb))[0] == (5, 3)
    d = photo.decide(model_reading(15), dec.rgb, dec.header)
    assert (d.source, d.offset, round(d.qf)) == ("estimated", (5, 3), 15)
    assert d.message.endswith("header says 50 (recompressed)")
    d = photo.decide(model_reading(45), dec.rgb, dec.header)  # not clearly lower: the header stands
    assert (d.source, d.qf) == ("header", 50)


@pytest.mark.parametrize("qf", [30, 60, 90])
def test_a_single_jpeg_is_never_taken_for_a_recompressed_one(gt: np.ndarray, qf: int) -> None:
    dec = decoded(images.encode_jpeg(gt, qf))
    d = photo.decide(model_reading(3), dec.rgb, dec.header)  # even with an estimator reading 3
    assert (d.source, d.qf, d.offset) == ("header", qf, (0, 0))


@pytest.mark.parametrize(("cut", "offset"), [((0, 0), (0, 0)), ((3, 5), (5, 3))])
def test_png_decided_by_the_lattice_at_any_offset(gt: np.ndarray, cut: tuple, offset: tuple) -> None:
    dec = decoded(images.encode_png(crop(images.jpeg_roundtrip(gt, 25), cut)))
    assert dec.header is None
    d = photo.decide(model_reading(80), dec.rgb, dec.header)
    assert (d.qf, d.source, d.offset) == (25, "pixels", offset)


def test_blocking_without_lattice_uses_the_estimator_on_that_grid(gt: np.ndarray) -> None:
    noisy = images.jpeg_roundtrip(gt, 10).astype(np.float64) + np.random.default_rng(0).normal(0, 2.0, gt.shape)
    img = crop(np.clip(noisy, 0, 255).astype(np.uint8), (2, 6))  # the noise wipes out the lattice
    d = photo.decide(model_reading(12), img, None)
    assert (d.source, d.offset, round(d.qf)) == ("estimated", (6, 2), 12)


def test_clean_photo_is_left_alone(gt: np.ndarray) -> None:
    model = model_reading(97)
    out, d = photo.restore_photo(model, gt)
    assert d.unchanged and d.source == "none" and d.message == photo.CLEAN_MESSAGE
    np.testing.assert_array_equal((out * 255 + 0.5).astype(np.uint8), gt)
    out, d = photo.restore_photo(model, gt, qf=60)  # --q forces it
    assert d.qf == 60 and not np.array_equal((out * 255 + 0.5).astype(np.uint8), gt)


def soft_image(h: int, w: int, seed: int) -> np.ndarray:
    """Slow gradients and little noise: JPEG blocks stand out (a sky, a wall)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / (17 + 9 * rng.random()) + rng.random() * 6),
                    128 + 90 * np.cos(y / (19 + 9 * rng.random())),
                    128 + 60 * np.sin((x + y) / (23 + 5 * rng.random()))], axis=2)  # fmt: skip
    return np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)


def resized(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampled_blocking_tells_a_resized_jpeg_from_a_clean_photo(seed: int) -> None:
    gt = soft_image(384, 512, seed)
    assert jpeg.resampled_blocking(jpeg.luma(gt))[0] < photo.RESAMPLED_MIN
    assert jpeg.resampled_blocking(jpeg.luma(resized(gt)))[0] < photo.RESAMPLED_MIN
    assert jpeg.resampled_blocking(jpeg.luma(resized(images.jpeg_roundtrip(gt, 10))))[0] >= photo.RESAMPLED_MIN


def test_resized_jpeg_is_restored_at_the_estimate() -> None:
    img = cv2.resize(images.jpeg_roundtrip(soft_image(384, 512, 1), 10), (358, 269), interpolation=cv2.INTER_AREA)
    ev = jpeg.find_grid(img)  # resized by 0.7: no lattice and the 8x8 phases average out
    assert ev.lattice_qf is None and ev.blocking < photo.BLOCKING_MIN
    d = photo.decide(model_reading(60), img, None)
    assert (d.source, round(d.qf)) == ("estimated", 60)
    assert d.message == "QF 60 estimated (JPEG blocks at another scale: resized after compression)"


def test_no_trace_of_jpeg_needs_a_very_low_estimate() -> None:
    """Without a lattice or blocks, the estimator reads photos never compressed anywhere from 57 to
    100: a reading of 60 leaves the photo alone, only one far below that restores it."""
    img = smooth_image(120, 136, seed=8)
    assert max(jpeg.blockiness(jpeg.luma(img))[1]) < photo.BLOCKING_MIN
    assert photo.decide(model_reading(60), img, None).unchanged
    d = photo.decide(model_reading(40), img, None)
    assert (d.source, d.offset, round(d.qf)) == ("estimated", (0, 0), 40)
    assert d.message == "QF 40 estimated (no grid found)"


def test_restoring_on_the_grid_matches_the_aligned_restoration(gt: np.ndarray) -> None:
    """A cropped JPEG restored on its detected grid is the aligned JPEG's restoration, cropped
    (away from the borders the padding touches)."""
    model = model_reading(80)
    lq = images.jpeg_roundtrip(gt, 20)
    whole, _ = photo.restore_photo(model, lq, projection="off")
    part, d = photo.restore_photo(model, crop(lq), projection="off")
    assert d.offset == (5, 3)
    np.testing.assert_allclose(part[16:-16, 16:-16], whole[3:, 5:][16:-16, 16:-16], atol=2e-3)
    misaligned = photo.restore_decided(model, crop(lq), photo.Decision(20.0, "user", (0, 0), ""), projection="off")
    assert (
        np.abs(misaligned - whole[3:, 5:])[16:-16, 16:-16].mean()
        > 10 * np.abs(part - whole[3:, 5:])[16:-16, 16:-16].mean()
    )


def test_projection_modes(gt: np.ndarray) -> None:
    model = model_reading(80)
    dec = decoded(images.encode_jpeg(gt, 40))
    off, d = photo.restore_photo(model, dec.rgb, dec.header, projection="off")
    auto, _ = photo.restore_photo(model, dec.rgb, dec.header, projection="auto")
    on, _ = photo.restore_photo(model, dec.rgb, dec.header, projection="on")
    assert photo.projection_planes("off", d) == (False, False)
    assert photo.projection_planes("auto", d) == (True, False)  # 4:2:0 chroma: only when asked
    assert photo.projection_planes("on", d) == (True, True)
    assert not np.array_equal(off, auto) and not np.array_equal(auto, on) and np.abs(on - off).max() < 0.5
    full = decoded(images.encode_jpeg(gt, 40, subsampling="4:4:4"))
    assert photo.projection_planes("auto", photo.decide(model, full.rgb, full.header)) == (True, True)
    png = decoded(images.encode_png(dec.rgb))  # tables from the lattice: luma only (chroma unknown)
    assert photo.projection_planes("on", photo.decide(model, png.rgb, png.header)) == (True, False)
    with pytest.raises(ValueError, match="projection must be one of"):
        photo.projection_planes("sometimes", d)
