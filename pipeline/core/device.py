"""The one place that picks the torch device (cpu/cuda) for training, evaluation and restoring.

``device_name`` answers without importing torch where no NVIDIA driver is loaded (no CUDA
possible): restoring on the CPU then never pays for importing torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Present when an NVIDIA driver is loaded (Linux), or a GPU is passed through to WSL2.
DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/dxg")


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def _cuda_available() -> bool:
    if sys.platform == "linux" and not any(Path(p).exists() for p in DRIVER_FILES):
        return False
    import torch

    return torch.cuda.is_available()


def device_name(name: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU raises, naming the value."""
    if name == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise DeviceError(f"device {name!r} is not one of auto, cpu, cuda")
    if name.startswith("cuda") and not _cuda_available():
        raise DeviceError(f"device is {name!r} but no CUDA device is available")
    return name


def pick_device(name: str = "auto") -> Any:
    """``device_name`` as a ``torch.device``."""
    import torch

    return torch.device(device_name(name))
