"""Every architecture in ARCHS, timm-style: forward on odd sizes, backward reaches every parameter."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import ARCHS, Restored, arch_defaults, build_model, count_params

# Tiny versions of every architecture (seconds on CPU); a new ARCHS entry must add itself here.
SMALL: dict[str, dict[str, object]] = {
    "qacnet": {"width": 8, "mid_blocks": 1, "emb_dim": 16, "estimator_width": 16},
    "dncnn": {"depth": 5, "width": 16},
    "fbcnn": {"channels": (8, 16, 32, 64), "blocks": 1, "embed_dim": 16},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small(name: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, **{**SMALL[name], **overrides})


def test_small_kwargs_cover_every_arch() -> None:
    assert set(SMALL) == set(ARCHS)
    for name, kwargs in SMALL.items():
        assert set(kwargs) <= set(arch_defaults(name)), name


@pytest.mark.parametrize("qf", [None, "tensor", 30], ids=["blind", "qf_tensor", "qf_number"])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_forward_backward(name: str, qf: object) -> None:
    model = small(name).train()
    lq = torch.rand(2, 3, 37, 53)
    cond = torch.tensor([10.0, 80.0]) if qf == "tensor" else qf
    out = model(lq, cond)

    assert isinstance(out, Restored)
    assert len(out.preds) >= 1
    for pred in out.preds:
        assert pred.shape == lq.shape
        assert torch.isfinite(pred).all()
    if out.qf is not None:
        assert out.qf.shape == (2,)
        assert torch.isfinite(out.qf).all()
        assert ((out.qf >= 0) & (out.qf <= 100)).all()

    loss = sum((p - lq).abs().mean() for p in out.preds)
    if out.qf is not None:
        loss = loss + (out.qf / 100.0).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_parameter_is_used(name: str) -> None:
    """With the zero-initialised layers (identity start) randomized, every gradient is non-zero:
    no parameter is dead weight."""
    model = small(name).train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = model(torch.rand(2, 3, 32, 40))
    loss = sum(p.square().mean() for p in out.preds) + (0 if out.qf is None else out.qf.mean())
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


@pytest.mark.parametrize("stages", [1, 3])
def test_qacnet_returns_one_pred_per_stage(stages: int) -> None:
    model = small("qacnet", num_stages=stages).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 24, 40), 50)
    assert len(out.preds) == stages
    assert all(p.shape == (1, 3, 24, 40) for p in out.preds)


def test_untrained_qacnet_is_the_identity() -> None:
    """The zero-initialised tails make training start at the JPEG input's PSNR."""
    lq = torch.rand(1, 3, 21, 35)
    with torch.no_grad():
        out = small("qacnet").eval()(lq)
    for pred in out.preds:
        torch.testing.assert_close(pred, lq)


def test_qacnet_without_qf_conditioning() -> None:
    model = small("qacnet", qf_conditioning=False)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if "film" in n or "embed" in n]
    assert any(n.startswith("estimator.") for n in names)  # the QF is still estimated
    lq = torch.rand(1, 3, 19, 27)
    out = model(lq)
    assert out.preds[-1].shape == lq.shape
    assert out.qf is not None and out.qf.shape == (1,)
    # Without conditioning the QF given makes no difference.
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(lq, 10).preds[-1], model(lq, 90).preds[-1])


def test_qacnet_qf_changes_the_output() -> None:
    model = small("qacnet").eval()
    with torch.no_grad():
        for p in model.parameters():  # leave the identity start
            p.add_(0.05 * torch.randn_like(p))
        lq = torch.rand(1, 3, 16, 16)
        assert not torch.allclose(model(lq, 10).preds[-1], model(lq, 90).preds[-1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_stages": 0}, "num_stages"), ({"enc_blocks": (1, 2), "dec_blocks": (1,)}, "enc_blocks")],
)
def test_qacnet_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("qacnet", **kwargs)


def test_default_sizes() -> None:
    with torch.device("meta"):  # count without allocating 72M parameters
        qacnet, fbcnn = build_model("qacnet"), build_model("fbcnn")
    assert count_params(qacnet) <= 12_000_000
    assert 71_500_000 <= count_params(fbcnn) <= 72_500_000  # FBCNN paper: 71.9M


def test_build_model_unknown_kwarg_names_it() -> None:
    with pytest.raises(TypeError, match="widht"):
        build_model("qacnet", widht=8)


def test_build_model_unknown_arch() -> None:
    with pytest.raises(KeyError, match="resnet"):
        build_model("resnet")
