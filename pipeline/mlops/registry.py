"""The MLflow model registry: versions, aliases and tags, the champion's history, and a version's
checkpoint on disk.

A registered version's source is the run artifact folder ``model/``: an MLflow pyfunc model
around our self-describing checkpoint (``pyfunc.py``). This project rebuilds the network from
the checkpoint with weights-only loading; MLflow's tools load the pyfunc model.

Every move of ``champion`` goes through ``move_champion``, under the registry's file lock: the
registered model's tag ``champion_history`` (a JSON list of versions, oldest first) is the truth,
``champion`` is its last entry and ``previous`` the one before. ``crown`` pushes a version on
it, a rollback (``promotion.rollback``) pops one, so two rollbacks go two champions back. A list
rather than a ``previous`` tag per version: a version that is champion twice (v1, v3, v1) would
make such links loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import mlflow

from pipeline.core import files
from pipeline.mlops.local import local_checkpoint, parse_model_uri, project_root
from pipeline.mlops.tracking import MODEL_ARTIFACT, init_store, store_exists, tracking_uri

HISTORY_TAG = "champion_history"


def registry_lock() -> files.FileLock:
    """Held around every read-compare-move of the aliases (one lock per repo, beside mlflow.db).
    The same lock object per path, so a holder may take it again (``crown`` inside a decision)."""
    return _lock(str(project_root() / ".registry.lock"))


@functools.cache
def _lock(path: str) -> files.FileLock:
    return files.lock(path)


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


def delete_alias(name: str, alias: str) -> None:
    try:
        init_store().delete_registered_model_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        pass  # no such alias


def model_tag(name: str, key: str) -> str | None:
    """A tag of the registered model ``name`` itself (not of a version), or None."""
    try:
        return init_store().get_registered_model(name).tags.get(key)
    except mlflow.exceptions.MlflowException:
        return None


def champion_history(name: str) -> list[str]:
    """The versions that held ``champion``, oldest first, the current one last. A store whose
    history was never written starts from its ``previous`` and ``champion`` aliases; a champion
    moved elsewhere (the MLflow UI) is appended."""
    raw = model_tag(name, HISTORY_TAG)
    if raw is None:
        return [v["version"] for v in (alias_version(name, a) for a in ("previous", "champion")) if v]
    history = [str(v) for v in json.loads(raw)]
    champion = alias_version(name, "champion")
    if champion and (not history or history[-1] != champion["version"]):
        history.append(champion["version"])
    return history


def move_champion(name: str, history: list[str]) -> None:
    """The one place that moves ``champion`` and ``previous``: they follow ``history`` (its last
    entry and the one before, if any), written as the registered model's tag, under the lock."""
    with registry_lock():
        init_store().set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        set_alias(name, "champion", history[-1])
        if len(history) > 1:
            set_alias(name, "previous", history[-2])
        else:
            delete_alias(name, "previous")


def crown(name: str, version: str) -> list[str]:
    """Give ``champion`` to ``version``, pushing it on the history; returns the new history."""
    with registry_lock():
        history = [*champion_history(name), str(version)]
        move_champion(name, history)
    return history


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
    ``runs:/<run_id>/model``, with the version's ONNX graphs beside it. Raises LookupError with a
    clear message when it does not exist (a local store that does not exist yet is not created).

    This machine's own store is read directly (``local.local_checkpoint``: no MLflow, no copy);
    any other store's version is downloaded once into ``cache_dir()``, by store, version and
    checksum, so that the next run does not download it again."""
    if not store_exists():
        raise LookupError(f"{uri}: no model registry at {tracking_uri()} yet")
    if (path := local_checkpoint(uri)) is not None:
        return path
    client = init_store()
    if uri.startswith("models:/"):
        name, alias, version = parse_model_uri(uri)
        try:
            mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except mlflow.exceptions.MlflowException:
            raise LookupError(f"{uri}: no such registered model version in {tracking_uri()}") from None
        source, key = mv.source, f"{name}/v{mv.version}"
    elif uri.startswith("runs:/"):
        source, key = uri, f"runs/{uri.removeprefix('runs:/').strip('/').replace('/', '_')}"
    else:
        raise LookupError(f"{uri}: expected models:/<name>@<alias>, models:/<name>/<version> or runs:/<id>/model")
    return _cached_artifacts(uri, f"{source.rstrip('/')}/artifacts", key)


def cache_dir() -> Path:
    """Where versions of other stores are kept once downloaded: ``$XDG_CACHE_HOME/jpeg-restoration/registry``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jpeg-restoration" / "registry"


def _cached_artifacts(uri: str, artifacts: str, key: str) -> Path:
    """The pyfunc folder's ``artifacts/`` (checkpoint and graphs), downloaded once per store and
    version; a copy whose checkpoint no longer matches its recorded checksum is downloaded again."""
    store = hashlib.sha256(tracking_uri().encode()).hexdigest()[:12]
    folder = cache_dir() / store / key
    ckpt, digest = folder / "model.pt", folder / "model.pt.sha256"
    if ckpt.is_file() and digest.is_file() and digest.read_text().strip() == files.sha256_file(ckpt):
        return ckpt
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        mlflow.artifacts.download_artifacts(artifact_uri=artifacts, dst_path=str(tmp))
        got = tmp / "artifacts" / "model.pt" if (tmp / "artifacts").is_dir() else tmp / "model.pt"
        if not got.is_file():
            raise LookupError(f"{uri}: artifact {artifacts} holds no model.pt")
        (got.parent / "model.pt.sha256").write_text(files.sha256_file(got))
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        got.parent.replace(folder)
    except (mlflow.exceptions.MlflowException, OSError) as e:
        raise LookupError(f"{uri}: cannot fetch {artifacts}/model.pt: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ckpt


def run_tag(run_id: str | None, key: str) -> str | None:
    """A tag of the run behind a version (e.g. ``dvc_exp_name``: the experiment that made it), or None."""
    if not run_id:
        return None
    try:
        return init_store().get_run(run_id).data.tags.get(key)
    except mlflow.exceptions.MlflowException:
        return None
