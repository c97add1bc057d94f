"""The train stage end to end, in subprocesses: kill -9 and resume, NaN, bad data, DDP (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.core import images

ROOT = Path(__file__).resolve().parent.parent


def make_project(tmp: Path, image_factory, n: int = 4, size: int = 96, **train) -> Path:
    """A project root with generated training images and a tiny, fast configuration."""
    folder = tmp / "data" / "raw" / "train" / "sample_train"
    folder.mkdir(parents=True)
    for i in range(n):
        images.write_png(folder / f"img{i}.png", image_factory(size, size + 16, seed=i))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"]["qacnet"].update(width=8, mid_blocks=1)
    raw["train"].update(
        steps=60,
        batch_size=4,
        patch_size=32,
        patches_per_image=2,
        warmup_steps=5,
        ckpt_every=10,
        log_every=10,
        val_every=1000,
        val_fraction=0.25,
        workers=0,
        lr=1.0e-3,
    )
    raw["train"].update(train)
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp


def stage_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        DVC_ROOT=str(tmp),
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


# As dvc.yaml passes them (relative to the project root, the stage's working directory).
STAGE = [
    sys.executable,
    "-m",
    "stages.train",
    "--data",
    "data/raw/train",
    "--model",
    "models/model.pt",
    "--meta",
    "models/model.json",
    "--train-log",
    "reports/train_log.csv",
    "--resume",
    "models/resume",
]


def run_stage(tmp: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        STAGE,
        cwd=tmp,
        env=stage_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_kill_9_then_rerun_resumes_to_the_same_step_count(tmp_path: Path, image_factory) -> None:
    """Killed mid-run, then params the train stage does not declare edited (evaluate.tile,
    register.threshold): the rerun resumes where the last checkpoint left it."""
    root = make_project(tmp_path, image_factory, steps=200)
    state = root / "models" / "resume" / "state.pt"
    proc = subprocess.Popen(STAGE, cwd=root, env=stage_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert state.exists(), "no resume checkpoint was written"
    time.sleep(0.3)  # let it go past the checkpoint a little: that progress is the part lost
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(state, weights_only=True)["step"]
    assert 0 < saved < 200
    assert not (root / "models" / "model.pt").exists()
    first_run = json.loads((root / "models" / "resume" / "mlflow_run.json").read_text())["run_id"]
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["evaluate"]["tile"], raw["register"]["threshold"] = 256, 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(raw))

    done = run_stage(root)
    assert done.returncode == 0, done.stderr
    assert f"resuming from models/resume/state.pt at step {saved}" in done.stdout
    meta = json.loads((root / "models" / "model.json").read_text())
    assert meta["steps"] == 200 and meta["resumed_from"] == saved
    assert meta["run_id"] == first_run  # the same MLflow run goes on
    assert not state.exists()  # a finished run leaves no resume state behind
    log = (root / "reports" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and log[-1].startswith("200,")


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_good_checkpoint(tmp_path: Path, image_factory) -> None:
    root = make_project(tmp_path, image_factory, lr=1.0e12, warmup_steps=1, grad_clip=1.0e12, ckpt_every=1, log_every=1)
    res = run_stage(root)
    assert res.returncode == 1
    assert "loss became nan" in res.stderr.lower() or "loss became inf" in res.stderr.lower()
    assert "last good checkpoint is kept" in res.stderr
    state = root / "models" / "resume" / "state.pt"
    if state.exists():  # whatever was saved is finite
        weights = torch.load(state, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not (root / "models" / "model.pt").exists()


def test_images_smaller_than_the_patch_are_refused(tmp_path: Path, image_factory) -> None:
    root = make_project(tmp_path, image_factory, size=40)  # 40 < patch 32 + 16
    res = run_stage(root)
    assert res.returncode == 1
    assert "no usable training images" in res.stderr and "48 px" in res.stderr


def test_missing_training_set_names_the_folder(tmp_path: Path, image_factory) -> None:
    root = make_project(tmp_path, image_factory)
    for p in (root / "data" / "raw" / "train" / "sample_train").iterdir():
        p.unlink()
    res = run_stage(root)
    assert res.returncode == 1 and "sample_train" in res.stderr and "no image files" in res.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")
def test_two_processes_with_ddp_gloo(tmp_path: Path, image_factory) -> None:
    root = make_project(tmp_path, image_factory, nproc=2, steps=20, batch_size=8)
    res = run_stage(root, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    meta = json.loads((root / "models" / "model.json").read_text())
    assert meta["steps"] == 20
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("jpeg-restoration")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'train'")
    assert len(runs) == 1  # only rank 0 logs


def test_a_rerun_writes_the_same_bytes_and_trains_eagerly_on_the_cpu(
    tmp_path: Path, image_factory, mlflow_store, monkeypatch, capsys
) -> None:
    """Twice the same training (in this process, the full configuration's compile mode): the same
    checkpoint and training log byte for byte (the git-tracked log holds no speed), the run's own
    facts only in model.json; reduce-overhead (CUDA graphs) falls back to eager on a CPU, in one line."""
    from pipeline import params
    from pipeline.models.checkpoint import read_checkpoint
    from stages import train

    root = make_project(tmp_path, image_factory, steps=12, val_fraction=0.0, compile="reduce-overhead", device="cpu")
    monkeypatch.chdir(root)
    p = params.load(root / "params.yaml")
    metas = []
    for run in ("a", "b"):
        out = root / run
        paths = train.Paths(root / "data" / "raw" / "train", out / "model.pt", out / "model.json", out / "log.csv", out)
        metas.append(train.run(p, paths, vgg_pretrained=False))
        assert capsys.readouterr().out.count("training eagerly on the CPU (compile none)") == 1
    a, b = root / "a", root / "b"
    assert (a / "model.pt").read_bytes() == (b / "model.pt").read_bytes()
    assert (a / "log.csv").read_bytes() == (b / "log.csv").read_bytes()
    assert "patches_per_s" not in (a / "log.csv").read_text().splitlines()[0]
    facts = {"wall_s", "patches_per_s", "resumed_from", "git_commit", "run_id"}
    assert facts.isdisjoint(read_checkpoint(a / "model.pt")["meta"])
    assert metas[0]["run_id"] != metas[1]["run_id"] and facts <= set(json.loads((a / "model.json").read_text()))
