"""The Restorer: a model, the engine that runs it and the options. Every door restores through
one (``restore``, the app, ``pipeline.test``, the evaluate stage and its real-world cases, the
served MLflow model, the benchmarks), so with the same options they give the same pixels.

It owns the decision (``photo.decide`` with the engine's learned estimator), the tiled restore
on the decided grid (``tiles.restore_float``), the projection into the JPEG's quantization
cells and the mix with the input (``strength``); ``writer`` turns the result into a file. A
file is restored as it stores its pixels (where its 8x8 grid and tables are), and turned
upright only when written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from pipeline.core import jpeg
from pipeline.core.device import pick_device
from pipeline.core.images import Decoded
from pipeline.models.checkpoint import load_checkpoint
from pipeline.restoration import photo, writer
from pipeline.restoration.engines import Engine, build_engine
from pipeline.restoration.options import OutputOptions, RestoreOptions
from pipeline.restoration.photo import Decision
from pipeline.restoration.tiles import ProgressFn, restore_float


class Restored(NamedTuple):
    """One restored photo: ``pixels`` float32 (H, W, 3) in [0, 1] and how it was decided."""

    pixels: np.ndarray
    decision: Decision


class Output(NamedTuple):
    """One restored file: its bytes, how it was decided, and what of the input it could not keep."""

    data: bytes
    decision: Decision
    notes: tuple[str, ...]


def samples(image: np.ndarray, deep: np.ndarray | None = None) -> np.ndarray:
    """The input as float32 (H, W, 3) in [0, 1]: ``deep`` (its 16-bit samples) when given."""
    return deep / np.float32(65535) if deep is not None else image / np.float32(255)


class Restorer:
    """``model`` (loaded from ``checkpoint``, the ONNX cache key; ``meta``: its metadata) run by
    the engine ``options`` name. ``engine``: an engine already built for this model (shared by
    ``replace``)."""

    def __init__(
        self,
        model: nn.Module,
        options: RestoreOptions | None = None,
        checkpoint: Path | str | None = None,
        engine: Engine | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.meta = meta or {}
        self.options = options or RestoreOptions()
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        o = self.options
        self.engine = engine or build_engine(o.engine, self.model, self.checkpoint, o.precision)

    @classmethod
    def load(cls, checkpoint: Path | str, options: RestoreOptions | None = None) -> Restorer:
        """The checkpoint's model on the options' device (raises CheckpointError, DeviceError, EngineError)."""
        options = options or RestoreOptions()
        model, meta = load_checkpoint(checkpoint, pick_device(options.device))
        return cls(model, options, checkpoint, meta=meta)

    def replace(self, **changes: object) -> Restorer:
        """The same model with other options; the engine is shared unless engine, precision or
        device change. None values mean "not given"."""
        options = self.options.replace(**changes)
        same = options.runtime == self.options.runtime
        return Restorer(self.model, options, self.checkpoint, self.engine if same else None, self.meta)

    @property
    def label(self) -> str:
        """The engine that runs the network, e.g. ``openvino bf16``."""
        return self.engine.label

    def estimate(self, image: np.ndarray) -> float | None:
        """The learned QF estimate of ``image`` (RGB uint8) as it is."""
        return self.engine.estimate(image)

    def decide(self, image: np.ndarray, header: jpeg.Header | None = None) -> Decision:
        """How to restore ``image`` (RGB uint8): the options' QF, else ``photo.decide``'s."""
        return photo.decide(self.engine.estimate, image, header, self.options.qf)

    def restore(
        self,
        image: np.ndarray,
        decision: Decision,
        progress: ProgressFn | None = None,
        deep: np.ndarray | None = None,
    ) -> np.ndarray:
        """Restore ``image`` (RGB uint8) as ``decision`` says, mixed with it as the options'
        strength says: float32 (H, W, 3) in [0, 1]. A photo left unchanged (or at strength 0)
        comes back exactly as it was; ``deep``: its 16-bit samples, for a 16-bit file."""
        if decision.unchanged or self.options.strength == 0:
            if progress:
                progress(1, 1)
            return samples(image, deep)
        o = self.options
        padded, (py, px) = photo.align(image, decision.offset)
        out = restore_float(self.engine, padded, decision.qf, o.tile, o.overlap, o.tta, progress)[py:, px:]
        luma, chroma = photo.projection_planes(o.projection, decision)
        if luma:
            out *= 255.0  # in place, strip by strip: a 12 MP photo holds no full-size float64 copy (288 MB)
            jpeg.project(
                out,
                image,
                decision.luma_table,
                decision.chroma_table if chroma else None,
                decision.offset,
                decision.subsampling,
                out=out,
            )
            out /= 255.0
            np.clip(out, 0.0, 1.0, out=out)
        return self.blend(np.ascontiguousarray(out), image, deep)

    def blend(self, pixels: np.ndarray, image: np.ndarray, deep: np.ndarray | None = None) -> np.ndarray:
        """``pixels`` (float32 [0, 1], a restoration at full strength; overwritten) mixed with the
        input ``image`` (``deep``: its 16-bit samples) as the options' strength says."""
        s = self.options.strength
        if s < 1:
            base = samples(image, deep)
            base *= 1 - s
            pixels *= s
            pixels += base
        return pixels

    def restore_photo(
        self, image: np.ndarray, header: jpeg.Header | None = None, progress: ProgressFn | None = None
    ) -> Restored:
        """Decide, then restore."""
        decision = self.decide(image, header)
        return Restored(self.restore(image, decision, progress), decision)

    def restore_decoded(
        self, decoded: Decoded, progress: ProgressFn | None = None, output: OutputOptions | None = None
    ) -> Output:
        """A decoded file restored on the pixels it stores, and written upright as ``output``
        says (default: PNG with the file's metadata) in its own form (``writer``)."""
        decision = self.decide(decoded.rgb, decoded.header)
        pixels = self.restore(decoded.rgb, decision, progress, decoded.rgb16)
        data, notes = writer.encode(pixels, decoded, output)
        return Output(data, decision, notes)
