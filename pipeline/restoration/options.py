"""RestoreOptions: every option that changes a restored photo, each default written once; and
OutputOptions: how a restored photo is written as a file.

RestoreOptions are built from params.yaml's ``evaluate`` section (the evaluate stage), from argv
(``restore``, ``pipeline.test``), from the app's widgets and from a served model's metadata and
request; every door hands them to a ``Restorer`` (``pipeline/restoration/restorer.py``).
OutputOptions are apart because they do not change the restored pixels, only the file made of
them (``writer.py``): the doors that write files (``restore``, the app) take them from the user,
the served model answers PNG with the photo's metadata (its signature), and the evaluate stage,
which scores pixels and writes no photos, never sees them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FORMATS = {"png": ".png", "tiff": ".tif", "jpeg": ".jpg", "webp": ".webp"}  # output format -> file suffix
ENGINES = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("auto", "f32", "bf16", "int8")
PROJECTIONS = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")


class OptionsError(ValueError):
    """An option out of range; the message names the option and the value."""


@dataclass(frozen=True)
class RestoreOptions:
    """qf: the QF to condition on (None: decided per photo, ``pipeline/restoration/photo.py``);
    tile: restore in tiles of at most this size (a multiple of 8; 0: the whole image at once);
    overlap: pixels shared by neighbouring tiles; tta: average the 8 flips/rotations (8x slower);
    projection: clip into the JPEG's quantization cells (auto: where exact; on; off);
    engine: what runs the network (auto: the fastest installed, ``engines.py``); precision:
    OpenVINO's (auto: int8 where its graph was measured free and the CPU runs int8 natively, else
    bf16 where the CPU runs it natively, else f32; ``engines.pick_precision``); device: auto, cpu, cuda;
    strength: how much of the restoration to keep, 0..1 (the rest is the input: grain back).
    """

    qf: float | None = None
    tile: int = 1024
    overlap: int = 64
    tta: bool = False
    projection: str = "auto"
    engine: str = "auto"
    precision: str = "auto"
    device: str = "auto"
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.qf is not None and not 1 <= self.qf <= 100:
            raise OptionsError(f"qf must be in 1..100 (or left out to decide per photo), got {self.qf}")
        if not 0 <= self.strength <= 1:
            raise OptionsError(f"strength must be in 0..1, got {self.strength:g}")
        if self.tile < 0 or self.tile % 8 or self.overlap < 0 or (self.tile and self.overlap >= self.tile):
            raise OptionsError(
                "tile must be 0 or a multiple of 8 and overlap in 0..tile-1, "
                f"got tile {self.tile}, overlap {self.overlap}"
            )
        for name, allowed in (
            ("projection", PROJECTIONS),
            ("engine", ENGINES),
            ("precision", PRECISIONS),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in allowed:
                raise OptionsError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @classmethod
    def from_params(cls, evaluate: Any, **changes: Any) -> RestoreOptions:
        """The evaluate stage's options (params.yaml ``evaluate``), with ``changes``; the QF is
        decided per photo and the network is scored at full strength."""
        names = {f.name for f in dataclasses.fields(cls)} - {"qf", "strength"}
        return cls(**{n: getattr(evaluate, n) for n in names}, **changes)

    def replace(self, **changes: Any) -> RestoreOptions:
        """These options with ``changes`` (None values are ignored: "not given")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def runtime(self) -> tuple[str, str, str]:
        """What building an engine depends on: (engine, precision, device)."""
        return self.engine, self.precision, self.device


@dataclass(frozen=True)
class OutputOptions:
    """format: png, tiff, jpeg or webp (lossless); quality: JPEG's, 1..100 (4:4:4 chroma,
    optimised Huffman tables); strip_metadata: drop EXIF, XMP and GPS, keep the ICC profile
    (colour is not private); png_compression: zlib level 0..9 for smaller PNGs, slower (None:
    the fastest setting, level 1 with one filter; a 12 MP photo in 0.3 s instead of 1.6 s at
    level 6, for a file about a third larger). 16-bit photos stay 16-bit in PNG and TIFF."""

    format: str = "png"
    quality: int = 95
    strip_metadata: bool = False
    png_compression: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise OptionsError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise OptionsError(f"quality must be in 1..100, got {self.quality}")
        if self.png_compression is not None and not 0 <= self.png_compression <= 9:
            raise OptionsError(f"png_compression must be in 0..9, got {self.png_compression}")
