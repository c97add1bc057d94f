"""MLflow's store and registry, in one place (with mlflow_model.py, the pyfunc model, the only mlflow imports).

Store and registry: ``sqlite:///<root>/mlflow.db`` where root is ``$DVC_ROOT`` (set by DVC for
every stage, and pointing at the real repo even inside ``dvc exp run --temp/--queue``) or the
repository that holds this package. ``$MLFLOW_TRACKING_URI`` overrides it (a team's server).
Artifacts go under ``<root>/mlartifacts``. Runs are tagged with the DVC stage, experiment name,
baseline revision and the git commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from pipeline import files

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The repo root: $DVC_ROOT when DVC runs us, else the checkout holding this package."""
    return Path(os.environ.get("DVC_ROOT") or PACKAGE_ROOT).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


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


# ---- model registry -------------------------------------------------------------------------
# A registered version's source is the run artifact folder ``model/``: an MLflow pyfunc model
# around our self-describing checkpoint (pipeline/mlflow_model.py). This project rebuilds the
# network from the checkpoint with weights-only loading; MLflow's tools load the pyfunc model.

EVALUATION_ARTIFACT = "evaluate/evaluation.json"  # the evaluate stage's detail file, in a run
CHECKPOINT_ARTIFACT = "model"  # artifact folder of a run: the pyfunc model holding model.pt


def register_version(name: str, run_id: str, tags: dict[str, Any], aliases: tuple[str, ...] = ()) -> str:
    """Register the checkpoint logged in ``run_id`` as a new version of ``name``; returns the version."""
    client = init_store()
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # it exists (or another process just created it)
    source = f"runs:/{run_id}/{CHECKPOINT_ARTIFACT}"
    tags = {k: str(v) for k, v in tags.items() if v is not None}
    mv = client.create_model_version(name, source, run_id=run_id, tags=tags)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def log_checkpoint(path: str | Path) -> None:
    """Log a checkpoint in the active run as the pyfunc model folder ``model/`` (its file at
    ``model/artifacts/model.pt``), whatever its file name: what ``register_version`` registers."""
    from pipeline.mlflow_model import save_pyfunc  # imports torch: only where a model is logged

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifacts(str(save_pyfunc(path, Path(tmp) / CHECKPOINT_ARTIFACT)), CHECKPOINT_ARTIFACT)


def set_alias(name: str, alias: str, version: str) -> None:
    init_store().set_registered_model_alias(name, alias, version)


def alias_version(name: str, alias: str) -> dict[str, Any] | None:
    """The version holding ``alias`` as a dict (see ``registered_versions``), or None."""
    client = init_store()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return _version_dict(client.get_model_version(name, mv.version))


def _version_dict(mv: Any) -> dict[str, Any]:
    return {
        "version": str(mv.version), "aliases": list(mv.aliases), "tags": dict(mv.tags), "run_id": mv.run_id,
        "source": mv.source, "created": mv.creation_timestamp, "description": mv.description or "",
    }  # fmt: skip


def registered_versions(name: str) -> list[dict[str, Any]]:
    """All versions of ``name``, newest first, each with its aliases and tags ([] if none)."""
    client = init_store()
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return []
    # search_model_versions leaves ``aliases`` empty: read each version for them.
    versions = [_version_dict(client.get_model_version(name, mv.version)) for mv in found]
    return sorted(versions, key=lambda v: int(v["version"]), reverse=True)


def set_version_tags(name: str, version: str, tags: dict[str, Any]) -> None:
    client = init_store()
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, str(v))


def checkpoint_from_uri(uri: str) -> Path:
    """Local path of model.pt for ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or
    ``runs:/<run_id>/model``. Raises LookupError with a clear message when it does not exist."""
    client = init_store()
    if uri.startswith("models:/"):
        ref = uri.removeprefix("models:/")
        name, alias = ref.split("@", 1) if "@" in ref else (ref.rsplit("/", 1)[0], None)
        try:
            if alias is not None:
                mv = client.get_model_version_by_alias(name, alias)
            else:
                mv = client.get_model_version(name, ref.rsplit("/", 1)[1])
        except mlflow.exceptions.MlflowException:
            raise LookupError(f"{uri}: no such registered model version in {tracking_uri()}") from None
        source = mv.source
    elif uri.startswith("runs:/"):
        source = uri
    else:
        raise LookupError(f"{uri}: expected models:/<name>@<alias>, models:/<name>/<version> or runs:/<id>/model")
    # A pyfunc model folder keeps it in artifacts/; versions registered before that, at the top.
    for rel in ("artifacts/model.pt", "model.pt"):
        try:
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{source.rstrip('/')}/{rel}"))
        except (mlflow.exceptions.MlflowException, OSError):
            continue
        if path.is_file():
            if rel.startswith("artifacts/"):
                _fetch_onnx(f"{source.rstrip('/')}/artifacts", path)
            return path
    raise LookupError(f"{uri}: artifact {source} holds no model.pt")


def _fetch_onnx(artifacts_uri: str, ckpt: Path) -> None:
    """Put the version's ONNX graph (``mlflow_model.onnx_artifact``) beside its downloaded
    checkpoint, where the engines look for it; a local store already has it there, and a
    version without one gets it exported on first use."""
    from pipeline.engines import onnx_path  # imports torch: only where a model is loaded

    onnx = onnx_path(ckpt)
    if not onnx.is_file():
        with contextlib.suppress(mlflow.exceptions.MlflowException, OSError):
            mlflow.artifacts.download_artifacts(artifact_uri=f"{artifacts_uri}/{onnx.name}", dst_path=str(ckpt.parent))


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
    """A local copy of the evaluation logged in a run (``EVALUATION_ARTIFACT``; runs logged before
    the headline/detail split hold it as ``evaluate/metrics.json``), or None."""
    for name in (EVALUATION_ARTIFACT, "evaluate/metrics.json"):
        path = run_artifact(run_id, name)
        if path is not None and "results" in json.loads(path.read_text()):
            return path
    return None


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
        {"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "start": r.info.start_time,
         "params": dict(r.data.params), "metrics": dict(r.data.metrics), "tags": dict(r.data.tags)}
        for r in runs
    ]  # fmt: skip
