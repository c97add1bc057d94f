"""A photo's metadata as bytes: its ICC profile, EXIF and XMP, checked on the way in and made
fit for an upright output on the way out (``images`` decodes and encodes the pixels).

EXIF is a small TIFF structure: IFD0 (camera, orientation, pointers to the Exif and GPS IFDs)
and IFD1 (an embedded thumbnail). It is kept byte for byte where the output format carries it
as a block (PNG, JPEG, WebP): the orientation and the pixel dimensions are patched in place and
the thumbnail (a small copy of the photo as it was, artifacts and all) is cut off, so maker
notes keep their offsets. TIFF holds EXIF in its own structure: ``ifd_fields`` hands the tags
over for ``tiff.py`` to lay out again.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageCms

EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
ORIENTATION = 0x0112
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
EXIF_PREFIX = b"Exif\x00\x00"


class MetadataError(ValueError):
    """Metadata that cannot be read; the message says where it breaks."""


@dataclass(frozen=True)
class Entry:
    """One IFD entry: ``value`` its bytes in the blob's byte order, ``at`` where the 12-byte
    entry starts; ``end`` where its value ends when it lies outside the entry (else 0)."""

    tag: int
    type: int
    count: int
    value: bytes
    at: int
    end: int = 0


@dataclass(frozen=True)
class Exif:
    """A parsed EXIF blob (TIFF structure, without the ``Exif\\0\\0`` prefix)."""

    blob: bytes
    order: str  # "<" (II) or ">" (MM)
    ifds: dict[int, list[Entry]]  # 0: IFD0, then EXIF_IFD, GPS_IFD, INTEROP_IFD when present
    extent: int  # where the last byte anything but the thumbnail uses ends
    thumbnail_at: int  # IFD1's offset (0: none)

    def get(self, ifd: int, tag: int) -> Entry | None:
        return next((e for e in self.ifds.get(ifd, ()) if e.tag == tag), None)

    def number(self, ifd: int, tag: int) -> int | None:
        e = self.get(ifd, tag)
        if e is None or e.type not in (3, 4) or e.count != 1:
            return None
        return struct.unpack(self.order + ("H" if e.type == 3 else "I"), e.value)[0]


def _read_ifd(blob: bytes, off: int, order: str) -> tuple[list[Entry], int, int]:
    """(entries, next IFD offset, end of the IFD and its values) of the IFD at ``off``."""
    if off < 8 or off + 2 > len(blob):
        raise MetadataError(f"an IFD at offset {off} lies outside its {len(blob)} bytes")
    (n,) = struct.unpack_from(order + "H", blob, off)
    end = off + 2 + 12 * n + 4
    if end > len(blob):
        raise MetadataError(f"the IFD at offset {off} ({n} entries) runs past its {len(blob)} bytes")
    entries = []
    for at in range(off + 2, off + 2 + 12 * n, 12):
        tag, typ, count = struct.unpack_from(order + "HHI", blob, at)
        size = TYPE_SIZES.get(typ, 0) * count
        if size <= 4:
            entries.append(Entry(tag, typ, count, blob[at + 8 : at + 8 + size], at))
            continue
        (where,) = struct.unpack_from(order + "I", blob, at + 8)
        if where + size > len(blob):
            raise MetadataError(f"tag {tag:#06x}'s value lies outside its {len(blob)} bytes")
        entries.append(Entry(tag, typ, count, blob[where : where + size], at, where + size))
    (nxt,) = struct.unpack_from(order + "I", blob, end - 4)
    return entries, nxt, max([end, *(e.end for e in entries)])


def parse_exif(blob: bytes) -> Exif:
    """Parse an EXIF blob; raises MetadataError saying what is wrong."""
    if blob[:4] not in (b"II*\x00", b"MM\x00*"):
        raise MetadataError("no TIFF header")
    order = "<" if blob[:2] == b"II" else ">"
    ifd0, thumbnail_at, extent = _read_ifd(blob, struct.unpack_from(order + "I", blob, 4)[0], order)
    ifds = {0: ifd0}
    for parent, tag in ((0, EXIF_IFD), (0, GPS_IFD), (EXIF_IFD, INTEROP_IFD)):
        pointer = next((e for e in ifds.get(parent, ()) if e.tag == tag), None)
        if pointer is not None and len(pointer.value) == 4:
            where = struct.unpack(order + "I", pointer.value)[0]
            ifds[tag], _, end = _read_ifd(blob, where, order)
            extent = max(extent, end)
    if thumbnail_at:
        _read_ifd(blob, thumbnail_at, order)  # a broken IFD1 is a broken blob
    return Exif(blob, order, ifds, extent, thumbnail_at)


def upright_exif(exif: Exif, width: int, height: int) -> bytes:
    """The blob with Orientation 1, the pixel dimensions ``width`` x ``height`` and no thumbnail;
    every other byte where it was."""
    blob = bytearray(exif.blob)
    for ifd, tag, value in (
        (0, ORIENTATION, 1),
        (0, 0x0100, width),
        (0, 0x0101, height),
        (EXIF_IFD, 0xA002, width),
        (EXIF_IFD, 0xA003, height),
    ):
        e = exif.get(ifd, tag)
        if e is not None and e.count == 1 and (e.type == 4 or (e.type == 3 and value < 65536)):
            struct.pack_into(exif.order + ("H" if e.type == 3 else "I"), blob, e.at + 8, value)
    if exif.thumbnail_at:
        ifd0 = struct.unpack_from(exif.order + "I", blob, 4)[0]
        n = struct.unpack_from(exif.order + "H", blob, ifd0)[0]
        struct.pack_into(exif.order + "I", blob, ifd0 + 2 + 12 * n, 0)  # IFD0 has no next IFD
        if exif.thumbnail_at >= exif.extent:  # IFD1 and its thumbnail at the end: cut them off
            del blob[exif.thumbnail_at :]
    return bytes(blob)


def _rationals(exif: Exif, tag: int) -> list[float] | None:
    e = exif.get(GPS_IFD, tag)
    if e is None or e.type != 5 or e.count != 3:
        return None
    nums = struct.unpack(exif.order + "6I", e.value)
    return [a / b if b else 0.0 for a, b in zip(nums[::2], nums[1::2], strict=True)]


def gps_position(exif: Exif) -> tuple[float, float] | None:
    """(latitude, longitude) in degrees, or None when the EXIF has no position."""
    lat, lon = _rationals(exif, 2), _rationals(exif, 4)
    if lat is None or lon is None:
        return None
    ref = {tag: e.value[:1].upper() if (e := exif.get(GPS_IFD, tag)) else b"" for tag in (1, 3)}
    deg = [d + m / 60 + s / 3600 for d, m, s in (lat, lon)]
    return (-deg[0] if ref[1] == b"S" else deg[0], -deg[1] if ref[3] == b"W" else deg[1])


def icc_problem(icc: bytes) -> str | None:
    """Why ``icc`` is not a usable ICC profile, or None."""
    if len(icc) < 132 or icc[36:40] != b"acsp":
        return "not an ICC profile"
    if struct.unpack(">I", icc[:4])[0] > len(icc):
        return f"truncated ({len(icc)} of {struct.unpack('>I', icc[:4])[0]} bytes)"
    try:
        ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError) as e:
        return f"rejected by LittleCMS ({e})"
    return None


@dataclass(frozen=True)
class Metadata:
    """What a file carries besides pixels. icc: the ICC profile (kept as it is: no colour is
    converted); exif: the EXIF blob (TIFF structure, checked); xmp: the XMP packet;
    orientation: EXIF's 1..8; notes: what the file carried that cannot be kept, and why."""

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    orientation: int = 1
    notes: tuple[str, ...] = ()

    @property
    def icc_space(self) -> str | None:
        """The profile's colour space: "RGB", "GRAY", "CMYK", ... (None: no profile)."""
        return self.icc[16:20].decode("latin-1").strip() if self.icc else None

    @property
    def gps(self) -> tuple[float, float] | None:
        """The EXIF's GPS position (latitude, longitude), or None."""
        return gps_position(parse_exif(self.exif)) if self.exif else None

    @property
    def has_gps(self) -> bool:
        """A position in the EXIF or in the XMP."""
        return self.gps is not None or bool(self.xmp and b"GPSLatitude" in self.xmp)

    def stripped(self) -> Metadata:
        """Only the ICC profile (colour is not private): no EXIF, XMP or GPS."""
        return Metadata(icc=self.icc, notes=self.notes)

    def upright(self, width: int, height: int) -> Metadata:
        """For the photo turned upright, ``width`` x ``height``: Orientation 1, no thumbnail."""
        exif = upright_exif(parse_exif(self.exif), width, height) if self.exif else None
        return dataclasses.replace(self, exif=exif, orientation=1)


def read_metadata(im: Image.Image) -> Metadata:
    """The ICC profile, EXIF, XMP and orientation of an image Pillow opened (nothing decoded);
    what is broken is left out with a note saying what and why."""
    info, notes = im.info, []
    icc = info.get("icc_profile") or None
    if icc is not None and (why := icc_problem(icc)):
        notes.append(f"ICC profile not kept ({why}): colours will be read as sRGB")
        icc = None
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or None
    if im.format == "TIFF":
        xmp = im.tag_v2.get(700) or xmp
    xmp = xmp.encode() if isinstance(xmp, str) else xmp
    exif, orientation = _exif_blob(im), im.getexif().get(ORIENTATION, 1) if im.format == "TIFF" else 1
    if exif is not None:
        try:
            parsed = parse_exif(exif)
            orientation = parsed.number(0, ORIENTATION) or orientation
        except (MetadataError, struct.error) as e:
            notes.append(f"EXIF not kept (corrupt: {e})")
            exif = None
    return Metadata(icc, exif, xmp, orientation if 1 <= orientation <= 8 else 1, tuple(notes))


# A TIFF file's own IFD0 holds its image structure besides EXIF tags: these are not EXIF.
STRUCTURE = {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 322, 323, 324, 325}
STRUCTURE |= {338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532, 700, 34675, 37724, 50341}
LAYOUT = {ORIENTATION, 282, 283, 296}  # a TIFF's orientation and resolution: EXIF only beside other tags


def _exif_blob(im: Image.Image) -> bytes | None:
    if im.format == "TIFF":  # its EXIF tags are the file's own: made into an EXIF blob
        exif = im.getexif()
        for tag in STRUCTURE & set(exif):
            del exif[tag]
        return exif.tobytes()[len(EXIF_PREFIX) :] if set(exif) - LAYOUT else None
    blob = im.info.get("exif") or None
    return blob[len(EXIF_PREFIX) :] if blob and blob.startswith(EXIF_PREFIX) else blob


def ifd_fields(exif: Exif, ifd: int) -> list[tuple[int, int, int, bytes]]:
    """(tag, type, count, value bytes in ``exif.order``) of one IFD, without the pointers to
    other IFDs and the tags of the image structure: what a TIFF writer copies."""
    skip = STRUCTURE | {EXIF_IFD, GPS_IFD, INTEROP_IFD, ORIENTATION}
    entries = exif.ifds.get(ifd, ())
    return [(e.tag, e.type, e.count, e.value) for e in entries if e.tag not in skip and e.type in TYPE_SIZES]
