"""The Streamlit app, headless (AppTest), against a temporary MLflow registry holding a tiny model."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import MAKE, camera_jpeg, icc_profile
from PIL import Image
from streamlit.testing.v1 import AppTest

from app_pages import common
from app_pages import photos as photos_mod
from pipeline.core import images
from pipeline.evaluation import results
from pipeline.mlops import registry, tracking
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.restoration.options import RestoreOptions

APP = str(Path(__file__).resolve().parent.parent / "app.py")
MODEL_NAME = "jpeg-restoration"  # params.yaml register.model_name


@pytest.fixture(autouse=True)
def _fresh_caches():
    """The model cache is process-global: each test must see its own registry."""
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A tiny QACNet that changes the photo and depends on the QF (untrained, it would do neither)."""
    torch.manual_seed(0)
    kwargs = {"width": 8, "mid_blocks": 1}
    model = build_model("qacnet", **kwargs)
    for name, p in model.named_parameters():
        if "film" in name or "tail" in name:  # both start at zero: the identity
            torch.nn.init.normal_(p, std=0.5)
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, "qacnet", kwargs, model, {})
    return path


@pytest.fixture
def store(mlflow_uri: str, ckpt: Path) -> str:
    with tracking.start_run("train", "jpeg-restoration") as run:
        tracking.log_artifact(ckpt, "model/artifacts")  # where a pyfunc model keeps it
    tags = {"primary_value": 0.42, "psnr_gain_LIVE1_qf10": 1.5}
    return registry.register_version(MODEL_NAME, run.info.run_id, tags, aliases=("champion",))


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def captions(at: AppTest) -> list[str]:
    return [c for im in at.image for c in im.captions]


def slider(at: AppTest, label: str):
    return next(s for s in at.slider if s.label == label)


def test_restore_page_restores_a_sample_photo(store):
    at = app()
    assert not at.exception and not at.error
    assert "Restored (QF 20)" in captions(at)  # the sample is compressed at QF 20 by default
    assert at.download_button[0].label == "Download the restored PNG"
    assert at.metric[0].value == "20"  # the QF read from the file
    assert list(at.dataframe[0].value.columns) == ["input", "restored", "gain"]  # scored against the original


def test_restore_names_its_engine_and_can_be_cancelled(store):
    at = app()
    assert any(c.value.startswith("Restored by ") for c in at.caption)  # the fastest engine installed
    next(b for b in at.button if b.label == "Cancel").click().run()  # the flag the tiles check
    assert not at.exception and "Restoration cancelled." in [w.value for w in at.warning]
    assert not at.download_button
    next(b for b in at.button if b.label == "Restore again").click().run()
    assert not at.exception and "Restored (QF 20)" in captions(at)


def test_qf_override_changes_the_output(store):
    at = app()
    first = at.session_state["restored"][1][0].copy()
    slider(at, "Restore as QF").set_value(90).run()
    assert not at.exception
    assert "Restored (QF 90)" in captions(at)
    assert not np.array_equal(at.session_state["restored"][1][0], first)


def upload(at: AppTest, name: str, data: bytes, original: bytes | None = None) -> AppTest:
    at.radio[0].set_value("Upload").run()
    at.file_uploader[0].set_value((name, data, "image/jpeg"))
    if original is not None:
        at.file_uploader[1].set_value(("original.png", original, "image/png"))
    return at.run()


def test_upload_with_original_is_scored(store, image_factory):
    rgb = image_factory(48, 64, 1)
    at = upload(app(), "photo.jpg", images.encode_jpeg(rgb, 30), images.encode_png(rgb))
    assert not at.exception and not at.error
    assert "Restored (QF 30)" in captions(at) and "Input: photo.jpg (64x48)" in captions(at)
    assert at.dataframe[0].value.loc["PSNR", "input"] > 20


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header (the pixel data is not needed to refuse it)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not an image", "not a readable image"),
        (images.encode_jpeg(np.full((64, 64, 3), 128, np.uint8), 50)[:200], "not a readable image"),
        (_png_header(8000, 7000), "over the 50 MP pixel limit"),
    ],
    ids=["not-an-image", "corrupt-jpeg", "too-many-pixels"],
)
def test_bad_uploads_show_an_error(store, data, message):
    at = upload(app(), "bad.jpg", data)
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value and "bad.jpg" in at.error[0].value
    assert not at.download_button


def test_no_champion_offers_checkpoint_files(mlflow_uri, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    at = app()
    assert not at.exception and "no checkpoint file under models/" in at.error[0].value
    for path in ("models/model.pt", "models/pretrained/model.pt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(ckpt.read_bytes())
    at = app()
    assert not at.exception and not at.error
    assert "No champion model in the MLflow registry" in at.info[0].value
    choice = next(s for s in at.selectbox if s.label == "Checkpoint file")
    assert choice.options == ["models/model.pt", "models/pretrained/model.pt"]
    assert "Restored (QF 20)" in captions(at)


def test_results_page(mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    at = app().switch_page("app_pages/results.py").run()
    assert not at.exception
    assert [i.value for i in at.info][:1] == [
        "No evaluation reports yet: reports/ is empty. Run the pipeline (`dvc repro`) to evaluate a model."
    ]

    scores = {"psnr": 27.0, "ssim": 0.78, "psnrb": 26.5, "psnr_y": 28.0, "ssim_y": 0.8, "psnrb_y": 27.5}
    restored = {k: v + 1 for k, v in scores.items()}
    entry = {
        "n": 29,
        "jpeg": scores,
        "blind": {**restored, "gain": 1.0},
        "header": {**restored, "gain": 1.0},
        "qf_est_mae": 1.7,
    }
    worse = {**entry, "header": {**entry["header"], "gain": -0.01}}
    report = results.build(
        {"arch": "qacnet"}, RestoreOptions().as_dict(), {"LIVE1": {"10": entry, "20": worse}}, ["LIVE1"], [10]
    )
    (tmp_path / "reports" / "plots").mkdir(parents=True)
    (tmp_path / "reports" / "evaluation.json").write_text(json.dumps(report))
    images.write_png(tmp_path / "reports" / "plots" / "gain_vs_qf.png", np.zeros((20, 30, 3), np.uint8))
    for lr in (1e-3, 2e-3):
        with tracking.start_run("train", "jpeg-restoration"):
            tracking.log_params({"lr": lr, "batch_size": 8})
            tracking.log_metrics({"val_psnr": 30 + lr})

    at = app().switch_page("app_pages/results.py").run()
    assert not at.exception and not at.error
    assert at.metric[0].label == "Primary metric: psnr_gain" and at.metric[0].value == "1.000"
    table = at.dataframe[0].value
    assert list(table["QF"]) == [10, 20] and list(table["blind gain"]) == [1.0, 1.0]
    assert "gain_vs_qf" in captions(at) and "LIVE1 at QF 20: restoring (QF read from the JPEG" in at.warning[0].value
    runs = at.dataframe[1].value
    assert len(runs) == 2 and "param lr" in runs and "param batch_size" not in runs and "metric val_psnr" in runs


def test_models_page(store):
    at = app().switch_page("app_pages/models.py").run()
    assert not at.exception
    versions = at.dataframe[0].value
    assert list(versions["version"]) == [1] and list(versions["aliases"]) == ["champion"]
    assert versions["primary metric (dB)"][0] == 0.42 and versions["arch"][0] == "qacnet"  # arch from the checkpoint


def test_models_page_without_versions(mlflow_uri):
    at = app().switch_page("app_pages/models.py").run()
    assert not at.exception and "No registered versions" in at.info[0].value


def test_view_helpers():
    a, b = np.zeros((10, 20, 3), np.uint8), np.full((10, 20, 3), 100, np.uint8)
    wiped = common.wipe(a, b, 0.5)
    assert (wiped[:, :9] == 0).all() and (wiped[:, 11:] == 100).all() and (wiped[:, 9:11] == (255, 215, 0)).all()
    assert common.crop(a, 1.0, 1.0, 8).shape == (8, 8, 3) and common.crop(a, 0.5, 0, 64).shape == (10, 20, 3)
    assert common.zoom(a[:2, :3], 4).shape == (8, 12, 3)
    assert (common.diff_map(a, b, 4) == 255).all() and (common.diff_map(b, b, 20) == 0).all()
    assert common.preview(np.zeros((4000, 3000, 3), np.uint8)).shape == (1334, 1000, 3)


def test_clean_upload_is_left_unchanged_unless_forced(mlflow_uri, ckpt, tmp_path, image_factory):
    """A photo without JPEG traces (and an estimator reading 97) is handed back as it was; the
    checkbox forces a restoration."""
    from pipeline.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        model.estimator.head[-1].weight.zero_()
        model.estimator.head[-1].bias.fill_(float(np.log(97 / 3)))
    confident = tmp_path / "confident" / "model.pt"
    save_checkpoint(confident, "qacnet", {"width": 8, "mid_blocks": 1}, model, {})
    with tracking.start_run("train", "jpeg-restoration") as run:
        tracking.log_artifact(confident, "model/artifacts")
    registry.register_version(MODEL_NAME, run.info.run_id, {"primary_value": 0.1}, aliases=("champion",))
    rgb = image_factory(120, 136, 8)
    at = upload(app(), "camera.png", images.encode_png(rgb))
    assert not at.exception and not at.error
    assert "Left unchanged" in captions(at) and "No JPEG compression found" in at.info[0].value
    assert np.array_equal(at.session_state["restored"][1][0], rgb)
    next(c for c in at.checkbox if c.label == "Restore it anyway").check().run()
    assert not at.exception and "Restored (QF 95)" in captions(at)


def test_one_photo_keeps_its_metadata_and_says_where_it_was_taken(store, image_factory):
    rgb = image_factory(40, 56, 2)
    at = upload(app(), "phone.jpg", camera_jpeg(rgb, 30, orientation=6))
    assert not at.exception and not at.error
    assert "Input: phone.jpg (40x56)" in captions(at)  # shown upright
    assert any("EXIF orientation 6" in c.value for c in at.caption)
    assert any("carries a GPS position (52.36708° N, 4.88333° E)" in w.value for w in at.warning)
    restored, png = at.session_state["restored"][1][:2]
    assert restored.shape == (56, 40, 3)
    with Image.open(io.BytesIO(png)) as im:
        assert im.info["icc_profile"] == icc_profile() and im.getexif()[0x010F] == MAKE and im.size == (40, 56)

    next(s for s in at.slider if s.label == "Strength").set_value(0.0).run()
    np.testing.assert_array_equal(at.session_state["restored"][1][0], at.session_state["decoded"][1].upright())
    next(s for s in at.selectbox if s.label == "Save as").set_value("webp").run()
    next(c for c in at.checkbox if c.label == "Strip metadata").check().run()
    assert not at.exception and at.download_button[0].label == "Download the restored WebP"
    assert any("stripped from the download" in i.value for i in at.info)
    with Image.open(io.BytesIO(at.session_state["restored"][1][1])) as im:
        assert im.format == "WEBP" and im.info["icc_profile"] == icc_profile() and not im.getexif()


def test_several_photos_give_a_table_and_one_zip(store, image_factory):
    orientations = (1, 6, 3)
    photos = [(f"p{i}.jpg", camera_jpeg(image_factory(40, 48 + 8 * i, i), 30, o)) for i, o in enumerate(orientations)]
    at = app()
    at.radio[0].set_value("Upload").run()
    at.file_uploader[0].set_value([(n, d, "image/jpeg") for n, d in photos]).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["file"]) == ["p0.jpg", "p1.jpg", "p2.jpg"] and list(table["QF"]) == [30.0] * 3
    assert list(table["size"]) == ["48x40", "40x56", "64x40"] and list(table["GPS"]) == [True] * 3
    assert "turned upright (EXIF orientation 6)" in table["decision"][1]
    assert any("3 of these photos carry a GPS position" in w.value for w in at.warning)
    assert at.download_button[0].label == "Download 3 restored photos (zip)"
    with zipfile.ZipFile(io.BytesIO(at.session_state["batch"][1][1])) as z:
        assert z.namelist() == ["p0.png", "p1.png", "p2.png"]
        for name in z.namelist():
            with Image.open(io.BytesIO(z.read(name))) as im:
                assert im.info["icc_profile"] == icc_profile() and im.getexif()[0x010F] == MAKE
                assert im.getexif().get_ifd(0x8825)[2] == (52.0, 22.0, 1.5)
        assert Image.open(io.BytesIO(z.read("p1.png"))).size == (40, 56)  # upright

    next(s for s in at.selectbox if s.label == "Save as").set_value("jpeg").run()
    next(c for c in at.checkbox if c.label == "Strip metadata").check().run()
    assert not at.exception
    with zipfile.ZipFile(io.BytesIO(at.session_state["batch"][1][1])) as z:
        assert z.namelist() == ["p0.jpg", "p1.jpg", "p2.jpg"]
        for name in z.namelist():
            with Image.open(io.BytesIO(z.read(name))) as im:
                assert im.format == "JPEG" and im.info["icc_profile"] == icc_profile() and not im.getexif()


def test_a_zip_of_photos_is_restored_as_a_batch(store, image_factory):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("holiday/a.jpg", images.encode_jpeg(image_factory(40, 48, 1), 30))
        z.writestr("holiday/b.jpg", images.encode_jpeg(image_factory(40, 48, 2), 40))
        z.writestr("holiday/broken.jpg", b"not a photo")
        z.writestr("__MACOSX/holiday/._a.jpg", b"resource fork")
        z.writestr("holiday/notes.txt", b"not a photo either")
    at = app()
    at.radio[0].set_value("Upload").run()
    at.file_uploader[0].set_value(("photos.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == ["holiday/a.jpg", "holiday/b.jpg", "holiday/broken.jpg"]
    assert list(table["QF"][:2]) == [30.0, 40.0] and table["status"][2].startswith("failed: not a readable image")
    assert "1 of 3 photos could not be restored" in at.error[0].value
    assert at.download_button[0].label == "Download 2 restored photos (zip)"
    with zipfile.ZipFile(io.BytesIO(at.session_state["batch"][1][1])) as z:
        assert z.namelist() == ["holiday/a.png", "holiday/b.png"]


def test_upload_helpers():
    assert photos_mod.output_names(["a.jpg", "a.png", "x/a.jpg", "a.webp"], ".png") == [
        "a.png",
        "a_2.png",
        "x/a.png",
        "a_3.png",
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("../../etc/a.jpg", "/abs/b.png", ".hidden/c.jpg", "d.txt", "e/.f.jpg"):
            z.writestr(name, b"x")
    assert [n for n, _ in photos_mod.unpack([("z.zip", buf.getvalue())])] == ["etc/a.jpg", "abs/b.png"]
    with pytest.raises(photos_mod.UploadError, match="bad.zip: not a readable zip"):
        photos_mod.unpack([("bad.zip", b"PK nothing")])
    assert photos_mod.gps_text(images.decode_image(camera_jpeg(np.zeros((8, 8, 3), np.uint8))).meta) == (
        "52.36708° N, 4.88333° E"
    )
