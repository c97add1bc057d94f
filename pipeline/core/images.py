"""The only pixel I/O of the project.

At every boundary an image is an RGB ``uint8`` array of shape (H, W, 3). OpenCV's BGR order
never leaves this module. JPEG encoding follows the published protocol exactly:
``cv2.imencode('.jpg', bgr, [IMWRITE_JPEG_QUALITY, q])`` (4:2:0 chroma) and ``cv2.imdecode``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.core.files import write_bytes  # images.write_bytes: encoded image bytes, atomically
from pipeline.core.jpeg import Header, read_header

# OpenCV's own thread pool deadlocks in processes forked after it started (DataLoader workers,
# process pools). Our images are small or processed one per worker: run OpenCV single-threaded.
cv2.setNumThreads(1)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_PIXELS = 50_000_000  # decompression-bomb guard: 50 MP


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Decoded:
    """A decoded user image.

    rgb: (H, W, 3) uint8. alpha: (H, W) uint8 or None. bits: 8 or 16 (source depth).
    qf: JPEG quality read from the quantization tables (None when not a JPEG).
    qf_exact: True when the tables are exactly IJG tables at ``qf``.
    header: the JPEG header's tables and chroma subsampling (None when not a JPEG).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bits: int
    qf: int | None
    qf_exact: bool
    gray: bool
    header: Header | None = None


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    if not Path(folder).is_dir():
        raise ImageError(f"{folder}: folder not found")
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _orientation(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1))
    except (UnidentifiedImageError, OSError, ValueError):
        return 1


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an HWC array as EXIF orientation 1..8 asks."""
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
    return np.ascontiguousarray(op(img)) if op else img


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> Decoded:
    """Decode file bytes (any format OpenCV reads) into RGB uint8 plus alpha and QF info.

    Grayscale becomes 3 equal channels (``gray=True``); 16-bit is rounded to 8-bit
    (``bits=16``); CMYK JPEGs are converted to RGB; EXIF orientation is applied.
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    _check_pixel_count(data, name, max_pixels)
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError(f"{name}: not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        bits = 16
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype == np.uint8:
        bits = 8
    else:
        raise ImageError(f"{name}: unsupported sample type {img.dtype} (need 8 or 16-bit)")
    alpha = None
    if img.ndim == 2 or img.shape[2] == 1:
        gray = img.reshape(img.shape[0], img.shape[1])
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4 and data[:2] == b"\xff\xd8":  # CMYK JPEG: let OpenCV convert
        rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        alpha = img[:, :, 3].copy()
    else:
        raise ImageError(f"{name}: unsupported channel count {img.shape[2]}")
    orientation = _orientation(data)
    rgb = _apply_orientation(rgb, orientation)
    alpha = _apply_orientation(alpha, orientation) if alpha is not None else None
    is_gray = bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]))
    header = read_header(data)
    qf, exact = (None, False) if header is None else (header.qf, header.exact)
    return Decoded(np.ascontiguousarray(rgb), alpha, bits, qf, exact, is_gray, header)


def _check_pixel_count(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse images over ``max_pixels`` from their header, before decoding them."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image is over the {max_pixels / 1e6:.0f} MP pixel limit") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return  # a format Pillow does not know: OpenCV decides below
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} = {w * h / 1e6:.1f} MP is over the {max_pixels / 1e6:.0f} MP pixel limit")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read any image file as RGB uint8 (H, W, 3); raise ImageError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    return decode_image(data, str(path), max_pixels).rgb


def read_decoded(path: str | Path, max_pixels: int = MAX_PIXELS) -> Decoded:
    """Like read_image, with alpha, bit depth and JPEG quality information."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    return decode_image(data, str(path), max_pixels)


def encode_png(rgb: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or grayscale (H, W) uint8/uint16 image, with optional
    alpha of the same depth (a grayscale image with alpha is written as RGBA)."""
    if rgb.ndim == 2 and rgb.dtype in (np.uint8, np.uint16):
        if alpha is None:
            ok, buf = cv2.imencode(".png", rgb)
            if not ok:
                raise ImageError("PNG encoding failed")
            return buf.tobytes()
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    _check_rgb(rgb, allow16=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if alpha is not None:
        bgr = np.dstack([bgr, alpha.astype(rgb.dtype)])
    ok, buf = cv2.imencode(".png", bgr)
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
