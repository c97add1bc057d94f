"""Shared by the pages: params, the model (loaded once per process), and numpy view helpers.

Paths are relative to the working directory (``streamlit run app.py`` from the checkout):
``params.yaml`` (else the one beside app.py), ``models/`` for checkpoint files, ``reports/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from pipeline import params
from pipeline.core.device import DeviceError
from pipeline.data import datasets
from pipeline.evaluation import results
from pipeline.mlops import registry, tracking
from pipeline.models.checkpoint import CheckpointError, describe, read_checkpoint
from pipeline.restoration.engines import EngineError
from pipeline.restoration.options import FORMATS, OutputOptions
from pipeline.restoration.restorer import Restorer

APP_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
FORMAT_NAMES = {"png": "PNG", "tiff": "TIFF", "jpeg": "JPEG", "webp": "WebP"}
MIME = {"png": "image/png", "tiff": "image/tiff", "jpeg": "image/jpeg", "webp": "image/webp"}


def project_dir() -> Path:
    """The checkout the app serves: the working directory when it holds params.yaml, else the one of app.py."""
    return Path.cwd() if Path("params.yaml").is_file() else APP_ROOT


def load_params() -> params.Params:
    """./params.yaml when the app runs in a checkout, else the one beside app.py."""
    return params.load(project_dir() / "params.yaml")


@st.cache_resource(show_spinner="Loading the model...")
def load_restorer(source: str) -> Restorer:
    """The model at ``source`` (a models:/ URI or a checkpoint path) with the default options
    (``RestoreOptions``: the fastest engine installed), loaded once per process; the pages
    change the options a photo asks for with ``Restorer.replace``, which keeps the engine."""
    path = registry.checkpoint_from_uri(source) if source.startswith("models:/") else Path(source)
    return Restorer.load(path)


@st.cache_data(ttl=60, show_spinner=False)
def _champion(name: str, uri: str) -> dict[str, Any] | None:
    return registry.alias_version(name, "champion")  # ``uri`` is only part of the cache key


@st.cache_data(show_spinner="Reading the checkpoint...")
def version_facts(name: str, version: str, uri: str) -> dict[str, Any]:
    """Arch, parameters, steps and data of a registered version, read from its checkpoint
    (for versions registered without these tags); {} when it cannot be read."""
    try:
        return describe(read_checkpoint(registry.checkpoint_from_uri(f"models:/{name}/{version}")))
    except (LookupError, CheckpointError):
        return {}


@st.cache_data(show_spinner=False)
def run_evaluation(run_id: str, uri: str) -> dict[str, Any] | None:
    """The evaluate stage's evaluation logged in a run (``tracking.EVALUATION_ARTIFACT``), or None
    (also when it is not one this code reads: ``results.load`` says why on the page)."""
    path = tracking.run_evaluation(run_id)
    try:
        return results.load(path) if path else None
    except results.ResultsError as e:
        st.warning(str(e))
        return None


def registry_changed() -> None:
    """After moving an alias: forget what the pages cached about the registry."""
    _champion.clear()


def checkpoint_files(folder: Path = Path("models")) -> list[str]:
    """Checkpoint files under ``folder`` (e.g. models/model.pt, models/pretrained/model.pt)."""
    return sorted(str(p) for p in folder.rglob("*.pt")) if folder.is_dir() else []


def model_picker() -> tuple[Restorer, str]:
    """Sidebar: the registry's champion, else a checkpoint file chosen under models/.

    Returns (its restorer, a key naming it for caches). Stops the page when there is no model at all.
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
        restorer = load_restorer(source)
    except (LookupError, CheckpointError, DeviceError, EngineError) as e:
        st.error(f"Cannot load the model: {e}")
        st.stop()
    return restorer, source


@st.cache_data(show_spinner=False)
def sample_photos() -> dict[str, np.ndarray]:
    return datasets.sample_images("sample_test")


def output_options(gps: int = 0, position: str | None = None) -> OutputOptions:
    """Widgets: the format to save in, JPEG's quality, and whether to strip the metadata; beside
    the choice, how many of the photos carry a GPS position (``gps``; ``position``: where, for one)."""
    default = OutputOptions()
    c1, c2, c3 = st.columns(3)
    fmt = c1.selectbox(
        "Save as",
        list(FORMATS),
        format_func=lambda f: FORMAT_NAMES[f] + {"png": "", "tiff": "", "jpeg": " (lossy)", "webp": " (lossless)"}[f],
        help="16-bit photos stay 16-bit in PNG and TIFF. Every format keeps the colour profile, EXIF and XMP.",
    )
    quality = default.quality
    if fmt == "jpeg":
        quality = c2.slider("JPEG quality", 50, 100, default.quality, help="4:4:4 chroma, optimised Huffman tables.")
    strip = c3.checkbox(
        "Strip metadata", help="Drop EXIF, XMP and the GPS position; the colour profile stays (colour is not private)."
    )
    if gps:
        where = f"This photo carries a GPS position ({position or 'where it was taken'})"
        if gps > 1:
            where = f"{gps} of these photos carry a GPS position (where they were taken)"
        if strip:
            st.info(f"{where}: stripped from the download, with the EXIF and XMP.")
        else:
            st.warning(f"{where}: the download keeps it; tick 'Strip metadata' to remove it.")
    return OutputOptions(format=fmt, quality=quality, strip_metadata=strip)


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
