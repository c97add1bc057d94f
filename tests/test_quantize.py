"""int8 for OpenVINO: ``python -m pipeline.quantize`` makes the graph and its report from training
photos; ``--precision int8`` runs it; where it cannot run, the engine falls back and says why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import smooth_image, tiny_checkpoint

from pipeline import quantize
from pipeline import restore as restore_cli
from pipeline.core import images
from pipeline.restoration import engines

needs_openvino = pytest.mark.skipif(not engines.installed("openvino"), reason="openvino not installed")


@needs_openvino
@pytest.mark.skipif(not engines.installed("nncf"), reason="nncf not installed")
def test_quantize_then_restore_in_int8(tmp_path: Path, capsys, one_torch_thread) -> None:
    ckpt = tiny_checkpoint(tmp_path / "model.pt", 0)
    for i in range(6):
        images.write_png(tmp_path / "photos" / f"{i}.png", smooth_image(160, 200, seed=i))
    assert quantize.main(["--ckpt", str(ckpt), "--photos", str(tmp_path / "photos"), "--patches", "8"]) == 0
    printed = capsys.readouterr().out
    assert "8 calibration patches, 2 held-out crops" in printed and "PSNR it costs" in printed
    graph = engines.onnx_path(ckpt)
    report = json.loads(engines.int8_path(graph).with_suffix(".json").read_text())
    assert set(report["drop_db"]) == {str(q) for q in quantize.QFS} and report["calibration_photos"] == 4
    assert report["worst_drop_db"] == pytest.approx(-min(report["drop_db"].values()), abs=1e-4)
    engine = engines.build_engine("openvino", None, ckpt, "int8")
    assert engine.label == "openvino int8"

    src = tmp_path / "p.jpg"
    images.write_bytes(src, images.encode_jpeg(smooth_image(64, 96, seed=9), 30))
    assert (
        restore_cli.main([str(src), "-o", str(tmp_path / "out"), "--ckpt", str(ckpt), "--precision", "int8", "-v"]) == 0
    )
    assert "engine openvino int8," in capsys.readouterr().out


@needs_openvino
def test_int8_without_its_graph_falls_back_and_says_why(tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "model.pt", 1)
    engine = engines.build_engine("openvino", None, ckpt, "int8")
    want = "bf16" if engines.native_bf16() else "f32"
    assert engine.precision == want and "no int8 graph for this model" in engine.label
    src = tmp_path / "p.jpg"
    images.write_bytes(src, images.encode_jpeg(smooth_image(64, 96, seed=9), 30))
    assert (
        restore_cli.main([str(src), "-o", str(tmp_path / "out"), "--ckpt", str(ckpt), "--precision", "int8", "-v"]) == 0
    )
    assert (
        f"engine openvino {want} (no int8 graph for this model (python -m pipeline.quantize)" in capsys.readouterr().out
    )


def test_without_openvino_or_nncf_int8_falls_back_cleanly(tmp_path: Path, monkeypatch, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "model.pt", 2)
    monkeypatch.setitem(sys.modules, "nncf", None)  # ``import nncf`` now raises ImportError
    assert quantize.main(["--ckpt", str(ckpt), "--photos", str(tmp_path)]) == 2
    assert "need OpenVINO and NNCF" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "openvino", None)
    engine = engines.build_engine("auto", None, ckpt, "int8")
    assert engine.name != "openvino" and engine.precision == "f32"
    assert engine.label.endswith(f"(int8 needs OpenVINO; {engine.name} runs f32)")
