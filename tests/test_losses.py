"""Every loss term in LOSSES, and the weighted hybrid used for training."""

from __future__ import annotations

import socket

import pytest
import torch

from pipeline.models import Restored
from pipeline.training import losses
from pipeline.training.losses import LOSSES, HybridLoss, L1Loss, MissingWeightsError, VGGLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_term(name: str) -> torch.nn.Module:
    return VGGLoss(pretrained=False) if name == "vgg" else LOSSES[name]()


def inputs(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, gt): images (2, 3, 32, 32) in [0, 1], or QFs (2,) in [0, 100] for the QF term."""
    g = torch.Generator().manual_seed(seed)
    if name == "qf":
        return torch.rand(2, generator=g) * 100, torch.tensor([10.0, 90.0])
    gt = torch.rand(2, 3, 32, 32, generator=g)
    return (gt + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1), gt


@pytest.fixture(scope="module")
def terms() -> dict[str, torch.nn.Module]:
    return {name: make_term(name) for name in LOSSES}  # VGG19 is built once


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_term_is_a_differentiable_finite_scalar(name: str, terms: dict) -> None:
    pred, gt = inputs(name)
    pred.requires_grad_(True)
    value = terms[name](pred, gt)
    assert value.shape == ()
    assert torch.isfinite(value)
    assert value > 0
    value.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_term_is_zero_for_a_perfect_prediction(name: str, terms: dict) -> None:
    _, gt = inputs(name)
    assert abs(float(terms[name](gt.clone(), gt))) < 1e-5


def test_ssim_term_matches_the_metric() -> None:
    """1 - SSIMLoss equals the protocol SSIM (scikit-image) on the same image, per channel mean."""
    from skimage.metrics import structural_similarity

    pred, gt = inputs("ssim")
    ref = structural_similarity(
        gt[0].permute(1, 2, 0).double().numpy(),
        pred[0].permute(1, 2, 0).double().numpy(),
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert 1 - float(LOSSES["ssim"]()(pred[:1], gt[:1])) == pytest.approx(ref, abs=1e-5)


def test_vgg_is_frozen_and_stays_in_eval_mode(terms: dict) -> None:
    vgg = terms["vgg"]
    vgg.train()
    assert not vgg.features.training
    assert not any(p.requires_grad for p in vgg.parameters())


def out(*preds: torch.Tensor, qf: torch.Tensor | None = None) -> Restored:
    return Restored(list(preds), qf)


def test_hybrid_zero_weight_builds_no_term() -> None:
    loss = HybridLoss({"l1": 1.0, "fft": 0.0, "vgg": 0.0, "ssim": 0.5, "qf": 0.0})
    assert set(loss.terms) == {"l1", "ssim", "qf"}  # qf always: the estimator must get a gradient (DDP)


def test_hybrid_total_is_the_weighted_sum() -> None:
    pred, gt = inputs("l1")
    qf_est, qf_true = torch.tensor([30.0, 70.0]), torch.tensor([10.0, 90.0])
    loss = HybridLoss({"l1": 2.0, "fft": 0.5, "vgg": 0.0, "ssim": 0.0, "qf": 0.1})
    total, parts = loss(out(pred, qf=qf_est), gt, qf_true)
    expected = 2.0 * LOSSES["l1"]()(pred, gt) + 0.5 * LOSSES["fft"]()(pred, gt) + 0.1 * 0.2
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    assert set(parts) == {"l1", "fft", "qf"}
    assert float(parts["qf"]) == pytest.approx(0.2)


def test_hybrid_stage_weight_applies_to_earlier_stages() -> None:
    pred, gt = inputs("l1")
    early, _ = inputs("l1", seed=1)
    loss = HybridLoss({"l1": 1.0, "qf": 0.0}, stage_weight=0.25)
    one, parts_one = loss(out(pred), gt, torch.zeros(2))
    two, parts_two = loss(out(early, pred), gt, torch.zeros(2))
    assert float(two - one) == pytest.approx(0.25 * float(L1Loss()(early, gt)), rel=1e-5)
    # The logged parts are the final stage's.
    torch.testing.assert_close(parts_one["l1"], parts_two["l1"])


def test_hybrid_qf_term_at_weight_zero_keeps_the_estimator_in_the_graph() -> None:
    pred, gt = inputs("l1")
    qf_est = torch.tensor([30.0, 70.0], requires_grad=True)
    total, _ = HybridLoss({"l1": 1.0, "qf": 0.0})(out(pred, qf=qf_est), gt, torch.tensor([10.0, 90.0]))
    total.backward()
    assert qf_est.grad is not None


def test_hybrid_vgg_term(terms: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VGG term is built with ``vgg_pretrained`` (the module's VGG19 reused: building one costs seconds)."""
    asked: list[bool] = []

    def build(pretrained: bool = True) -> torch.nn.Module:
        asked.append(pretrained)
        return terms["vgg"]

    monkeypatch.setattr(losses, "VGGLoss", build)
    pred, gt = inputs("vgg")
    pred.requires_grad_(True)
    total, parts = HybridLoss({"l1": 1.0, "vgg": 0.1, "qf": 0.0}, vgg_pretrained=False)(out(pred), gt, torch.zeros(2))
    total.backward()
    assert asked == [False]
    assert float(total.detach()) == pytest.approx(float(L1Loss()(pred.detach(), gt) + 0.1 * parts["vgg"]), rel=1e-6)
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_hybrid_unknown_term_raises() -> None:
    with pytest.raises(KeyError, match="perceptual"):
        HybridLoss({"l1": 1.0, "perceptual": 1.0})


def test_hybrid_negative_weight_raises() -> None:
    with pytest.raises(ValueError, match="loss.fft_weight"):
        HybridLoss({"l1": 1.0, "fft": -0.1})


def test_vgg_pretrained_offline_says_what_to_do(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with no weights in the hub cache: a MissingWeightsError that names the setting.

    The hub cache is pointed at an empty folder (the machine's own cache may hold the weights,
    and a partial download must not land there) and the network is cut, so this fails at once
    whether or not the machine is online.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(MissingWeightsError, match=r"loss\.vgg_weight") as err:
        VGGLoss(pretrained=True)
    assert str(tmp_path) in str(err.value)  # says where the file goes
