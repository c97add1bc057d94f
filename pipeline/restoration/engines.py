"""Inference engines: the same network run by PyTorch, ONNX Runtime or OpenVINO.

Every engine maps one tile, RGB uint8 (1, H, W, 3) with H and W multiples of 8, and a QF to
the restored tile, float32 (1, H, W, 3) in [0, 1]; colour conversion and clamping happen
inside the graph. It also carries the model's learned QF estimator (``estimate``), so that a
caller never needs the model and an engine that match. ONNX Runtime and OpenVINO run the ONNX graph exported from the
self-describing checkpoint (QF as an input, dynamic height and width), cached next to the
checkpoint under its content hash, so a new checkpoint gets a new graph and an old one is
never re-exported. Both runtimes are optional: without them everything runs on torch.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.files import sha256_file
from pipeline.restoration.options import ENGINES as ENGINE_CHOICES
from pipeline.restoration.options import PRECISIONS

# bf16 (OpenVINO) changed LIVE1 PSNR by at most 0.0007 dB at any QF 10-90 and ran 1.9x faster than
# f32 on a CPU with AVX-512 BF16 (README): ``auto`` takes it where the CPU runs bf16 natively.
# Evaluation keeps f32 (params evaluate.precision) so that scores do not depend on the CPU.
# Fastest first, as measured on a 2-core CPU (benchmarks/bench_restore.py, README): auto takes
# the first one installed. On CUDA, torch is the only GPU engine here.
CPU_ORDER = ("openvino", "onnxruntime", "torch")
RunFn = Callable[[np.ndarray, float], np.ndarray]
EstimateFn = Callable[[np.ndarray], "float | None"]


class EngineError(ValueError):
    """An engine that is unknown, not installed, or not usable on this device."""


@dataclass(frozen=True)
class Engine:
    """A ready-to-run network: ``run(tile_u8, qf)``. One tile size suits them all: 1024 (params
    evaluate.tile) was as fast as 768 and faster than 512 and 256 for every engine (README)."""

    name: str
    run: RunFn
    estimate: EstimateFn
    precision: str = "f32"

    @property
    def label(self) -> str:
        return self.name if self.name == "torch" else f"{self.name} {self.precision}"


class _Graph(nn.Module):
    """uint8 NHWC in, float NHWC in [0, 1] out: what every engine runs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, qf: torch.Tensor | None) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
        return self.net(x, qf).preds[-1].clamp(0.0, 1.0).permute(0, 2, 3, 1)


def installed(name: str) -> bool:
    """Whether engine ``name`` can run here (its runtime is importable)."""
    if name == "torch":
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve(name: str, device: torch.device | str = "cpu") -> str:
    """The engine ``name`` means on ``device``: auto -> the fastest installed (CUDA: torch)."""
    if name not in ENGINE_CHOICES:
        raise EngineError(f"engine {name!r} is not one of {', '.join(ENGINE_CHOICES)}")
    on_gpu = torch.device(device).type != "cpu"
    if name == "auto":
        return "torch" if on_gpu else next(n for n in CPU_ORDER if installed(n))
    if name != "torch" and on_gpu:
        raise EngineError(f"engine {name!r} runs on the CPU only; use --engine torch on {device}")
    if not installed(name):
        raise EngineError(f"engine {name!r} is not installed (pip install {name}); torch always is")
    return name


def onnx_path(ckpt: Path) -> Path:
    """Where the ONNX graph of checkpoint ``ckpt`` is cached: beside it, named by its content."""
    return ckpt.with_name(f"{ckpt.stem}.{sha256_file(ckpt)[:16]}.onnx")


def export_onnx(model: nn.Module, path: Path) -> Path:
    """Export ``model`` (on the CPU, f32) to ``path`` atomically: inputs ``image`` uint8
    (1, H, W, 3) and ``qf`` float (1,), output ``restored`` float (1, H, W, 3)."""
    graph = _Graph(model).cpu().float().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    example = (torch.zeros(1, 64, 96, 3, dtype=torch.uint8), torch.tensor([50.0]))
    hw = {1: "height", 2: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and still exact here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            str(tmp),
            input_names=["image", "qf"],
            output_names=["restored"],
            dynamic_axes={"image": hw, "restored": hw},
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(path)
    return path


def cached_onnx(model: nn.Module, ckpt: Path | None) -> Path:
    """The ONNX graph for ``model`` loaded from ``ckpt``: re-used when cached, else exported.
    Without a checkpoint file (or a writable folder beside it) it goes to a temporary folder."""
    if ckpt is not None:
        path = onnx_path(Path(ckpt))
        if path.is_file():
            return path
        try:
            return export_onnx(model, path)
        except OSError:
            pass
    return export_onnx(model, Path(tempfile.mkdtemp(prefix="jpeg-restoration-")) / "model.onnx")


def torch_run(model: nn.Module, amp: bool = True) -> RunFn:
    """``model`` in PyTorch eager on its device (bf16 autocast on CUDA when ``amp``); a QF of
    None lets the model condition on its own estimate."""
    graph = _Graph(model).eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def run(tile: np.ndarray, qf: float | None) -> np.ndarray:
        x = torch.from_numpy(tile).to(device)
        q = None if qf is None else torch.tensor([float(qf)], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            return graph(x, q).float().cpu().numpy()

    return run


def torch_estimate(model: nn.Module) -> EstimateFn:
    """The model's learned QF estimate of a whole RGB uint8 image (None: the model has none)."""
    device = next(model.parameters()).device

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)
        return t.to(device).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def estimate(image: np.ndarray) -> float | None:
        if hasattr(model, "estimator"):  # QACNet: a cheap head that runs at 1/8 resolution
            x = to_tensor(image)
            x = F.pad(x, (0, (-x.shape[3]) % 8, 0, (-x.shape[2]) % 8), mode="replicate")
            return float(model.estimator(x)[0])
        h, w = image.shape[:2]  # other models predict it in the forward pass: use a centre crop
        ch, cw = min(h, 512), min(w, 512)
        y, x0 = (h - ch) // 2 // 8 * 8, (w - cw) // 2 // 8 * 8
        out = model(to_tensor(image[y : y + ch, x0 : x0 + cw]))
        return None if out.qf is None else float(out.qf[0])

    return estimate


def _onnxruntime_run(path: Path, precision: str) -> RunFn:
    import onnxruntime as ort

    if precision != "f32":
        raise EngineError("onnxruntime runs at f32 only")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(tile: np.ndarray, qf: float) -> np.ndarray:
        return session.run(None, {"image": tile, "qf": np.array([qf], np.float32)})[0]

    return run


def _openvino_run(path: Path, precision: str) -> RunFn:
    import openvino as ov

    core = ov.Core()
    # OpenVINO silently runs bf16 on CPUs that have it: the hint pins what was measured.
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(tile: np.ndarray, qf: float) -> np.ndarray:
        out = request.infer({"image": tile, "qf": np.array([qf], np.float32)})
        return np.array(out[compiled.output(0)])

    return run


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def build_engine(name: str, model: nn.Module, ckpt: Path | str | None = None, precision: str = "f32") -> Engine:
    """Engine ``name`` (see ``resolve``) for ``model`` on its device; ``ckpt`` is the file it
    was loaded from (the ONNX cache key). ``precision``: f32, bf16 for OpenVINO (measured), or
    auto (bf16 where native)."""
    if precision not in PRECISIONS:
        raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = next(model.parameters()).device
    name = resolve(name, device)
    model.eval()
    if name == "torch":
        return Engine("torch", torch_run(model), torch_estimate(model))
    if precision == "auto":
        precision = "bf16" if name == "openvino" and native_bf16() else "f32"
    path = cached_onnx(model, None if ckpt is None else Path(ckpt))
    run = (_onnxruntime_run if name == "onnxruntime" else _openvino_run)(path, precision)
    return Engine(name, run, torch_estimate(model), precision)
