"""The train_detector stage on generated photos, shrunk to seconds: a detector file that restoring
loads, the same weights from a rerun, its own MLflow run, and clear errors."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from pipeline.core import images
from pipeline.restoration import history
from stages import train_detector as stage
from tests.conftest import ROOT, smooth_image


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """(params file, data root): params.yaml with a tiny detector training; sets gen_clean (5
    photos never compressed) and gen_jpeg (2 photos that went through JPEG)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["train_sets"] = ["gen_clean", "gen_jpeg"]
    raw["detector"].update(samples=40, steps=20, workers=1, sides=[96, 160], clean_sets=["gen_clean"], not_clean=[])
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    data = tmp_path / "raw"
    for i in range(5):
        images.write_png(data / "gen_clean" / f"c{i}.png", smooth_image(200, 240, seed=i))
    for i in range(2):
        images.write_png(
            data / "gen_jpeg" / f"j{i}.png", images.decode_jpeg(images.encode_jpeg(smooth_image(200, 240, i + 9), 60))
        )
    return params, data


def test_trains_a_detector_restoring_loads(setup, tmp_path, mlflow_store, capsys):
    params, data = setup
    out = tmp_path / "models" / "detector.npz"
    assert stage.main(["--data", str(data), "--out", str(out), "--params", str(params)]) == 0
    assert "held-out never-compressed variants unchanged" in capsys.readouterr().out
    det = history.load(out)
    cal = det.meta["calibration"]
    assert det.meta["params"]["samples"] == 40 and det.meta["train_photos"]["clean"] == {"gen_clean": 3}
    assert cal["clean_variants"]["n"] > 0 and 0 <= cal["clean_variants"]["unchanged"] <= 1
    reading = det.read(smooth_image(128, 160, seed=3))
    assert 0 <= reading.p_jpeg <= 1 and 1 <= reading.qf_eff <= 100

    run = mlflow.search_runs(experiment_names=["jpeg-restoration"], output_format="list")[0]
    assert run.data.tags["stage"] == "train_detector" and run.data.params["detector.steps"] == "20"
    assert "calibration.clean_variants.unchanged" in run.data.metrics

    again = tmp_path / "again.npz"  # a rerun writes the same weights and thresholds
    assert stage.main(["--data", str(data), "--out", str(again), "--params", str(params)]) == 0
    second = history.load(again)
    x = np.stack([history.features(smooth_image(96, 128, seed=s)) for s in range(3)])
    np.testing.assert_array_equal(second.outputs(x), det.outputs(x))
    assert second.thresholds == det.thresholds


def test_bad_input_is_named(setup, tmp_path, mlflow_store, capsys):
    params, data = setup
    out = tmp_path / "detector.npz"
    assert stage.main(["--set-dirs", str(data / "nowhere"), "--out", str(out), "--params", str(params)]) == 1
    assert f"training set folder(s) not found: {data / 'nowhere'}" in capsys.readouterr().err
    argv = ["--data", str(data), "--out", str(out), "--params", str(params), "--clean-sets", "none_such"]
    assert stage.main(argv) == 1
    assert "detector.clean_sets ['none_such']: 0 never-compressed photos" in capsys.readouterr().err
    assert not out.exists()
