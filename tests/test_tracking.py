"""pipeline.mlops.tracking: where the store lives, run tags, the registry helpers, concurrent writers, a server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.mlops import pyfunc, registry, tracking

ROOT = Path(__file__).resolve().parent.parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_store_location(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.project_root() == ROOT  # the checkout holding the package, whatever the cwd
    assert tracking.tracking_uri() == f"sqlite:///{ROOT}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVC runs us (also inside dvc exp run --temp)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-host:5000")  # a team's server wins
    assert tracking.tracking_uri() == "http://mlflow-host:5000"


def test_artifacts_under_root_not_cwd(mlflow_store, tmp_path, monkeypatch):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "note.txt").write_text("hello")
    with tracking.start_run("stage", "exp") as run:
        tracking.log_artifact(cwd / "note.txt", "notes")
    client = tracking.init_store()
    exp = client.get_experiment_by_name("exp")
    assert exp.artifact_location == (tmp_path / "mlartifacts" / "exp").as_uri()
    logged = tmp_path / "mlartifacts" / "exp" / run.info.run_id / "artifacts" / "notes" / "note.txt"
    assert logged.read_text() == "hello"
    assert sorted(p.name for p in cwd.iterdir()) == ["note.txt"]  # no mlruns/ or mlartifacts/ in the cwd
    assert tracking.get_experiment_id("exp") == exp.experiment_id  # found, not created again


def test_run_tags(mlflow_store, tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    head = git(tmp_path, "rev-parse", "HEAD")
    env = {"DVC_STAGE": "train", "DVC_EXP_NAME": "exp-1a2b3", "DVC_EXP_BASELINE_REV": "f" * 40}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with tracking.start_run("train", "exp") as run:
        tracking.log_params({"long": "x" * 600})
    data = tracking.init_store().get_run(run.info.run_id)
    assert data.info.run_name == "train"
    assert data.data.tags["stage"] == "train" and data.data.tags["git_commit"] == head
    assert {k: data.data.tags[k.lower()] for k in env} == env
    assert data.data.params["long"] == "x" * 500  # MLflow's limit on a parameter value

    for k in env:
        monkeypatch.delenv(k)
    with tracking.start_run("evaluate", "exp", run_id=run.info.run_id):  # into the same run
        tracking.log_metrics({"psnr": 30.5})
    with tracking.start_run("report", "exp") as other:
        pass
    tags = tracking.init_store().get_run(run.info.run_id).data.tags
    assert tags["stage"] == "train" and tags["evaluate.git_commit"] == head
    other_tags = tracking.init_store().get_run(other.info.run_id).data.tags
    assert other_tags["stage"] == "report" and not any(k.startswith("dvc_") for k in other_tags)
    assert tracking.metric_history(run.info.run_id, "psnr") == [(0, 30.5)]
    assert tracking.run_exists(run.info.run_id) and not tracking.run_exists("0" * 32)
    assert [r["run_id"] for r in tracking.search_runs("exp")] == [other.info.run_id, run.info.run_id]


def test_git_commit(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert tracking.git_commit() == (head.stdout.strip() if head.returncode == 0 else "unknown")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # not a git checkout
    assert tracking.git_commit() == "unknown"


def test_registry_helpers(mlflow_store, tmp_path):
    runs = []
    for i in range(2):
        ckpt = tmp_path / f"v{i}" / "model.pt"
        ckpt.parent.mkdir()
        ckpt.write_bytes(f"weights {i}".encode())
        with tracking.start_run("register", "exp") as run:
            tracking.log_artifact(ckpt, f"{tracking.MODEL_ARTIFACT}/artifacts")
        runs.append(run.info.run_id)
    assert registry.registered_versions("m") == [] and registry.alias_version("m", "champion") is None
    assert registry.register_version("m", runs[0], {"score": 1.5}, aliases=("champion",)) == "1"
    assert registry.register_version("m", runs[1], {"score": 2}, aliases=("candidate",)) == "2"
    registry.set_alias("m", "previous", "1")
    registry.set_version_tags("m", "2", {"note": "ok"})

    versions = registry.registered_versions("m")
    assert [(v["version"], v["aliases"], v["run_id"]) for v in versions] == [
        ("2", ["candidate"], runs[1]),
        ("1", ["champion", "previous"], runs[0]),
    ]
    assert versions[0]["tags"] == {"score": "2", "note": "ok"}
    assert versions[1]["source"] == f"runs:/{runs[0]}/model"
    assert registry.alias_version("m", "champion")["version"] == "1"
    assert registry.alias_version("m", "nobody") is None

    for uri, i in (("models:/m@champion", 0), ("models:/m/2", 1), (f"runs:/{runs[1]}/model", 1)):
        assert registry.checkpoint_from_uri(uri).read_bytes() == f"weights {i}".encode()
    for uri in ("models:/m@nobody", "models:/m/7", "models:/other@champion", "/some/file.pt"):
        with pytest.raises(LookupError, match="models:/|expected"):
            registry.checkpoint_from_uri(uri)


def _create_run(i: int, env: dict[str, str], barrier) -> None:
    """In a process of its own: create the store if needed and log one run."""
    os.environ.update(env)
    barrier.wait(timeout=120)
    tracking.init_store()
    with tracking.start_run(f"worker{i}", "concurrent"):
        tracking.log_metrics({"worker": i})


def test_concurrent_processes_on_a_fresh_store(mlflow_uri, tmp_path, forkserver):
    assert not (tmp_path / "mlflow.db").exists()
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}  # the server's may be older
    barrier = forkserver.Barrier(4)
    procs = [forkserver.Process(target=_create_run, args=(i, env, barrier)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    runs = tracking.search_runs("concurrent")
    assert sorted(r["metrics"]["worker"] for r in runs) == [0, 1, 2, 3]
    assert all(r["status"] == "FINISHED" for r in runs)
    assert [e.name for e in tracking.init_store().search_experiments()].count("concurrent") == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path, migrated_db: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with its own SQLite store and artifact root."""
    shutil.copyfile(migrated_db, tmp_path / "srv.db")  # the schema in place: a faster start
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    cmd = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/srv.db",
        "--default-artifact-root",
        str(tmp_path / "art"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_download_stage_logs_to_a_server(mlflow_server, tmp_path, monkeypatch):
    from stages import download  # imports OpenCV and scikit-image: only this test needs them

    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("DVC_ROOT", str(work))
    assert download.main(["sample_test", "--out", "data/raw/test/sample_test", "--downloads", "data/downloads"]) == 0

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("jpeg-restoration-data")  # data stages: their own experiment
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["stage"] == "download"
    assert run.data.params["set"] == "sample_test" and run.data.params["source"] == "sample"
    assert run.data.metrics["images"] == 2
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["download_sample_test.json"]
    assert list((tmp_path / "art").rglob("download_sample_test.json"))  # in the server's artifact root
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()


def test_a_loaded_version_brings_its_onnx_graph(mlflow_uri: str, tmp_path: Path) -> None:
    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint
    from pipeline.restoration import engines

    if not engines.installed("onnxruntime"):
        pytest.skip("onnxruntime not installed")
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, "qacnet", {"width": 8, "mid_blocks": 1}, build_model("qacnet", width=8, mid_blocks=1), {})
    with tracking.start_run("train", "jpeg-restoration") as run:
        pyfunc.log_checkpoint(ckpt)
    local = registry.checkpoint_from_uri(f"runs:/{run.info.run_id}/model")
    assert engines.onnx_path(local).is_file()  # downloaded with it: the engines need not export
