"""The MLflow model registry: versions, aliases and tags, and a version's checkpoint on disk.

A registered version's source is the run artifact folder ``model/``: an MLflow pyfunc model
around our self-describing checkpoint (``pyfunc.py``). This project rebuilds the network from
the checkpoint with weights-only loading; MLflow's tools load the pyfunc model.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import mlflow

from pipeline.mlops.tracking import MODEL_ARTIFACT, init_store, store_exists, tracking_uri


def register_version(name: str, run_id: str, tags: dict[str, Any], aliases: tuple[str, ...] = ()) -> str:
    """Register the checkpoint logged in ``run_id`` as a new version of ``name``; returns the version."""
    client = init_store()
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # it exists (or another process just created it)
    source = f"runs:/{run_id}/{MODEL_ARTIFACT}"
    tags = {k: str(v) for k, v in tags.items() if v is not None}
    mv = client.create_model_version(name, source, run_id=run_id, tags=tags)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


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
        "version": str(mv.version),
        "aliases": list(mv.aliases),
        "tags": dict(mv.tags),
        "run_id": mv.run_id,
        "source": mv.source,
        "created": mv.creation_timestamp,
        "description": mv.description or "",
    }


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
    ``runs:/<run_id>/model``. Raises LookupError with a clear message when it does not exist
    (a local store that does not exist yet is not created by this read)."""
    if not store_exists():
        raise LookupError(f"{uri}: no model registry at {tracking_uri()} yet")
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
    artifacts = f"{source.rstrip('/')}/artifacts"  # the pyfunc model folder (pyfunc.py)
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{artifacts}/model.pt"))
    except (mlflow.exceptions.MlflowException, OSError):
        raise LookupError(f"{uri}: artifact {source} holds no artifacts/model.pt") from None
    _fetch_onnx(artifacts, path)
    return path


def _fetch_onnx(artifacts_uri: str, ckpt: Path) -> None:
    """Put the version's ONNX graph (``pyfunc.onnx_artifact``) beside its downloaded
    checkpoint, where the engines look for it; a local store already has it there, and a
    version without one gets it exported on first use."""
    from pipeline.restoration.engines import onnx_path  # imports torch: only where a model is loaded

    onnx = onnx_path(ckpt)
    if not onnx.is_file():
        with contextlib.suppress(mlflow.exceptions.MlflowException, OSError):
            mlflow.artifacts.download_artifacts(artifact_uri=f"{artifacts_uri}/{onnx.name}", dst_path=str(ckpt.parent))
