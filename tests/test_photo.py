"""pipeline.restoration.photo: every branch of the QF/grid decision; the Restorer restoring on the grid,
projecting, and leaving clean photos alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import smooth_image

from pipeline.core import images, jpeg
from pipeline.models import build_model
from pipeline.restoration import photo
from pipeline.restoration.export import torch_estimate
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer

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


def reading(qf: float):
    """The learned estimator of ``model_reading(qf)``, as ``photo.decide`` takes it."""
    return torch_estimate(model_reading(qf))


def restorer(model: torch.nn.Module, **options) -> Restorer:
    """The model restoring on the CPU in torch, whole images (what these tests compare)."""
    return Restorer(model, RestoreOptions(tile=0, engine="torch", device="cpu").replace(**options))


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    return smooth_image(256, 256, seed=4)


def crop(img: np.ndarray, n: tuple[int, int] = (3, 5)) -> np.ndarray:
    return np.ascontiguousarray(img[n[0] :, n[1] :])


def decoded(data: bytes) -> images.Decoded:
    return images.decode_image(data, "test")


def test_user_qf_wins_and_the_grid_is_still_found(gt: np.ndarray) -> None:
    dec = decoded(images.encode_png(crop(images.jpeg_roundtrip(gt, 20))))
    d = photo.decide(reading(80), dec.rgb, dec.header, user_qf=45)
    assert (d.qf, d.source, d.offset) == (45, "user", (5, 3))
    assert "set by the user" in d.message


def test_header_of_an_aligned_jpeg(gt: np.ndarray) -> None:
    dec = decoded(images.encode_jpeg(gt, 35, subsampling="4:4:4"))
    d = photo.decide(reading(80), dec.rgb, dec.header)
    assert (d.qf, d.source, d.offset, d.subsampling) == (35, "header", (0, 0), "4:4:4")
    np.testing.assert_array_equal(d.luma_table, jpeg.ijg_tables(35)[0])
    assert d.message == "QF 35 from the JPEG header"


@pytest.mark.parametrize("qf", [10, 30])
def test_re_saved_jpeg_decided_by_the_earlier_lattice(gt: np.ndarray, qf: int) -> None:
    """At QF 10 the lattice under the QF 95 re-save is faint; the blocking on its grid corroborates it."""
    dec = decoded(images.encode_jpeg(crop(images.jpeg_roundtrip(gt, qf)), 95))
    d = photo.decide(reading(80), dec.rgb, dec.header)
    assert (d.qf, d.source, d.offset) == (qf, "pixels", (5, 3))
    assert d.message == f"QF {qf} at grid offset (5, 3) from pixels; header says 95 (re-saved)"
    assert d.chroma_table is None  # the earlier JPEG's chroma is unknown: luma-only projection


def test_recompressed_after_a_crop_decided_by_the_estimator(gt: np.ndarray) -> None:
    """QF 5, cropped, saved at QF 50: the QF 5 blocking still dominates, on its shifted grid,
    but no lattice survives; the estimator reads that grid, and decides when clearly below 50."""
    dec = decoded(images.encode_jpeg(crop(images.jpeg_roundtrip(gt, 5)), 50))
    assert jpeg.blockiness(jpeg.luma(dec.rgb))[0] == (5, 3)
    d = photo.decide(reading(15), dec.rgb, dec.header)
    assert (d.source, d.offset, round(d.qf)) == ("estimated", (5, 3), 15)
    assert d.message.endswith("header says 50 (recompressed)")
    d = photo.decide(reading(45), dec.rgb, dec.header)  # not clearly lower: the header stands
    assert (d.source, d.qf) == ("header", 50)


@pytest.mark.parametrize("qf", [30, 60, 90])
def test_a_single_jpeg_is_never_taken_for_a_recompressed_one(gt: np.ndarray, qf: int) -> None:
    dec = decoded(images.encode_jpeg(gt, qf))
    d = photo.decide(reading(3), dec.rgb, dec.header)  # even with an estimator reading 3
    assert (d.source, d.qf, d.offset) == ("header", qf, (0, 0))


@pytest.mark.parametrize(("cut", "offset"), [((0, 0), (0, 0)), ((3, 5), (5, 3))])
def test_png_decided_by_the_lattice_at_any_offset(gt: np.ndarray, cut: tuple, offset: tuple) -> None:
    dec = decoded(images.encode_png(crop(images.jpeg_roundtrip(gt, 25), cut)))
    assert dec.header is None
    d = photo.decide(reading(80), dec.rgb, dec.header)
    assert (d.qf, d.source, d.offset) == (25, "pixels", offset)


def test_blocking_without_lattice_uses_the_estimator_on_that_grid(gt: np.ndarray) -> None:
    noisy = images.jpeg_roundtrip(gt, 10).astype(np.float64) + np.random.default_rng(0).normal(0, 2.0, gt.shape)
    img = crop(np.clip(noisy, 0, 255).astype(np.uint8), (2, 6))  # the noise wipes out the lattice
    ev = jpeg.find_grid(img)
    assert ev.lattice_qf is None and ev.unique >= photo.UNIQUE_MIN  # the blocks, at one phase in 8
    d = photo.decide(reading(50), img, None)  # not low enough to restore on its own
    assert (d.source, d.offset, round(d.qf)) == ("estimated", (6, 2), 50)
    assert d.message == "QF 50 at grid offset (6, 2) estimated (blocking, no lattice)"


def test_estimate_of_a_large_photo_reads_its_centre_on_the_grid() -> None:
    """A 12 MP photo's estimate took 1.0 s on one thread; its centre (1024 px square, cut on the
    8x8 grid) took 0.06 s and reads the same compression."""
    torch.manual_seed(1)
    model = build_model("qacnet", width=8, mid_blocks=1, emb_dim=16, estimator_width=16).eval()
    img = smooth_image(1100, 1060, seed=2)
    centre = img[32 : 32 + photo.ESTIMATE_CROP, 16 : 16 + photo.ESTIMATE_CROP]  # offsets on multiples of 8
    assert photo.estimate_on_grid(torch_estimate(model), img, (0, 0)) == pytest.approx(
        torch_estimate(model)(centre), abs=1e-4
    )
    assert photo.estimate_on_grid(torch_estimate(model), img, (0, 0)) != pytest.approx(
        torch_estimate(model)(img), abs=1e-3
    )


def test_clean_photo_is_left_alone(gt: np.ndarray) -> None:
    model = model_reading(97)
    out, d = restorer(model).restore_photo(gt)
    assert d.unchanged and d.source == "none" and d.message == photo.CLEAN_MESSAGE
    np.testing.assert_array_equal((out * 255 + 0.5).astype(np.uint8), gt)
    out, d = restorer(model, qf=60).restore_photo(gt)  # --q forces it
    assert d.qf == 60 and not np.array_equal((out * 255 + 0.5).astype(np.uint8), gt)


def soft_image(h: int, w: int, seed: int) -> np.ndarray:
    """Slow gradients and little noise: JPEG blocks stand out (a sky, a wall)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 90 * np.sin(x / (17 + 9 * rng.random()) + rng.random() * 6),
            128 + 90 * np.cos(y / (19 + 9 * rng.random())),
            128 + 60 * np.sin((x + y) / (23 + 5 * rng.random())),
        ],
        axis=2,
    )
    return np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)


def resized(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)


def test_resized_jpeg_is_restored_only_on_a_very_low_estimate() -> None:
    """Resized after compression, a JPEG keeps no lattice and no 8x8 blocks: it looks like a photo
    never compressed, and only an estimate below any clean photo's restores it."""
    img = cv2.resize(images.jpeg_roundtrip(soft_image(384, 512, 1), 10), (358, 269), interpolation=cv2.INTER_AREA)
    ev = jpeg.find_grid(img)  # resized by 0.7: the 8x8 phases average out
    assert ev.lattice_qf is None and ev.blocking < photo.BLOCKING_MIN
    assert photo.decide(reading(60), img, None).unchanged
    d = photo.decide(reading(15), img, None)
    assert (d.source, round(d.qf)) == ("estimated", 15)
    assert d.message == "QF 15 estimated (no grid found)"


def test_upscaled_clean_photo_is_left_alone() -> None:
    """Upscaled by 2, a photo never compressed steps at every other pixel: as "blocky" at 8 px as
    a JPEG, but no phase stands out from the runner-up. Left alone, like one upscaled by 1.25,
    unless the estimate is below any clean photo's."""
    gt = soft_image(192, 256, 3)
    for f in (2.0, 1.25):
        up = cv2.resize(gt, (round(256 * f), round(192 * f)), interpolation=cv2.INTER_LINEAR)
        ev = jpeg.find_grid(up)
        assert ev.lattice_qf is None and ev.unique < photo.UNIQUE_MIN
        assert (ev.blocking >= photo.BLOCKING_MIN) == (f == 2.0)
        assert photo.decide(reading(60), up, None).unchanged
    assert photo.decide(reading(15), up, None).source == "estimated"


def test_no_trace_of_jpeg_needs_a_very_low_estimate() -> None:
    """Without a lattice or blocks, the estimator reads photos never compressed (upscaled ones
    included) as low as 28: a reading of 40 leaves the photo alone, only one below 20 restores it."""
    img = smooth_image(120, 136, seed=8)
    assert max(jpeg.blockiness(jpeg.luma(img))[1]) < photo.BLOCKING_MIN
    assert photo.decide(reading(40), img, None).unchanged
    d = photo.decide(reading(18), img, None)
    assert (d.source, d.offset, round(d.qf)) == ("estimated", (0, 0), 18)
    assert d.message == "QF 18 estimated (no grid found)"


def test_restoring_on_the_grid_matches_the_aligned_restoration(gt: np.ndarray) -> None:
    """A cropped JPEG restored on its detected grid is the aligned JPEG's restoration, cropped
    (away from the borders the padding touches)."""
    model = model_reading(80)
    lq = images.jpeg_roundtrip(gt, 20)
    whole, _ = restorer(model, projection="off").restore_photo(lq)
    part, d = restorer(model, projection="off").restore_photo(crop(lq))
    assert d.offset == (5, 3)
    np.testing.assert_allclose(part[16:-16, 16:-16], whole[3:, 5:][16:-16, 16:-16], atol=2e-3)
    misaligned = restorer(model, projection="off").restore(crop(lq), photo.Decision(20.0, "user", (0, 0), ""))
    assert (
        np.abs(misaligned - whole[3:, 5:])[16:-16, 16:-16].mean()
        > 10 * np.abs(part - whole[3:, 5:])[16:-16, 16:-16].mean()
    )


def test_projection_modes(gt: np.ndarray) -> None:
    model = model_reading(80)
    dec = decoded(images.encode_jpeg(gt, 40))
    off, d = restorer(model, projection="off").restore_photo(dec.rgb, dec.header)
    auto, _ = restorer(model, projection="auto").restore_photo(dec.rgb, dec.header)
    on, _ = restorer(model, projection="on").restore_photo(dec.rgb, dec.header)
    assert photo.projection_planes("off", d) == (False, False)
    assert photo.projection_planes("auto", d) == (True, False)  # 4:2:0 chroma: only when asked
    assert photo.projection_planes("on", d) == (True, True)
    assert not np.array_equal(off, auto) and not np.array_equal(auto, on) and np.abs(on - off).max() < 0.5
    full = decoded(images.encode_jpeg(gt, 40, subsampling="4:4:4"))
    assert photo.projection_planes("auto", photo.decide(torch_estimate(model), full.rgb, full.header)) == (True, True)
    png = decoded(images.encode_png(dec.rgb))  # tables from the lattice: luma only (chroma unknown)
    assert photo.projection_planes("on", photo.decide(torch_estimate(model), png.rgb, png.header)) == (True, False)
    with pytest.raises(ValueError, match="projection must be one of"):
        photo.projection_planes("sometimes", d)
