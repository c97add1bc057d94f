"""Shared by the pages: params, the model (loaded once per process), and numpy view helpers.

Paths are relative to the working directory (``streamlit run app.py`` from the checkout):
``params.yaml`` (else the one beside app.py), ``models/`` for checkpoint files, ``reports/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st
from torch import nn

from pipeline import datasets, params, tracking
from pipeline.checkpoint import CheckpointError, describe, load_checkpoint, read_checkpoint
from pipeline.device import pick_device
from pipeline.engines import Engine, build_engine

APP_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def project_dir() -> Path:
    """The checkout the app serves: the working directory when it holds params.yaml, else the one of app.py."""
    return Path.cwd() if Path("params.yaml").is_file() else APP_ROOT


def load_params() -> params.Params:
    """./params.yaml when the app runs in a checkout, else the one beside app.py."""
    return params.load(project_dir() / "params.yaml")


@st.cache_resource(show_spinner="Loading the model...")
def load_model(source: str) -> tuple[nn.Module, dict[str, Any]]:
    """The model at ``source`` (a models:/ URI or a checkpoint path), loaded once per process."""
    path = tracking.checkpoint_from_uri(source) if source.startswith("models:/") else Path(source)
    return load_checkpoint(path, pick_device("auto"))


@st.cache_resource(show_spinner="Preparing the fastest engine...")
def load_engine(source: str, precision: str) -> Engine:
    """The fastest engine installed (``auto``, pipeline/engines.py) for the model at ``source``."""
    model, _ = load_model(source)
    path = tracking.checkpoint_from_uri(source) if source.startswith("models:/") else Path(source)
    return build_engine("auto", model, path, precision)


@st.cache_data(ttl=60, show_spinner=False)
def _champion(name: str, uri: str) -> dict[str, Any] | None:
    return tracking.alias_version(name, "champion")  # ``uri`` is only part of the cache key


@st.cache_data(show_spinner="Reading the checkpoint...")
def version_facts(name: str, version: str, uri: str) -> dict[str, Any]:
    """Arch, parameters, steps and data of a registered version, read from its checkpoint
    (for versions registered without these tags); {} when it cannot be read."""
    try:
        return describe(read_checkpoint(tracking.checkpoint_from_uri(f"models:/{name}/{version}")))
    except (LookupError, CheckpointError):
        return {}


@st.cache_data(show_spinner=False)
def run_evaluation(run_id: str, uri: str) -> dict[str, Any] | None:
    """The evaluate stage's evaluation logged in a run (``tracking.EVALUATION_ARTIFACT``), or None."""
    path = tracking.run_evaluation(run_id)
    try:
        return json.loads(path.read_text()) if path else None
    except ValueError:
        return None


def registry_changed() -> None:
    """After moving an alias: forget what the pages cached about the registry."""
    _champion.clear()


def checkpoint_files(folder: Path = Path("models")) -> list[str]:
    """Checkpoint files under ``folder`` (e.g. models/model.pt, models/pretrained/model.pt)."""
    return sorted(str(p) for p in folder.rglob("*.pt")) if folder.is_dir() else []


def model_picker() -> tuple[nn.Module, str]:
    """Sidebar: the registry's champion, else a checkpoint file chosen under models/.

    Returns (model, a key naming it for caches). Stops the page when there is no model at all.
    """
    name = load_params().register.model_name
    uri = tracking.tracking_uri()
    st.sidebar.header("Model")
    champion = _champion(name, uri)
    if champion is not None:
        # Pin the version, so that moving the alias loads the new champion.
        source = f"models:/{name}/{champion['version']}"
        st.sidebar.caption(f"`{name}` version {champion['version']} (champion) from the MLflow registry")
    else:
        st.sidebar.info(f"No champion model in the MLflow registry ({uri}): choose a checkpoint file from models/.")
        files = checkpoint_files()
        if not files:
            st.error("No model: the registry has no champion and there is no checkpoint file under models/.")
            st.stop()
        source = st.sidebar.selectbox("Checkpoint file", files)
    try:
        model, _meta = load_model(source)
    except (LookupError, CheckpointError) as e:
        st.error(f"Cannot load the model: {e}")
        st.stop()
    return model, source


@st.cache_data(show_spinner=False)
def sample_photos() -> dict[str, np.ndarray]:
    return datasets.sample_images("sample_test")


def memo(slot: str, key: tuple, compute: Callable[[], T]) -> T:
    """A one-entry cache in the session: ``compute()`` runs again only when ``key`` changes
    (moving a view slider must not restore the photo again)."""
    hit = st.session_state.get(slot)
    if hit is None or hit[0] != key:
        st.session_state[slot] = (key, compute())
    return st.session_state[slot][1]


def preview(img: np.ndarray, max_side: int = 1600) -> np.ndarray:
    """A strided view at most ``max_side`` px across: browsers choke on 50 MP images."""
    step = -(-max(img.shape[:2]) // max_side)
    return img[::step, ::step]


def crop(img: np.ndarray, x_frac: float, y_frac: float, size: int) -> np.ndarray:
    """A ``size`` square at fractional position (0..1 across the free range), clipped to the image."""
    h, w = img.shape[:2]
    y, x = round(y_frac * max(h - size, 0)), round(x_frac * max(w - size, 0))
    return img[y : y + size, x : x + size]


def zoom(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel shows as a sharp square."""
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def wipe(left: np.ndarray, right: np.ndarray, frac: float, line: int = 2) -> np.ndarray:
    """``left`` up to ``frac`` of the width, ``right`` beyond, split by a thin yellow line."""
    out = right.copy()
    cut = round(frac * out.shape[1])
    out[:, :cut] = left[:, :cut]
    out[:, max(cut - line // 2, 0) : cut + (line + 1) // 2] = (255, 215, 0)
    return out


def diff_map(a: np.ndarray, b: np.ndarray, gain: float) -> np.ndarray:
    """|a - b| amplified by ``gain``, as uint8: where restoration changed the photo."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.float32) * gain
    return np.clip(d, 0, 255).astype(np.uint8)
