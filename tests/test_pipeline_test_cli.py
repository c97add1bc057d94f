"""``python -m pipeline.test`` on a tiny generated test set: baseline, model, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image

from pipeline.core import images
from pipeline.evaluation import metrics
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.test import main

NAMES = ("alpha", "beta", "gamma")
SIZES = ((40, 56), (48, 48), (37, 53))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def testset(tmp_path: Path) -> tuple[Path, Path]:
    """gt/<name>.png and qf_30/<name>.jpg for three small generated photos."""
    gt_dir, lq_dir = tmp_path / "gt", tmp_path / "qf_30"
    for i, (name, (h, w)) in enumerate(zip(NAMES, SIZES)):
        gt = smooth_image(h, w, seed=i)
        images.write_png(gt_dir / f"{name}.png", gt)
        images.write_bytes(lq_dir / f"{name}.jpg", images.encode_jpeg(gt, 30))
    return lq_dir, gt_dir


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny QACNet with randomized weights (untrained, it would be the identity)."""
    torch.manual_seed(0)
    kwargs = {"width": 8, "mid_blocks": 1, "emb_dim": 16, "estimator_width": 16}
    model = build_model("qacnet", **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, "qacnet", kwargs, model, {"test": True})
    return path


def run(lq_dir: Path, gt_dir: Path, *extra: object) -> int:
    return main(["--input", str(lq_dir), "--gt", str(gt_dir), *map(str, extra)])


def expected_means(lq_dir: Path, gt_dir: Path, space: str) -> dict[str, float]:
    rows = [
        metrics.score(images.read_image(gt_dir / f"{n}.png"), images.read_image(lq_dir / f"{n}.jpg"), space)
        for n in NAMES
    ]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "psnrb")}


def test_baseline_table_and_json(testset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lq_dir, gt_dir = testset
    out = tmp_path / "reports" / "scores.json"
    assert run(lq_dir, gt_dir, "--json", out) == 0
    table = capsys.readouterr().out
    assert "PSNR" in table and "(RGB, jpeg)" in table
    assert all(name in table for name in NAMES)
    assert "mean (3 images)" in table
    report = json.loads(out.read_text())
    assert {"n", "psnr", "ssim", "psnrb", "per_image"} <= set(report)
    assert report["n"] == 3 and report["mode"] == "jpeg"
    assert [r["image"] for r in report["per_image"]] == list(NAMES)
    for key, value in expected_means(lq_dir, gt_dir, "rgb").items():
        assert report[key] == pytest.approx(value, abs=1e-9)


def test_metric_y(testset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lq_dir, gt_dir = testset
    out = tmp_path / "y.json"
    assert run(lq_dir, gt_dir, "--metric", "y", "--json", out) == 0
    assert "(Y, jpeg)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["metric"] == "y"
    for key, value in expected_means(lq_dir, gt_dir, "y").items():
        assert report[key] == pytest.approx(value, abs=1e-9)
    assert report["psnr"] != pytest.approx(expected_means(lq_dir, gt_dir, "rgb")["psnr"])


def test_model_writes_outputs(testset: tuple[Path, Path], tmp_path: Path, ckpt: Path) -> None:
    lq_dir, gt_dir = testset
    out_dir, out = tmp_path / "restored", tmp_path / "model.json"
    assert run(lq_dir, gt_dir, "--ckpt", ckpt, "--output", out_dir, "--json", out) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "header" and report["n"] == 3
    assert [r["qf"] for r in report["per_image"]] == [30, 30, 30]  # read from the JPEG headers
    for name, (h, w) in zip(NAMES, SIZES):
        assert images.read_image(out_dir / "header" / f"{name}.png").shape == (h, w, 3)
    assert report["psnr"] != pytest.approx(expected_means(lq_dir, gt_dir, "rgb")["psnr"])


def test_model_with_q_and_tta(testset: tuple[Path, Path], tmp_path: Path, ckpt: Path) -> None:
    lq_dir, gt_dir = testset
    out = tmp_path / "q.json"
    assert run(lq_dir, gt_dir, "--ckpt", ckpt, "--q", 55, "--tta", "--json", out) == 0
    assert [r["qf"] for r in json.loads(out.read_text())["per_image"]] == [55, 55, 55]


def test_mismatched_names(testset: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    lq_dir, gt_dir = testset
    (gt_dir / "gamma.png").rename(gt_dir / "delta.png")
    assert run(lq_dir, gt_dir) == 1
    err = capsys.readouterr().err
    assert "gamma.jpg" in err and "delta.png" in err


def test_mismatched_sizes(testset: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    lq_dir, gt_dir = testset
    images.write_png(gt_dir / "beta.png", smooth_image(48, 40))
    assert run(lq_dir, gt_dir) == 1
    err = capsys.readouterr().err
    assert "beta.jpg" in err and "beta.png" in err and "size mismatch" in err


def test_empty_folder(testset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, gt_dir = testset
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty, gt_dir) == 1
    assert "no image files" in capsys.readouterr().err


def test_bad_checkpoint(testset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lq_dir, gt_dir = testset
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert run(lq_dir, gt_dir, "--ckpt", bad) == 1
    assert "broken.pt" in capsys.readouterr().err


def test_engine_is_named_and_agrees(testset: tuple[Path, Path], tmp_path: Path, ckpt: Path, capsys) -> None:
    lq_dir, gt_dir = testset
    reports = {}
    for engine in ("torch", "auto"):
        out = tmp_path / f"{engine}.json"
        assert run(lq_dir, gt_dir, "--ckpt", ckpt, "--engine", engine, "--json", out) == 0
        reports[engine] = json.loads(out.read_text())
    assert "engine: torch" in capsys.readouterr().out
    assert reports["auto"]["psnr"] == pytest.approx(reports["torch"]["psnr"], abs=0.01)
