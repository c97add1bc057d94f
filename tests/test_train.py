"""pipeline.training.loop's building blocks: the training step shared by fit() and the benchmark."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from pipeline import params
from pipeline.models import build_model
from pipeline.training.loop import TrainStep, ema_decay_at, fit, lr_at, make_optimizer, update_ema
from pipeline.training.losses import HybridLoss

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


def test_ema_step_moves_towards_the_weights() -> None:
    ema, weights = [torch.zeros(3), torch.ones(2)], [torch.ones(3), torch.full((2,), 3.0)]
    ema_buf, buf = [torch.zeros(1)], [torch.full((1,), 7.0)]
    update_ema(ema, weights, ema_buf, buf, decay=0.75)
    torch.testing.assert_close(ema[0], torch.full((3,), 0.25))
    torch.testing.assert_close(ema[1], torch.full((2,), 1.5))
    assert float(ema_buf[0]) == 7.0  # buffers are copied
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10**6) == 0.999


def test_fit_ships_trained_ema_weights(tmp_path: Path, image_factory, one_torch_thread: None) -> None:
    """The EMA weights fit() returns (saved, evaluated, shipped) moved away from the
    initialisation and restore a generated photo better than its JPEG input."""
    p = params.load(Path(__file__).resolve().parent.parent / "params.yaml")
    cfg = dataclasses.replace(
        p.train,
        steps=40,
        batch_size=4,
        patch_size=32,
        patches_per_image=2,
        warmup_steps=5,
        lr=2.0e-3,
        ckpt_every=1000,
        log_every=1000,
        val_every=1000,
        workers=0,
        device="cpu",
        double_jpeg_prob=0.0,
        resize_prob=0.0,
        clean_prob=0.0,
        qf_min=10,
        qf_max=30,
    )
    imgs = [image_factory(64, 80, seed=i) for i in range(3)]
    res = fit("qacnet", TINY, imgs, imgs[:1], cfg, p.loss, tmp_path / "state.pt", "d", vgg_pretrained=False)
    torch.manual_seed(cfg.seed)
    init = build_model("qacnet", **TINY).state_dict()
    moved = [k for k, v in res.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, init[k])]
    assert len(moved) > len(init) // 2
    assert res.val["val_gain"] > 0, res.val
