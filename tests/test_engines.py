"""Inference engines: the runtimes agree with torch, the ONNX cache follows the checkpoint's
content, ``auto`` picks the fastest installed, and without the optional runtimes torch runs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image, tiny_checkpoint

from pipeline.core import files, images
from pipeline.models.checkpoint import load_checkpoint
from pipeline.restoration import engines, export, tiles

RUNTIMES = [
    pytest.param(n, marks=pytest.mark.skipif(not engines.installed(n), reason=f"{n} not installed"))
    for n in ("onnxruntime", "openvino")
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", 0)


@pytest.fixture(scope="module")
def lq() -> np.ndarray:
    return images.jpeg_roundtrip(smooth_image(75, 99, seed=3), 20)


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtimes_agree_with_torch(ckpt: Path, lq: np.ndarray, name: str) -> None:
    model = load_checkpoint(ckpt)[0]
    engine = engines.build_engine(name, model, ckpt)
    assert engine.name == name and engine.label == f"{name} f32"
    tile = np.ascontiguousarray(lq[None, :64, :96])
    ref = engines.build_engine("torch", model).run(tile, 20.0)
    out = engine.run(tile, 20.0)
    assert out.shape == ref.shape == (1, 64, 96, 3) and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-4  # float32 rounding: far below a grey level (1 / 255)
    assert not np.allclose(engine.run(tile, 80.0), out, atol=1e-3)  # the QF is an input of the graph
    # The whole path (odd size padded to 8, tiles with seams) agrees too.
    whole_torch = tiles.restore_float(engines.build_engine("torch", model), lq, 20, tile=48, overlap=16)
    whole = tiles.restore_float(engine, lq, 20, tile=48, overlap=16)
    assert np.abs(whole - whole_torch).max() < 1e-4


def test_every_engine_carries_the_models_estimator(ckpt: Path, lq: np.ndarray) -> None:
    """The decision needs the learned QF estimate: each engine carries it, so that no caller
    reaches into the model."""
    model = load_checkpoint(ckpt)[0]
    want = export.torch_estimate(model)(lq)
    assert want is not None and 0 <= want <= 100
    for name in ("torch", *(n for n in ("onnxruntime", "openvino") if engines.installed(n))):
        assert engines.build_engine(name, model, ckpt).estimate(lq) == pytest.approx(want, abs=1e-4)


@pytest.mark.skipif(not engines.installed("onnxruntime"), reason="onnxruntime not installed")
def test_onnx_cache_is_keyed_by_the_checkpoint_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_checkpoint(tmp_path / "model.pt", 0)
    exports: list[Path] = []
    real = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda m, p: exports.append(p) or real(m, p))
    model = load_checkpoint(path)[0]
    engines.build_engine("onnxruntime", model, path)
    engines.build_engine("onnxruntime", model, path)  # cached: not exported again
    assert len(exports) == 1 and exports[0] == engines.onnx_path(path) and exports[0].parent == tmp_path
    assert exports[0].name == f"model.{files.sha256_file(path)[:16]}.onnx"
    tiny_checkpoint(path, 1)  # a new checkpoint in the same file: a new graph
    engines.build_engine("onnxruntime", load_checkpoint(path)[0], path)
    assert len(exports) == 2 and exports[1] != exports[0]


def test_auto_picks_the_fastest_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    have = {"torch", "onnxruntime", "openvino"}
    monkeypatch.setattr(engines, "installed", lambda n: n in have)
    assert engines.resolve("auto", "cpu") == "openvino"
    assert engines.resolve("auto", torch.device("cuda")) == "torch"  # the only GPU engine
    have.discard("openvino")
    assert engines.resolve("auto") == "onnxruntime"
    have.discard("onnxruntime")
    assert engines.resolve("auto") == "torch"
    with pytest.raises(engines.EngineError, match="not installed"):
        engines.resolve("openvino")
    with pytest.raises(engines.EngineError, match="CPU only"):
        engines.resolve("onnxruntime", "cuda")
    with pytest.raises(engines.EngineError, match="not one of"):
        engines.resolve("tensorrt")


def test_without_the_runtimes_everything_runs_on_torch(
    ckpt: Path, lq: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, name, None)  # ``import name`` now raises ImportError
    assert not engines.installed("onnxruntime") and not engines.installed("openvino")
    model = load_checkpoint(ckpt)[0]
    engine = engines.build_engine("auto", model, ckpt)
    assert engine.name == "torch"
    assert tiles.restore_float(engine, lq, 30).shape == lq.shape
    with pytest.raises(engines.EngineError, match="pip install openvino"):
        engines.build_engine("openvino", model, ckpt)


def test_precision_is_checked(ckpt: Path) -> None:
    with pytest.raises(engines.EngineError, match="precision"):
        engines.build_engine("torch", load_checkpoint(ckpt)[0], ckpt, "fp8")


@pytest.mark.parametrize("name", RUNTIMES)
def test_auto_precision_is_bf16_only_where_openvino_runs_it_natively(ckpt: Path, lq: np.ndarray, name: str) -> None:
    model = load_checkpoint(ckpt)[0]
    engine = engines.build_engine(name, model, ckpt, "auto")
    want = "bf16" if name == "openvino" and engines.native_bf16() else "f32"
    assert engine.precision == want and engine.label == f"{name} {want}"
    tile = np.ascontiguousarray(lq[None, :64, :96])
    ref = engines.build_engine("torch", model).run(tile, 20.0)
    assert np.abs(engine.run(tile, 20.0) - ref).max() < 4 / 255  # bf16, random weights (shipped model: 0.69 / 255)


@pytest.mark.skipif(not engines.installed("openvino"), reason="openvino not installed")
def test_openvino_runs_several_tiles_at_once_to_the_same_pixels(ckpt: Path) -> None:
    """Tiles in parallel streams give the pixels one tile at a time gives; a cancel between tiles
    leaves no request running."""
    image = images.jpeg_roundtrip(smooth_image(150, 170, seed=5), 25)
    engine = engines.build_engine("openvino", None, ckpt, "f32")
    assert engine.run_all is not None
    one_by_one = dataclasses.replace(engine, run_all=None)
    calls: list[tuple[int, int]] = []
    parallel = tiles.restore_float(engine, image, 25, tile=64, overlap=16, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(parallel, tiles.restore_float(one_by_one, image, 25, tile=64, overlap=16))
    assert calls == [(i, len(calls)) for i in range(1, len(calls) + 1)] and len(calls) > 4

    def cancel(done: int, total: int) -> None:
        if done == 2:
            raise tiles.Cancelled

    with pytest.raises(tiles.Cancelled):
        tiles.restore_float(engine, image, 25, tile=64, overlap=16, progress=cancel)
    np.testing.assert_array_equal(tiles.restore_float(engine, image, 25, tile=64, overlap=16), parallel)
