"""RestoreOptions: every option that changes a restored photo, each default written once.

Built from params.yaml's ``evaluate`` section (the evaluate stage), from argv (``restore``,
``pipeline.test``), from the app's widgets and from a served model's metadata and request; every
door hands them to a ``Restorer`` (``pipeline/restoration/restorer.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

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
    bf16 where the CPU runs it natively, else f32; ``engines.pick_precision``); device: auto, cpu, cuda.
    """

    qf: float | None = None
    tile: int = 1024
    overlap: int = 64
    tta: bool = False
    projection: str = "auto"
    engine: str = "auto"
    precision: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.qf is not None and not 1 <= self.qf <= 100:
            raise OptionsError(f"qf must be in 1..100 (or left out to decide per photo), got {self.qf}")
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
        """The evaluate stage's options (params.yaml ``evaluate``), with ``changes``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"qf"}
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
