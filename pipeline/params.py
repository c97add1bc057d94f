"""params.yaml -> frozen, typed dataclasses.

Every key is checked once, at start-up: an unknown key, a missing key or a value of the wrong
type raises ``ParamsError`` naming the key (``train.lr``) and what was expected. Architecture
arguments (``model.<arch>``) are checked against that architecture's constructor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COMPILE_MODES = ("none", "default", "reduce-overhead")  # train.compile: torch.compile modes


class ParamsError(ValueError):
    """A bad params file; the message names the key."""


@dataclass(frozen=True)
class DataParams:
    train_sets: tuple[str, ...]
    test_sets: tuple[str, ...]
    qfs: tuple[int, ...]
    mirror: str
    local: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelParams:
    arch: str
    qacnet: dict[str, Any]
    dncnn: dict[str, Any]
    fbcnn: dict[str, Any]

    def kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the selected architecture."""
        return dict(getattr(self, self.arch))


@dataclass(frozen=True)
class LossParams:
    l1_weight: float
    fft_weight: float
    vgg_weight: float
    ssim_weight: float
    qf_weight: float
    stage_weight: float

    def weights(self) -> dict[str, float]:
        return {
            f.name.removesuffix("_weight"): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "stage_weight"
        }


@dataclass(frozen=True)
class TrainParams:
    seed: int
    steps: int
    max_minutes: float
    batch_size: int
    patch_size: int
    patches_per_image: int
    qf_min: int
    qf_max: int
    double_jpeg_prob: float
    gray_prob: float
    align_prob: float
    resize_prob: float
    clean_prob: float
    lr: float
    weight_decay: float
    warmup_steps: int
    min_lr: float
    grad_clip: float
    ema_decay: float
    val_fraction: float
    val_every: int
    ckpt_every: int
    log_every: int
    workers: int
    device: str
    nproc: int
    compile: str
    amp: bool


@dataclass(frozen=True)
class EvaluateParams:
    tile: int
    overlap: int
    tta: bool
    device: str
    primary_sets: tuple[str, ...]
    primary_qfs: tuple[int, ...]
    projection: str
    engine: str
    precision: str
    real_world_sets: tuple[str, ...]
    real_world_qfs: tuple[int, ...]
    best_qf_grid: tuple[int, ...]


@dataclass(frozen=True)
class DetectorParams:
    """The JPEG-history detector's training (``pipeline/training/detector.py``). seed; samples:
    training photos synthesized; clean_share: of them never compressed; steps, batch, lr,
    weight_decay, hidden, dropout: the MLP's training; sides: photo sides drawn (px, min and
    max); holdout_every: every n-th clean photo held out for calibration; clean_target: share of
    held-out never-compressed variants that must stay unchanged; workers: processes making
    samples; clean_sets: training sets never compressed; skip_sets: sets left out (JPEG
    histories of unknown quality); not_clean: photos (file stems) of a clean set with JPEG traces."""

    seed: int
    samples: int
    clean_share: float
    steps: int
    batch: int
    lr: float
    weight_decay: float
    hidden: int
    dropout: float
    sides: tuple[int, ...]
    holdout_every: int
    clean_target: float
    workers: int
    clean_sets: tuple[str, ...]
    skip_sets: tuple[str, ...]
    not_clean: tuple[str, ...]


@dataclass(frozen=True)
class RegisterParams:
    model_name: str
    threshold: float
    pretrained: str


@dataclass(frozen=True)
class TrackingParams:
    experiment: str

    @property
    def data_experiment(self) -> str:
        """Where the data stages log (downloads, test sets): the training experiment lists models only."""
        return f"{self.experiment}-data"


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    loss: LossParams
    train: TrainParams
    detector: DetectorParams
    evaluate: EvaluateParams
    register: RegisterParams
    tracking: TrackingParams

    def digest(self) -> str:
        """A short hash of the whole configuration (for checkpoints and resume checks)."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def train_digest(self) -> str:
        """A short hash of what the train stage declares (``data.train_sets``, ``model``, ``loss``,
        ``train``): the key of its resume state, so editing evaluate or register keeps it."""
        declared = {"train_sets": self.data.train_sets, "model": self.model, "loss": self.loss, "train": self.train}
        blob = json.dumps(
            {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in declared.items()},
            sort_keys=True,
            default=list,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp``; return it converted (lists -> tuples, int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ParamsError:
                pass
        raise ParamsError(f"{key}: expected {tp}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise ParamsError(f"{key}: expected null, got {value!r}")
        return None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        key_tp, val_tp = typing.get_args(tp)
        return {_coerce(k, key_tp, key): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool) or tp is not bool and isinstance(value, bool):
        raise ParamsError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if not isinstance(value, tp):
        hint = (
            " (write floats like 2.0e-4: YAML reads 2e-4 as a string)" if tp is float and isinstance(value, str) else ""
        )
        raise ParamsError(f"{key}: expected {_describe(tp)}, got {type(value).__name__} {value!r}{hint}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; expected {', '.join(prefix + n for n in names)}"
        )
    out = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name not in raw:
            if f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
                continue
            raise ParamsError(f"missing key {key} ({_describe(hints[f.name])})")
        tp = hints[f.name]
        out[f.name] = (
            _build(tp, raw[f.name], key + ".") if dataclasses.is_dataclass(tp) else _coerce(raw[f.name], tp, key)
        )
    return cls(**out)


def _check_arch_kwargs(model: ModelParams) -> ModelParams:
    from pipeline.models import ARCHS, arch_defaults  # torch import: only once the YAML is valid

    if model.arch not in ARCHS:
        raise ParamsError(f"model.arch: unknown architecture {model.arch!r}; known: {', '.join(ARCHS)}")
    checked = {}
    for arch in ARCHS:
        defaults = arch_defaults(arch)
        raw = getattr(model, arch)
        unknown = sorted(set(raw) - set(defaults))
        if unknown:
            raise ParamsError(
                f"unknown key(s) {', '.join(f'model.{arch}.{k}' for k in unknown)}; expected {sorted(defaults)}"
            )
        checked[arch] = {
            k: _coerce(v, tuple[int, ...] if isinstance(defaults[k], tuple) else type(defaults[k]), f"model.{arch}.{k}")
            for k, v in raw.items()
        }
    return dataclasses.replace(model, **checked)


def parse(raw: dict[str, Any], check_archs: bool = True) -> Params:
    """Validate a params mapping (as read from YAML). ``check_archs``: check ``model.<arch>``
    against the architectures' constructors (imports torch; ``restore`` needs no model params)."""
    params = _build(Params, raw, "")
    if check_archs:
        params = dataclasses.replace(params, model=_check_arch_kwargs(params.model))
    t = params.train
    if not 1 <= t.qf_min <= t.qf_max <= 100:
        raise ParamsError(f"train.qf_min/qf_max: need 1 <= qf_min <= qf_max <= 100, got {t.qf_min}, {t.qf_max}")
    if t.batch_size % t.patches_per_image:
        raise ParamsError(
            f"train.batch_size ({t.batch_size}) must be a multiple of train.patches_per_image ({t.patches_per_image})"
        )
    if t.compile not in COMPILE_MODES:
        raise ParamsError(f"train.compile: expected one of {', '.join(COMPILE_MODES)}, got {t.compile!r}")
    for name in ("double_jpeg_prob", "resize_prob", "clean_prob", "gray_prob", "align_prob"):
        if not 0 <= getattr(t, name) <= 1:
            raise ParamsError(f"train.{name}: a probability must be in [0, 1], got {getattr(t, name)}")
    if t.double_jpeg_prob + t.resize_prob + t.clean_prob > 1:
        raise ParamsError(
            "train.double_jpeg_prob + train.resize_prob + train.clean_prob must be at most 1, got "
            f"{t.double_jpeg_prob} + {t.resize_prob} + {t.clean_prob}"
        )
    d = params.detector
    if len(d.sides) != 2 or not 64 <= d.sides[0] <= d.sides[1]:
        raise ParamsError(f"detector.sides: need [min, max] with 64 <= min <= max, got {list(d.sides)}")
    for name in ("clean_share", "clean_target", "dropout"):
        if not 0 <= getattr(d, name) <= 1:
            raise ParamsError(f"detector.{name}: must be in [0, 1], got {getattr(d, name)}")
    for name in ("samples", "steps", "batch", "hidden", "holdout_every", "workers"):
        if getattr(d, name) < 1:
            raise ParamsError(f"detector.{name}: must be at least 1, got {getattr(d, name)}")
    ev = params.evaluate
    if ev.projection not in ("auto", "on", "off"):
        raise ParamsError(f"evaluate.projection: expected one of auto, on, off, got {ev.projection!r}")
    if ev.engine not in ("auto", "torch", "onnxruntime", "openvino"):  # pipeline/restoration/engines.py
        raise ParamsError(f"evaluate.engine: expected one of auto, torch, onnxruntime, openvino, got {ev.engine!r}")
    if ev.precision not in ("f32", "bf16"):
        raise ParamsError(f"evaluate.precision: expected one of f32, bf16, got {ev.precision!r}")
    unknown = sorted(set(ev.real_world_sets) - set(params.data.test_sets))
    if unknown:
        raise ParamsError(
            f"evaluate.real_world_sets: {', '.join(unknown)} not in data.test_sets {list(params.data.test_sets)}"
        )
    if t.patch_size % 8:
        raise ParamsError(f"train.patch_size must be a multiple of 8, got {t.patch_size}")
    for key, qfs in (
        ("data.qfs", params.data.qfs),
        ("evaluate.real_world_qfs", ev.real_world_qfs),
        ("evaluate.best_qf_grid", ev.best_qf_grid),
    ):
        for q in qfs:
            if not 1 <= q <= 100:
                raise ParamsError(f"{key}: quality {q} is outside 1..100")
    return params


def load(path: str | Path = "params.yaml", check_archs: bool = True) -> Params:
    """Read and validate a params file (``check_archs``: see ``parse``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    ev = raw.get("evaluate") if isinstance(raw, dict) else None
    if isinstance(ev, dict) and isinstance(ev.get("projection"), bool):  # YAML 1.1 (and `dvc exp run -S`)
        ev["projection"] = "on" if ev["projection"] else "off"  # reads a bare on/off as a boolean
    try:
        return parse(raw, check_archs)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
