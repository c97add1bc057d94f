"""The registered model as an MLflow ``python_function`` model: one artifact, two front doors.

A registered version's folder (``runs:/<id>/model``) is a pyfunc model whose artifact is
our self-describing checkpoint (``artifacts/model.pt``), with its ONNX graph beside it. MLflow's tools load it through
``JpegRestorationModel`` (``mlflow.pyfunc.load_model``, ``mlflow models serve``,
``mlflow.pyfunc.spark_udf``); this project's own loaders read the same checkpoint file
(``tracking.checkpoint_from_uri``). The ``pipeline`` package travels with the model
(``code/pipeline``), so a server needs no checkout.

Input: a DataFrame with a binary column ``image`` (JPEG, PNG or any format OpenCV reads; base64
in JSON). Params (all optional): ``qf`` (1..100; default: decided as ``restore`` does, see
pipeline/photo.py),
``tile`` (a multiple of 8 >= 128, 0 = whole image), ``tta`` (average the 8 flips/rotations), ``base64``
(the PNG as base64 text: ``spark_udf`` has no binary result type). Output, one row per image:
``image`` (the restored PNG), ``qf`` (the QF used; NaN for a photo left unchanged) and
``qf_source`` (user, header, pixels, estimated, or none when no JPEG compression was found).
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from packaging.version import Version

from pipeline import images
from pipeline.checkpoint import load_checkpoint
from pipeline.device import pick_device
from pipeline.photo import encode_output, restore_photo

CHECKPOINT = "checkpoint"  # the artifact key; the file is artifacts/model.pt
ONNX = "onnx"  # artifacts/model.<sha256 of model.pt, 16 hex>.onnx: the graph pipeline/engines.py runs
DEFAULT_TILE = 1024
OVERLAP = 64
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema([ColSpec("binary", "image"), ColSpec("double", "qf"), ColSpec("string", "qf_source")]),
    params=ParamSchema(
        [
            ParamSpec("qf", "long", None),
            ParamSpec("tile", "long", DEFAULT_TILE),
            ParamSpec("tta", "boolean", False),
            ParamSpec("base64", "boolean", False),
        ]
    ),
)
# What importing pipeline.mlflow_model needs (distribution names), pinned to this environment's versions.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "opencv-python-headless", "pillow", "PyYAML", "tqdm")


def _bad(message: str) -> MlflowException:
    """An error a server answers with 400 and this message."""
    return MlflowException.invalid_parameter_value(message)


def check_params(params: dict[str, Any] | None) -> tuple[int | None, int, bool]:
    """(qf, tile, tta) from the request's params, checked; raises MlflowException naming the problem."""
    params = params or {}
    qf, tile, tta = params.get("qf"), params.get("tile", DEFAULT_TILE), params.get("tta", False)
    if qf is not None and not 1 <= int(qf) <= 100:
        raise _bad(f"param qf must be in 1..100 (or left out to use the file's or the estimate), got {qf}")
    if tile is None or int(tile) % 8 or not (int(tile) == 0 or int(tile) >= 2 * OVERLAP):
        raise _bad(f"param tile must be 0 (whole image) or a multiple of 8 of at least {2 * OVERLAP}, got {tile}")
    return (None if qf is None else int(qf)), int(tile), bool(tta)


class JpegRestorationModel(mlflow.pyfunc.PythonModel):
    """Loads the checkpoint once (GPU when there is one) and restores each row's image."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model, self.meta = load_checkpoint(context.artifacts[CHECKPOINT], pick_device("auto"))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        qf, tile, tta = check_params(params)
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
            pred, d = restore_photo(self.model, decoded.rgb, decoded.header, qf, tile, OVERLAP, tta)
            png = encode_output(pred, decoded)
            rows.append({"image": base64.b64encode(png).decode("ascii") if as_text else png,
                         "qf": np.nan if d.qf is None else d.qf, "qf_source": d.source})  # fmt: skip
        return pd.DataFrame(rows, columns=["image", "qf", "qf_source"])


def pinned_requirements() -> list[str]:
    """``name==version`` of what the model imports, as installed here (torch without its +cuXXX tag)."""
    return [f"{name}=={Version(importlib.metadata.version(name)).public}" for name in REQUIREMENTS]


def example_input() -> pd.DataFrame:
    """A 32x32 JPEG at QF 30: the model's input example (and the check MLflow runs when saving)."""
    y, x = np.mgrid[0:32, 0:32]
    rgb = np.stack([x * 8, y * 8, (x + y) * 4], axis=2).astype(np.uint8)
    return pd.DataFrame({"image": [images.encode_jpeg(rgb, 30)]})


def onnx_artifact(ckpt: Path) -> dict[str, str]:
    """The checkpoint's ONNX graph, named as ``pipeline.engines`` caches it (beside the checkpoint,
    by its content hash), so ONNX Runtime and OpenVINO find it in the model folder and a deployment
    never exports; empty when the exporter's packages are missing (torch still serves)."""
    from pipeline.engines import export_onnx, onnx_path

    try:
        return {ONNX: str(export_onnx(load_checkpoint(ckpt)[0], onnx_path(ckpt)))}
    except ImportError:
        return {}


def save_pyfunc(checkpoint: str | Path, dest: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write the pyfunc model folder for ``checkpoint`` at ``dest`` (which must not exist or be empty)."""
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"  # whatever the file's name: artifacts/model.pt
        shutil.copyfile(checkpoint, ckpt)
        code = shutil.copytree(package, Path(tmp) / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
        mlflow.pyfunc.save_model(
            path=str(dest),
            python_model=str(package / "pyfunc_entry.py"),
            artifacts={CHECKPOINT: str(ckpt), **onnx_artifact(ckpt)},
            code_paths=[str(code)],
            signature=SIGNATURE,
            input_example=(example_input(), {"tile": DEFAULT_TILE}),
            pip_requirements=pinned_requirements(),
            metadata=metadata,
        )
    return Path(dest)


def upgrade_aliases(name: str, experiment: str) -> dict[str, str]:
    """Versions registered before they were pyfunc models (``model/model.pt`` only) cannot be served:
    each one holding an alias is registered again as a pyfunc model of the same checkpoint (same tags,
    plus ``upgraded_from``) and its aliases move to the new version. Returns {old: new} versions."""
    from pipeline import tracking  # tracking imports this module when it logs a model

    moved = {}
    for version in tracking.registered_versions(name):
        if not version["aliases"] or not version["run_id"] or tracking.run_artifact(version["run_id"], "model/MLmodel"):
            continue
        checkpoint = tracking.checkpoint_from_uri(f"models:/{name}/{version['version']}")
        evaluation = tracking.run_evaluation(version["run_id"])
        with tracking.start_run("upgrade", experiment) as run:
            tracking.log_checkpoint(checkpoint)
            if evaluation is not None:
                tracking.log_dict(json.loads(evaluation.read_text()), tracking.EVALUATION_ARTIFACT)
        tags = {**version["tags"], "upgraded_from": version["version"]}
        moved[version["version"]] = tracking.register_version(name, run.info.run_id, tags, tuple(version["aliases"]))
    return moved
