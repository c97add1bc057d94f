"""JPEG forensics: tables <-> QF, header reading, the lattice and the grid at any offset, projection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import smooth_image

from pipeline.core import images, jpeg


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return smooth_image(256, 256, seed=1)


def test_qf_from_tables_round_trips_every_quality(photo: np.ndarray) -> None:
    small = photo[:32, :32]
    wrong = [q for q in range(5, 96) if jpeg.jpeg_quality(images.encode_jpeg(small, q)) != (q, True)]
    assert not wrong
    wrong = [q for q in range(5, 96) if jpeg.jpeg_quality(images.encode_jpeg(small, q, gray=True)) != (q, True)]
    assert not wrong


def test_jpeg_quality_of_non_ijg_tables_is_not_exact() -> None:
    luma, chroma = jpeg.ijg_tables(50)
    qf, exact = jpeg.qf_from_tables(luma + 1, chroma)
    assert qf == 50 and not exact


def test_header_tables_and_subsampling(photo: np.ndarray) -> None:
    assert jpeg.read_header(images.encode_png(photo)) is None
    for ss in ("4:2:0", "4:4:4"):
        h = jpeg.read_header(images.encode_jpeg(photo, 70, subsampling=ss))
        assert (h.qf, h.exact, h.subsampling) == (70, True, ss)
        np.testing.assert_array_equal(h.luma, jpeg.ijg_tables(70)[0])
        np.testing.assert_array_equal(h.chroma, jpeg.ijg_tables(70)[1])
    gray = jpeg.read_header(images.encode_jpeg(photo, 70, gray=True))
    assert gray.chroma is None and gray.subsampling == ""


@pytest.mark.parametrize("qf", [10, 50, 90])
def test_qf_from_pixels_recovers_a_single_jpeg(photo: np.ndarray, qf: int) -> None:
    # 1024 blocks: enough to tell QF 50 from 49, whose luma tables differ in a few steps only.
    found, score = jpeg.qf_from_pixels(images.jpeg_roundtrip(photo, qf))
    assert found == qf and score >= 0.1


def test_lattice_only_on_its_own_grid(photo: np.ndarray) -> None:
    assert jpeg.qf_from_pixels(photo)[1] < jpeg.LATTICE_MIN_SCORE  # never compressed
    cropped = images.jpeg_roundtrip(photo, 30)[3:, 5:]
    assert jpeg.qf_from_pixels(cropped)[1] < jpeg.LATTICE_MIN_SCORE  # grid not at the origin...
    assert jpeg.qf_from_pixels(cropped, (5, 3))[0] == 30  # ...but at (5, 3)
    assert jpeg.qf_from_pixels(photo[:7, :7]) == (None, 0.0)  # no whole block


@pytest.mark.parametrize(("crop", "qf"), [((0, 0), 20), ((3, 5), 20), ((7, 1), 40), ((2, 6), 70), ((5, 5), 90)])
def test_find_grid_after_a_crop(photo: np.ndarray, crop: tuple[int, int], qf: int) -> None:
    lq = images.jpeg_roundtrip(photo, qf)[crop[0] :, crop[1] :]
    ev = jpeg.find_grid(np.ascontiguousarray(lq), candidates=8)
    assert ev.offset == ((8 - crop[0]) % 8, (8 - crop[1]) % 8)
    assert ev.lattice_qf == qf


def test_blockiness_phase_and_strength(photo: np.ndarray) -> None:
    lq = images.jpeg_roundtrip(photo, 10)[2:, 6:]
    (py, px), (sy, sx) = jpeg.blockiness(jpeg.luma(lq))
    assert (py, px) == (6, 2) and min(sy, sx) > 0.2
    assert max(jpeg.blockiness(jpeg.luma(photo))[1]) < min(sy, sx) / 2  # never compressed: much weaker


def test_uniqueness_tells_jpeg_blocks_from_an_upscale(photo: np.ndarray) -> None:
    """Upscaled by 2, a photo steps at every other pixel: "blocky" at 8 px, but no phase stands
    out from the runner-up; a JPEG's blocks sit at one phase in 8, even after a gamma edit."""
    up = cv2.resize(photo, (photo.shape[1] * 2, photo.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    ev = jpeg.find_grid(up)
    assert ev.blocking >= 0.08 and ev.unique < 0.02
    lq = images.jpeg_roundtrip(photo, 30).astype(np.float64)
    edited = np.clip(255 * (lq / 255) ** 1.2 + 0.5, 0, 255).astype(np.uint8)
    ev = jpeg.find_grid(edited)
    assert ev.lattice_qf is None and ev.unique > 0.1


def test_find_grid_prefers_the_earlier_stronger_compression(photo: np.ndarray) -> None:
    """Cropped after QF 30, then saved at QF 95: both lattices are there; QF 30 is the strongest."""
    first = np.ascontiguousarray(images.jpeg_roundtrip(photo, 30)[3:, 5:])
    ev = jpeg.find_grid(images.jpeg_roundtrip(first, 95))
    assert (ev.offset, ev.lattice_qf) == ((5, 3), 30)
    assert {(o, q) for o, q, _ in ev.lattices} >= {((0, 0), 95), ((5, 3), 30)}


def test_find_grid_on_a_clean_photo(photo: np.ndarray) -> None:
    ev = jpeg.find_grid(photo, candidates=8)
    assert ev.lattice_qf is None and ev.lattices == ()


def test_ycc_round_trip() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.float64)
    np.testing.assert_allclose(jpeg.from_ycc(jpeg.to_ycc(rgb)), rgb, atol=1e-3)


@pytest.mark.parametrize(
    ("qf", "subsampling", "offset"), [(30, "4:4:4", (0, 0)), (60, "4:2:0", (0, 0)), (30, "4:4:4", (5, 3))]
)
def test_projection_moves_towards_the_truth(photo: np.ndarray, qf: int, subsampling: str, offset: tuple) -> None:
    """The true image lies in the quantization cells of its JPEG: clipping a bad estimate (here
    the JPEG blurred) into them brings its luma DCT coefficients closer, and the image too."""
    import cv2

    data = images.encode_jpeg(photo, qf, subsampling=subsampling)
    lq, header = images.decode_jpeg(data), jpeg.read_header(data)
    gt = photo
    if offset != (0, 0):  # the same, cropped: the grid moves to ``offset``
        cut = ((8 - offset[0]) % 8, (8 - offset[1]) % 8)
        lq, gt = lq[cut[0] :, cut[1] :], photo[cut[0] :, cut[1] :]
    pred = cv2.GaussianBlur(lq, (7, 7), 2.0).astype(np.float64)
    out = jpeg.project(pred, lq, header.luma, header.chroma, offset, subsampling)
    err_before = np.abs(jpeg.block_dct(jpeg.luma(pred), offset) - jpeg.block_dct(jpeg.luma(gt), offset))
    err_after = np.abs(jpeg.block_dct(jpeg.luma(out), offset) - jpeg.block_dct(jpeg.luma(gt), offset))
    # (the encoder's fixed-point arithmetic leaves a few true coefficients just outside their cell)
    assert (err_after > err_before + 1e-9).mean() < 1e-3 and err_after.sum() < err_before.sum()
    mse = lambda a: float(((a - gt.astype(np.float64)) ** 2).mean())  # noqa: E731
    assert mse(np.clip(out, 0, 255)) < mse(pred)


def test_projection_leaves_the_jpeg_itself_alone(photo: np.ndarray) -> None:
    data = images.encode_jpeg(photo, 50, subsampling="4:4:4")
    lq, h = images.decode_jpeg(data), jpeg.read_header(data)
    out = jpeg.project(lq.astype(np.float64), lq, h.luma, h.chroma, (0, 0), h.subsampling)
    np.testing.assert_allclose(out, lq, atol=1e-6)
