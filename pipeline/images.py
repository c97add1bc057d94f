"""The only pixel I/O of the project.

At every boundary an image is an RGB ``uint8`` array of shape (H, W, 3). OpenCV's BGR order
never leaves this module. JPEG encoding follows the published protocol exactly:
``cv2.imencode('.jpg', bgr, [IMWRITE_JPEG_QUALITY, q])`` (4:2:0 chroma) and ``cv2.imdecode``.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# OpenCV's own thread pool deadlocks in processes forked after it started (DataLoader workers,
# process pools). Our images are small or processed one per worker: run OpenCV single-threaded.
cv2.setNumThreads(1)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_PIXELS = 50_000_000  # decompression-bomb guard: 50 MP

# IJG (libjpeg) base tables, natural (row-major) order, Annex K of the JPEG standard.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.int64,
)  # fmt: skip
_IJG_CHROMA = np.array(
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
     24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99]
    + [99] * 32,
    dtype=np.int64,
)  # fmt: skip


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Decoded:
    """A decoded user image.

    rgb: (H, W, 3) uint8. alpha: (H, W) uint8 or None. bits: 8 or 16 (source depth).
    qf: JPEG quality read from the quantization tables (None when not a JPEG or not IJG).
    qf_exact: True when the tables are exactly IJG tables at ``qf`` (single compression).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bits: int
    qf: int | None
    qf_exact: bool
    gray: bool


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
    qf, exact = jpeg_quality(data) if data[:2] == b"\xff\xd8" else (None, False)
    return Decoded(np.ascontiguousarray(rgb), alpha, bits, qf, exact, is_gray)


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes private files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _atomic_write_bytes(Path(path), encode_png(rgb, alpha))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write encoded image bytes atomically."""
    _atomic_write_bytes(Path(path), data)


def _check_rgb(rgb: np.ndarray, allow16: bool = False) -> None:
    ok_types = (np.uint8, np.uint16) if allow16 else (np.uint8,)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in ok_types:
        raise ImageError(f"expected an RGB uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")


def encode_jpeg(rgb: np.ndarray, qf: int, gray: bool = False) -> bytes:
    """JPEG bytes as the protocol makes them (OpenCV, 4:2:0). ``gray`` writes 1-channel JPEG."""
    _check_rgb(rgb)
    if not 1 <= qf <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {qf}")
    src = rgb[:, :, 0] if gray else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", src, [cv2.IMWRITE_JPEG_QUALITY, int(qf)])
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


def ijg_tables(qf: int) -> tuple[np.ndarray, np.ndarray]:
    """IJG luma and chroma quantization tables (natural order) for quality ``qf`` (1..100)."""
    scale = 5000 // qf if qf < 50 else 200 - 2 * qf
    return tuple(np.clip((t * scale + 50) // 100, 1, 255) for t in (_IJG_LUMA, _IJG_CHROMA))


_TABLES = {q: ijg_tables(q) for q in range(1, 101)}


def qf_from_tables(luma: np.ndarray, chroma: np.ndarray | None = None) -> tuple[int, bool]:
    """The IJG quality whose tables are closest to the given ones, and whether they match exactly."""
    luma = np.asarray(luma, dtype=np.int64).ravel()
    best, best_err = 50, None
    for q, (lt, ct) in _TABLES.items():
        err = np.abs(lt - luma).sum()
        if chroma is not None:
            err += np.abs(ct - np.asarray(chroma, np.int64).ravel()).sum()
        if best_err is None or err < best_err:
            best, best_err = q, err
    return best, best_err == 0


_DCT8 = np.array(
    [[np.sqrt((1 if u == 0 else 2) / 8) * np.cos((2 * x + 1) * u * np.pi / 16) for x in range(8)] for u in range(8)]
)
_LUMA_BY_QF = np.stack([_TABLES[q][0] for q in range(1, 101)]).astype(np.float64)  # (100, 64)


def qf_from_pixels(rgb: np.ndarray, max_blocks: int = 1024, tol: float = 0.75) -> tuple[int | None, float]:
    """Recover the IJG quality of a decoded JPEG from its pixels alone (a re-saved PNG, say).

    Decoding leaves each 8x8 block's luma DCT coefficients on multiples of the quantization
    step, blurred only by rounding (about 0.3). For every QF the score is, per frequency with a
    step of 3 or more, the share of clearly non-zero coefficients within ``tol`` of a multiple,
    corrected for the share that lands there by chance (2 tol / step), averaged. Returns the
    best QF and its score (about 0.1 to 0.8 for an aligned single JPEG, about 0 for anything
    else: an uncompressed image, a shifted grid): the caller decides what score to trust.
    """
    x = rgb.astype(np.float64)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2] - 128.0  # JPEG's own luma
    h, w = y.shape[0] // 8 * 8, y.shape[1] // 8 * 8
    if h == 0 or w == 0:
        return None, 0.0
    blocks = y[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    if len(blocks) > max_blocks:
        blocks = blocks[np.linspace(0, len(blocks) - 1, max_blocks).astype(int)]
    coef = (_DCT8 @ blocks @ _DCT8.T).reshape(len(blocks), 64)
    per_freq = [coef[np.abs(coef[:, f]) > 1.0, f] for f in range(64)]
    scores = np.full(100, -1.0)
    for i, table in enumerate(_LUMA_BY_QF):
        fits, weights = [], []
        for f, c in enumerate(per_freq):
            step = table[f]
            if step < 3 or len(c) < 8:
                continue
            fit = (np.abs(c - step * np.round(c / step)) < tol).mean()
            chance = 2 * tol / step
            fits.append((fit - chance) / (1 - chance))
            weights.append(len(c))
        if weights:
            scores[i] = np.average(fits, weights=weights)
    best = int(np.argmax(scores))
    return (best + 1, float(scores[best])) if scores[best] > -1 else (None, 0.0)


def jpeg_quality(data: bytes) -> tuple[int | None, bool]:
    """QF of JPEG bytes from their quantization tables: (qf, exact), or (None, False)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None) or {}
    except (UnidentifiedImageError, OSError, ValueError):
        return None, False
    if 0 not in tables:
        return None, False
    # Pillow gives the tables in natural (row-major) order.
    return qf_from_tables(np.array(tables[0]), np.array(tables[1]) if 1 in tables else None)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255 values (the protocol's): 16 + (65.481 R + 128.553 G + 24.966 B)/255."""
    x = np.asarray(rgb, dtype=np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0
