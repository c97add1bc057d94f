"""MLflow runs: the store, experiments, logging, and reading a run's artifacts back
(``registry.py`` holds the model registry, ``pyfunc.py`` the served model).

Store: ``local.tracking_uri()`` (``sqlite:///<root>/mlflow.db``, root ``$DVC_ROOT`` or the
checkout; ``$MLFLOW_TRACKING_URI`` overrides it). Artifacts go under ``<root>/mlartifacts``.
Runs are tagged with the DVC stage, experiment name, baseline revision and the git commit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.core import files
from pipeline.mlops.local import MODEL_ARTIFACT, project_root, store_exists, tracking_uri

__all__ = ["MODEL_ARTIFACT", "project_root", "store_exists", "tracking_uri"]  # re-exported: the store's location


def init_store() -> MlflowClient:
    """Point MLflow at our store, creating the SQLite database once under a file lock.

    Several processes creating a fresh database at once corrupt it (their migrations race);
    after creation, concurrent writers are fine.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        with files.lock(db.with_name(db.name + ".lock")):
            MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema
    return MlflowClient(uri, registry_uri=uri)


def get_experiment_id(name: str) -> str:
    """The experiment's id, created with its artifacts under the repo root if new."""
    client = init_store()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):  # a local store: artifacts beside the database, not in the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it just now
        return client.get_experiment_by_name(name).experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run_tags(stage: str) -> dict[str, str]:
    tags = {"stage": stage, "git_commit": git_commit()}
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[var.lower()] = os.environ[var]
    return tags


@contextlib.contextmanager
def start_run(stage: str, experiment: str, run_id: str | None = None, **kwargs: Any) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for a stage (or the existing ``run_id``, to add to a training run)."""
    exp_id = get_experiment_id(experiment)
    name = None if run_id else os.environ.get("DVC_STAGE", stage)
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id, run_name=name, **kwargs) as run:
        mlflow.set_tags(run_tags(stage) if run_id is None else {f"{stage}.git_commit": git_commit()})
        yield run


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


EVALUATION_ARTIFACT = "evaluate/evaluation.json"  # the evaluate stage's detail file, in a run


def log_dict(data: dict[str, Any], name: str) -> None:
    mlflow.log_dict(data, name)


def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def run_exists(run_id: str) -> bool:
    try:
        init_store().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def run_artifact(run_id: str, path: str) -> Path | None:
    """A local copy of a run's artifact file, or None when the run has no such file."""
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=tracking_uri())
        )
    except (mlflow.exceptions.MlflowException, OSError):
        return None
    return local if local.is_file() else None


def run_evaluation(run_id: str) -> Path | None:
    """A local copy of the evaluation logged in a run (``EVALUATION_ARTIFACT``), or None."""
    return run_artifact(run_id, EVALUATION_ARTIFACT)


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a run's metric."""
    return [(m.step, m.value) for m in init_store().get_metric_history(run_id, key)]


def search_runs(experiment: str, max_results: int = 200) -> list[dict[str, Any]]:
    """Runs of an experiment (newest first): id, name, status, start, params, metrics, tags."""
    client = init_store()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=max_results, order_by=["attributes.start_time DESC"])
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "start": r.info.start_time,
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
            "tags": dict(r.data.tags),
        }
        for r in runs
    ]
