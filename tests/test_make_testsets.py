"""stages.make_testsets: lossless references and OpenCV 4:2:0 JPEGs, deterministic and atomic."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from pipeline import params
from pipeline.core import images, jpeg
from pipeline.data import datasets, realworld
from pipeline.mlops import tracking
from stages import make_testsets as stage

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "params.yaml"
SET = "sample_test"  # a catalog name with role "test": its raw folder is data/raw/test/sample_test


@pytest.fixture(scope="module")
def preset() -> params.Params:
    return params.load(PRESET)


def raw_dir(root: Path) -> Path:
    return root / "data" / "raw" / "test" / SET


def refs_dir(root: Path) -> Path:
    return datasets.refs_dir(root / "data" / "testsets", SET)


def jpeg_dir(root: Path, qf: int) -> Path:
    return datasets.jpeg_dir(root / "data" / "testsets", SET, qf)


def make_refs(root: Path) -> dict:
    return stage.make_refs(raw_dir(root), refs_dir(root))


def make_jpeg(root: Path, qf: int) -> dict:
    return stage.make_jpeg(refs_dir(root), jpeg_dir(root, qf), qf)


def make_realworld(preset: params.Params, root: Path) -> dict:
    return stage.make_realworld(list(preset.evaluate.real_world_qfs), refs_dir(root), realworld_dir(root))


def realworld_dir(root: Path) -> Path:
    return datasets.realworld_dir(root / "data" / "testsets", SET)


@pytest.fixture
def sources(tmp_path: Path, image_factory) -> dict[str, np.ndarray]:
    """The raw set as the download stage leaves it: two colour PNGs, a BMP, a grayscale PNG."""
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    out = {"a": image_factory(64, 96, seed=1), "b": image_factory(48, 72, seed=2), "c": image_factory(40, 56, seed=3)}
    images.write_png(raw / "a.png", out["a"])
    images.write_png(raw / "b.png", out["b"])
    Image.fromarray(out["c"]).save(raw / "c.bmp")
    gray = image_factory(64, 80, seed=4)[:, :, 1]
    Image.fromarray(gray, mode="L").save(raw / "gray.png")
    out["gray"] = np.repeat(gray[:, :, None], 3, axis=2)
    (raw / "README.txt").write_text("not an image: ignored")
    return out


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_refs_and_jpegs(preset, tmp_path, sources):
    info = make_refs(tmp_path)
    refs = tmp_path / "data" / "testsets" / SET / "refimgs"
    assert refs == refs_dir(tmp_path)
    assert sorted(p.name for p in refs.iterdir()) == ["a.png", "b.png", "c.png", "gray.png"]
    assert info == {"images": 4, "bytes": sum(p.stat().st_size for p in refs.iterdir())}
    for name, rgb in sources.items():
        with Image.open(refs / f"{name}.png") as im:
            assert im.format == "PNG" and im.mode == "RGB"  # grayscale became 3 channels
        np.testing.assert_array_equal(images.read_image(refs / f"{name}.png"), rgb)  # lossless

    for qf in (10, 50):
        info = make_jpeg(tmp_path, qf)
        folder = tmp_path / "data" / "testsets" / SET / "color" / f"qf_{qf}"
        assert folder == jpeg_dir(tmp_path, qf)
        assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "b.jpg", "c.jpg", "gray.jpg"]
        assert info == {"qf": qf, "images": 4, "bytes": sum(p.stat().st_size for p in folder.iterdir())}
        for name, rgb in sources.items():
            data = (folder / f"{name}.jpg").read_bytes()
            assert jpeg.jpeg_quality(data) == (qf, True)  # IJG tables of exactly this quality
            with Image.open(io.BytesIO(data)) as im:
                assert im.mode == "RGB" and im.size == (rgb.shape[1], rgb.shape[0])
                assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0, the published protocol
            np.testing.assert_array_equal(images.decode_jpeg(data), images.jpeg_roundtrip(rgb, qf))
    assert not list((tmp_path / "data" / "testsets" / SET).rglob(".*"))  # no temporary folder left


def _size(h: int, w: int, scale: float) -> tuple[int, int]:
    return round(h * scale), round(w * scale)


def test_realworld_cases(preset, tmp_path, sources):
    """Every case and QF as the file a user would bring, beside a reference of the same size; a
    reference with JPEG history (here the grayscale one, replaced by a decoded JPEG) is left out
    of the never-compressed and high-quality cases."""
    raw = raw_dir(tmp_path)
    (raw / "gray.png").unlink()
    images.write_png(raw / "old.png", images.jpeg_roundtrip(sources["a"], 80))
    make_refs(tmp_path)
    info = make_realworld(preset, tmp_path)
    root = realworld_dir(tmp_path)
    qfs = preset.evaluate.real_world_qfs
    names = ["a", "b", "c", "old"]
    clean = ["never_compressed", "never_compressed_down", "never_compressed_up"]
    high = {"q95_420": (95, "4:2:0"), "q95_444": (95, "4:4:4"), "q98_420": (98, "4:2:0"), "q98_444": (98, "4:4:4")}
    per_qf = [c for c in realworld.CASES if realworld.CASES[c].per_qf]
    assert len(per_qf) == 16 and [c for c in realworld.CASES if realworld.CASES[c].never_compressed] == clean
    assert [c for c, case in realworld.CASES.items() if case.clean_truth] == clean + list(high)
    # per-QF cases, 4:4:4 at 90, then the clean-truth ones without the reference with a JPEG history
    assert info["images"] == 4 * (len(per_qf) * len(qfs) + 1) + 3 * (len(clean) + len(high))
    searched = {c for c, case in realworld.CASES.items() if case.search}
    tables = {c for c in realworld.CASES if c.startswith("tables_")}
    assert len(tables) == 4
    assert searched == {"double_shifted", "double_shifted_90"} | {c for c in realworld.CASES if "resized" in c} | tables
    resized = {"resized": 0.75, "resized_050": 0.5, "resized_090": 0.9}
    resized_jpeg = {"resized_050_jpeg95": 0.5, "resized_075_jpeg95": 0.75, "resized_090_jpeg95": 0.9}
    h, w = sources["a"].shape[:2]
    for case, qf, folder in realworld.case_folders(root, qfs):
        ext = realworld.CASES[case].ext
        expected = [n for n in names if not (realworld.CASES[case].clean_truth and n == "old")]
        assert sorted(p.stem for p in folder.iterdir() if p.suffix == ext) == expected, (case, qf)
        data = (folder / f"a{ext}").read_bytes()
        decoded = images.decode_image(data).rgb
        assert realworld.CASES[case].reference(sources["a"]).shape == decoded.shape, case  # scored size for size
        if case == "cropped_resaved":
            assert jpeg.jpeg_quality(data) == (95, True)
            assert decoded.shape == (h - 3, w - 5, 3)
        elif case in ("double_shifted", "double_shifted_90"):
            second = min(95, qf + 20) if case == "double_shifted" else 90
            assert jpeg.jpeg_quality(data) == (second, True)
            assert decoded.shape == (h - 4, w - 4, 3)
        elif case in resized:
            assert data.startswith(b"\x89PNG") and decoded.shape == (*_size(h, w, resized[case]), 3)
        elif case in resized_jpeg:
            assert jpeg.jpeg_quality(data) == (95, True) and jpeg.read_header(data).subsampling == "4:2:0"
            assert decoded.shape == (*_size(h, w, resized_jpeg[case]), 3)
        elif case == "q90_444":
            assert jpeg.read_header(data).subsampling == "4:4:4" and jpeg.jpeg_quality(data) == (90, True)
        elif case in high:
            assert (jpeg.jpeg_quality(data)[0], jpeg.read_header(data).subsampling) == high[case]
            assert "quantization lattice" in (folder / "excluded.json").read_text()
        elif case in tables:
            header = jpeg.read_header(data)
            luma, chroma = realworld.TABLES[case][1](qf)
            assert np.array_equal(header.luma.ravel(), np.ravel(luma)) and not header.exact, case
            assert np.array_equal(header.chroma.ravel(), np.ravel(chroma)), case
        elif case in clean:
            scale = {"never_compressed": 1.0, "never_compressed_down": 0.5, "never_compressed_up": 1.5}[case]
            assert data.startswith(b"\x89PNG") and decoded.shape == (*_size(h, w, scale), 3)
            np.testing.assert_array_equal(decoded, realworld.CASES[case].reference(sources["a"]))  # never compressed
            note = (folder / "excluded.json").read_text()
            assert '"old.png"' in note and "quantization lattice" in note
        elif case == "cropped_png":
            np.testing.assert_array_equal(decoded, images.jpeg_roundtrip(sources["a"], qf)[3:, 5:])
    before = tree(root)
    make_realworld(preset, tmp_path)
    assert tree(root) == before  # deterministic


def test_rerun_is_byte_identical(preset, tmp_path, sources):
    out = tmp_path / "data" / "testsets" / SET
    make_refs(tmp_path)
    make_jpeg(tmp_path, 30)
    first = tree(out)
    make_refs(tmp_path)
    make_jpeg(tmp_path, 30)
    assert tree(out) == first
    assert len(first) == 8


def test_corrupt_image_fails_and_leaves_nothing(preset, tmp_path, sources):
    (raw_dir(tmp_path) / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(images.ImageError, match=r"broken\.png"):
        make_refs(tmp_path)
    out = tmp_path / "data" / "testsets" / SET
    assert not refs_dir(tmp_path).exists()
    assert not out.exists() or not list(out.iterdir())  # nor data/testsets/SET/.refimgs.tmp


def test_missing_raw_set(preset, tmp_path, capsys):
    with pytest.raises(images.ImageError, match=r"data set is missing"):
        make_refs(tmp_path)
    raw_dir(tmp_path).mkdir(parents=True)
    with pytest.raises(images.ImageError, match="no image files"):
        make_refs(tmp_path)


def test_jpeg_without_refs_says_what_to_run(preset, tmp_path):
    with pytest.raises(images.ImageError, match=r"no reference images \(run `dvc repro`"):
        make_jpeg(tmp_path, 10)


def test_main_logs_runs(tmp_path, sources, mlflow_store, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    refs, qf10 = f"data/testsets/{SET}/refimgs", f"data/testsets/{SET}/color/qf_10"
    assert stage.main(["refs", f"data/raw/test/{SET}", refs, "--params", str(PRESET)]) == 0
    assert stage.main(["jpeg", refs, qf10, "--qf", "10", "--params", str(PRESET)]) == 0
    printed = capsys.readouterr().out
    assert f"refs {refs}: 4 images" in printed and f"jpeg {qf10}: 4 images" in printed
    assert len(list((tmp_path / "data" / "testsets" / SET / "color" / "qf_10").iterdir())) == 4

    client = tracking.init_store()
    tracking_params = params.load(PRESET).tracking
    assert client.get_experiment_by_name(tracking_params.experiment) is None  # it lists models only
    exp = client.get_experiment_by_name(tracking_params.data_experiment)
    runs = {r.data.tags["stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == ["make_testsets_jpeg", "make_testsets_refs"]
    refs, jpeg = runs["make_testsets_refs"].data, runs["make_testsets_jpeg"].data
    assert refs.params == {"src": f"data/raw/test/{SET}", "out": f"data/testsets/{SET}/refimgs"}
    assert jpeg.params["qf"] == "10"
    assert refs.metrics["images"] == jpeg.metrics["images"] == 4
    assert jpeg.metrics["bytes"] == sum(p.stat().st_size for p in jpeg_dir(tmp_path, 10).iterdir())


def test_main_errors(tmp_path, mlflow_store, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert stage.main(["refs", "data/raw/test/NoSuchSet", "out", "--params", str(PRESET)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "NoSuchSet: data set is missing" in err
    with pytest.raises(SystemExit) as e:
        stage.main(["jpeg", "refs", "out", "--qf", "101", "--params", str(PRESET)])
    assert e.value.code == 2 and "--qf 1..100" in capsys.readouterr().err
