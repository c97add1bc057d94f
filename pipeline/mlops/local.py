"""Where the store is, and a registered version's checkpoint read straight from this machine's
own store, without importing MLflow (which takes longer to import than restoring a photo).

The store is ``sqlite:///<root>/mlflow.db``, root being ``$DVC_ROOT`` (set by DVC for every
stage, pointing at the real repo even inside ``dvc exp run --temp/--queue``) or the checkout
holding this package; ``$MLFLOW_TRACKING_URI`` overrides it (a team's server). When the store is
a local SQLite file and a version's artifacts are local files (what ``./quickstart.sh`` and
``dvc repro`` make), ``local_checkpoint`` reads the alias or version from the database (read
only: a read never creates a store) and returns the checkpoint where the artifact store keeps
it, with its ONNX graphs beside it: no copy, no download. Anything else (a tracking server,
remote artifacts, a schema it does not know) returns None and ``registry.checkpoint_from_uri``
asks MLflow.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
MODEL_ARTIFACT = "model"  # a run's pyfunc model folder (pyfunc.py): what a registered version points at


def project_root() -> Path:
    """The repo root: $DVC_ROOT when DVC runs us, else the checkout holding this package."""
    return Path(os.environ.get("DVC_ROOT") or PACKAGE_ROOT).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def sqlite_path(uri: str | None = None) -> Path | None:
    """The database file of a ``sqlite:///`` store URI (default: ours), else None."""
    uri = uri or tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def store_exists() -> bool:
    """Whether the store can be read without creating it (a remote server always can)."""
    db = sqlite_path()
    return db is None or db.is_file()


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>@<alias>`` -> (name, alias, None); ``models:/<name>/<version>`` -> (name, None, version)."""
    ref = uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, alias, None
    name, _, version = ref.rpartition("/")
    return name, None, version


def local_checkpoint(uri: str) -> Path | None:
    """The checkpoint of ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` in this
    machine's own store, read without MLflow; None when that cannot be done (see the module)."""
    db = sqlite_path()
    if db is None or not db.is_file() or not uri.startswith("models:/"):
        return None
    name, alias, version = parse_model_uri(uri)
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            if alias is not None:
                row = con.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                                  (name, alias)).fetchone()  # fmt: skip
                version = None if row is None else str(row[0])
            if version is None:
                return None
            row = con.execute("SELECT source, run_id FROM model_versions WHERE name = ? AND version = ?",
                              (name, int(version))).fetchone()  # fmt: skip
            if row is None or not row[1] or row[0] != f"runs:/{row[1]}/{MODEL_ARTIFACT}":
                return None
            run = con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (row[1],)).fetchone()
    except (sqlite3.Error, ValueError):
        return None
    if run is None or not str(run[0]).startswith("file://"):
        return None
    path = Path(unquote(urlparse(run[0]).path)) / MODEL_ARTIFACT / "artifacts" / "model.pt"
    return path if path.is_file() else None
