"""Loss terms (one explicit dict, ``LOSSES``) and the weighted hybrid of them used for training.

Image terms take ``pred`` and ``gt`` of shape (B, 3, H, W), RGB in [0, 1], and return a scalar.
The QF term takes the estimated and the true QF, each (B,) in [0, 100].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.common import Restored


class MissingWeightsError(RuntimeError):
    """Pretrained weights a loss needs are not available (offline); the message says what to do."""


class L1Loss(nn.Module):
    """Spatial mean absolute error."""

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        return F.l1_loss(pred, gt)


class FFTLoss(nn.Module):
    """L1 between the 2-D FFTs (real and imaginary parts) of prediction and ground truth."""

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        # cuFFT in half precision only takes powers of two: always transform in float32.
        fp = torch.fft.rfft2(pred.float(), norm="ortho")
        fg = torch.fft.rfft2(gt.float(), norm="ortho")
        return F.l1_loss(torch.view_as_real(fp), torch.view_as_real(fg))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


class SSIMLoss(nn.Module):
    """1 - SSIM with the protocol's settings (Gaussian 11x11, sigma 1.5, valid region), per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", _gaussian_window(), persistent=False)

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        c = pred.shape[1]
        w = self.window.expand(c, 1, -1, -1).to(pred.dtype)
        pred, gt = pred.float(), gt.float()
        w = w.float()

        def filt(x: Tensor) -> Tensor:
            return F.conv2d(x, w, groups=c)

        mu_x, mu_y = filt(pred), filt(gt)
        sxx = filt(pred * pred) - mu_x**2
        syy = filt(gt * gt) - mu_y**2
        sxy = filt(pred * gt) - mu_x * mu_y
        c1, c2 = 0.01**2, 0.03**2
        ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
        return 1.0 - ssim.mean()


VGG_LAYERS = (3, 8, 17, 26, 35)  # after relu1_2, relu2_2, relu3_4, relu4_4, relu5_4


class VGGLoss(nn.Module):
    """L1 between VGG19 features (ImageNet weights, frozen) of prediction and ground truth.

    torchvision downloads the weights (548 MB) on first use; offline, this fails with a message
    saying how to proceed. ``pretrained=False`` builds the same network with random weights
    (for tests only).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models import VGG19_Weights
        from torchvision.models.vgg import cfgs, make_layers

        # Only the convolutional part: the full VGG19 would also build a 120M-parameter classifier.
        features = make_layers(cfgs["E"])[: VGG_LAYERS[-1] + 1]
        try:
            if pretrained:
                state = torch.hub.load_state_dict_from_url(VGG19_Weights.IMAGENET1K_V1.url, progress=True)
                features.load_state_dict(
                    {
                        k.removeprefix("features."): v
                        for k, v in state.items()
                        if k.startswith("features.") and int(k.split(".")[1]) <= VGG_LAYERS[-1]
                    }
                )
        except (OSError, RuntimeError) as e:  # URLError is an OSError
            raise MissingWeightsError(
                "loss.vgg_weight > 0 needs torchvision's VGG19 ImageNet weights "
                f"({VGG19_Weights.IMAGENET1K_V1.url}), which are not in the torch hub cache "
                f"({torch.hub.get_dir()}/checkpoints) and could not be downloaded: {e}. "
                "Connect to the internet once, copy the file there, or set loss.vgg_weight: 0.0"
            ) from None
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def _feats(self, x: Tensor) -> list[Tensor]:
        out, x = [], (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_LAYERS:
                out.append(x)
        return out

    def train(self, mode: bool = True) -> VGGLoss:
        super().train(mode)
        self.features.eval()  # frozen network: never in training mode
        return self

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        with torch.no_grad():
            target = self._feats(gt)
        return sum(F.l1_loss(a, b) for a, b in zip(self._feats(pred), target)) / len(target)


class QFLoss(nn.Module):
    """L1 between estimated and true QF, on the 0..1 scale."""

    def forward(self, qf_est: Tensor, qf_true: Tensor) -> Tensor:
        return F.l1_loss(qf_est.float() / 100.0, qf_true.float() / 100.0)


LOSSES: dict[str, type[nn.Module]] = {"l1": L1Loss, "fft": FFTLoss, "vgg": VGGLoss, "ssim": SSIMLoss, "qf": QFLoss}
IMAGE_TERMS = ("l1", "fft", "vgg", "ssim")


class HybridLoss(nn.Module):
    """sum_t w_t * term_t over every stage output (earlier stages weighted by ``stage_weight``),
    plus ``qf_weight`` times the QF-estimator error. Terms with weight 0 are not built."""

    def __init__(self, weights: dict[str, float], stage_weight: float = 0.5, vgg_pretrained: bool = True) -> None:
        super().__init__()
        unknown = set(weights) - set(LOSSES)
        if unknown:
            raise KeyError(f"unknown loss term(s) {sorted(unknown)}; known: {list(LOSSES)}")
        self.weights = {k: float(w) for k, w in weights.items()}
        self.stage_weight = stage_weight
        self.terms = nn.ModuleDict()
        for name, w in self.weights.items():
            if w < 0:
                raise ValueError(f"loss.{name}_weight must be >= 0, got {w}")
            if w > 0:
                self.terms[name] = VGGLoss(vgg_pretrained) if name == "vgg" else LOSSES[name]()
        self.terms["qf"] = QFLoss()  # always: see forward

    def forward(self, out: Restored, gt: Tensor, qf_true: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the total and each term's value (final stage) for logging."""
        total = gt.new_zeros(())
        parts: dict[str, Tensor] = {}
        n = len(out.preds)
        for s, pred in enumerate(out.preds):
            sw = 1.0 if s == n - 1 else self.stage_weight
            for name in IMAGE_TERMS:
                if name in self.terms:
                    value = self.terms[name](pred, gt)
                    total = total + sw * self.weights[name] * value
                    if s == n - 1:
                        parts[name] = value.detach()
        if out.qf is not None:
            # Added even at weight 0 so the estimator's parameters always take part (DDP needs it).
            value = self.terms["qf"](out.qf, qf_true)
            total = total + self.weights.get("qf", 0.0) * value
            parts["qf"] = value.detach()
        return total, parts
