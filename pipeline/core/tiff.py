"""A baseline TIFF writer for restored photos: 8 or 16 bits, grayscale or RGB, with or without
alpha, Deflate-compressed with the horizontal predictor, carrying the ICC profile, the XMP
packet and the EXIF tags (IFD0's, and the Exif, GPS and Interoperability IFDs) of the photo.

Pillow cannot write 16-bit RGB and OpenCV writes no metadata; a TIFF is simple enough to write:
a header, the compressed strips, and IFDs of 12-byte entries whose values longer than 4 bytes
lie after them. The file takes the EXIF's byte order, so its tags are copied byte for byte.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from pipeline.core.metadata import EXIF_IFD, GPS_IFD, INTEROP_IFD, Exif, ifd_fields

STRIP_BYTES = 1 << 18  # about 256 KiB of pixels per strip: readers decode pieces, not the whole

Field = tuple[int, int, int, bytes]  # tag, type, count, value in the file's byte order
Ifd = tuple[list[Field], dict[int, "Ifd"]]  # its fields, and the IFDs its pointer tags point at


def _ifd_bytes(order: str, ifd: Ifd, at: int) -> bytes:
    """The IFD written at offset ``at`` (even): entries, then long values, then its sub-IFDs."""
    fields, subs = ifd
    n = len(fields) + len(subs)
    values, entries = bytearray(), []
    start = at + 2 + 12 * n + 4
    for tag, typ, count, value in fields:
        if len(value) <= 4:
            entries.append((tag, typ, count, value.ljust(4, b"\x00")))
            continue
        entries.append((tag, typ, count, struct.pack(order + "I", start + len(values))))
        values += value + b"\x00" * (len(value) % 2)  # values start on a word boundary
    children = bytearray()
    for tag, sub in sorted(subs.items()):
        where = start + len(values) + len(children)
        entries.append((tag, 4, 1, struct.pack(order + "I", where)))
        children += _ifd_bytes(order, sub, where)
    entries.sort()
    head = struct.pack(order + "H", n) + b"".join(struct.pack(order + "HHI", *e[:3]) + e[3] for e in entries)
    return head + b"\x00\x00\x00\x00" + values + children


def _shorts(order: str, *values: int) -> tuple[int, int, bytes]:
    return 3, len(values), struct.pack(order + f"{len(values)}H", *values)


def _longs(order: str, values: list[int]) -> tuple[int, int, bytes]:
    return 4, len(values), struct.pack(order + f"{len(values)}I", *values)


def encode_tiff(
    img: np.ndarray, icc: bytes | None = None, xmp: bytes | None = None, exif: Exif | None = None, level: int = 6
) -> bytes:
    """TIFF bytes of ``img``: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA (alpha unassociated;
    a gray image with alpha is given as RGBA), uint8 or uint16."""
    shape_ok = img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
    if img.dtype not in (np.uint8, np.uint16) or not shape_ok:
        raise ValueError(f"expected a gray, RGB or RGBA uint8/uint16 image, got {img.dtype} {img.shape}")
    order = exif.order if exif is not None else "<"
    h, w = img.shape[:2]
    spp = 1 if img.ndim == 2 else img.shape[2]
    bits = img.dtype.itemsize * 8
    samples = img.reshape(h, w * spp) if img.ndim == 3 else img
    diff = samples.copy()  # the horizontal predictor: each sample minus its left neighbour's, modulo 2^bits
    diff[:, spp:] -= samples[:, :-spp]
    raw = diff.astype(diff.dtype.newbyteorder(order)).tobytes()
    row = w * spp * img.dtype.itemsize
    rows = max(1, STRIP_BYTES // row)
    strips = [zlib.compress(raw[y * row : (y + rows) * row], level) for y in range(0, h, rows)]
    offsets, at = [], 8
    for s in strips:
        offsets.append(at)
        at += len(s) + len(s) % 2
    fields: list[Field] = [
        (256, *_longs(order, [w])),
        (257, *_longs(order, [h])),
        (258, *_shorts(order, *[bits] * spp)),
        (259, *_shorts(order, 8)),  # Deflate
        (262, *_shorts(order, 2 if spp >= 3 else 1)),  # RGB, or BlackIsZero
        (273, *_longs(order, offsets)),
        (274, *_shorts(order, 1)),  # upright
        (277, *_shorts(order, spp)),
        (278, *_longs(order, [rows])),
        (279, *_longs(order, [len(s) for s in strips])),
        (284, *_shorts(order, 1)),  # chunky: RGBRGB...
        (317, *_shorts(order, 2)),  # horizontal differencing
    ]
    if spp == 4:
        fields.append((338, *_shorts(order, 2)))  # ExtraSamples: unassociated alpha
    if xmp:
        fields.append((700, 1, len(xmp), xmp))
    if icc:
        fields.append((34675, 7, len(icc), icc))
    subs: dict[int, Ifd] = {}
    if exif is not None:
        fields += ifd_fields(exif, 0)
        if EXIF_IFD in exif.ifds:
            interop = {INTEROP_IFD: (ifd_fields(exif, INTEROP_IFD), {})} if INTEROP_IFD in exif.ifds else {}
            subs[EXIF_IFD] = (ifd_fields(exif, EXIF_IFD), interop)
        if GPS_IFD in exif.ifds:
            subs[GPS_IFD] = (ifd_fields(exif, GPS_IFD), {})
    header = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", at)
    body = b"".join(s + b"\x00" * (len(s) % 2) for s in strips)
    return header + body + _ifd_bytes(order, (fields, subs), at)
