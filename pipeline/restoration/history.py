"""The learned JPEG-history detector: what a photo went through, read from its pixels (and its
JPEG header, when it has one).

``Detector.read(rgb, header)`` -> ``Reading``: the probability that the photo was
JPEG-compressed (strongly enough to show), the QF the restoration network should restore it at
(a resized, edited or recompressed photo has no exact QF: the detector learned the QF at which
restoring gains most on training photos), and for a JPEG file whether an earlier, stronger
compression shows through its header's. The network is a small MLP over the forensic features
of a few crops (``forensics.photo_features``), trained by ``pipeline/training/detector.py`` (the
``train_detector`` stage). It runs in NumPy: restoring never imports torch for it.

The weights file (``detector.npz``, beside the restoration checkpoint it goes with: ``beside``)
holds the layers, the feature standardization, the calibrated thresholds and the facts of its
training; ``np.load`` reads it without pickle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import jpeg
from pipeline.core.tables import noise_qf
from pipeline.restoration import forensics

FORMAT = "jpeg-history-detector/1"
FILE_NAME = "detector.npz"  # beside model.pt: models/pretrained/, models/, a registered version's artifacts/
HEADER_FEATURES = 4  # has a header, its noise-matched QF / 100, 4:4:4, IJG tables exactly
OUTPUTS = 4  # jpeg logit, qf (squashed), earlier logit, log2 of the resize factor
KINDS_TEXT = {
    "clean": "no JPEG history found",
    "resized": "resized after compression",
    "edited": "edited after compression",
    "earlier": "re-saved after an earlier, stronger compression",
    "header": "compressed once, as its header says",
}


class DetectorError(ValueError):
    """A detector file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Reading:
    """What the detector reads in a photo. p_jpeg: probability of a JPEG compression that shows
    (0..1); qf_eff: the QF to restore at (1..100); p_earlier: for a JPEG file, probability that
    an earlier, stronger compression shows through its header's; scale: the resize factor it
    reads (1: none); jpeg/earlier: the calibrated verdicts; kind: a short description."""

    p_jpeg: float
    qf_eff: float
    p_earlier: float
    scale: float
    jpeg: bool
    earlier: bool
    kind: str

    @property
    def text(self) -> str:
        """One line for ``restore -v``, e.g. "JPEG history 0.97, restore at QF 38: resized after compression"."""
        if not self.jpeg or self.kind == KINDS_TEXT["header"]:
            return f"JPEG history {self.p_jpeg:.2f}: {self.kind}"
        return f"JPEG history {self.p_jpeg:.2f}, restore at QF {self.qf_eff:.0f}: {self.kind}"


def header_qf(header: jpeg.Header) -> float:
    """The QF a header's tables restore like: its IJG quality when the tables are IJG's, else the
    IJG quality of the same quantization noise (``tables.noise_qf``: flat tables, luma and chroma
    at different qualities, other encoders')."""
    return float(header.qf) if header.exact else round(noise_qf(header.luma, header.chroma), 1)


def header_features(header: jpeg.Header | None) -> np.ndarray:
    """(HEADER_FEATURES,) from a ``jpeg.Header`` (None: not a JPEG file)."""
    if header is None:
        return np.zeros(HEADER_FEATURES, np.float32)
    q = noise_qf(header.luma, header.chroma)
    return np.array([1.0, q / 100.0, float(header.subsampling == "4:4:4"), float(header.exact)], np.float32)


def features(rgb: np.ndarray, header: jpeg.Header | None = None) -> np.ndarray:
    """The detector's input for one photo (RGB uint8): pixel features, then header features."""
    return np.concatenate([forensics.photo_features(rgb), header_features(header)])


def n_features() -> int:
    return len(features(np.zeros((64, 64, 3), np.uint8)))


def _sigmoid(v: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(v, -60.0, 60.0))))


class Detector:
    """A trained detector: ``layers`` [(weight (out, in), bias (out,)), ...] with ReLU between
    them, applied to features standardized by ``mean`` and ``std``; ``thresholds`` on the logits
    ({"jpeg", "earlier"}, set on held-out training photos); ``meta``: the facts of its training."""

    def __init__(
        self,
        layers: list[tuple[np.ndarray, np.ndarray]],
        mean: np.ndarray,
        std: np.ndarray,
        thresholds: dict[str, float],
        meta: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.thresholds = {k: float(thresholds[k]) for k in ("jpeg", "earlier")}
        self.meta, self.path = dict(meta or {}), path

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Features (B, n) -> (B, 4): jpeg logit, qf in [1, 100], earlier logit, log2 of the scale."""
        h = (np.asarray(x, np.float32) - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i + 1 < len(self.layers):
                np.maximum(h, 0.0, out=h)
        out = h.astype(np.float64)
        out[:, 1] = 1.0 + 99.0 / (1.0 + np.exp(-out[:, 1]))
        return out

    def interpret(self, out: np.ndarray, header: jpeg.Header | None) -> Reading:
        """A ``Reading`` from one row of ``outputs`` (thresholds on the logits: probabilities near
        1 are too close together in float32 to set a threshold among)."""
        logit, qf, logit_e, log_scale = (float(v) for v in out)
        scale = float(2.0**log_scale)
        is_jpeg = logit > self.thresholds["jpeg"] or header is not None
        earlier = header is not None and logit_e > self.thresholds["earlier"]
        if not is_jpeg:
            kind = "clean"
        elif earlier:
            kind = "earlier"
        elif header is not None:
            kind = "header"
        else:
            kind = "resized" if abs(np.log2(scale)) > 0.07 else "edited"
        return Reading(_sigmoid(logit), qf, _sigmoid(logit_e), scale, is_jpeg, earlier, KINDS_TEXT[kind])

    def read(self, rgb: np.ndarray, header: jpeg.Header | None = None) -> Reading:
        """Read a photo's JPEG history: ``rgb`` RGB uint8 (H, W, 3), ``header`` its
        ``jpeg.Header`` (None for a PNG, or to read from the pixels alone)."""
        return self.interpret(self.outputs(features(rgb, header)[None])[0], header)

    def save(self, path: str | Path) -> Path:
        """Write the weights file atomically (``load`` reads it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"mean": self.mean, "std": self.std}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        info = {"format": FORMAT, "layers": len(self.layers), "thresholds": self.thresholds, "meta": self.meta}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, info=np.array(json.dumps(info, sort_keys=True)), **arrays)
        tmp.replace(path)
        self.path = path
        return path


def load(path: str | Path) -> Detector:
    """The detector of a weights file (raises DetectorError naming the file and the problem)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if info.get("format") != FORMAT:
                raise DetectorError(f"{path}: not a {FORMAT} file (format {info.get('format')!r})")
            layers = [(z[f"w{i}"], z[f"b{i}"]) for i in range(int(info["layers"]))]
            mean, std = z["mean"], z["std"]
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, DetectorError):
            raise
        raise DetectorError(f"{path}: cannot read the JPEG-history detector ({e})") from None
    if layers[0][0].shape[1] != len(mean) or layers[-1][0].shape[0] != OUTPUTS:
        raise DetectorError(f"{path}: layer shapes {[w.shape for w, _ in layers]} do not fit {len(mean)} features")
    return Detector(layers, mean, std, info["thresholds"], info.get("meta"), path)


def beside(checkpoint: str | Path | None) -> Path | None:
    """The detector file that goes with a restoration checkpoint (``detector.npz`` in its
    folder), or None when there is none: such a model decides by the rules alone."""
    if checkpoint is None:
        return None
    p = Path(checkpoint).with_name(FILE_NAME)
    return p if p.is_file() else None
