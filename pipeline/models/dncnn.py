"""DnCNN-3 (Zhang et al., TIP 2017): 20 convolutions of 64 channels with batch norm, residual."""

from __future__ import annotations

from torch import Tensor, nn

from pipeline.models.common import Restored


class DnCNN(nn.Module):
    """Predicts the artifact (residual) and subtracts it. lq (B, 3, H, W) in [0, 1]; qf unused."""

    def __init__(self, depth: int = 20, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, lq: Tensor, qf: Tensor | float | None = None) -> Restored:
        return Restored([lq - self.body(lq)], None)
