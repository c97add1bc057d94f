"""models.pretrained.recipe.gpu_train (the GPU training script): the compile plan, and a tiny dry run on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import smooth_image

from models.pretrained.recipe import gpu_train
from pipeline.core import images
from pipeline.models.checkpoint import read_checkpoint


def plan(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rows": [{"arch": "qacnet", **r} for r in rows]}))
    return path


@pytest.mark.parametrize(
    ("rows", "mode"),
    [
        (
            [
                {"compile": "none", "batch": 64, "train_patches_per_s": 1900.0},
                {"compile": "reduce-overhead", "batch": 64, "train_patches_per_s": 5700.0},
                {"compile": "default", "batch": 64, "train_patches_per_s": 2700.0},
            ],
            "reduce-overhead",
        ),
        (
            [
                {"compile": "none", "batch": 64, "train_patches_per_s": 1900.0},
                {"compile": "default", "batch": 64, "train_patches_per_s": 2000.0},
            ],
            "none",
        ),  # under 1.1x
        (
            [
                {"compile": "none", "batch": 64, "train_patches_per_s": 1900.0},
                {"compile": "default", "batch": 64, "error": "BackendCompilerFailed: ..."},
            ],
            "none",
        ),
        ([{"compile": "default", "batch": 32, "train_patches_per_s": 5000.0}], "none"),  # no row at batch 64
    ],
)
def test_compile_mode_from_plan(tmp_path: Path, rows: list[dict], mode: str) -> None:
    assert gpu_train.compile_mode_from_plan(plan(tmp_path, rows), 64)[0] == mode


def test_no_plan_means_eager(tmp_path: Path) -> None:
    mode, why = gpu_train.compile_mode_from_plan(tmp_path / "missing.json", 64)
    assert mode == "none" and "missing.json" in why


@pytest.mark.slow
def test_tiny_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trains a tiny model for a few seconds on generated images (one held out) and writes a
    self-describing fp16 checkpoint and the log; the validation split is every 50th image."""
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # params.yaml
    for i in range(3):
        images.write_png(tmp_path / "train" / f"{i:02d}.png", smooth_image(96, 112, seed=i))
    images.write_png(tmp_path / "extra" / "big.png", smooth_image(120, 130, seed=9))
    out = tmp_path / "out"
    args = [
        "--train",
        str(tmp_path / "train"),
        "--extra",
        str(tmp_path / "extra"),
        "--out",
        str(out),
        "--minutes",
        "0.05",
        "--tiny",
        "--workers",
        "0",
        "--commit",
        "abc123",
    ]
    torch.set_num_threads(1)
    assert gpu_train.main(args) == 0
    ckpt = read_checkpoint(out / "model.pt")
    meta = ckpt["meta"]
    assert ckpt["arch"] == "qacnet" and ckpt["kwargs"]["width"] == 8
    assert meta["train_images"] == 3 and meta["git_commit"] == "abc123" and meta["steps"] > 0
    assert meta["train_cfg"]["compile"] == "none" and "no benchmark plan" in meta["compile_reason"]
    assert "val_gain" in meta["val"] and meta["data"].startswith("train + extra")
    log = json.loads((out / "train_log.json").read_text())["log"]
    assert any("data_wait_share" in r for r in log)
    assert not (tmp_path / "out_resume.pt").exists()
