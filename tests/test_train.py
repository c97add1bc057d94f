"""pipeline.train's building blocks: the training step shared by fit() and the benchmark."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.losses import HybridLoss
from pipeline.models import build_model
from pipeline.train import TrainStep, lr_at, make_optimizer

TINY = {"width": 8, "mid_blocks": 1}


def make_step(compile: str = "none", seed: int = 0) -> TrainStep:
    torch.manual_seed(seed)
    model = build_model("qacnet", **TINY)
    ema = copy.deepcopy(model).requires_grad_(False)
    loss_fn = HybridLoss({"l1": 1.0, "fft": 0.05, "qf": 0.1}, 0.5, vgg_pretrained=False)
    return TrainStep(model, ema, make_optimizer(model, 1e-3, 0.0), loss_fn, 1.0, amp=True, compile=compile)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    lq = (gt + 0.05 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    return lq, gt, torch.tensor([10.0, 60.0])


def test_step_updates_weights_lr_and_ema(one_torch_thread: None) -> None:
    step = make_step()
    before = [p.detach().clone() for p in step.model.parameters()]
    loss, parts, gnorm = step(*batch(), lr=2e-3, ema_decay=0.5)
    assert torch.isfinite(loss) and float(gnorm) > 0
    assert set(parts) == {"l1", "fft", "qf"}
    assert step.opt.param_groups[0]["lr"] == 2e-3
    after = list(step.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    for b, a, e in zip(before, after, step.ema.parameters()):  # decay 0.5: the EMA is the midpoint
        torch.testing.assert_close(e, (a + b) / 2)


def test_loss_goes_down_on_one_batch(one_torch_thread: None) -> None:
    step, data = make_step(), batch()
    first = float(step(*data, lr=2e-3, ema_decay=0.9)[0])
    for _ in range(15):
        last = float(step(*data, lr=2e-3, ema_decay=0.9)[0])
    assert last < first


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex")
def test_compiled_step_matches_eager() -> None:
    """The compiled step (what ran on the GPU) computes the same loss and update as eager."""
    eager, compiled = make_step("none"), make_step("default")
    data = batch()
    for _ in range(2):
        le = eager(*data, lr=1e-3, ema_decay=0.9)[0]
        lc = compiled(*data, lr=1e-3, ema_decay=0.9)[0]
        torch.testing.assert_close(lc, le, rtol=1e-4, atol=1e-6)
    for pe, pc in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(pc, pe, rtol=1e-3, atol=1e-5)


def test_lr_schedule_warms_up_then_decays() -> None:
    from dataclasses import replace

    from pipeline import params

    cfg = replace(params.load("params.yaml").train, lr=1e-3, min_lr=0.0, warmup_steps=10)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 10, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 500, 0.5) == pytest.approx(5e-4)
    assert lr_at(cfg, 900, 1.0) == pytest.approx(0.0)
