"""The registered model as an MLflow pyfunc model: loaded in-process, served by `mlflow models serve`,
and mapped over a folder by `mlflow.pyfunc.spark_udf`, all from one real SQLite registry holding the
shipped model, which the project's own loader reads from the same registered version."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import streamlit as st
import yaml
from conftest import MAKE, camera_jpeg, icc_profile
from mlflow.exceptions import MlflowException
from PIL import Image
from streamlit.testing.v1 import AppTest

from benchmarks.bench_serve import Server
from pipeline import restore as restore_cli
from pipeline.core import images
from pipeline.evaluation import metrics
from pipeline.mlops import pyfunc, registry, tracking
from pipeline.mlops.pyfunc import pinned_requirements
from pipeline.models.checkpoint import load_checkpoint
from pipeline.restoration import engines
from pipeline.restoration.options import RestoreOptions

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "pretrained" / "model.pt"
CHAMPION = "models:/jpeg-restoration@champion"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[dict[str, str]]:
    """A real SQLite store whose champion is the shipped model, logged as the promote stage logs it."""
    store = tmp_path_factory.mktemp("registry")
    shutil.copyfile(migrated_db, store / "mlflow.db")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "DVC_ROOT": str(store),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with tracking.start_run("register_pretrained", "jpeg-restoration") as run:
            pyfunc.log_checkpoint(SHIPPED)
        registry.register_version("jpeg-restoration", run.info.run_id, {}, aliases=("champion",))
        yield env


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, bytes]:
    from tests.conftest import smooth_image

    rgb = smooth_image(64, 96, seed=0)
    return rgb, images.encode_jpeg(rgb, 20)


def test_one_artifact_two_front_doors(store, photo, one_torch_thread):
    path = registry.checkpoint_from_uri(CHAMPION)  # the project's door: the checkpoint file
    assert path.read_bytes() == SHIPPED.read_bytes()
    # The version carries the JPEG-history detector beside it: every door decides with it.
    assert path.with_name("detector.npz").read_bytes() == SHIPPED.with_name("detector.npz").read_bytes()
    assert load_checkpoint(path)[1]["arch"] == "qacnet"

    model = mlflow.pyfunc.load_model(CHAMPION)  # MLflow's door: the same registered version
    assert model.unwrap_python_model().restorer.detector is not None
    assert {p.name for p in model.metadata.get_params_schema().params} == {"qf", "tile", "tta", "base64"}
    rgb, jpeg = photo
    out = model.predict(pd.DataFrame({"image": [jpeg]}))
    assert list(out.columns) == ["image", "qf", "qf_source"] and (out.qf[0], out.qf_source[0]) == (20.0, "header")
    restored = images.decode_image(out.image[0]).rgb
    assert restored.shape == rgb.shape and gain(rgb, restored, jpeg) > 0.3

    gray = images.encode_png(images.decode_jpeg(images.encode_jpeg(rgb, 30, gray=True))[:, :, 0])
    out = model.predict(pd.DataFrame({"image": [jpeg, gray]}), params={"qf": 50, "tile": 128})
    assert list(out.qf_source) == ["user", "user"] and list(out.qf) == [50.0, 50.0]
    assert images.decode_image(out.image[1]).gray  # grayscale in, grayscale out
    small = images.encode_png(rgb[:24, :40])  # x8 TTA: a small one
    out = model.predict(pd.DataFrame({"image": [small]}), params={"base64": True, "tta": True})
    assert out.qf_source[0] in ("detector", "none") and images.decode_image(
        base64.b64decode(out.image[0])
    ).rgb.shape == (
        24,
        40,
        3,
    )
    out = model.predict(pd.DataFrame({"image": [camera_jpeg(rgb, 20, orientation=6)]}))  # a phone's photo
    with Image.open(io.BytesIO(out.image[0])) as im:  # upright, with its colour profile and EXIF
        assert im.format == "PNG" and im.size == (rgb.shape[0], rgb.shape[1])
        assert im.info["icc_profile"] == icc_profile() and im.getexif()[0x010F] == MAKE
    run_id = registry.alias_version("jpeg-restoration", "champion")["run_id"]
    assert registry.checkpoint_from_uri(f"runs:/{run_id}/model").read_bytes() == SHIPPED.read_bytes()


def test_model_folder_is_self_describing(store):
    folder = Path(mlflow.artifacts.download_artifacts(CHAMPION))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["artifacts"]["checkpoint"]["path"] == "artifacts/model.pt"
    assert (folder / "code" / "pipeline" / "mlops" / "pyfunc.py").is_file()  # runs without a checkout
    assert mlmodel["metadata"]["restore_options"] == RestoreOptions().as_dict()  # how it restores, stated
    requirements = (folder / "requirements.txt").read_text().split()
    assert set(pinned_requirements()) <= set(requirements) and any(r.startswith("torch==") for r in requirements)
    example = json.loads((folder / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image"]
    if engines.installed("onnxruntime"):  # the ONNX graph sits where the engines look for it: no export
        onnx = mlmodel["flavors"]["python_function"]["artifacts"]["onnx"]["path"]
        assert folder / onnx == engines.onnx_path(folder / "artifacts" / "model.pt")
        assert (folder / onnx).is_file()


@pytest.mark.parametrize(
    ("frame", "params", "message"),
    [
        (pd.DataFrame({"image": [b"not an image"]}), None, "row 0: not a readable image"),
        (pd.DataFrame({"image": [b""]}), None, "row 0: file is empty"),
        (None, {"qf": 0}, "param qf must be in 1..100"),
        (None, {"tile": 12}, "param tile must be 0 or a multiple of 8 and overlap in 0..tile-1, got tile 12"),
        (
            None,
            {"tile": 64},
            "param tile must be 0 or a multiple of 8 and overlap in 0..tile-1, got tile 64, overlap 64",
        ),
    ],
    ids=["not-an-image", "empty", "qf", "tile-not-a-multiple-of-8", "tile-too-small"],
)
def test_bad_input_is_named(store, photo, frame, params, message):
    model = mlflow.pyfunc.load_model(CHAMPION)
    with pytest.raises(MlflowException, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.predict(pd.DataFrame({"image": [photo[1]]}) if frame is None else frame, params=params)


def gain(rgb: np.ndarray, restored: np.ndarray, jpeg: bytes) -> float:
    """dB closer to the original than the JPEG input."""
    return metrics.psnr(rgb, restored) - metrics.psnr(rgb, images.decode_jpeg(jpeg))


def post(url: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def frame(*blobs: bytes) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b).decode()] for b in blobs]}}


@pytest.fixture(scope="module")
def server(store: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server on 127.0.0.1, started as the README says: ``mlflow models serve`` of the champion."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with Server(CHAMPION, log) as running:
        running.wait(seconds=180)
        yield running.url


@pytest.mark.slow
def test_mlflow_models_serve(server, photo):
    """Good and bad requests; after each bad one the server answers the next."""
    rgb, jpeg = photo
    status, answer = post(f"{server}/invocations", frame(jpeg))
    assert status == 200, answer
    (row,) = answer["predictions"]
    restored = images.decode_image(base64.b64decode(row["image"])).rgb
    assert restored.shape == rgb.shape and (row["qf"], row["qf_source"]) == (20.0, "header")
    assert gain(rgb, restored, jpeg) > 0.3

    too_big = images.encode_jpeg(np.full((7200, 7200, 3), 128, np.uint8), 50)  # 51.8 MP
    bad = [(frame(b"GIF89a not really"), "row 0: not a readable image"),
           (frame(too_big), "over the 50 MP pixel limit"),
           ({**frame(jpeg), "params": {"qf": 101}}, "param qf must be in 1..100"),
           ({**frame(jpeg), "params": {"tile": 12}}, "param tile must be 0 or a multiple of 8"),
           ({"inputs": {"photo": "x"}}, "image"), (b"{not json", "")]  # fmt: skip
    for body, message in bad:
        status, answer = post(f"{server}/invocations", body)
        assert 400 <= status < 500 and message in answer["message"], (status, answer)
        status, answer = post(f"{server}/invocations", {**frame(jpeg, jpeg), "params": {"qf": 40}})
        assert status == 200 and [r["qf_source"] for r in answer["predictions"]] == ["user", "user"]


@pytest.mark.slow
def test_every_door_gives_the_same_pixels(store, server, photo, tmp_path):
    """With the default options, the command line, the app, ``mlflow.pyfunc.load_model`` and the
    served model restore a photo to the same pixels: they all build one ``Restorer``."""
    _, jpeg = photo
    src = tmp_path / "photo.jpg"
    src.write_bytes(jpeg)
    assert restore_cli.main([str(src), "-o", str(tmp_path / "cli")]) == 0
    doors = {"restore": images.read_image(tmp_path / "cli" / "photo.png")}

    out = mlflow.pyfunc.load_model(CHAMPION).predict(pd.DataFrame({"image": [jpeg]}))
    doors["pyfunc.load_model"] = images.decode_image(out.image[0]).rgb

    status, answer = post(f"{server}/invocations", frame(jpeg))
    assert status == 200, answer
    doors["mlflow models serve"] = images.decode_image(base64.b64decode(answer["predictions"][0]["image"])).rgb

    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.radio[0].set_value("Upload").run()
    at.file_uploader[0].set_value(("photo.jpg", jpeg, "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    png = at.session_state["restored"][1][1]  # what the download button hands out
    doors["app"] = images.decode_image(png).rgb

    reference = doors.pop("restore")
    assert not np.array_equal(reference, images.decode_jpeg(jpeg))  # it restored
    for door, pixels in doors.items():
        np.testing.assert_array_equal(pixels, reference, err_msg=f"{door} differs from restore")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed")
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (java not on PATH)")
def test_spark_udf_over_a_folder(store, tmp_path, monkeypatch):
    """The README's batch recipe on local[2]: a folder of JPEGs in, restored PNGs out."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, unbase64

    from tests.conftest import smooth_image

    originals = {f"p{i}.jpg": smooth_image(48, 64 + 8 * i, seed=i) for i in range(3)}
    for name, rgb in originals.items():  # as a camera writes them: colour profile, EXIF, XMP
        images.write_bytes(tmp_path / "photos" / name, camera_jpeg(rgb, 20))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        restore = mlflow.pyfunc.spark_udf(
            spark,
            CHAMPION,
            result_type="image string, qf double, qf_source string",
            env_manager="local",
            params={"base64": True},
        )
        photos = spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg").load(str(tmp_path / "photos"))
        out = photos.select("path", restore(col("content").alias("image")).alias("r"))
        rows = out.select("path", unbase64("r.image").alias("png"), "r.qf", "r.qf_source").collect()
    finally:
        spark.stop()
    assert sorted(Path(r.path).name for r in rows) == sorted(originals)
    for r in rows:
        assert (r.qf, r.qf_source) == (20.0, "header")
        restored = images.decode_image(bytes(r.png))
        assert restored.rgb.shape == originals[Path(r.path).name].shape
        assert restored.meta.icc == icc_profile() and restored.meta.gps is not None  # the photo's metadata kept
