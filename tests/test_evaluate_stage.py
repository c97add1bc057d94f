"""stages.evaluate on a tiny generated test set: headline metrics, the evaluation, CSVs, crops and the MLflow run."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import params
from pipeline.core import images
from pipeline.data import datasets, realworld
from pipeline.evaluation import results
from pipeline.mlops import tracking
from pipeline.models import build_model, count_params
from pipeline.models.checkpoint import save_checkpoint
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from stages import evaluate as stage
from stages import make_testsets

ROOT = Path(__file__).resolve().parent.parent
SET = "sample_test"
NAMES = ("a", "b")
KEYS = ("psnr", "ssim", "psnrb", "psnr_y", "ssim_y", "psnrb_y")
TINY = {"width": 8, "mid_blocks": 1}
# dvc.yaml's arguments (relative to the project root, the working directory)
ARGS = [
    "--model",
    "models/model.pt",
    "--meta",
    "models/model.json",
    "--testsets",
    "data/testsets",
    "--metrics",
    "reports/metrics.json",
    "--evaluation",
    "reports/evaluation.json",
    "--per-image",
    "reports/eval/per_image.csv",
    "--gain-vs-qf",
    "reports/gain_vs_qf.csv",
    "--real-world",
    "reports/real_world.csv",
    "--crops",
    "reports/crops",
]


def paths(root: Path) -> stage.Paths:
    r = root / "reports"
    return stage.Paths(
        root / "models" / "model.pt",
        root / "models" / "model.json",
        root / "data" / "testsets",
        r / "metrics.json",
        r / "evaluation.json",
        r / "eval" / "per_image.csv",
        r / "gain_vs_qf.csv",
        r / "real_world.csv",
        r / "crops",
    )


@pytest.fixture(scope="module")
def base() -> params.Params:
    p = params.load(ROOT / "params.yaml")
    return dataclasses.replace(
        p,
        data=dataclasses.replace(p.data, test_sets=(SET,), qfs=(10, 50)),
        evaluate=dataclasses.replace(
            p.evaluate,
            primary_sets=(SET,),
            primary_qfs=(10,),
            device="cpu",
            real_world_sets=(SET,),
            real_world_qfs=(10,),
        ),
    )


def write_model(root: Path, noise: float, run_id: str | None = None) -> None:
    """models/model.pt and model.json (which alone names the run, as the train stage writes them): an
    untrained QACNet (the identity) or one with noisy weights."""
    torch.manual_seed(0)
    model = build_model("qacnet", **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    meta = {"steps": 0, "params": count_params(model)}
    save_checkpoint(root / "models" / "model.pt", "qacnet", TINY, model, meta)
    (root / "models" / "model.json").write_text(
        json.dumps({"arch": "qacnet", "kwargs": TINY, **meta, "run_id": run_id})
    )


@pytest.fixture
def root(tmp_path: Path, base: params.Params, image_factory, mlflow_store, monkeypatch) -> Path:
    """A project root with data/testsets/sample_test (refs, QF 10 and 50) made by the test-set stage."""
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data" / "raw" / "test" / SET
    for i, name in enumerate(NAMES):
        images.write_png(raw / f"{name}.png", image_factory(64, 96 - 16 * i, seed=i))
    testsets = tmp_path / "data" / "testsets"
    refs = datasets.refs_dir(testsets, SET)
    make_testsets.make_refs(raw, refs)
    for qf in base.data.qfs:
        make_testsets.make_jpeg(refs, datasets.jpeg_dir(testsets, SET, qf), qf)
    make_testsets.make_realworld(list(base.evaluate.real_world_qfs), refs, datasets.realworld_dir(testsets, SET))
    return tmp_path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def logged_runs(experiment: str) -> list:
    client = tracking.init_store()
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_noisy_model(base, root, capsys):
    write_model(root, noise=0.05)
    out = stage.run(base, paths(root))
    reports = root / "reports"
    assert json.loads((reports / "evaluation.json").read_text()) == out
    headline = json.loads((reports / "metrics.json").read_text())
    assert set(headline) == {"primary", "qf10", "real_world", "params_M"}  # one set: primary is its gain
    assert headline["primary"] == round(out["primary"]["value"], 3) and out["timing"]["ms_per_image"] > 0
    assert out["model"]["arch"] == "qacnet" and out["model"]["run_id"] is None

    by_qf = out["results"][SET]
    assert list(by_qf) == ["10", "50"]
    for r in by_qf.values():
        assert set(r) >= {"n", "jpeg", "blind", "header", "qf_est_mae", "qf_net_mae"} and r["n"] == len(NAMES)
        for mode in ("jpeg", "blind", "header"):
            assert set(KEYS) <= set(r[mode]) and r[mode]["n"] == len(NAMES)
        for mode in ("blind", "header"):
            assert r[mode]["gain"] == pytest.approx(r[mode]["psnr"] - r["jpeg"]["psnr"])
            assert r[mode]["gain"] < 0  # noise added to every weight makes every image worse
        assert isinstance(r["qf_est_mae"], float) and r["qf_est_mae"] >= 0
    assert by_qf["10"]["jpeg"]["psnr"] < by_qf["50"]["jpeg"]["psnr"]
    assert out["primary"] == {
        "name": "psnr_gain",
        "mode": "blind",
        "sets": [SET],
        "qfs": [10],
        "value": pytest.approx(by_qf["10"]["blind"]["gain"]),
    }
    assert [n for n in results.negative_gains(out) if not n["mode"].startswith("real world")] == [
        {"set": SET, "qf": q, "mode": m, "gain": by_qf[str(q)][m]["gain"]}
        for q in (10, 50)
        for m in ("blind", "header")
    ]
    cases = out["real_world"][SET]["cases"]
    assert [(c["case"], c["qf"]) for c in cases] == [(c, 10) for c in realworld.CASES if realworld.CASES[c].per_qf] + [
        ("never_compressed", None),
        ("never_compressed_down", None),
        ("never_compressed_up", None),
        ("q90_444", 90),
        ("q95_420", 95),
        ("q95_444", 95),
        ("q98_420", 98),
        ("q98_444", 98),
    ]
    for c in cases:
        assert c["n"] == len(NAMES) and c["gain"] == pytest.approx(c["psnr_out"] - c["psnr_in"])
        if realworld.CASES[c["case"]].search:  # no exact QF: the best hand-picked one of evaluate.best_qf_grid
            assert c["best_qf"] in base.evaluate.best_qf_grid and c["best_gain"] < 0 and c["share"] is None, c
        else:
            assert c["best_qf"] is None and c["best_gain"] is None and c["share"] is None, c
    assert sum(c["best_qf"] is not None for c in cases) == 12  # 6 resized, 2 recompressed, 4 other tables
    aligned = next(c for c in cases if c["case"] == "aligned")
    assert aligned["psnr_in"] == pytest.approx(by_qf["10"]["jpeg"]["psnr"])  # the same files as the test set
    assert aligned["qf_used_mean"] == 10 and aligned["qf_abs_error"] == 0 and aligned["sources"] == {"header": 2}
    rw_rows = read_csv(reports / "real_world.csv")
    assert len(rw_rows) == len(NAMES) * len(cases) and {r["set"] for r in rw_rows} == {SET}
    printed = capsys.readouterr()
    assert "warning: sample_test at QF 10: restoring (QF estimated from the pixels (blind)) makes" in printed.err
    resized = next(c for c in cases if c["case"] == "resized")
    assert f"resized QF 10: {resized['psnr_in']:.2f} -> " in printed.out
    assert f"best hand-picked QF {resized['best_qf']} ({resized['best_gain']:+.2f})" in printed.out

    rows = read_csv(reports / "eval" / "per_image.csv")
    assert len(rows) == len(NAMES) * 2 * 3  # images x QFs x (jpeg, blind, header)
    assert {(r["image"], r["qf"], r["mode"]) for r in rows} == {
        (n, q, m) for n in NAMES for q in ("10", "50") for m in ("jpeg", "blind", "header")
    }
    assert all(r["set"] == SET for r in rows)
    blind10 = [float(r["psnr"]) for r in rows if r["qf"] == "10" and r["mode"] == "blind"]
    assert np.mean(blind10) == pytest.approx(by_qf["10"]["blind"]["psnr"])

    gains = read_csv(reports / "gain_vs_qf.csv")
    assert [(g["set"], g["qf"]) for g in gains] == [(SET, "10"), (SET, "50")]
    assert float(gains[0]["gain_blind"]) == pytest.approx(by_qf["10"]["blind"]["gain"])
    assert float(gains[1]["gain_header"]) == pytest.approx(by_qf["50"]["header"]["gain"])

    crops = reports / "crops"
    assert sorted(p.name for p in crops.iterdir()) == [f"{SET}_qf{q}_{n}.png" for q in (10, 50) for n in NAMES]
    triptych = images.read_image(crops / f"{SET}_qf10_a.png")
    assert triptych.shape == (64, 3 * 96 + 2 * 4, 3)  # JPEG | restored | ground truth, 4 px gaps
    jpeg = images.read_image(datasets.jpeg_dir(root / "data" / "testsets", SET, 10) / "a.jpg")
    np.testing.assert_array_equal(triptych[:, :96], jpeg)
    np.testing.assert_array_equal(
        triptych[:, -96:], images.read_image(datasets.refs_dir(root / "data" / "testsets", SET) / "a.png")
    )

    (run,) = logged_runs(base.tracking.experiment)  # no training run in this store: a run of its own
    assert run.data.tags["stage"] == "evaluate"
    assert run.data.metrics["primary_psnr_gain"] == pytest.approx(out["primary"]["value"])
    assert run.data.metrics[f"{SET}_qf50_header_gain"] == pytest.approx(by_qf["50"]["header"]["gain"])
    assert run.data.metrics[f"{SET}_qf10_jpeg_psnr"] == pytest.approx(by_qf["10"]["jpeg"]["psnr"])
    assert run.data.metrics["ms_per_image"] == out["timing"]["ms_per_image"]  # timings: MLflow, not metrics.json
    artifacts = {a.path for a in tracking.init_store().list_artifacts(run.info.run_id, "evaluate")}
    assert artifacts >= {"evaluate/evaluation.json", "evaluate/metrics.json", "evaluate/gain_vs_qf.csv"}
    assert json.loads(tracking.run_evaluation(run.info.run_id).read_text()) == out


def test_identity_model_into_training_run(base, root):
    with tracking.start_run("train", base.tracking.experiment) as train_run:
        tracking.log_metrics({"loss": 1.0})
    write_model(root, noise=0.0, run_id=train_run.info.run_id)  # untrained QACNet: the identity
    (root / "reports" / "crops").mkdir(parents=True)
    (root / "reports" / "crops" / "stale.png").write_bytes(b"old")
    out = stage.run(base, paths(root))
    for r in out["results"][SET].values():
        assert r["blind"]["psnr"] == r["jpeg"]["psnr"] and r["blind"]["gain"] == 0.0
    assert out["primary"]["value"] == 0.0 and results.negative_gains(out) == []
    for c in out["real_world"][SET]["cases"]:  # the identity (on its grid, projected) changes nothing
        assert c["gain"] == 0.0 and c["unchanged"] == 1.0, c
        assert c["best_gain"] == (0.0 if realworld.CASES[c["case"]].search else None) and c["share"] is None, c
    assert not (root / "reports" / "crops" / "stale.png").exists()

    (run,) = logged_runs(base.tracking.experiment)  # logged into the training run, no new run
    assert run.info.run_id == train_run.info.run_id
    assert run.data.metrics["loss"] == 1.0 and run.data.metrics["primary_psnr_gain"] == 0.0
    assert run.data.tags["stage"] == "train" and "evaluate.git_commit" in run.data.tags


def test_no_search_with_an_empty_grid(base, root):
    write_model(root, noise=0.0)
    p = dataclasses.replace(base, evaluate=dataclasses.replace(base.evaluate, best_qf_grid=()))
    restorer = Restorer.load(root / "models" / "model.pt", RestoreOptions.from_params(p.evaluate))
    out, _ = stage.real_world_results(p, root / "data" / "testsets", restorer)
    assert all(c["best_qf"] is None and c["best_gain"] is None for c in out[SET]["cases"])


def test_main_without_checkpoint(root, capsys, tmp_path):
    params_yaml = tmp_path / "params.yaml"
    params_yaml.write_text((ROOT / "params.yaml").read_text())
    assert stage.main(ARGS) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.pt: checkpoint not found" in err
    assert not (tmp_path / "reports" / "metrics.json").exists()
