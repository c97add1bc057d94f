"""Architectures: one explicit dict, ``build_model(name, **kwargs)``.

Every architecture takes ``forward(lq, qf=None)`` with lq (B, 3, H, W) RGB in [0, 1] and returns
``Restored(preds, qf)``; see ``common.Restored``.
"""

from __future__ import annotations

import inspect

from torch import nn

from pipeline.models.common import Restored
from pipeline.models.dncnn import DnCNN
from pipeline.models.fbcnn import FBCNN
from pipeline.models.qacnet import QACNet

ARCHS: dict[str, type[nn.Module]] = {"qacnet": QACNet, "dncnn": DnCNN, "fbcnn": FBCNN}

__all__ = ["ARCHS", "Restored", "arch_defaults", "build_model", "count_params"]


def _arch(name: str) -> type[nn.Module]:
    if name not in ARCHS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}")
    return ARCHS[name]


def arch_defaults(name: str) -> dict[str, object]:
    """The constructor's keyword arguments and their defaults (the types a config must match)."""
    sig = inspect.signature(_arch(name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self"}


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Instantiate architecture ``name``; unknown keyword arguments raise, naming them."""
    defaults = arch_defaults(name)
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"architecture {name!r} has no argument(s) {unknown}; it takes {sorted(defaults)}")
    return _arch(name)(**kwargs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
