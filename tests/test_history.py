"""The learned JPEG-history detector: its weights file, and how ``photo.decide`` uses the shipped
one on photos edited after compression (scikit-image's bundled photos: real photos, no download)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from pipeline.core import images, jpeg, tables
from pipeline.evaluation import metrics
from pipeline.restoration import history, photo
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from pipeline.restoration.tiles import to_uint8
from tests.conftest import ROOT

SHIPPED = ROOT / "models" / "pretrained" / "model.pt"


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer.load(SHIPPED, RestoreOptions(engine="openvino", precision="f32"))


def random_detector(seed: int = 0) -> history.Detector:
    rng = np.random.default_rng(seed)
    n = history.n_features()
    layers = [(rng.normal(size=(16, n)), rng.normal(size=16)), (rng.normal(size=(4, 16)), rng.normal(size=4))]
    return history.Detector(layers, rng.normal(size=n), rng.uniform(0.5, 2, n), {"jpeg": 0.5, "earlier": 1.0}, {"a": 1})


def gain(gt: np.ndarray, lq: np.ndarray, out: np.ndarray) -> float:
    return metrics.psnr(gt, out) - metrics.psnr(gt, lq)


def restore(r: Restorer, data: bytes) -> tuple[photo.Decision, np.ndarray, np.ndarray]:
    dec = images.decode_image(data)
    res = r.restore_photo(dec.rgb, dec.header)
    return res.decision, dec.rgb, to_uint8(res.pixels)


def resized(gt: np.ndarray, factor: float) -> np.ndarray:
    h, w = gt.shape[:2]
    return cv2.resize(gt, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def test_weights_file_round_trip(tmp_path):
    det = random_detector()
    path = det.save(tmp_path / "detector.npz")
    back = history.load(path)
    x = np.random.default_rng(1).normal(size=(3, history.n_features())).astype(np.float32)
    np.testing.assert_array_equal(back.outputs(x), det.outputs(x))
    assert back.thresholds == {"jpeg": 0.5, "earlier": 1.0} and back.meta == {"a": 1}
    assert not list(tmp_path.glob(".*tmp"))  # written atomically


def test_bad_weights_files_name_the_file(tmp_path):
    bad = tmp_path / "detector.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(history.DetectorError, match=f"{bad}: cannot read"):
        history.load(bad)
    np.savez(bad, info=np.array('{"format": "something else"}'))
    with pytest.raises(history.DetectorError, match="not a jpeg-history-detector/1 file"):
        history.load(bad)


def test_a_model_without_a_detector_decides_by_the_rules(tmp_path, restorer):
    """Beside the shipped model there is one; a checkpoint alone in its folder decides as before."""
    assert history.beside(SHIPPED) == SHIPPED.with_name("detector.npz") and restorer.detector is not None
    alone = tmp_path / "model.pt"
    shutil.copyfile(SHIPPED, alone)
    assert history.beside(alone) is None
    gt = skdata.astronaut()
    png = images.encode_png(resized(images.decode_jpeg(images.encode_jpeg(gt, 20)), 0.75))
    rules = Restorer.load(alone, RestoreOptions(engine="openvino", precision="f32"))
    assert rules.detector is None and restore(rules, png)[0].source == "none"  # resized: the rules see nothing
    assert restorer.replace(tile=256).detector is restorer.detector  # replace keeps it


@pytest.mark.parametrize("factor", [0.5, 0.75, 0.9])
def test_resized_after_compression_is_restored(restorer, factor):
    """A JPEG of QF 20, resized, then saved as PNG or re-saved as JPEG 95: the rules found no
    lattice; the detector reads the history and restoring gains."""
    gt = skdata.astronaut()
    lq = resized(images.decode_jpeg(images.encode_jpeg(gt, 20)), factor)
    ref = resized(gt, factor)
    for data in (images.encode_png(lq), images.encode_jpeg(lq, 95)):
        d, shown, out = restore(restorer, data)
        assert d.source == "detector" and 10 <= d.qf <= 60, d
        assert d.reading.startswith("JPEG history ") and d.message.startswith(d.reading)
        assert gain(ref, shown, out) > 0.4, (factor, d)


def test_never_compressed_photos_stay_identical(restorer):
    gt = skdata.astronaut()
    h, w = gt.shape[:2]
    for rgb in (gt, resized(gt, 0.5), cv2.resize(gt, (w * 3 // 2, h * 3 // 2), interpolation=cv2.INTER_CUBIC)):
        d, shown, out = restore(restorer, images.encode_png(rgb))
        assert d.unchanged and d.reading.startswith("JPEG history") and np.array_equal(out, shown)


def test_tables_that_are_not_ijg_restore_at_the_quality_of_the_same_noise(restorer):
    """Luma at QF 20 and chroma at 80: the nearest table reads 80 (the chroma's); the noise says lower."""
    gt = skdata.astronaut()
    data = images.encode_jpeg_tables(gt, jpeg.ijg_tables(20)[0], jpeg.ijg_tables(80)[1])
    dec = images.decode_image(data)
    assert not dec.header.exact and np.array_equal(dec.header.chroma.ravel(), jpeg.ijg_tables(80)[1].ravel())
    d = restorer.decide(dec.rgb, dec.header)
    q = round(tables.noise_qf(dec.header.luma, dec.header.chroma), 1)
    assert d.source == "header" and d.qf == q and q < 60, d
    assert "tables not IJG" in d.message


def textured(side: int, seed: int) -> np.ndarray:
    """Fine grain over smooth shading: what a restoration may take for artifacts and smooth away."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = 90 + 80 * np.stack([yy, xx, 1 - yy], -1)
    return np.clip(base + rng.normal(0, 12, (side, side, 1 if seed % 2 else 3)) + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_high_quality_is_never_made_worse(restorer, subsampling):
    """QF 90-98: left unchanged or restored more gently, never worse (generated textured photos)."""
    for q in (90, 95, 98):
        for seed in (0, 1):
            gt = textured(192, seed)
            data = images.encode_jpeg(gt, q, subsampling=subsampling)
            d, shown, out = restore(restorer, data)
            assert d.blend == photo.blend_for(q, subsampling) and d.source == "header"
            assert gain(gt, shown, out) >= -0.005, (q, subsampling, seed, d)
    assert photo.blend_for(98, "4:4:4") == 0.0 and photo.blend_for(50, "4:2:0") == 1.0


def test_tables_are_checked():
    rgb = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="64 steps in 1..255"):
        images.encode_jpeg_tables(rgb, np.zeros(64), np.ones(64))
    flat = images.decode_image(images.encode_jpeg_tables(rgb, np.full(64, 24), np.full(64, 24), "4:4:4")).header
    assert flat.subsampling == "4:4:4" and set(flat.luma.ravel()) == {24}


def test_an_earlier_compression_under_a_header_is_restored(restorer):
    """QF 10, shifted by 4 px, re-saved at QF 30: the header says 30, the detector reads the
    stronger compression under it, and restoring at its QF gains more than at the header's."""
    gt = skdata.astronaut()
    lq = np.ascontiguousarray(images.decode_jpeg(images.encode_jpeg(gt, 10))[4:, 4:])
    data, ref = images.encode_jpeg(lq, 30), gt[4:, 4:]
    d, shown, out = restore(restorer, data)
    assert d.source == "detector" and d.qf <= 20 and "header says 30" in d.message, d
    header_only = restorer.replace(qf=30.0)
    _, _, at_header = restore(header_only, data)
    assert gain(ref, shown, out) > gain(ref, shown, at_header) + 0.2


def test_a_header_above_95_is_kept(restorer):
    """Resized after a QF 20 compression, then saved at QF 98: near lossless, restored as its
    header says (all but none of the correction at 98), whatever the pixels show under it."""
    gt = skdata.astronaut()
    lq = resized(images.decode_jpeg(images.encode_jpeg(gt, 20)), 0.75)
    d, shown, out = restore(restorer, images.encode_jpeg(lq, 98))
    assert d.source == "header" and d.qf == 98 and d.reading, d
    d95 = restore(restorer, images.encode_jpeg(lq, 95))[0]
    assert d95.source == "detector" and d95.qf < 60, d95
