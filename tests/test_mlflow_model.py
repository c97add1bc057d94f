"""The registered model as an MLflow pyfunc model: loaded in-process, served by `mlflow models serve`,
and mapped over a folder by `mlflow.pyfunc.spark_udf`, all from one real SQLite registry holding the
shipped model, which the project's own loader reads from the same registered version."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException

from pipeline import engines, images, metrics, tracking
from pipeline.checkpoint import load_checkpoint
from pipeline.mlflow_model import pinned_requirements

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "pretrained" / "model.pt"
CHAMPION = "models:/jpeg-restoration@champion"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[dict[str, str]]:
    """A real SQLite store whose champion is the shipped model, logged as the promote stage logs it."""
    store = tmp_path_factory.mktemp("registry")
    shutil.copyfile(migrated_db, store / "mlflow.db")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "DVC_ROOT": str(store),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with tracking.start_run("register_pretrained", "jpeg-restoration") as run:
            tracking.log_checkpoint(SHIPPED)
        tracking.register_version("jpeg-restoration", run.info.run_id, {}, aliases=("champion",))
        yield env


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, bytes]:
    from tests.conftest import smooth_image

    rgb = smooth_image(64, 96, seed=0)
    return rgb, images.encode_jpeg(rgb, 20)


def test_one_artifact_two_front_doors(registry, photo, one_torch_thread):
    path = tracking.checkpoint_from_uri(CHAMPION)  # the project's door: the checkpoint file
    assert path.read_bytes() == SHIPPED.read_bytes()
    assert load_checkpoint(path)[1]["arch"] == "qacnet"

    model = mlflow.pyfunc.load_model(CHAMPION)  # MLflow's door: the same registered version
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
    assert out.qf_source[0] in ("estimated", "none") and images.decode_image(
        base64.b64decode(out.image[0])
    ).rgb.shape == (
        24,
        40,
        3,
    )
    run_id = tracking.alias_version("jpeg-restoration", "champion")["run_id"]
    assert tracking.checkpoint_from_uri(f"runs:/{run_id}/model").read_bytes() == SHIPPED.read_bytes()


def test_model_folder_is_self_describing(registry):
    folder = Path(mlflow.artifacts.download_artifacts(CHAMPION))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["artifacts"]["checkpoint"]["path"] == "artifacts/model.pt"
    assert (folder / "code" / "pipeline" / "mlflow_model.py").is_file()  # runs without a checkout
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
    [(pd.DataFrame({"image": [b"not an image"]}), None, "row 0: not a readable image"),
     (pd.DataFrame({"image": [b""]}), None, "row 0: file is empty"),
     (None, {"qf": 0}, "param qf must be in 1..100"),
     (None, {"tile": 12}, "param tile must be 0 (whole image) or a multiple of 8 of at least 128"),
     (None, {"tile": 64}, "param tile must be 0 (whole image) or a multiple of 8 of at least 128")],
    ids=["not-an-image", "empty", "qf", "tile-not-a-multiple-of-8", "tile-too-small"],
)  # fmt: skip
def test_bad_input_is_named(registry, photo, frame, params, message):
    model = mlflow.pyfunc.load_model(CHAMPION)
    with pytest.raises(MlflowException, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.predict(pd.DataFrame({"image": [photo[1]]}) if frame is None else frame, params=params)


def gain(rgb: np.ndarray, restored: np.ndarray, jpeg: bytes) -> float:
    """dB closer to the original than the JPEG input."""
    return metrics.psnr(rgb, restored) - metrics.psnr(rgb, images.decode_jpeg(jpeg))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.mark.slow
def test_mlflow_models_serve(registry, photo, tmp_path):
    """One real server on 127.0.0.1: the README's command, good and bad requests."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", CHAMPION, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, **registry}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow models serve did not start:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.5)
        rgb, jpeg = photo
        status, answer = post(f"{url}/invocations", frame(jpeg))
        assert status == 200, answer
        (row,) = answer["predictions"]
        restored = images.decode_image(base64.b64decode(row["image"])).rgb
        assert restored.shape == rgb.shape and (row["qf"], row["qf_source"]) == (20.0, "header")
        assert gain(rgb, restored, jpeg) > 0.3

        bad = [(frame(b"GIF89a not really"), "row 0: not a readable image"),
               ({**frame(jpeg), "params": {"qf": 101}}, "param qf must be in 1..100"),
               ({"inputs": {"photo": "x"}}, "image"), (b"{not json", "")]  # fmt: skip
        for body, message in bad:
            status, answer = post(f"{url}/invocations", body)
            assert 400 <= status < 500 and message in answer["message"], (status, answer)
        status, answer = post(f"{url}/invocations", {**frame(jpeg, jpeg), "params": {"qf": 40}})
        assert status == 200 and [r["qf_source"] for r in answer["predictions"]] == ["user", "user"]  # still serving
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and its uvicorn worker
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed")
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (java not on PATH)")
def test_spark_udf_over_a_folder(registry, tmp_path, monkeypatch):
    """The README's batch recipe on local[2]: a folder of JPEGs in, restored PNGs out."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, unbase64

    from tests.conftest import smooth_image

    originals = {f"p{i}.jpg": smooth_image(48, 64 + 8 * i, seed=i) for i in range(3)}
    for name, rgb in originals.items():
        images.write_bytes(tmp_path / "photos" / name, images.encode_jpeg(rgb, 20))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        restore = mlflow.pyfunc.spark_udf(spark, CHAMPION, result_type="image string, qf double, qf_source string",
                                          env_manager="local", params={"base64": True})  # fmt: skip
        photos = spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg").load(str(tmp_path / "photos"))
        out = photos.select("path", restore(col("content").alias("image")).alias("r"))
        rows = out.select("path", unbase64("r.image").alias("png"), "r.qf", "r.qf_source").collect()
    finally:
        spark.stop()
    assert sorted(Path(r.path).name for r in rows) == sorted(originals)
    for r in rows:
        assert (r.qf, r.qf_source) == (20.0, "header")
        assert images.decode_image(bytes(r.png)).rgb.shape == originals[Path(r.path).name].shape
