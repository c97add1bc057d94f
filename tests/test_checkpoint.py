"""Self-describing checkpoints: round trips, weights-only loading, and errors that name the file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from pipeline.models import build_model
from pipeline.models.checkpoint import (
    CheckpointError,
    atomic_save,
    describe,
    load_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)

KWARGS = {"width": 8, "mid_blocks": 1, "enc_blocks": (1, 1), "dec_blocks": (1, 1), "emb_dim": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("qacnet", **KWARGS)
    with torch.no_grad():
        for p in net.parameters():  # leave the identity start, so outputs tell weights apart
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def lq() -> torch.Tensor:
    return torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1))


def test_round_trip_fp32_is_exact(tmp_path: Path, model: torch.nn.Module, lq: torch.Tensor) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, "qacnet", KWARGS, model, {"steps": 7})
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert meta["steps"] == 7 and meta["arch"] == "qacnet"
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left
    with torch.no_grad():
        a, b = model(lq, 40), loaded(lq, 40)
    for x, y in zip(a.preds, b.preds):
        assert torch.equal(x, y)
    assert torch.equal(a.qf, b.qf)


def test_round_trip_half(tmp_path: Path, model: torch.nn.Module, lq: torch.Tensor) -> None:
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, "qacnet", KWARGS, model, {})
    save_checkpoint(half, "qacnet", KWARGS, model, {}, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    weights = torch.load(half, weights_only=True)["weights"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(lq, 40).preds[-1], model(lq, 40).preds[-1], atol=2e-3, rtol=0)
    assert any(p.requires_grad for p in loaded.parameters())


def test_meta_with_tuples_and_str_subclasses(tmp_path: Path, model: torch.nn.Module) -> None:
    """torch.__version__ is a str subclass and tuples are not plain either: both are stored as
    the plain types that weights-only loading accepts."""
    path = tmp_path / "m.pt"
    meta = {"torch": torch.__version__, "shape": (1, 2), "nested": {"pairs": [("a", (3, 4))]}}
    save_checkpoint(path, "qacnet", KWARGS, model, meta)
    _, got = load_checkpoint(path)
    assert got["torch"] == str(torch.__version__) and type(got["torch"]) is str
    assert got["shape"] == [1, 2]
    assert got["nested"] == {"pairs": [["a", [3, 4]]]}
    assert got["kwargs"]["enc_blocks"] == [1, 1]


class Payload:
    """Unpickling this would create a file: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused(tmp_path: Path, model: torch.nn.Module) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save({"arch": "qacnet", "kwargs": KWARGS, "weights": model.state_dict(), "meta": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_file(tmp_path: Path, model: torch.nn.Module) -> None:
    path = tmp_path / "cut.pt"
    save_checkpoint(path, "qacnet", KWARGS, model, {})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.pt.*not a readable checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"weights": {}}, r"missing \['arch', 'kwargs'\]"),
        ([1, 2, 3], "missing"),
        ({"arch": "resnet", "kwargs": {}, "weights": {}}, "unknown architecture 'resnet'"),
    ],
    ids=["missing-keys", "not-a-dict", "unknown-arch"],
)
def test_foreign_content(tmp_path: Path, content: object, match: str) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert "other.pt" in str(err.value)


def test_weights_into_another_arch_name_both(tmp_path: Path, model: torch.nn.Module) -> None:
    dncnn = build_model("dncnn", depth=3, width=8)
    with pytest.raises(CheckpointError, match="'qacnet'.*'dncnn'") as err:
        load_weights(dncnn, model.state_dict(), "qacnet", "dncnn", tmp_path / "m.pt")
    assert "m.pt" in str(err.value)


def test_weights_that_do_not_fit_the_kwargs(tmp_path: Path, model: torch.nn.Module) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, "qacnet", {**KWARGS, "width": 16}, model, {})  # kwargs that lie
    with pytest.raises(CheckpointError, match="m.pt: weights do not fit architecture 'qacnet'"):
        load_checkpoint(path)


def test_atomic_save_failure_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    with pytest.raises((AttributeError, pickle.PicklingError)):  # pickle cannot store a lambda
        atomic_save({"f": lambda: 0}, path)
    assert os.listdir(tmp_path) == []


def test_describe(tmp_path: Path, model: torch.nn.Module) -> None:
    shipped = read_checkpoint(Path(__file__).resolve().parent.parent / "models" / "pretrained" / "model.pt")
    facts = describe(shipped)  # three GPU training phases (the model card's): the earlier ones in meta["history"]
    assert facts["arch"] == "qacnet" and facts["params"] == 5994377 and facts["steps"] == 13686 + 4392 + 34769
    assert facts["data"].startswith("train + DIV2K11 + Waterloo13")

    meta = {"steps": 40, "train_sets": ["sample_train"], "train_images": 2}  # what the train stage writes
    save_checkpoint(tmp_path / "m.pt", "qacnet", KWARGS, model, meta)
    facts = describe(read_checkpoint(tmp_path / "m.pt"))
    assert facts == {
        "arch": "qacnet",
        "params": sum(p.numel() for p in model.parameters()),
        "steps": 40,
        "data": "sample_train (2 training images)",
    }
