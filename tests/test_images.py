"""Pixel I/O: decoding odd files, the header's QF, atomic writes, luma (forensics: test_jpeg.py)."""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image, ImageOps

from pipeline.core import files, images
from pipeline.core.images import ImageError


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return smooth_image(96, 128, seed=3)


def test_decode_jpeg_matches_read_and_keeps_the_header_qf(tmp_path: Path, photo: np.ndarray) -> None:
    data = images.encode_jpeg(photo, 37)
    path = tmp_path / "a.jpg"
    images.write_bytes(path, data)
    dec = images.read_decoded(path)
    assert (dec.qf, dec.qf_exact, dec.bits, dec.gray, dec.alpha) == (37, True, 8, False, None)
    np.testing.assert_array_equal(dec.rgb, images.decode_jpeg(data))
    assert dec.rgb.shape == photo.shape and dec.rgb.dtype == np.uint8


def test_decode_grayscale_png(photo: np.ndarray) -> None:
    gray = photo[:, :, 1]
    ok, buf = cv2.imencode(".png", gray)
    dec = images.decode_image(buf.tobytes(), "g.png")
    assert dec.gray and dec.bits == 8 and dec.qf is None
    assert dec.rgb.shape == (*gray.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(dec.rgb[:, :, c], gray)


def test_decode_16_bit_png(photo: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    alpha16 = rng.integers(0, 65536, size=(20, 30), dtype=np.uint16)
    dec = images.decode_image(images.encode_png(rgb16, alpha16), "deep.png")
    assert dec.bits == 16
    assert dec.rgb.dtype == np.uint8
    np.testing.assert_array_equal(dec.rgb, np.round(rgb16 / 257.0).astype(np.uint8))
    np.testing.assert_array_equal(dec.rgb16, rgb16)  # the samples themselves, for the output
    np.testing.assert_array_equal(dec.alpha, alpha16)


def test_decode_rgba_png_keeps_alpha(photo: np.ndarray) -> None:
    alpha = np.tile(np.arange(photo.shape[1], dtype=np.uint8), (photo.shape[0], 1))
    dec = images.decode_image(images.encode_png(photo, alpha), "a.png")
    np.testing.assert_array_equal(dec.rgb, photo)
    np.testing.assert_array_equal(dec.alpha, alpha)


def test_decode_keeps_the_stored_pixels_and_the_exif_orientation(tmp_path: Path, photo: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=95, exif=exif)
    data = buf.getvalue()
    dec = images.decode_image(data, "phone.jpg")
    assert dec.rgb.shape == photo.shape and dec.orientation == 6  # as stored: the JPEG's grid and tables
    upright = dec.upright()
    assert upright.shape == (photo.shape[1], photo.shape[0], 3) and dec.size == (photo.shape[0], photo.shape[1])
    assert np.shares_memory(upright, dec.rgb)  # a view
    with Image.open(io.BytesIO(data)) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.abs(upright.astype(int) - expected).mean() < 1.0  # two JPEG decoders: rounding only
    clockwise, counter = (np.abs(upright.astype(int) - np.rot90(photo, k)).mean() for k in (-1, 1))
    assert clockwise < 6 < counter
    (tmp_path / "phone.jpg").write_bytes(data)
    np.testing.assert_array_equal(images.read_image(tmp_path / "phone.jpg"), upright)  # references are read upright


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10, "not a readable image"),
        (b"just some text, not an image\n", "not a readable image"),
    ],
    ids=["empty", "corrupt", "text"],
)
def test_decode_bad_bytes_names_the_file(data: bytes, match: str) -> None:
    with pytest.raises(ImageError, match=match) as err:
        images.decode_image(data, "holiday.png")
    assert "holiday.png" in str(err.value)


def test_read_missing_and_truncated_files_name_them(tmp_path: Path, photo: np.ndarray) -> None:
    with pytest.raises(ImageError, match="nope.png"):
        images.read_image(tmp_path / "nope.png")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(images.encode_jpeg(photo, 50)[:200])
    with pytest.raises(ImageError, match="cut.jpg"):
        images.read_image(cut)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(10_000, 6_000), (100_000, 100_000)], ids=["60MP", "10GP"])
def test_pixel_limit_refuses_before_decoding(size: tuple[int, int]) -> None:
    with pytest.raises(ImageError, match="pixel limit") as err:
        images.decode_image(png_claiming(*size), "bomb.png")
    assert "bomb.png" in str(err.value)


def test_pixel_limit_argument(photo: np.ndarray) -> None:
    data = images.encode_png(photo)
    with pytest.raises(ImageError, match="pixel limit"):
        images.decode_image(data, "big.png", max_pixels=photo.shape[0] * photo.shape[1] - 1)
    assert images.decode_image(data, "ok.png", max_pixels=photo.shape[0] * photo.shape[1]).rgb.shape == photo.shape


def test_write_png_round_trips_atomically(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "sub" / "out.png"
    images.write_png(path, photo)
    assert os.listdir(path.parent) == ["out.png"]
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o444 == 0o444, oct(mode)  # an ordinary file, not mkstemp's private 0600
    np.testing.assert_array_equal(images.read_image(path), photo)


def test_write_png_failure_keeps_the_old_file(
    tmp_path: Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.png"
    images.write_png(path, photo)
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        images.write_png(path, 255 - photo)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left behind


def test_encode_jpeg_rejects_bad_input(photo: np.ndarray) -> None:
    for qf in (0, 101):
        with pytest.raises(ValueError, match="1..100"):
            images.encode_jpeg(photo, qf)
    with pytest.raises(ImageError, match="RGB uint8"):
        images.encode_jpeg(photo.astype(np.float32), 50)
    with pytest.raises(ImageError, match="RGB uint8"):
        images.encode_jpeg(photo[:, :, 0], 50)


def test_decode_jpeg_gray_gives_three_channels(photo: np.ndarray) -> None:
    out = images.decode_jpeg(images.encode_jpeg(photo, 50, gray=True))
    assert out.shape == photo.shape
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_list_images(tmp_path: Path, photo: np.ndarray) -> None:
    for name in ("b.PNG", "a.jpg", "notes.txt", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in images.list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]


def test_rgb_to_y_is_the_protocol_formula() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    np.testing.assert_allclose(images.rgb_to_y(rgb), 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255, rtol=1e-12)
    assert images.rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert images.rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
