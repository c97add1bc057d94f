"""tiles.restore_float: odd sizes, tiling, x8 TTA, the learned QF, progress reports (decisions: test_photo.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image

from pipeline.core import images
from pipeline.data.datasets import sample_images
from pipeline.evaluation import metrics
from pipeline.models import build_model
from pipeline.models.checkpoint import load_checkpoint
from pipeline.restoration import engines, export, tiles

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "models" / "pretrained" / "model.pt"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def restore_float(model: torch.nn.Module, image: np.ndarray, qf: float | None = None, **kwargs) -> np.ndarray:
    """``model`` in the torch engine through ``tiles.restore_float``."""
    return tiles.restore_float(engines.build_engine("torch", model), image, qf, **kwargs)


def restore(model: torch.nn.Module, image: np.ndarray, qf: float | None = None, **kwargs) -> np.ndarray:
    return tiles.to_uint8(restore_float(model, image, qf, **kwargs))


def tiny_qacnet(randomize: bool) -> torch.nn.Module:
    """A tiny QACNet. Untrained it is the identity (its tail convolutions start at zero), so
    ``randomize`` perturbs every weight, tails and FiLM layers included."""
    torch.manual_seed(0)
    model = build_model("qacnet", width=8, mid_blocks=1, emb_dim=16, estimator_width=16)
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def random_model() -> torch.nn.Module:
    return tiny_qacnet(randomize=True)


@pytest.fixture(scope="module")
def identity_model() -> torch.nn.Module:
    return tiny_qacnet(randomize=False)


@pytest.fixture(scope="module")
def lq() -> np.ndarray:
    return images.jpeg_roundtrip(smooth_image(75, 99, seed=1), 20)


@pytest.mark.parametrize("size", [(37, 53), (8, 8), (75, 99)])
def test_restore_keeps_shape_and_dtype(random_model: torch.nn.Module, size: tuple[int, int]) -> None:
    image = images.jpeg_roundtrip(smooth_image(*size), 30)
    out = restore(random_model, image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)  # the randomized model does something
    flt = restore_float(random_model, image, qf=30)
    assert flt.shape == image.shape and flt.dtype == np.float32
    assert 0.0 <= flt.min() and flt.max() <= 1.0


def test_restore_rejects_non_rgb_uint8(random_model: torch.nn.Module, lq: np.ndarray) -> None:
    for bad in (lq.astype(np.float32), lq[:, :, 0], lq[:, :, :2]):
        with pytest.raises(ValueError, match="RGB uint8"):
            restore(random_model, bad)


@pytest.mark.parametrize(("tile", "tta"), [(0, True), (64, False), (64, True)])
def test_identity_model_gives_back_the_input(
    identity_model: torch.nn.Module, lq: np.ndarray, tile: int, tta: bool
) -> None:
    """Through an identity network, padding, tiling, blending and the 8 TTA views (and their
    inversion) must reproduce every pixel exactly."""
    out = restore(identity_model, lq, qf=20, tile=tile, overlap=32, tta=tta)
    np.testing.assert_array_equal(out, lq)


def test_tiled_random_model_keeps_shape(random_model: torch.nn.Module, lq: np.ndarray) -> None:
    whole = restore_float(random_model, lq, qf=20)
    tiled = restore_float(random_model, lq, qf=20, tile=64, overlap=32)
    assert tiled.shape == whole.shape
    assert np.isfinite(tiled).all()


@pytest.mark.skipif(not PRETRAINED.is_file(), reason=f"no shipped model at {PRETRAINED}")
def test_tiled_matches_whole_with_the_shipped_model() -> None:
    """256 px tiles, 64 px blended overlap (the app's and restore's kind of setting) on a photo
    that also fits whole: the two PSNRs agree within 0.01 dB."""
    model, _ = load_checkpoint(PRETRAINED)
    gt = sample_images("sample_test")["chelsea"]  # 300 x 451: two tile rows, two tile columns
    jpeg = images.jpeg_roundtrip(gt, 20)
    whole = restore_float(model, jpeg, qf=20)
    tiled = restore_float(model, jpeg, qf=20, tile=256, overlap=64)
    diff = np.abs(whole - tiled) * 255
    assert diff.max() < 3.0 and diff.mean() < 0.1, (diff.max(), diff.mean())
    psnr_whole = metrics.psnr(gt, tiles.to_uint8(whole))
    psnr_tiled = metrics.psnr(gt, tiles.to_uint8(tiled))
    assert psnr_whole > metrics.psnr(gt, jpeg) + 0.5  # the model restores
    assert abs(psnr_whole - psnr_tiled) <= 0.01, (psnr_whole, psnr_tiled)


def test_tta_changes_the_result(random_model: torch.nn.Module, lq: np.ndarray) -> None:
    plain = restore(random_model, lq, qf=20)
    tta = restore(random_model, lq, qf=20, tta=True)
    assert tta.shape == plain.shape and tta.dtype == np.uint8
    assert not np.array_equal(tta, plain)


def test_without_a_qf_the_learned_estimate_conditions(random_model: torch.nn.Module) -> None:
    shifted = images.jpeg_roundtrip(smooth_image(128, 128, seed=1), 30)[3:, 5:]
    net = export.torch_estimate(random_model)(shifted)
    assert net is not None and 0 <= net <= 100
    np.testing.assert_array_equal(restore(random_model, shifted), restore(random_model, shifted, net))


def test_estimate_qf_without_an_estimator() -> None:
    torch.manual_seed(0)
    dncnn = build_model("dncnn", depth=3, width=8).eval()
    shifted = images.jpeg_roundtrip(smooth_image(40, 48), 30)[3:, 5:]
    assert export.torch_estimate(dncnn)(shifted) is None
    assert restore(dncnn, shifted).shape == shifted.shape  # and restores without a QF


@pytest.mark.parametrize(
    ("size", "tile", "overlap"),
    [(304, 96, 48), (200, 96, 48), (104, 64, 32), (1000, 512, 64), (64, 64, 32), (4000, 1024, 64)],
)
def test_spans_cover_the_image_once_with_context(size: int, tile: int, overlap: int) -> None:
    spans = tiles._spans(size, tile, overlap)
    lengths = {b - a for a, b, _, _ in spans}
    assert len(lengths) == 1 and lengths.pop() <= tile  # one tile shape for the runtimes
    assert all(a % 8 == 0 for a, _, _, _ in spans) and spans[0][0] == 0 and spans[-1][1] == size
    kept = [(k0, k1) for _, _, k0, k1 in spans]
    assert kept[0][0] == 0 and kept[-1][1] == size and all(p[1] == q[0] for p, q in zip(kept, kept[1:]))
    for (a, b, k0, k1), first, last in zip(spans, [True] + [False] * len(spans), [False] * (len(spans) - 1) + [True]):
        assert a <= k0 < k1 <= b
        assert first or k0 - a >= overlap // 2 - 8  # context before the kept part
        assert last or b - k1 >= overlap // 2  # and after it
    n = len(spans)  # as few tiles as possible: one fewer cannot cover with the overlap
    assert n == 1 or (n - 1) * tile - (n - 2) * overlap < size


def test_progress_is_reported(random_model: torch.nn.Module, lq: np.ndarray) -> None:
    calls: list[tuple[int, int]] = []
    restore(random_model, lq, qf=20, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]
    calls.clear()
    restore(random_model, lq, qf=20, tile=64, overlap=32, progress=lambda d, t: calls.append((d, t)))
    total = len(tiles._spans(80, 64, 32)) * len(tiles._spans(104, 64, 32))  # padded to 8
    assert calls == [(i, total) for i in range(1, total + 1)]
    calls.clear()
    restore(random_model, lq, qf=20, tta=True, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 8) for i in range(1, 9)]
