"""QACNet: the project's quality-aware cascaded network.

Each stage is a small U-Net of residual blocks. It starts by folding 2x2 pixels into channels
(PixelUnshuffle), so its levels run at 1/2, 1/4, 1/8 resolution with channels doubling: the
1/8 level sees one position per JPEG 8x8 block, and no convolution runs at full resolution
(on 2 CPU cores that halves the time for the same quality budget). A QF embedding modulates
every block (FiLM: per-channel scale and shift), so one set of weights serves QF 5 to 95 and the
user can move the QF by hand. Stage s > 0 sees the input, the previous stage's image, and the
previous stage's encoder and decoder features at every level (multi-stage feature fusion, as in
MPRNet). Every stage's image is returned so each is supervised.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.models.common import QFEmbedding, QFEstimator, Restored, as_qf_tensor, pad_to_multiple


class FiLMResBlock(nn.Module):
    """conv3x3 -> FiLM(qf) -> ReLU -> conv3x3, plus the identity. (B, C, H, W) -> same."""

    def __init__(self, ch: int, emb_dim: int | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.film = nn.Linear(emb_dim, 2 * ch) if emb_dim else None
        if self.film is not None:  # start as the identity modulation
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        h = self.conv1(x)
        if self.film is not None:
            gamma, beta = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = torch.addcmul(beta, h, 1 + gamma)
        return x + self.conv2(self.act(h))


class Blocks(nn.Module):
    def __init__(self, ch: int, n: int, emb_dim: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FiLMResBlock(ch, emb_dim) for _ in range(n))

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(x, emb)
        return x


class StageUNet(nn.Module):
    """One cascade stage. Returns a residual image and its (encoder, decoder) features per level."""

    def __init__(
        self,
        in_ch: int,
        width: int,
        enc_blocks: tuple[int, ...],
        mid_blocks: int,
        dec_blocks: tuple[int, ...],
        emb_dim: int | None,
        fuse: bool,
    ) -> None:
        super().__init__()
        levels = len(enc_blocks)
        ch = [width * 2**i for i in range(levels + 1)]
        self.head = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * in_ch, ch[0], 3, padding=1))
        self.enc = nn.ModuleList(Blocks(ch[i], enc_blocks[i], emb_dim) for i in range(levels))
        self.down = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 2, stride=2) for i in range(levels))
        self.mid = Blocks(ch[levels], mid_blocks, emb_dim)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch[i + 1], 4 * ch[i], 1), nn.PixelShuffle(2)) for i in range(levels)
        )
        self.dec = nn.ModuleList(Blocks(ch[i], dec_blocks[i], emb_dim) for i in range(levels))
        # 1x1 convolutions that bring the previous stage's features in (encoder + decoder, summed
        # first: one convolution instead of MPRNet's two, and no concatenation).
        self.fuse = nn.ModuleList(nn.Conv2d(ch[i], ch[i], 1) for i in range(levels)) if fuse else None
        self.tail = nn.Sequential(nn.Conv2d(ch[0], 12, 3, padding=1), nn.PixelShuffle(2))
        # Start as the identity (zero residual): training begins at the JPEG input's PSNR.
        nn.init.zeros_(self.tail[0].weight)
        nn.init.zeros_(self.tail[0].bias)

    def forward(
        self, x: Tensor, emb: Tensor | None, prev: tuple[list[Tensor], list[Tensor]] | None
    ) -> tuple[Tensor, tuple[list[Tensor], list[Tensor]]]:
        h = self.head(x)
        skips: list[Tensor] = []
        for i, (enc, down) in enumerate(zip(self.enc, self.down)):
            if self.fuse is not None and prev is not None:
                h = h + self.fuse[i](prev[0][i] + prev[1][i])
            h = enc(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        decs: list[Tensor] = [h] * len(skips)
        for i in reversed(range(len(skips))):
            h = self.dec[i](self.up[i](h) + skips[i], emb)
            decs[i] = h
        return self.tail(h), (skips, decs)


class QACNet(nn.Module):
    """Quality-aware cascaded restoration network.

    forward(lq, qf=None): lq (B, 3, H, W) RGB in [0, 1], any H, W; qf a number or (B,) tensor
    in [0, 100] (the header's or the user's), or None to use the built-in estimator.
    """

    def __init__(
        self,
        width: int = 48,
        num_stages: int = 2,
        enc_blocks: tuple[int, ...] = (1, 2),
        mid_blocks: int = 3,
        dec_blocks: tuple[int, ...] = (2, 1),
        qf_conditioning: bool = True,
        emb_dim: int = 64,
        estimator_width: int = 64,
    ) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be at least 1, got {num_stages}")
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(f"enc_blocks {enc_blocks} and dec_blocks {dec_blocks} need the same length")
        self.multiple = max(8, 2 ** (len(enc_blocks) + 1))
        self.qf_conditioning = qf_conditioning
        self.estimator = QFEstimator(estimator_width)
        self.embed = QFEmbedding(emb_dim) if qf_conditioning else None
        film_dim = emb_dim if qf_conditioning else None
        self.stages = nn.ModuleList(
            StageUNet(3 if s == 0 else 6, width, tuple(enc_blocks), mid_blocks, tuple(dec_blocks), film_dim, s > 0)
            for s in range(num_stages)
        )

    def forward(self, lq: Tensor, qf: Tensor | float | None = None) -> Restored:
        x, h, w = pad_to_multiple(lq, self.multiple)
        qf_est = self.estimator(x)
        emb = None
        if self.embed is not None:
            # The estimate conditions the blocks only in blind mode, and is detached so that the
            # estimator learns from its own loss term alone.
            cond = as_qf_tensor(qf, x.shape[0], x.device)
            emb = self.embed(qf_est.detach() if cond is None else cond)
        preds: list[Tensor] = []
        img, feats = x, None
        for s, stage in enumerate(self.stages):
            res, feats = stage(x if s == 0 else torch.cat([x, img], dim=1), emb, feats)
            img = img + res
            preds.append(img[..., :h, :w])
        return Restored(preds, qf_est)
