"""The restored photo as a file: upright, in the input's form, with the input's metadata.

Grayscale stays one channel, 16-bit stays 16-bit (PNG, TIFF), alpha is kept unchanged (but in
JPEG). The pixels were restored as the file stores them; here they are turned upright, and the
EXIF says Orientation 1 with the upright dimensions and loses its thumbnail. The ICC profile is
copied byte for byte (no colour is converted), unless it does not describe the output's colours.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.core import images
from pipeline.core.images import Decoded, Encoded
from pipeline.restoration.options import OutputOptions


def quantize(img: np.ndarray, bits: int) -> np.ndarray:
    """Float [0, 1] -> uint8 or uint16, rounding in place (no full-size float temporaries)."""
    np.clip(img, 0.0, 1.0, out=img)
    img *= 65535.0 if bits == 16 else 255.0
    img += 0.5
    return img.astype(np.uint16 if bits == 16 else np.uint8)


def encode(pixels: np.ndarray, decoded: Decoded, output: OutputOptions | None = None) -> Encoded:
    """The file of a restored photo: ``pixels`` float32 (H, W, 3) in [0, 1] as the file stores
    them (overwritten), written upright as ``output`` says in ``decoded``'s form. Its notes say
    what of the input could not be kept (the file's own, and the format's)."""
    output = output or OutputOptions()
    fmt, meta = output.format, decoded.meta
    notes = list(meta.notes)
    if output.strip_metadata:
        meta = meta.stripped()
    bits = 16 if decoded.bits == 16 and fmt in ("png", "tiff") else 8
    if decoded.bits == 16 and bits == 8:
        notes.append(f"16-bit samples written at 8 bits ({fmt.upper()} has no 16-bit)")
    alpha = decoded.alpha
    if alpha is not None and fmt == "jpeg":
        notes.append("transparency not kept (JPEG has none)")
        alpha = None
    # One channel only where the profile (if any) describes gray: an RGB profile needs RGB samples.
    gray = decoded.gray and alpha is None and fmt != "webp" and meta.icc_space in (None, "GRAY")
    if meta.icc and meta.icc_space != ("GRAY" if gray else "RGB"):
        notes.append(f"ICC profile not kept: it describes {meta.icc_space} colours, not {'gray' if gray else 'RGB'}")
        meta = dataclasses.replace(meta, icc=None)
    img = quantize(pixels.mean(axis=2) if gray else pixels, bits)
    if alpha is not None:
        a = alpha if alpha.dtype == img.dtype else _depth(alpha, bits)
        img = np.dstack([img, a])  # RGBA: a gray photo with alpha is written as RGBA
    img = images.turn(img, decoded.orientation)
    meta = meta.upright(img.shape[1], img.shape[0])
    data, dropped = images.encode(img, fmt, meta, output.quality, output.png_compression)
    return Encoded(data, (*notes, *dropped))


def _depth(alpha: np.ndarray, bits: int) -> np.ndarray:
    """Alpha at ``bits``: 8-bit alpha of a 16-bit output, or 16-bit alpha of an 8-bit one."""
    if bits == 16:
        return alpha.astype(np.uint16) * 257
    return ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8)
