"""Shared fixtures: a throw-away MLflow store, small generated images, the shared datasets."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"benchmark images not found at {SHARED} (only present on the project's machines)"
)


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real SQLite MLflow store and registry in a temporary folder."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return uri


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with its schema created (the migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture
def mlflow_store(mlflow_uri: str, tmp_path: Path, migrated_db: Path) -> str:
    """Like ``mlflow_uri``, with the database already created: a copy, not a fresh migration."""
    shutil.copyfile(migrated_db, tmp_path / "mlflow.db")
    return mlflow_uri


@pytest.fixture
def forkserver(monkeypatch: pytest.MonkeyPatch) -> multiprocessing.context.BaseContext:
    """A multiprocessing context for tests of concurrent processes: like "spawn", each process
    starts clean (none of this process's MLflow or SQLite connections), but it is forked from a
    server that imported torch and mlflow once instead of importing them again (seconds each)."""
    # Python 3.11's forkserver does not apply sys.path before preloading: PYTHONPATH does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["stages.promote"])  # takes effect when the server first starts
    return ctx


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB uint8 image: smooth gradients, edges and some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 90 * np.sin(x / (7 + 5 * rng.random()) + rng.random() * 6),
            128 + 90 * np.cos(y / (9 + 5 * rng.random()) + rng.random() * 6),
            128 + 60 * np.sin((x + y) / (13 + 5 * rng.random())),
        ],
        axis=2,
    )
    img[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 255, 3)  # a sharp-edged patch
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread. With two, OpenMP's spinning barriers make every op ~50x
    slower as soon as another process competes for the two cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def image_factory():
    return smooth_image


@pytest.fixture(autouse=True)
def _no_analytics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv(
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    )
