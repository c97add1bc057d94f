"""stages.download end to end: sample set, a user's folder, a mirror served on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from pipeline import params
from pipeline.core.images import ImageError, encode_png
from pipeline.data import datasets
from pipeline.data.datasets import DatasetSpec
from pipeline.data.fetch import DownloadError, sha256_file
from pipeline.mlops import tracking
from stages import download as stage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With $MLFLOW_TRACKING_URI set (the mlflow_uri fixture), MLflow puts artifacts in ./mlruns.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def base_params() -> params.Params:
    return params.load(ROOT / "params.yaml")


def with_data(p: params.Params, **data) -> params.Params:
    return dataclasses.replace(p, data=dataclasses.replace(p.data, **data))


def run_in(p: params.Params, name: str, root: Path) -> dict:
    """The stage as dvc.yaml runs it, with the project layout under ``root``."""
    out = root / "data" / "raw" / datasets.spec(name).role / name
    return stage.run(p, name, out, root / "data" / "downloads", progress=False)


def cli(name: str, *args: str) -> list[str]:
    return [name, "--out", f"data/raw/test/{name}", "--downloads", "data/downloads", *args]


def raw_dirs(root: Path) -> list[str]:
    """Everything under data/raw/<role>/, hidden temporary folders included."""
    return sorted(str(p.relative_to(root)) for p in (root / "data" / "raw").glob("*/*"))


def logged_run(experiment: str) -> dict:
    client = tracking.init_store()
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return {"params": run.data.params, "metrics": run.data.metrics, "run_id": run.info.run_id}


def test_sample_set(base_params, tmp_path, mlflow_uri):
    s = run_in(base_params, "sample_test", tmp_path)
    out = tmp_path / "data" / "raw" / "test" / "sample_test"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}.png" for n in datasets.SAMPLE_PHOTOS["sample_test"])
    assert s["images"] == len(names) and s["source"] == "sample"
    assert raw_dirs(tmp_path) == ["data/raw/test/sample_test"]
    logged = logged_run(base_params.tracking.data_experiment)
    assert logged["params"]["set"] == "sample_test" and logged["params"]["source"] == "sample"
    assert logged["metrics"]["images"] == len(names)
    assert logged["metrics"]["bytes"] == sum(p.stat().st_size for p in out.iterdir())
    client = tracking.init_store()
    manifest = json.loads(
        Path(client.download_artifacts(logged["run_id"], "download_sample_test.json", str(tmp_path))).read_text()
    )
    files = {f["name"]: f for f in manifest["files"]}
    assert files[names[0]]["sha256"] == sha256_file(out / names[0])
    assert files[names[0]]["size"] == (out / names[0]).stat().st_size


@pytest.fixture
def user_folder(tmp_path, image_factory) -> Path:
    """A LIVE1-like folder as a user has it: images in refimgs/, other files beside."""
    folder = tmp_path / "user" / "LIVE1"
    (folder / "refimgs").mkdir(parents=True)
    for i in range(3):
        (folder / "refimgs" / f"img{i}.png").write_bytes(encode_png(image_factory(16, 24, seed=i)))
    (folder / "refimgs" / ".DS_Store").write_bytes(b"\0junk")  # not images: skipped with a warning
    (folder / "refimgs" / "README.md").write_text("# LIVE1 as downloaded")
    (folder / "refimgs" / "Thumbs.db").write_bytes(b"\0junk")
    (folder / "readme.txt").write_text("not in refimgs/: never looked at")
    return folder


def test_local_folder(base_params, tmp_path, mlflow_uri, user_folder, capsys):
    p = with_data(base_params, local={"LIVE1": str(user_folder)})
    root = tmp_path / "repo"
    s = run_in(p, "LIVE1", root)
    out = root / "data" / "raw" / "test" / "LIVE1"
    assert sorted(q.name for q in out.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert (out / "img0.png").stat().st_ino == (user_folder / "refimgs" / "img0.png").stat().st_ino  # hard link
    assert s["source"] == "local" and s["images"] == 3
    warning = capsys.readouterr().err
    assert "skipping 3 file(s) that are not images" in warning and "README.md" in warning
    assert logged_run(p.tracking.data_experiment)["params"]["url"] == str(user_folder)


@pytest.mark.parametrize(
    "bad, expected",
    [("broken.png", ImageError), ("notes.jpg", ImageError), (None, ImageError), ("missing", DownloadError)],
)
def test_local_folder_errors_leave_no_output(base_params, tmp_path, user_folder, image_factory, bad, expected):
    refimgs = user_folder / "refimgs"
    if bad == "broken.png":
        (refimgs / bad).write_bytes(encode_png(image_factory(16, 16))[:60])  # a truncated PNG
    elif bad == "notes.jpg":  # text named like an image: an error, not a skip
        (refimgs / bad).write_text("hello")
    elif bad is None:  # an empty folder: no image anywhere
        user_folder = tmp_path / "empty"
        user_folder.mkdir()
    else:
        user_folder = tmp_path / bad
    p = with_data(base_params, local={"LIVE1": str(user_folder)})
    with pytest.raises(expected) as e:
        run_in(p, "LIVE1", tmp_path)
    named = refimgs / bad if bad in ("broken.png", "notes.jpg") else user_folder
    assert str(named) in str(e.value)
    assert raw_dirs(tmp_path) == []


def test_main_exit_code_and_message(tmp_path, mlflow_uri, capsys, user_folder):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (user_folder / "refimgs" / "notes.jpg").write_text("hello")
    raw["data"]["local"] = {"LIVE1": str(user_folder)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert stage.main(cli("LIVE1", "--params", "params.yaml")) == 1
    err = capsys.readouterr().err
    assert "notes.jpg" in err and "Traceback" not in err
    (user_folder / "refimgs" / "notes.jpg").unlink()
    assert stage.main(cli("LIVE1")) == 0
    assert "download LIVE1: 3 images" in capsys.readouterr().out


@pytest.fixture
def mirror(tmp_path, monkeypatch, image_factory) -> Iterator[tuple[str, ThreadingHTTPServer, str]]:
    """A mirror folder served on 127.0.0.1 holding mini.zip; a catalog entry ``mini`` for it."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(2):
            zf.writestr(f"mini/HR/m{i}.png", encode_png(image_factory(16, 16, seed=i)))
        zf.writestr("mini/LR/m0.png", b"not matched by the glob")
    (served / "mini.zip").write_bytes(buf.getvalue())
    digest = sha256_file(served / "mini.zip")
    spec = DatasetSpec("mini", "test", "http://official.invalid/files/mini.zip", "mini/HR/*.png", sha256=digest)
    monkeypatch.setitem(datasets.CATALOG, "mini", spec)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", srv, digest
    srv.shutdown()
    srv.server_close()


def test_mirror(base_params, tmp_path, mlflow_uri, mirror):
    url, srv, digest = mirror
    p = with_data(base_params, mirror=url)
    root = tmp_path / "repo"
    s = run_in(p, "mini", root)
    out = root / "data" / "raw" / "test" / "mini"
    assert sorted(q.name for q in out.iterdir()) == ["m0.png", "m1.png"]
    assert s["source"] == "mirror" and s["url"] == url + "mini.zip" and s["archive_sha256"] == digest
    assert (root / "data" / "downloads" / "mini.zip").is_file()
    # The archive is cached outside the output: a rerun needs no network.
    srv.shutdown()
    srv.server_close()
    assert run_in(p, "mini", root)["images"] == 2
    assert raw_dirs(root) == ["data/raw/test/mini"]
