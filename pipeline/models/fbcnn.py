"""FBCNN-style baseline (Jiang et al., ICCV 2021), from the paper's description.

A 4-level U-Net of residual blocks (strided-conv down, transposed-conv up); a QF predictor on
the bottleneck features (residual blocks, global pooling, MLP, sigmoid); a QF embedding that
gives each decoder level a scale (sigmoid) and shift (tanh) for its QF-attention blocks. The
paper's size is channels (64, 128, 256, 512) with 4 blocks each: 71.9M parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from pipeline.models.common import Restored, as_qf_tensor, pad_to_multiple


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class QFAttention(ResBlock):
    """A residual block whose residual is scaled and shifted by the QF: x + gamma * res + beta."""

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:  # type: ignore[override]
        return x + gamma[:, :, None, None] * self.body(x) + beta[:, :, None, None]


class FBCNN(nn.Module):
    """forward(lq, qf=None): lq (B, 3, H, W) in [0, 1]; qf in [0, 100] or None (predicted)."""

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512), blocks: int = 4, embed_dim: int = 512) -> None:
        super().__init__()
        nc, nb = list(channels), blocks
        self.multiple = 2 ** (len(nc) - 1)
        self.head = nn.Conv2d(3, nc[0], 3, padding=1)
        self.down = nn.ModuleList(
            nn.Sequential(*[ResBlock(nc[i]) for _ in range(nb)], nn.Conv2d(nc[i], nc[i + 1], 2, stride=2))
            for i in range(len(nc) - 1)
        )
        self.body_enc = nn.Sequential(*[ResBlock(nc[-1]) for _ in range(nb)])
        self.body_dec = nn.Sequential(*[ResBlock(nc[-1]) for _ in range(nb)])
        self.up = nn.ModuleList(nn.ConvTranspose2d(nc[i + 1], nc[i], 2, stride=2) for i in range(len(nc) - 1))
        self.att = nn.ModuleList(nn.ModuleList(QFAttention(nc[i]) for _ in range(nb)) for i in range(len(nc) - 1))
        self.tail = nn.Conv2d(nc[0], 3, 3, padding=1)
        self.qf_pred = nn.Sequential(
            *[ResBlock(nc[-1]) for _ in range(nb)],
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(nc[-1], embed_dim),
            nn.ReLU(inplace=True),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(inplace=True),
            nn.Linear(embed_dim, 1),
            nn.Sigmoid(),
        )
        self.qf_embed = nn.Sequential(
            nn.Linear(1, embed_dim),
            nn.ReLU(inplace=True),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(inplace=True),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(inplace=True),
        )
        self.to_gamma = nn.ModuleList(
            nn.Sequential(nn.Linear(embed_dim, nc[i]), nn.Sigmoid()) for i in range(len(nc) - 1)
        )
        self.to_beta = nn.ModuleList(nn.Sequential(nn.Linear(embed_dim, nc[i]), nn.Tanh()) for i in range(len(nc) - 1))

    def forward(self, lq: Tensor, qf: Tensor | float | None = None) -> Restored:
        x, h, w = pad_to_multiple(lq, self.multiple)
        feats = [self.head(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        y = self.body_enc(feats[-1])
        qf_est = self.qf_pred(y).squeeze(1) * 100.0
        y = self.body_dec(y) + feats[-1]
        cond = as_qf_tensor(qf, x.shape[0], x.device)
        emb = self.qf_embed(((qf_est if cond is None else cond) / 100.0).unsqueeze(1))
        for i in reversed(range(len(self.up))):
            y = self.up[i](y)
            gamma, beta = self.to_gamma[i](emb), self.to_beta[i](emb)
            for block in self.att[i]:
                y = block(y, gamma, beta)
            y = y + feats[i]
        return Restored([self.tail(y)[..., :h, :w]], qf_est)
