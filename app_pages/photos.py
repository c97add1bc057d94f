"""Pure helpers of the Restore page: uploads -> photos (a zip gives its images), restored files ->
one zip, a photo's metadata -> the sentences the page shows."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath

from PIL import ImageCms

from pipeline.core import images
from pipeline.core.metadata import Metadata

ZIP_MAX_BYTES = 4 << 30  # a zip's images together, uncompressed: a zip bomb stops here


class UploadError(ValueError):
    """An upload that cannot be used; the message names it."""


def unpack(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(name, bytes) of the photos in uploaded ``files``: a zip gives its image members, named by
    their path in it (hidden files and macOS resource forks left out)."""
    photos = []
    for name, data in files:
        if not name.lower().endswith(".zip"):
            photos.append((name, data))
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                members = [m for m in z.infolist() if not m.is_dir() and _photo_path(m.filename)]
                total = sum(m.file_size for m in members)
                if total > ZIP_MAX_BYTES:
                    raise UploadError(f"{name}: {total / 1e9:.1f} GB of images, over {ZIP_MAX_BYTES / 1e9:.1f} GB")
                photos += [(_photo_path(m.filename), z.read(m)) for m in members]
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError) as e:
            raise UploadError(f"{name}: not a readable zip ({e})") from None
    return photos


def _photo_path(name: str) -> str:
    """A zip member's path when it is a photo to restore ("" otherwise), without "..", "/" or drive."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", "..", ".") and ":" not in p]
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return ""
    return "/".join(parts) if PurePosixPath(parts[-1]).suffix.lower() in images.IMAGE_SUFFIXES else ""


def output_names(names: Sequence[str], suffix: str) -> list[str]:
    """Each input's output name (``suffix`` for its own), made unique: a.jpg and a.png -> a.png, a_2.png."""
    out, seen = [], set()
    for name in names:
        stem = str(PurePosixPath(name).with_suffix(""))
        candidate, n = stem + suffix, 1
        while candidate in seen:
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        seen.add(candidate)
        out.append(candidate)
    return out


def zip_files(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip of (name, bytes); stored, not deflated: the photos are compressed already."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def profile_name(icc: bytes) -> str:
    """The ICC profile's description (e.g. "Display P3"), else its colour space."""
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "ICC"
    except (OSError, ImageCms.PyCMSError):
        return "ICC"


def kept(meta: Metadata, strip: bool) -> str:
    """What of ``meta`` a restored file keeps, e.g. "ICC profile (Display P3), EXIF, XMP", or "none"."""
    parts = [f"ICC profile ({profile_name(meta.icc)})"] if meta.icc else []
    if not strip:
        parts += [name for name, value in (("EXIF", meta.exif), ("XMP", meta.xmp)) if value]
    return ", ".join(parts) or "none"


def gps_text(meta: Metadata) -> str | None:
    """Where the photo says it was taken ("52.36722° N, 4.88333° E"), "a position in its XMP", or None."""
    position = meta.gps
    if position is not None:
        (lat, lon) = position
        return f"{abs(lat):.5f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.5f}° {'E' if lon >= 0 else 'W'}"
    return "a position in its XMP" if meta.has_gps else None
