"""The Restorer: a model, the engine that runs it and the options. Every door restores through
one (``restore``, the app, ``pipeline.test``, the evaluate stage and its real-world cases, the
served MLflow model, the benchmarks), so with the same options they give the same pixels.

It owns the decision (``photo.decide`` with the engine's learned estimator and the JPEG-history
detector that goes with the network: ``history.beside`` the checkpoint), the tiled restore
on the decided grid (``tiles.restore_float``), the projection into the JPEG's quantization
cells and the mix with the input (``strength``); ``writer`` turns the result into a file. A
file is restored as it stores its pixels (where its 8x8 grid and tables are), and turned
upright only when written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from pipeline.core import jpeg
from pipeline.core.device import device_name
from pipeline.core.images import Decoded
from pipeline.restoration import history, photo, writer
from pipeline.restoration.engines import Engine, build_engine
from pipeline.restoration.options import OutputOptions, RestoreOptions
from pipeline.restoration.photo import Decision
from pipeline.restoration.tiles import ProgressFn, restore_float

if TYPE_CHECKING:
    from torch import nn


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
    """The network of ``checkpoint`` (the graphs' cache key), or the torch ``model`` given, run
    by the engine ``options`` name. ``engine``: an engine already built for this network (shared
    by ``replace``). Restoring with OpenVINO or ONNX Runtime from cached graphs never loads the
    torch model: ``model`` and ``meta`` load it on first use. ``detector``: the JPEG-history
    detector the decision asks ("beside": the one beside the checkpoint, if any; None: the
    rules alone)."""

    def __init__(
        self,
        model: nn.Module | None = None,
        options: RestoreOptions | None = None,
        checkpoint: Path | str | None = None,
        engine: Engine | None = None,
        meta: dict[str, Any] | None = None,
        detector: history.Detector | str | None = "beside",
    ) -> None:
        if model is None and checkpoint is None:
            raise ValueError("a Restorer needs a model or a checkpoint")
        if model is None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
        self._model, self._meta = model, meta
        self.options = options or RestoreOptions()
        self.timings: dict[str, float] = {}  # seconds per phase, summed over the photos restored
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.device = device_name(self.options.device)
        o = self.options
        net = self._model if self._model is not None else (lambda: self.model)
        self.engine = engine or build_engine(o.engine, net, self.checkpoint, o.precision, self.device)
        if detector == "beside":
            found = history.beside(self.checkpoint)
            detector = history.load(found) if found is not None else None
        self.detector: history.Detector | None = detector

    @classmethod
    def load(cls, checkpoint: Path | str, options: RestoreOptions | None = None) -> Restorer:
        """The checkpoint's network on the options' device and engine (raises CheckpointError,
        DeviceError, EngineError)."""
        return cls(None, options or RestoreOptions(), checkpoint)

    @property
    def model(self) -> nn.Module:
        """The torch model (loaded from the checkpoint on first use)."""
        if self._model is None:
            from pipeline.models.checkpoint import load_checkpoint  # torch: only when the model is needed

            self._model, self._meta = load_checkpoint(self.checkpoint, self.device)
            self._model.eval()
        return self._model

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint's metadata (arch, parameters, steps, run id...)."""
        if self._meta is None:
            from pipeline.models.checkpoint import read_checkpoint

            self._meta = read_checkpoint(self.checkpoint)["meta"] if self.checkpoint is not None else {}
        return self._meta

    def replace(self, **changes: object) -> Restorer:
        """The same network with other options; the engine is shared unless engine, precision or
        device change. None values mean "not given"."""
        options = self.options.replace(**changes)
        same = options.runtime == self.options.runtime
        engine = self.engine if same else None
        return Restorer(self._model, options, self.checkpoint, engine, self._meta, self.detector)

    @property
    def label(self) -> str:
        """The engine that runs the network, e.g. ``openvino bf16``."""
        return self.engine.label

    def estimate(self, image: np.ndarray) -> float | None:
        """The learned QF estimate of ``image`` (RGB uint8) as it is."""
        return self.engine.estimate(image)

    def decide(self, image: np.ndarray, header: jpeg.Header | None = None) -> Decision:
        """How to restore ``image`` (RGB uint8): the options' QF, else ``photo.decide``'s."""
        with self.timed("decision"):
            return photo.decide(self.engine.estimate, image, header, self.options.qf, self.detector)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the seconds spent inside to ``timings[phase]`` (what ``restore -v`` and the
        benchmark report: decision, network, projection, encoding)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t

    def restore(
        self,
        image: np.ndarray,
        decision: Decision,
        progress: ProgressFn | None = None,
        deep: np.ndarray | None = None,
    ) -> np.ndarray:
        """Restore ``image`` (RGB uint8) as ``decision`` says, mixed with it as the options'
        strength times the decision's blend says: float32 (H, W, 3) in [0, 1]. A photo left unchanged (or at strength 0)
        comes back exactly as it was; ``deep``: its 16-bit samples, for a 16-bit file."""
        if decision.unchanged or self.options.strength * decision.blend == 0:
            if progress:
                progress(1, 1)
            return samples(image, deep)
        o = self.options
        padded, (py, px) = photo.align(image, decision.offset)
        with self.timed("network"):
            out = restore_float(self.engine, padded, decision.qf, o.tile, o.overlap, o.tta, progress)[py:, px:]
        luma, chroma = photo.projection_planes(o.projection, decision)
        if luma:
            self._project(out, image, decision, chroma)
        return self.blend(np.ascontiguousarray(out), image, deep, decision.blend)

    def _project(self, out: np.ndarray, image: np.ndarray, decision: Decision, chroma: bool) -> None:
        """Clip ``out`` (float32 in [0, 1], in place) into the JPEG's quantization cells."""
        with self.timed("projection"):
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

    def blend(
        self, pixels: np.ndarray, image: np.ndarray, deep: np.ndarray | None = None, share: float = 1.0
    ) -> np.ndarray:
        """``pixels`` (float32 [0, 1], a restoration at full strength; overwritten) mixed with the
        input ``image`` (``deep``: its 16-bit samples) as the options' strength times ``share``
        (a decision's blend) says."""
        s = self.options.strength * share
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
        with self.timed("encoding"):
            data, notes = writer.encode(pixels, decoded, output)
        return Output(data, decision, notes)
