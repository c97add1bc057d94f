"""The network in PyTorch: run it eagerly, and export it (and its QF estimator) as ONNX graphs.

The only module of the restore path that imports torch: ``engines.py`` calls it for the torch
engine, and to export a graph that is not cached yet, so restoring with OpenVINO or ONNX Runtime
from cached graphs never pays for importing torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RunFn = Callable[[np.ndarray, float], np.ndarray]  # as engines.RunFn (engines imports this module, not back)
EstimateFn = Callable[[np.ndarray], "float | None"]


class _Graph(nn.Module):
    """uint8 NHWC in, float NHWC in [0, 1] out: what every engine runs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, qf: torch.Tensor | None) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
        return self.net(x, qf).preds[-1].clamp(0.0, 1.0).permute(0, 2, 3, 1)


class _EstimatorGraph(nn.Module):
    """uint8 NHWC (H, W multiples of 8) in, the learned QF (1,) out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.estimator = net.estimator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.estimator(image.permute(0, 3, 1, 2).float().div(255.0))


def _export(graph: nn.Module, example: tuple, path: Path, inputs: list[str], output: str, dynamic: dict) -> Path:
    """Export ``graph`` to ``path`` atomically (the TorchScript exporter is deprecated, and still exact here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            str(tmp),
            input_names=inputs,
            output_names=[output],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(path)
    return path


def export_onnx(model: nn.Module, path: Path) -> Path:
    """The restoration graph: inputs ``image`` uint8 (1, H, W, 3) and ``qf`` float (1,), output
    ``restored`` float (1, H, W, 3); any H and W that are multiples of 8."""
    hw = {1: "height", 2: "width"}
    example = (torch.zeros(1, 64, 96, 3, dtype=torch.uint8), torch.tensor([50.0]))
    graph = _Graph(model).cpu().float().eval()
    return _export(graph, example, path, ["image", "qf"], "restored", {"image": hw, "restored": hw})


def export_estimator(model: nn.Module, path: Path) -> Path | None:
    """The QF estimator's graph: input ``image`` uint8 (1, H, W, 3), H and W multiples of 8,
    output ``qf`` float (1,); None for a model without an estimator head."""
    if not hasattr(model, "estimator"):
        return None
    graph = _EstimatorGraph(model).cpu().float().eval()
    example = (torch.zeros(1, 64, 96, 3, dtype=torch.uint8),)
    return _export(graph, example, path, ["image"], "qf", {"image": {1: "height", 2: "width"}})


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
