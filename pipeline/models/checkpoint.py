"""Self-describing checkpoints: ``{"arch", "kwargs", "weights", "meta"}``.

Anything can rebuild the network from the file alone, and loading uses
``torch.load(weights_only=True)``: only tensors and plain containers, never pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.core.files import replacing
from pipeline.models import ARCHS, build_model


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a truncated file. Saved
    through a file object, whose archive folder is always "archive" (given a path, torch names it
    after the random temporary file): the same object gives the same bytes."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def plain(value: Any) -> Any:
    """Tuples -> lists, str subclasses (torch.__version__) -> str: only types that
    weights_only loading accepts."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def save_checkpoint(
    path: str | Path, arch: str, kwargs: dict[str, Any], model: nn.Module, meta: dict[str, Any], half: bool = False
) -> None:
    """Write the model's weights (fp16 when ``half``: half the size, for shipping) with its
    constructor arguments and metadata (steps, params digest, training data...). The train stage
    keeps run facts (wall time, git commit, run id) out of it, so that a rerun writes the same bytes."""
    weights = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    atomic_save({"arch": arch, "kwargs": plain(kwargs), "weights": weights, "meta": plain(meta)}, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, checked for the expected keys."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as e:  # a truncated or foreign file: say which one
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    missing = {"arch", "kwargs", "weights"} - set(ckpt) if isinstance(ckpt, dict) else {"arch", "kwargs", "weights"}
    if missing:
        raise CheckpointError(f"{path}: not a jpeg-restoration checkpoint (missing {sorted(missing)})")
    if ckpt["arch"] not in ARCHS:
        raise CheckpointError(f"{path}: unknown architecture {ckpt['arch']!r}; known: {', '.join(ARCHS)}")
    return ckpt


def _as_ctor_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], arch: str, expected_arch: str, path: Path) -> None:
    """Load weights, turning an architecture mismatch into an error naming both."""
    if arch != expected_arch:
        raise CheckpointError(f"{path}: checkpoint is architecture {arch!r}, but the model is {expected_arch!r}")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r} with these arguments: {e}") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the checkpoint; returns (model in eval mode, meta)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["arch"], **_as_ctor_kwargs(ckpt["kwargs"]))
    load_weights(model, ckpt["weights"], ckpt["arch"], ckpt["arch"], path)
    meta = dict(ckpt.get("meta", {}))
    meta.setdefault("arch", ckpt["arch"])
    meta.setdefault("kwargs", ckpt["kwargs"])
    return model.to(device).eval(), meta


def describe(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What people ask of a model, from a raw checkpoint (``read_checkpoint``): architecture,
    parameter count, training steps over every phase (``meta["history"]``) and training data."""
    meta = ckpt.get("meta", {})
    phases = [*meta.get("history", []), meta]
    steps = sum(p["steps"] for p in phases if isinstance(p.get("steps"), int))
    data = meta.get("data") or ", ".join(meta.get("train_sets", []))
    if data and isinstance(meta.get("train_images"), int):
        data = f"{data} ({meta['train_images']} training images)"
    params = meta.get("params")
    if not isinstance(params, int):
        params = sum(w.numel() for w in ckpt["weights"].values() if w.is_floating_point())
    return {"arch": ckpt["arch"], "params": params, "steps": steps or None, "data": data or None}
