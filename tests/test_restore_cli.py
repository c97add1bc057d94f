"""The restore CLI on a folder of good and bad files, with a tiny untrained model (CPU, seconds)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.core import images
from pipeline.mlops import registry, tracking
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.restoration import engines
from pipeline.restore import main

ROOT = Path(__file__).resolve().parent.parent
PARAMS = str(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny QACNet checkpoint named model.pt (the registry's artifact layout)."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    kwargs = {"width": 8, "mid_blocks": 1}
    save_checkpoint(path, "qacnet", kwargs, build_model("qacnet", **kwargs), {"test": True})
    return path


def restore(*args: object) -> int:
    return main([str(a) for a in args] + ["--params", PARAMS])


def read_unchanged(path: Path) -> np.ndarray:
    """An output PNG as stored: channel count and bit depth kept (BGR order does not matter here)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def test_folder_of_good_and_bad_files(tmp_path, ckpt, image_factory, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    rgb = image_factory(40, 56, 1)
    alpha = np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))
    jpeg = images.encode_jpeg(rgb, 30)
    images.write_bytes(src / "good.jpg", jpeg)
    images.write_png(src / "plain.png", rgb)
    images.write_png(src / "alpha.png", rgb, alpha)
    images.write_png(src / "deep.png", rgb.astype(np.uint16) * 257)
    Image.fromarray(rgb[:, :, 1]).save(src / "gray.png")
    images.write_bytes(src / "corrupt.jpg", jpeg[: len(jpeg) // 3])
    (src / "notes.txt").write_text("not an image")

    assert restore(src, "-o", out, "--ckpt", ckpt, "-v") == 1

    assert sorted(p.name for p in out.iterdir()) == ["alpha.png", "deep.png", "good.png", "gray.png", "plain.png"]
    assert read_unchanged(out / "good.png").shape == (40, 56, 3)
    with_alpha = read_unchanged(out / "alpha.png")
    assert with_alpha.shape == (40, 56, 4) and np.array_equal(with_alpha[:, :, 3], alpha)
    deep = read_unchanged(out / "deep.png")
    assert deep.dtype == np.uint16 and deep.shape == (40, 56, 3)
    assert read_unchanged(out / "gray.png").shape == (40, 56)
    captured = capsys.readouterr()
    assert "corrupt.jpg: failed" in captured.err and "notes.txt: skipped, not an image file" in captured.err
    assert "good.jpg: 56x40, QF 30 from the JPEG header" in captured.out
    assert "plain.png: 56x40, no JPEG compression found: left unchanged" in captured.out  # never compressed
    assert "5 restored, 1 failed, 1 skipped" in captured.out


def test_never_overwrites_without_flag_and_q_override(tmp_path, ckpt, image_factory, capsys):
    src, out = tmp_path / "photo.jpg", tmp_path / "out"
    images.write_bytes(src, images.encode_jpeg(image_factory(32, 48, 2), 20))
    assert restore(src, "-o", out, "--ckpt", ckpt) == 0
    target = out / "photo.png"
    stamp = target.stat().st_mtime_ns
    capsys.readouterr()

    assert restore(src, "-o", out, "--ckpt", ckpt) == 0
    captured = capsys.readouterr()
    assert target.stat().st_mtime_ns == stamp
    assert "photo.jpg: skipped" in captured.err and "--overwrite" in captured.err
    assert "0 restored, 0 failed, 1 skipped" in captured.out

    assert restore(src, "-o", out, "--ckpt", ckpt, "--overwrite", "--q", 55, "-v") == 0
    assert "photo.jpg: 48x32, QF 55 set by the user" in capsys.readouterr().out
    assert target.stat().st_mtime_ns != stamp


@pytest.fixture(scope="module")
def confident_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny QACNet whose estimator reads QF 97 on anything (its last layer zero, bias set)."""
    import torch

    model = build_model("qacnet", width=8, mid_blocks=1)
    with torch.no_grad():
        model.estimator.head[-1].weight.zero_()
        model.estimator.head[-1].bias.fill_(float(np.log(97 / 3)))
        for p in model.stages.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("confident") / "model.pt"
    save_checkpoint(path, "qacnet", {"width": 8, "mid_blocks": 1}, model, {"test": True})
    return path


def test_never_compressed_photo_comes_back_unchanged(tmp_path, confident_ckpt, image_factory, capsys):
    rgb = image_factory(120, 136, 8)  # no lattice; the estimator reads 97
    images.write_png(tmp_path / "in" / "camera.png", rgb)
    images.write_png(tmp_path / "in" / "gray.png", np.ascontiguousarray(rgb[:, :, 1]))
    assert restore(tmp_path / "in", "-o", tmp_path / "out", "--ckpt", confident_ckpt) == 0
    out = capsys.readouterr().out
    assert "camera.png: 136x120, no JPEG compression found: left unchanged; use --q to force" in out  # without -v
    np.testing.assert_array_equal(images.read_image(tmp_path / "out" / "camera.png"), rgb)
    assert read_unchanged(tmp_path / "out" / "gray.png").ndim == 2
    np.testing.assert_array_equal(read_unchanged(tmp_path / "out" / "gray.png"), rgb[:, :, 1])
    assert restore(tmp_path / "in" / "camera.png", "-o", tmp_path / "forced", "--ckpt", confident_ckpt, "--q", 40) == 0
    assert not np.array_equal(images.read_image(tmp_path / "forced" / "camera.png"), rgb)


def test_verbose_line_says_why(tmp_path, ckpt, image_factory, capsys):
    rgb = image_factory(200, 200, 3)
    cropped = np.ascontiguousarray(images.jpeg_roundtrip(rgb, 30)[3:, 5:])
    images.write_bytes(tmp_path / "edited.jpg", images.encode_jpeg(cropped, 95))
    assert restore(tmp_path / "edited.jpg", "-o", tmp_path / "out", "--ckpt", ckpt, "-v") == 0
    assert "edited.jpg: 195x197, QF 30 at grid offset (5, 3) from pixels; header says 95 (re-saved)" in (
        capsys.readouterr().out
    )


def test_exif_orientation_is_applied(tmp_path, ckpt, image_factory):
    src = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(image_factory(32, 64, 3)).save(src, quality=40, exif=exif.tobytes())
    assert restore(src, "-o", tmp_path / "out", "--ckpt", ckpt) == 0
    assert read_unchanged(tmp_path / "out" / "rotated.png").shape == (64, 32, 3)


def test_same_output_name_and_own_input(tmp_path, ckpt, image_factory, capsys):
    rgb = image_factory(24, 24, 4)
    images.write_bytes(tmp_path / "a.jpg", images.encode_jpeg(rgb, 50))
    images.write_png(tmp_path / "a.png", rgb)
    assert restore(tmp_path, "-o", tmp_path, "--ckpt", ckpt, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "a.png would replace an input file" in err and "same output name" in err
    assert np.array_equal(images.read_image(tmp_path / "a.png"), rgb)  # the input is untouched


@pytest.mark.parametrize(
    "args",
    [
        ["missing.jpg", "-o", "out"],
        ["x.jpg"],
        ["x.jpg", "-o", "out", "--q", "0"],
        ["x.jpg", "-o", "out", "--tile", "100"],
        ["x.jpg", "-o", "out", "--ckpt", "a.pt", "--model-uri", "models:/m@c"],
    ],
)
def test_usage_errors_exit_2(tmp_path, monkeypatch, image_factory, args):
    monkeypatch.chdir(tmp_path)
    images.write_bytes(tmp_path / "x.jpg", images.encode_jpeg(image_factory(16, 16), 50))
    assert restore(*args) == 2
    assert not (tmp_path / "out").exists()


def test_model_from_registry(mlflow_uri, tmp_path, ckpt, image_factory, capsys):
    src = tmp_path / "photo.jpg"
    images.write_bytes(src, images.encode_jpeg(image_factory(32, 32, 5), 25))
    db = tmp_path / "mlflow.db"
    assert restore(src, "-o", tmp_path / "none", "--model-uri", "models:/jpeg-restoration@champion") == 2
    assert "no model registry at" in capsys.readouterr().err and not db.exists()  # a read creates no store

    with tracking.start_run("test", "exp") as run:
        tracking.log_artifact(ckpt, "model/artifacts")  # where a pyfunc model keeps it
    assert restore(src, "-o", tmp_path / "none", "--model-uri", "models:/jpeg-restoration@champion") == 2
    assert "no such registered model version" in capsys.readouterr().err
    registry.register_version("jpeg-restoration", run.info.run_id, {"primary_value": 0.1}, aliases=("champion",))
    assert restore(src, "-o", tmp_path / "a", "--model-uri", "models:/jpeg-restoration@champion") == 0
    assert restore(src, "-o", tmp_path / "b") == 0  # the default: params' model name @champion
    assert "model: models:/jpeg-restoration@champion" in capsys.readouterr().err
    assert (tmp_path / "a" / "photo.png").is_file() and (tmp_path / "b" / "photo.png").is_file()


def test_no_champion_falls_back_to_pretrained(mlflow_uri, tmp_path, ckpt, image_factory, capsys):
    src = tmp_path / "photo.jpg"
    images.write_bytes(src, images.encode_jpeg(image_factory(32, 32, 6), 25))
    params = tmp_path / "params.yaml"
    shutil.copy(PARAMS, params)
    args = [str(src), "-o", str(tmp_path / "out"), "--params", str(params)]
    assert main(args) == 2
    assert "no such checkpoint either" in capsys.readouterr().err

    pretrained = tmp_path / "models" / "pretrained"
    pretrained.mkdir(parents=True)
    shutil.copy(ckpt, pretrained / "model.pt")
    assert main(args) == 0
    assert "no champion in the model registry" in capsys.readouterr().err
    assert (tmp_path / "out" / "photo.png").is_file()


@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "openvino"])
def test_engine_is_chosen_and_named(tmp_path, ckpt, image_factory, capsys, engine):
    if not engines.installed(engine):
        pytest.skip(f"{engine} not installed")
    images.write_bytes(tmp_path / "p.jpg", images.encode_jpeg(image_factory(48, 64, 5), 30))
    args = ("--ckpt", ckpt, "--engine", engine, "--precision", "f32", "-v")
    assert restore(tmp_path / "p.jpg", "-o", tmp_path / engine, *args) == 0
    label = "torch" if engine == "torch" else f"{engine} f32"
    assert f"engine {label}, " in capsys.readouterr().out
    if engine != "torch":  # the same PNG as torch's, within a grey level
        assert restore(tmp_path / "p.jpg", "-o", tmp_path / "torch", "--ckpt", ckpt, "--engine", "torch") == 0
        a, b = (read_unchanged(tmp_path / d / "p.png").astype(int) for d in (engine, "torch"))
        assert np.abs(a - b).max() <= 1


def test_tiles_done_are_reported_on_stderr(tmp_path, ckpt, image_factory, capsys):
    images.write_bytes(tmp_path / "big.jpg", images.encode_jpeg(image_factory(100, 130, 6), 30))
    assert (
        restore(
            tmp_path / "big.jpg",
            "-o",
            tmp_path / "out",
            "--ckpt",
            ckpt,
            "--engine",
            "torch",
            "--tile",
            "64",
            "--overlap",
            "16",
        )
        == 0
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("big.jpg: tile ")]
    assert lines == [f"big.jpg: tile {i}/6" for i in range(1, 7)]  # 2 rows x 3 columns of tiles


def test_unavailable_engine_is_a_usage_error(tmp_path, ckpt, image_factory, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    images.write_bytes(tmp_path / "p.jpg", images.encode_jpeg(image_factory(16, 16), 50))
    assert restore(tmp_path / "p.jpg", "-o", tmp_path / "out", "--ckpt", ckpt, "--engine", "openvino") == 2
    assert "not installed" in capsys.readouterr().err


def test_default_precision_is_bf16_only_where_native(tmp_path, ckpt, image_factory, capsys):
    if not engines.installed("openvino"):
        pytest.skip("openvino not installed")
    images.write_bytes(tmp_path / "p.jpg", images.encode_jpeg(image_factory(48, 64, 5), 30))
    assert restore(tmp_path / "p.jpg", "-o", tmp_path / "out", "--ckpt", ckpt, "--engine", "openvino", "-v") == 0
    want = "bf16" if engines.native_bf16() else "f32"
    assert f"engine openvino {want}, " in capsys.readouterr().out
