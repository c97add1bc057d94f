"""The registered model as an MLflow ``python_function`` model: one artifact, two front doors.

A registered version's folder (``runs:/<id>/model``) is a pyfunc model whose artifact is our
self-describing checkpoint (``artifacts/model.pt``), with its ONNX graph and the JPEG-history
detector it decides with (``artifacts/detector.npz``) beside it, so a server decides as ``restore`` does. MLflow's
tools load it through ``JpegRestorationModel`` (``mlflow.pyfunc.load_model``, ``mlflow models
serve``, ``mlflow.pyfunc.spark_udf``), which restores through a ``Restorer`` like every other
door, on the engine and precision its ``model_config`` names (``RestoreOptions``: by default
the fastest engine installed, running the graph it carries); this project's own loaders read
the same checkpoint file (``registry.checkpoint_from_uri``). The ``pipeline`` package travels
with the model (``code/pipeline``), so a server needs no checkout.

Input: a DataFrame with a binary column ``image`` (JPEG, PNG or any format OpenCV reads; base64
in JSON). Params (all optional): ``qf`` (1..100; default: decided as ``restore`` does, see
pipeline/restoration/photo.py), ``tile`` (0 = whole image, or a multiple of 8 larger than the
overlap), ``tta`` (average the 8 flips/rotations), ``base64`` (the PNG as base64 text:
``spark_udf`` has no binary result type). Output, one row per image: ``image`` (the restored
PNG, upright, with the photo's ICC profile, EXIF and XMP), ``qf`` (the QF used; NaN for a photo
left unchanged) and ``qf_source`` (user, header, pixels, estimated, or none when no JPEG
compression was found).
"""

from __future__ import annotations

import base64
import importlib.metadata
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from packaging.version import Version

from pipeline.core import files, images
from pipeline.mlops import tracking
from pipeline.restoration import history
from pipeline.restoration.engines import installed
from pipeline.restoration.options import OptionsError, RestoreOptions
from pipeline.restoration.restorer import Restorer

CHECKPOINT = "checkpoint"  # the artifact key; the file is artifacts/model.pt
ONNX = "onnx"  # artifacts/model.<sha256 of model.pt, 16 hex>.onnx: the graph pipeline/restoration/engines.py runs
ESTIMATOR = "onnx_estimator"  # artifacts/model.<hash>.estimator.onnx: its QF estimator head
INT8 = "int8"  # artifacts/model.<hash>.int8.xml (.bin, .json): its OpenVINO int8 graph, when one was made
DETECTOR = "detector"  # artifacts/detector.npz: the JPEG-history detector the decision asks (history.beside)
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema([ColSpec("binary", "image"), ColSpec("double", "qf"), ColSpec("string", "qf_source")]),
    params=ParamSchema(
        [
            ParamSpec("qf", "long", None),
            ParamSpec("tile", "long", None),  # None: the model's options (RestoreOptions)
            ParamSpec("tta", "boolean", None),
            ParamSpec("base64", "boolean", False),
        ]
    ),
)
# What importing pipeline.mlops.pyfunc needs (distribution names), pinned to this environment's versions;
# the CPU runtimes the engines use join them where they are installed.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "opencv-python-headless", "pillow", "PyYAML", "tqdm")
RUNTIMES = ("openvino", "onnxruntime")


def _bad(message: str) -> MlflowException:
    """An error a server answers with 400 and this message."""
    return MlflowException.invalid_parameter_value(message)


def request_options(restorer: Restorer, params: dict[str, Any] | None) -> Restorer:
    """The model's restorer with the request's ``qf``, ``tile`` and ``tta``; raises
    MlflowException (a 400) naming the problem."""
    params = params or {}
    try:
        qf, tile, tta = params.get("qf"), params.get("tile"), params.get("tta")
        return restorer.replace(
            qf=None if qf is None else float(qf),
            tile=None if tile is None else int(tile),
            tta=None if tta is None else bool(tta),
        )
    except (OptionsError, TypeError, ValueError) as e:
        raise _bad(f"param {e}") from None


class JpegRestorationModel(mlflow.pyfunc.PythonModel):
    """Loads the checkpoint once (GPU when there is one) and restores each row's image."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        options = RestoreOptions(**(context.model_config or {}))
        self.restorer = Restorer.load(context.artifacts[CHECKPOINT], options)
        # The scoring server predicts in threads: one restoration at a time uses every core and
        # keeps the engine's state (OpenVINO's infer request) to one caller.
        self.lock = threading.Lock()

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        restorer = request_options(self.restorer, params)
        as_text = bool((params or {}).get("base64", False))
        if "image" not in model_input:
            raise _bad(f"expected a column 'image' of encoded image bytes, got columns {list(model_input.columns)}")
        rows = []
        for i, data in enumerate(model_input["image"]):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise _bad(f"row {i}: 'image' must be encoded image bytes (base64 in JSON), got {type(data).__name__}")
            try:
                decoded = images.decode_image(bytes(data), f"row {i}")
            except images.ImageError as e:
                raise _bad(str(e)) from None
            with self.lock:
                png, d, _ = restorer.restore_decoded(decoded)  # PNG with the photo's metadata
            rows.append(
                {
                    "image": base64.b64encode(png).decode("ascii") if as_text else png,
                    "qf": np.nan if d.qf is None else d.qf,
                    "qf_source": d.source,
                }
            )
        return pd.DataFrame(rows, columns=["image", "qf", "qf_source"])


def pinned_requirements() -> list[str]:
    """``name==version`` of what the model imports, as installed here (torch without its +cuXXX tag)."""
    names = [*REQUIREMENTS, *(r for r in RUNTIMES if installed(r))]
    return [f"{name}=={Version(importlib.metadata.version(name)).public}" for name in names]


def example_input() -> pd.DataFrame:
    """A 32x32 JPEG at QF 30: the model's input example (and the check MLflow runs when saving)."""
    y, x = np.mgrid[0:32, 0:32]
    rgb = np.stack([x * 8, y * 8, (x + y) * 4], axis=2).astype(np.uint8)
    return pd.DataFrame({"image": [images.encode_jpeg(rgb, 30)]})


def graph_artifacts(checkpoint: Path, ckpt: Path) -> dict[str, str]:
    """The ONNX graphs of ``ckpt`` (a copy of ``checkpoint``), named as ``pipeline.restoration.engines``
    caches them (beside the checkpoint, by its content hash), so ONNX Runtime and OpenVINO find
    them in the model folder and a deployment never exports; graphs already cached beside
    ``checkpoint`` are copied, not exported again. Empty when the exporter's packages are missing."""
    from pipeline.restoration import engines

    source, key = Path(checkpoint), files.sha256_file(ckpt)[:16]
    for cached in source.parent.glob(f"{source.stem}.{key}.*"):
        shutil.copyfile(cached, ckpt.with_name(f"{ckpt.stem}.{key}{cached.name.removeprefix(f'{source.stem}.{key}')}"))
    try:
        from pipeline.models.checkpoint import load_checkpoint

        graph, estimator = engines.graphs(ckpt, lambda: load_checkpoint(ckpt)[0])
    except ImportError:
        return {}
    out = {ONNX: str(graph), **({ESTIMATOR: str(estimator)} if estimator else {})}
    int8 = engines.int8_path(graph)  # made by python -m pipeline.quantize, with its report
    if int8.is_file():
        out.update(
            {
                INT8: str(int8),
                f"{INT8}_weights": str(int8.with_suffix(".bin")),
                f"{INT8}_report": str(int8.with_suffix(".json")),
            }
        )
    return out


def save_pyfunc(
    checkpoint: str | Path,
    dest: str | Path,
    metadata: dict[str, Any] | None = None,
    options: RestoreOptions | None = None,
) -> Path:
    """Write the pyfunc model folder for ``checkpoint`` at ``dest`` (which must not exist or be
    empty); ``options``: how it restores (its ``model_config``; default ``RestoreOptions()``)."""
    package = Path(__file__).resolve().parents[1]  # the whole pipeline package travels with the model
    config = (options or RestoreOptions()).as_dict()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"  # whatever the file's name: artifacts/model.pt
        shutil.copyfile(checkpoint, ckpt)
        extra: dict[str, str] = {}
        if (found := history.beside(checkpoint)) is not None:  # artifacts/detector.npz, beside model.pt
            shutil.copyfile(found, Path(tmp) / history.FILE_NAME)
            extra[DETECTOR] = str(Path(tmp) / history.FILE_NAME)
            metadata = {**(metadata or {}), "detector_sha256": files.sha256_file(found)}
        code = shutil.copytree(package, Path(tmp) / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
        mlflow.pyfunc.save_model(
            path=str(dest),
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={CHECKPOINT: str(ckpt), **graph_artifacts(Path(checkpoint), ckpt), **extra},
            code_paths=[str(code)],
            signature=SIGNATURE,
            input_example=(example_input(), {"tile": config["tile"]}),
            pip_requirements=pinned_requirements(),
            model_config=config,
            metadata={**(metadata or {}), "restore_options": config},
        )
    return Path(dest)


def log_checkpoint(path: str | Path) -> None:
    """Log a checkpoint in the active run as the pyfunc model folder ``model/`` (its file at
    ``model/artifacts/model.pt``), whatever its file name: what ``register_version`` registers."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifacts(str(save_pyfunc(path, Path(tmp) / tracking.MODEL_ARTIFACT)), tracking.MODEL_ARTIFACT)
