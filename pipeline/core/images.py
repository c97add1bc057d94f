"""The only pixel I/O of the project, metadata in and out (``metadata.py``, ``tiff.py``).

At every boundary an image is an RGB ``uint8`` array of shape (H, W, 3). OpenCV's BGR order
never leaves this module. JPEG encoding follows the published protocol exactly:
``cv2.imencode('.jpg', bgr, [IMWRITE_JPEG_QUALITY, q])`` (4:2:0 chroma) and ``cv2.imdecode``.
A user's file decodes to the pixels as it stores them (``Decoded``: its 8x8 grid and tables
are there), with its EXIF orientation and metadata; ``Decoded.upright`` turns them for display,
and ``encode`` writes an upright restored photo as PNG, TIFF, JPEG or WebP with its metadata.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.core import tiff
from pipeline.core.files import write_bytes  # images.write_bytes: encoded image bytes, atomically
from pipeline.core.jpeg import Header, read_header
from pipeline.core.metadata import EXIF_PREFIX, Metadata, parse_exif, read_metadata

# OpenCV's own thread pool deadlocks in processes forked after it started (DataLoader workers,
# process pools). Our images are small or processed one per worker: run OpenCV single-threaded.
cv2.setNumThreads(1)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_PIXELS = 50_000_000  # decompression-bomb guard: 50 MP


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Decoded:
    """A decoded user image, as the file stores it (before its EXIF orientation is applied).

    rgb: (H, W, 3) uint8. alpha: (H, W) at the source depth (uint8, or uint16 for 16-bit) or
    None. bits: 8 or 16 (source depth). rgb16: the (H, W, 3) uint16 samples of a 16-bit source
    (``rgb`` holds them rounded to 8 bits), else None.
    qf: JPEG quality read from the quantization tables (None when not a JPEG).
    qf_exact: True when the tables are exactly IJG tables at ``qf``.
    header: the JPEG header's tables and chroma subsampling (None when not a JPEG).
    meta: its ICC profile, EXIF, XMP and orientation, with notes on what cannot be kept.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bits: int
    qf: int | None
    qf_exact: bool
    gray: bool
    header: Header | None = None
    meta: Metadata = Metadata()
    rgb16: np.ndarray | None = None

    @property
    def orientation(self) -> int:
        return self.meta.orientation

    def upright(self, img: np.ndarray | None = None) -> np.ndarray:
        """``img`` (default ``rgb``; any array of the stored height and width) turned as the
        EXIF orientation asks, as the photo is shown: a view, no copy."""
        return turn(self.rgb if img is None else img, self.meta.orientation)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) upright."""
        h, w = self.rgb.shape[:2]
        return (h, w) if self.meta.orientation >= 5 else (w, h)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    if not Path(folder).is_dir():
        raise ImageError(f"{folder}: folder not found")
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def turn(img: np.ndarray, orientation: int) -> np.ndarray:
    """An HWC or HW array rotated/flipped as EXIF orientation 1..8 asks: a view, no copy."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    op = ops.get(orientation)
    return op(img) if op else img


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> Decoded:
    """Decode file bytes (any format OpenCV reads) into RGB uint8 plus alpha, QF and metadata,
    as the file stores them (``Decoded.upright`` applies the EXIF orientation).

    Grayscale becomes 3 equal channels (``gray=True``); 16-bit is rounded to 8-bit
    (``bits=16``, the samples kept in ``rgb16``); CMYK JPEGs are converted to RGB.
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    meta = probe(data, name, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data": meta.notes say what is not kept
        header = read_header(data)
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError(f"{name}: not a readable image (corrupt or unsupported format)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{name}: unsupported sample type {img.dtype} (need 8 or 16-bit)")
    bits = 16 if img.dtype == np.uint16 else 8
    alpha = None
    if img.ndim == 2 or img.shape[2] == 1:
        gray = img.reshape(img.shape[0], img.shape[1])
        deep = np.repeat(gray[:, :, None], 3, axis=2)
    elif img.shape[2] == 3:
        deep = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4 and data[:2] == b"\xff\xd8":  # CMYK JPEG: let OpenCV convert
        deep = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION), cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4:
        deep = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        alpha = img[:, :, 3].copy()
    else:
        raise ImageError(f"{name}: unsupported channel count {img.shape[2]}")
    rgb = ((deep.astype(np.uint32) + 128) // 257).astype(np.uint8) if bits == 16 else deep
    is_gray = bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]))
    qf, exact = (None, False) if header is None else (header.qf, header.exact)
    rgb16 = deep if bits == 16 else None
    return Decoded(np.ascontiguousarray(rgb), alpha, bits, qf, exact, is_gray, header, meta, rgb16)


def probe(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> Metadata:
    """A file's metadata, from its header (nothing decoded); raises ImageError for an image over
    ``max_pixels``, so that it is refused before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data": read_metadata notes what is broken
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                meta = read_metadata(im)
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image is over the {max_pixels / 1e6:.0f} MP pixel limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return Metadata()  # a format Pillow does not know: OpenCV decides below
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} = {w * h / 1e6:.1f} MP is over the {max_pixels / 1e6:.0f} MP pixel limit")
    return meta


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read any image file as RGB uint8 (H, W, 3), upright; raise ImageError naming the file."""
    decoded = read_decoded(path, max_pixels)
    return np.ascontiguousarray(decoded.upright())


def read_decoded(path: str | Path, max_pixels: int = MAX_PIXELS) -> Decoded:
    """A file as it stores its pixels, with alpha, bit depth, JPEG quality and metadata."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    return decode_image(data, str(path), max_pixels)


def encode_png(rgb: np.ndarray, alpha: np.ndarray | None = None, compression: int | None = None) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or grayscale (H, W) uint8/uint16 image, with optional
    alpha of the same depth (a grayscale image with alpha is written as RGBA). ``compression``:
    zlib level 0..9 (None: OpenCV's fastest setting)."""
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    if rgb.ndim == 2 and rgb.dtype in (np.uint8, np.uint16):
        if alpha is None:
            ok, buf = cv2.imencode(".png", rgb, params)
            if not ok:
                raise ImageError("PNG encoding failed")
            return buf.tobytes()
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    _check_rgb(rgb, allow16=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if alpha is not None:
        bgr = np.dstack([bgr, alpha.astype(rgb.dtype)])
    ok, buf = cv2.imencode(".png", bgr, params)
    if not ok:
        raise ImageError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write a PNG atomically (a reader never sees a half-written file)."""
    write_bytes(path, encode_png(rgb, alpha))


def _check_rgb(rgb: np.ndarray, allow16: bool = False) -> None:
    ok_types = (np.uint8, np.uint16) if allow16 else (np.uint8,)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in ok_types:
        raise ImageError(f"expected an RGB uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")


_SAMPLING = {
    "4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
}


def encode_jpeg(rgb: np.ndarray, qf: int, gray: bool = False, subsampling: str = "4:2:0") -> bytes:
    """JPEG bytes as the protocol makes them (OpenCV, 4:2:0 unless ``subsampling`` says
    otherwise). ``gray`` writes a 1-channel JPEG."""
    _check_rgb(rgb)
    if not 1 <= qf <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {qf}")
    if subsampling not in _SAMPLING:
        raise ValueError(f"chroma subsampling must be one of {', '.join(_SAMPLING)}, got {subsampling!r}")
    src = rgb[:, :, 0] if gray else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    flags = [cv2.IMWRITE_JPEG_QUALITY, int(qf)]
    if subsampling != "4:2:0":
        flags += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _SAMPLING[subsampling]]
    ok, buf = cv2.imencode(".jpg", src, flags)
    if not ok:
        raise ImageError("JPEG encoding failed")
    return buf.tobytes()


def encode_jpeg_tables(rgb: np.ndarray, luma: np.ndarray, chroma: np.ndarray, subsampling: str = "4:2:0") -> bytes:
    """JPEG bytes with the given quantization tables (64 steps each, natural order, 1..255), as
    encoders other than IJG's quality scaling make them (cameras, mozjpeg, flat tables); through
    Pillow's libjpeg."""
    _check_rgb(rgb)
    tables = [np.asarray(t).ravel() for t in (luma, chroma)]
    if any(t.size != 64 or t.min() < 1 or t.max() > 255 for t in tables):
        raise ValueError("quantization tables must be 64 steps in 1..255")
    if subsampling not in ("4:4:4", "4:2:0"):
        raise ValueError(f"chroma subsampling must be 4:4:4 or 4:2:0, got {subsampling!r}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(
        buf, "JPEG", qtables=[t.astype(int).tolist() for t in tables], subsampling=0 if subsampling == "4:4:4" else 2
    )
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes (color or gray) into RGB uint8 (H, W, 3), as the protocol does."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError("corrupt JPEG data")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def jpeg_roundtrip(rgb: np.ndarray, qf: int, gray: bool = False) -> np.ndarray:
    """Compress and decompress: the degraded ``lq`` for a ground truth ``rgb``."""
    return decode_jpeg(encode_jpeg(rgb, qf, gray))


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255 values (the protocol's): 16 + (65.481 R + 128.553 G + 24.966 B)/255."""
    x = np.asarray(rgb, dtype=np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def augment(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations (k in 0..7) of an HWC array (training views, x8 TTA)."""
    out = np.rot90(img, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def unaugment(img: np.ndarray, k: int) -> np.ndarray:
    """Undo ``augment(img, k)`` (a view)."""
    if k >= 4:
        img = img[:, ::-1]
    return np.rot90(img, -(k % 4))


# --- Restored photos as files, with their metadata -------------------------------------------

WEBP_MAX = 16383  # pixels across, either way
JPEG_EXIF_MAX = 65527  # one APP1 segment less its length field and "Exif\0\0"
JPEG_XMP_MAX = 65504  # one APP1 segment less its length field and the XMP namespace


class Encoded(NamedTuple):
    """A file's bytes, and what its format could not carry."""

    data: bytes
    notes: tuple[str, ...] = ()


def encode(
    img: np.ndarray, fmt: str, meta: Metadata | None = None, quality: int = 95, png_compression: int | None = None
) -> Encoded:
    """An upright image as a ``fmt`` file ("png", "tiff", "jpeg", "webp") carrying ``meta``'s
    ICC profile (byte for byte), EXIF (as given: orientation 1) and XMP.

    img: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA (a gray image with alpha as RGBA), uint8,
    or uint16 for PNG and TIFF. JPEG: ``quality``, 4:4:4 chroma, optimised Huffman tables, no
    alpha; WebP: lossless, at most 16383 pixels across.
    """
    meta, notes = meta or Metadata(), []
    if fmt not in ("png", "tiff", "jpeg", "webp"):
        raise ValueError(f"format must be png, tiff, jpeg or webp, got {fmt!r}")
    if img.dtype == np.uint16 and fmt in ("jpeg", "webp"):
        raise ImageError(f"{fmt.upper()} has no 16-bit samples")
    if fmt == "png":
        rgb, alpha = (img[:, :, :3], img[:, :, 3]) if img.ndim == 3 and img.shape[2] == 4 else (img, None)
        return Encoded(_png_with(encode_png(np.ascontiguousarray(rgb), alpha, png_compression), meta))
    if fmt == "tiff":
        return Encoded(tiff.encode_tiff(img, meta.icc, meta.xmp, parse_exif(meta.exif) if meta.exif else None))
    if fmt == "jpeg":
        if meta.exif and len(meta.exif) > JPEG_EXIF_MAX:
            notes.append(f"EXIF not kept: {len(meta.exif)} bytes, over the {JPEG_EXIF_MAX} a JPEG segment holds")
            meta = dataclasses.replace(meta, exif=None)
        if meta.xmp and len(meta.xmp) > JPEG_XMP_MAX:
            notes.append(f"XMP not kept: {len(meta.xmp)} bytes, over the {JPEG_XMP_MAX} a JPEG segment holds")
            meta = dataclasses.replace(meta, xmp=None)
        options = {"quality": int(quality), "subsampling": 0, "optimize": True}
    else:
        if max(img.shape[:2]) > WEBP_MAX:
            raise ImageError(f"{img.shape[1]}x{img.shape[0]} is over WebP's {WEBP_MAX} pixels: use PNG or TIFF")
        img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
        options = {"lossless": True, "exact": True}  # exact: colours under transparent pixels kept
    if meta.icc:
        options["icc_profile"] = meta.icc
    if meta.exif:
        options["exif"] = EXIF_PREFIX + meta.exif
    if meta.xmp:
        options["xmp"] = meta.xmp
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, fmt.upper(), **options)
    return Encoded(buf.getvalue(), tuple(notes))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with(png: bytes, meta: Metadata) -> bytes:
    """PNG bytes with ``meta`` as chunks after IHDR: iCCP (zlib), eXIf and the XMP iTXt."""
    chunks = []
    if meta.icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.exif:
        chunks.append(_png_chunk(b"eXIf", meta.exif))
    if meta.xmp:  # keyword, no compression, no language, no translated keyword
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + meta.xmp))
    at = 8 + 8 + 13 + 4  # the signature and IHDR
    return png[:at] + b"".join(chunks) + png[at:]
