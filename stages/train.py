"""Train stage (DVC stage ``train``)::

    python -m stages.train --data DIR --model FILE --meta FILE --train-log FILE --resume DIR

Reads every image of ``<--data>/<SET>`` for SET in ``data.train_sets``, holds a small
deterministic share out for validation, and calls pipeline.training.loop.fit(). Writes:

- ``--model``: the self-describing checkpoint (EMA weights, arch, kwargs, and only the metadata
  the weights depend on: a rerun of a deterministic training writes the same bytes);
- ``--meta``: that metadata plus the run's own facts (wall time, speed, git commit, MLflow run
  id) as JSON, readable by people and the later stages;
- ``--train-log``: losses, learning rate and validation PSNR by step (CSV, kept in git: no
  timings; the speed goes to MLflow only).

``train.compile: reduce-overhead`` (CUDA graphs, the full configuration's mode) trains eagerly on
a CPU, saying so in one line.

``train.nproc > 1`` re-launches itself under ``torchrun --standalone`` (DDP; only rank 0 logs
to MLflow and writes files). Killed at any point, a rerun resumes from the ``--resume`` folder
(kept outside DVC's outputs so that DVC does not delete it) and continues the same MLflow run,
as long as what the stage declares (``data.train_sets``, ``model``, ``loss``, ``train``) is
unchanged: ``Params.train_digest()``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import os
import sys
from pathlib import Path

from pipeline.core import files, images
from pipeline.core.device import DeviceError, device_name
from pipeline.data.degrade import load_training_images
from pipeline.mlops import tracking
from pipeline.models import count_params
from pipeline.models.checkpoint import save_checkpoint
from pipeline.params import Params, ParamsError, TrainParams, load
from pipeline.training.loop import FitResult, LogFn, TrainingError, fit
from pipeline.training.losses import MissingWeightsError


def split_paths(paths: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic train/validation split by a hash of each file name (stable when sets grow)."""

    def bucket(p: Path) -> float:
        return int(hashlib.sha1(p.name.encode()).hexdigest()[:8], 16) / 16**8

    val = [p for p in paths if bucket(p) < val_fraction]
    if not val and val_fraction > 0 and len(paths) > 1:
        val = [min(paths, key=bucket)]
    return [p for p in paths if p not in val], val


def training_paths(params: Params, data: Path) -> list[Path]:
    paths = []
    for name in params.data.train_sets:
        folder = Path(data) / name
        if not folder.is_dir():
            raise images.ImageError(f"{folder}: training set {name} is missing (run `dvc repro download_train@{name}`)")
        found = images.list_images(folder)
        if not found:
            raise images.ImageError(f"{folder}: no image files in training set {name}")
        paths += found
    return paths


MACHINE_COLUMNS = ("patches_per_s", "data_wait_share")  # speed: MLflow only, not the file git keeps


def write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in MACHINE_COLUMNS]
    w = csv.DictWriter(buf, fieldnames=names, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    files.write_bytes(path, buf.getvalue().encode())


@dataclasses.dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml passes them."""

    data: Path  # one folder per training set
    model: Path
    meta: Path
    log: Path
    resume: Path


def training_config(params: Params, rank: int = 0) -> TrainParams:
    """``params.train`` as it runs on this machine: ``reduce-overhead`` (CUDA graphs, measured on
    CUDA only) becomes eager on a CPU, with one line saying so."""
    cfg = params.train
    try:
        on_cpu = device_name(cfg.device) == "cpu"
    except DeviceError:
        return cfg  # fit() names the bad train.device
    if cfg.compile == "reduce-overhead" and on_cpu:
        if rank == 0:
            print("train.compile reduce-overhead uses CUDA graphs: training eagerly on the CPU (compile none)")
        cfg = dataclasses.replace(cfg, compile="none")
    return cfg


def run(params: Params, paths: Paths, vgg_pretrained: bool = True) -> dict:
    """Train and write the outputs; returns the metadata written to ``paths.meta`` (rank 0)."""
    rank = int(os.environ.get("RANK", "0"))
    cfg = training_config(params, rank)
    digest = params.train_digest()
    train_paths, val_paths = split_paths(training_paths(params, paths.data), cfg.val_fraction)
    train_imgs, skipped = load_training_images(train_paths, cfg.patch_size + 16)
    if skipped and rank == 0:
        print(
            f"skipping {len(skipped)} image(s) smaller than {cfg.patch_size + 16} px: "
            f"{', '.join(p.name for p in skipped[:5])}"
        )
    if not train_imgs:
        raise TrainingError(
            f"no usable training images: {len(train_paths)} found, all smaller than patch_size + 16 = "
            f"{cfg.patch_size + 16} px (lower train.patch_size or add images)"
        )
    val_imgs = [images.read_image(p) for p in val_paths]
    resume_dir = Path(paths.resume)
    resume_path, run_file = resume_dir / "state.pt", resume_dir / "mlflow_run.json"
    kwargs = params.model.kwargs()

    def train(log: LogFn | None) -> FitResult:
        return fit(
            params.model.arch, kwargs, train_imgs, val_imgs, cfg, params.loss, resume_path, digest, log, vgg_pretrained
        )

    if rank != 0:  # DDP worker: trains, logs nothing, writes nothing
        train(None)
        return {}

    resume_dir.mkdir(parents=True, exist_ok=True)
    run_id = None
    if resume_path.exists() and run_file.exists():
        saved = json.loads(run_file.read_text())
        run_id = saved["run_id"] if saved.get("digest") == digest else None
    log_rows: list[dict] = []
    with tracking.start_run("train", params.tracking.experiment, run_id=run_id, log_system_metrics=True) as active:
        run_file.write_text(json.dumps({"run_id": active.info.run_id, "digest": digest}))
        if run_id is None:
            flat = {
                f"{g}.{k}": v
                for g in ("model", "loss", "train")
                for k, v in dataclasses.asdict(getattr(params, g)).items()
            }
            tracking.log_params({**flat, "data.train_sets": params.data.train_sets, "params_digest": digest})
            tracking.log_params({"train_images": len(train_imgs), "val_images": len(val_imgs)})

        def log(metrics: dict[str, float], step: int) -> None:
            log_rows.append({"step": step, **metrics})
            tracking.log_metrics(metrics, step)

        res = train(log)
        weights_meta = {  # what the weights depend on: the checkpoint's bytes repeat on a rerun
            "arch": params.model.arch,
            "kwargs": kwargs,
            "params": count_params(res.model),
            "steps": res.step,
            "val": res.val,
            "params_digest": digest,
            "train_sets": list(params.data.train_sets),
            "train_images": len(train_imgs),
        }
        meta = {
            **weights_meta,
            "wall_s": round(res.wall_s, 1),
            "patches_per_s": round(res.patches_per_s, 1),
            "resumed_from": res.resumed_from,
            "git_commit": tracking.git_commit(),
            "run_id": active.info.run_id,
        }
        save_checkpoint(paths.model, params.model.arch, kwargs, res.model, weights_meta)
        files.write_bytes(paths.meta, json.dumps(meta, indent=2, default=list).encode())
        if log_rows or not Path(paths.log).exists():
            write_log(Path(paths.log), log_rows)
        tracking.log_metrics({"wall_s": res.wall_s, **{f"final_{k}": v for k, v in res.val.items()}}, res.step)
        # The served model's code (the restore path) is not what training outputs depend on:
        # imported here, so that editing it never invalidates a training run (tests/test_dvc_deps.py).
        from pipeline.mlops import pyfunc

        pyfunc.log_checkpoint(paths.model)
        tracking.log_artifact(paths.meta, tracking.MODEL_ARTIFACT)
    resume_path.unlink(missing_ok=True)  # done: the next run of this stage starts afresh
    run_file.unlink(missing_ok=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("data", "model", "meta", "train-log", "resume"):  # not --log: torchrun would take it
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    try:
        params = load(args.params)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if params.train.nproc > 1 and "LOCAL_RANK" not in os.environ:
        # One process per device: hand over to torchrun, which runs this module N times.
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={params.train.nproc}",
            "-m",
            "stages.train",
            *(argv if argv is not None else sys.argv[1:]),
        ]
        os.execv(sys.executable, cmd)
    paths = Paths(args.data, args.model, args.meta, args.train_log, args.resume)
    try:
        meta = run(params, paths)
    except (images.ImageError, TrainingError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if meta:
        print(
            f"trained {meta['arch']} ({meta['params'] / 1e6:.2f}M parameters) for {meta['steps']} steps "
            f"in {meta['wall_s']:.0f} s; validation {meta['val']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
