"""Metadata in and out (pipeline/core/metadata.py, tiff.py and images.encode): what a camera's
JPEG carries is read, checked, made upright and written into PNG, TIFF, JPEG and WebP files that
Pillow, tifffile and exiftool read back."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import GPS, MAKE, TAKEN, XMP, camera_exif, camera_jpeg, exiftool, icc_profile, needs_exiftool
from conftest import smooth_image as photo
from PIL import Image

from pipeline.core import images, metadata
from pipeline.core.metadata import Metadata, parse_exif
from pipeline.restoration.options import FORMATS


@pytest.mark.parametrize("order", ["<", ">"])
def test_upright_exif_patches_in_place_and_cuts_the_thumbnail(order: str) -> None:
    blob = camera_exif(56, 40, orientation=6, order=order)
    parsed = parse_exif(blob)
    assert parsed.order == order and parsed.number(0, metadata.ORIENTATION) == 6 and parsed.thumbnail_at
    out = metadata.upright_exif(parsed, 40, 56)
    again = parse_exif(out)
    assert again.number(0, metadata.ORIENTATION) == 1 and again.thumbnail_at == 0
    assert (again.number(metadata.EXIF_IFD, 0xA002), again.number(metadata.EXIF_IFD, 0xA003)) == (40, 56)
    assert metadata.gps_position(again) == pytest.approx(GPS, abs=1e-5)
    assert len(out) == parsed.thumbnail_at  # IFD1 and the thumbnail were the last bytes: cut off
    entries = [parsed.get(0, metadata.ORIENTATION), *(parsed.get(metadata.EXIF_IFD, t) for t in (0xA002, 0xA003))]
    patched = {e.at + 8 + i for e in entries for i in range(4)}
    ifd0 = struct.unpack_from(order + "I", blob, 4)[0]
    patched |= set(range(ifd0 + 2 + 12 * len(parsed.ifds[0]), ifd0 + 6 + 12 * len(parsed.ifds[0])))  # next IFD
    assert [i for i, (a, b) in enumerate(zip(blob, out, strict=False)) if a != b and i not in patched] == []


def test_gps_south_west_and_none() -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "S", (33.0, 51.0, 54.0), "W", (70.0, 40.0, 12.0)
    lat, lon = metadata.gps_position(parse_exif(exif.tobytes()[6:]))
    assert lat == pytest.approx(-33.865) and lon == pytest.approx(-70.67)
    assert Metadata(exif=camera_exif(8, 8, gps=False)).gps is None
    assert Metadata(xmp=b'<rdf:Description exif:GPSLatitude="52,22.0N"/>').has_gps


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"Exif garbage", "no TIFF header"),
        (b"MM\x00*\x00\x00\x10\x00", "outside"),
        (b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 200) + b"\x00" * 30, "runs past"),
    ],
    ids=["no-header", "ifd-outside", "ifd-truncated"],
)
def test_corrupt_exif_is_named(blob: bytes, message: str) -> None:
    with pytest.raises(metadata.MetadataError, match=message):
        parse_exif(blob)


def test_icc_problems() -> None:
    icc = icc_profile()
    assert metadata.icc_problem(icc) is None
    assert metadata.icc_problem(b"not a profile" * 20) == "not an ICC profile"
    assert "truncated" in metadata.icc_problem(icc[:300])
    broken = icc[:128] + b"\xff" * (len(icc) - 128)  # a header, then nonsense for a tag table
    assert metadata.icc_problem(broken) is not None


def test_decode_reads_the_metadata_and_keeps_broken_parts_out() -> None:
    rgb = photo(40, 56, 1)
    dec = images.decode_image(camera_jpeg(rgb, 90, 8), "phone.jpg")
    m = dec.meta
    assert (m.icc, m.xmp, m.orientation, m.notes) == (icc_profile(), XMP, 8, ())
    assert m.gps == pytest.approx(GPS, abs=1e-5) and m.icc_space == "RGB"

    buf = io.BytesIO()  # an EXIF whose IFD lies outside it, and an ICC profile that is not one
    Image.fromarray(rgb).save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x99\x99", icc_profile=b"x" * 200)
    broken = images.decode_image(buf.getvalue(), "broken.jpg")
    assert broken.meta.exif is None and broken.meta.icc is None and broken.meta.orientation == 1
    assert [n.split(" (")[0] for n in broken.meta.notes] == ["ICC profile not kept", "EXIF not kept"]
    np.testing.assert_array_equal(broken.rgb.shape, rgb.shape)


FORMAT_READ = {"png": "PNG", "tiff": "TIFF", "jpeg": "JPEG", "webp": "WEBP"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_carries_the_metadata(tmp_path: Path, fmt: str) -> None:
    dec = images.decode_image(camera_jpeg(photo(40, 56, 2), 90, 6), "phone.jpg")
    upright = np.ascontiguousarray(dec.upright())
    meta = dec.meta.upright(upright.shape[1], upright.shape[0])
    data, notes = images.encode(upright, fmt, meta)
    assert notes == ()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == FORMAT_READ[fmt] and im.size == (40, 56)
        assert im.info["icc_profile"] == icc_profile()  # byte for byte
        exif = im.getexif()
        assert exif[0x010F] == MAKE and exif[0x0112] == 1
        assert exif.get_ifd(0x8769)[0x9003] == TAKEN
        assert exif.get_ifd(0x8825)[2] == (52.0, 22.0, 1.5)
    again = images.decode_image(data, fmt)
    assert again.meta.xmp == XMP and again.meta.orientation == 1 and again.meta.icc == icc_profile()
    if fmt != "tiff":  # the EXIF block itself, byte for byte (TIFF lays its tags out again)
        assert again.meta.exif == meta.exif
    if fmt != "jpeg":
        np.testing.assert_array_equal(again.rgb, upright)


def test_sixteen_bit_png_and_tiff_keep_their_samples() -> None:
    rgb16 = np.random.default_rng(0).integers(0, 65536, (30, 44, 3), dtype=np.uint16)
    meta = Metadata(icc=icc_profile(), exif=camera_exif(44, 30, thumbnail=False), xmp=XMP)
    for fmt in ("png", "tiff"):
        data = images.encode(rgb16, fmt, meta).data
        dec = images.decode_image(data, fmt)
        assert dec.bits == 16 and dec.meta.icc == icc_profile()
        np.testing.assert_array_equal(dec.rgb16, rgb16)
    np.testing.assert_array_equal(tifffile.imread(io.BytesIO(images.encode(rgb16, "tiff", meta).data)), rgb16)
    with pytest.raises(images.ImageError, match="no 16-bit"):
        images.encode(rgb16, "jpeg")


def test_tiff_gray_and_alpha_and_odd_layouts() -> None:
    rng = np.random.default_rng(1)
    for img in (rng.integers(0, 256, (17, 23), dtype=np.uint8), rng.integers(0, 65536, (9, 700, 4), dtype=np.uint16)):
        np.testing.assert_array_equal(tifffile.imread(io.BytesIO(images.encode(img, "tiff").data)), img)
    with pytest.raises(ValueError, match="gray, RGB or RGBA"):
        images.encode(np.zeros((4, 4, 2), np.uint8), "tiff")


def test_jpeg_output_is_444_with_optimised_tables(tmp_path: Path) -> None:
    data = images.encode(photo(64, 64, 3), "jpeg", quality=95).data
    with Image.open(io.BytesIO(data)) as im:
        assert im.layer[0][1:3] == im.layer[1][1:3] == (1, 1)  # no chroma subsampling
    plain = io.BytesIO()
    Image.fromarray(photo(64, 64, 3)).save(plain, "JPEG", quality=95, subsampling=0)
    assert len(data) < len(plain.getvalue())  # optimised Huffman tables are smaller
    assert images.decode_image(data).qf == 95


def test_jpeg_drops_what_a_segment_cannot_hold() -> None:
    meta = Metadata(xmp=b"<x>" + b" " * 70_000 + b"</x>")
    data, notes = images.encode(photo(16, 16), "jpeg", meta)
    assert notes and notes[0].startswith("XMP not kept") and images.decode_image(data).meta.xmp is None


def test_webp_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(images.ImageError, match="over WebP's 16383"):
        images.encode(np.zeros((8, 16384, 3), np.uint8), "webp")


@needs_exiftool
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_exiftool_reads_every_format_without_warnings(tmp_path: Path, fmt: str) -> None:
    dec = images.decode_image(camera_jpeg(photo(40, 56, 4), 90, 6), "phone.jpg")
    upright = np.ascontiguousarray(dec.upright())
    for name, img in (("8bit", upright), ("16bit", upright.astype(np.uint16) * 257)):
        if img.dtype == np.uint16 and fmt in ("jpeg", "webp"):
            continue
        path = tmp_path / f"{name}{FORMATS[fmt]}"
        path.write_bytes(images.encode(img, fmt, dec.meta.upright(40, 56)).data)
        tags = exiftool(path)
        assert "ExifTool:Warning" not in tags, tags["ExifTool:Warning"]
        assert tags["IFD0:Make"] == MAKE and tags["ExifIFD:DateTimeOriginal"] == TAKEN
        assert tags["IFD0:Orientation"] == 1 and tags["ExifIFD:ExifImageWidth"] == 40
        assert (tags["Composite:GPSLatitude"], tags["Composite:GPSLongitude"]) == pytest.approx(GPS, abs=1e-5)
        assert tags["XMP-dc:Format"] == "image/jpeg" and "IFD1:ThumbnailLength" not in tags
        assert tags["ICC-header:ProfileCMMType"] or tags.get("ICC_Profile:ProfileDescription")
