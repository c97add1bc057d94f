"""The restored photo as a file, in the input's form: grayscale stays one channel, 16-bit stays
16-bit, alpha is kept unchanged; a photo left unchanged is written with its own pixels."""

from __future__ import annotations

import numpy as np

from pipeline.core import images
from pipeline.core.images import Decoded


def quantize(img: np.ndarray, bits: int) -> np.ndarray:
    """Float [0, 1] -> uint8 or uint16, rounding in place (no full-size float temporaries)."""
    np.clip(img, 0.0, 1.0, out=img)
    img *= 65535.0 if bits == 16 else 255.0
    img += 0.5
    return img.astype(np.uint16 if bits == 16 else np.uint8)


def encode_output(pred: np.ndarray, decoded: Decoded) -> bytes:
    """PNG bytes of a restored photo (float32 HWC in [0, 1], overwritten) in the input's form."""
    bits = 16 if decoded.bits == 16 else 8
    alpha = decoded.alpha
    if alpha is not None and bits == 16:
        alpha = alpha.astype(np.uint16) * 257  # decode_image hands alpha over at 8 bits
    if decoded.gray and alpha is None:
        return images.encode_png(quantize(pred.mean(axis=2), bits))
    return images.encode_png(quantize(pred, bits), alpha)


def unchanged_bytes(decoded: Decoded, data: bytes | None = None, suffix: str = "") -> bytes:
    """The input's own pixels as PNG (a photo left unchanged): same depth, alpha and channels.
    ``data``/``suffix``: the input file's bytes and suffix; a 16-bit PNG is kept byte for byte
    (its samples were rounded to 8 bits on decoding)."""
    if decoded.bits == 16 and suffix.lower() == ".png" and data is not None:
        return data
    return encode_output(decoded.rgb.astype(np.float32) / 255.0, decoded)
