"""models.pretrained.recipe.header_histories on one small photo: every file of each kind is
scored, a header kept over an earlier compression is explained by the decision's own tests, and
the texture stress test counts what it restores."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from models.pretrained.recipe import header_histories as hh
from pipeline.core import images
from pipeline.restoration import photo
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer.load(
        ROOT / "models" / "pretrained" / "model.pt", RestoreOptions(engine="openvino", precision="f32")
    )


def test_header_histories_explain_every_kept_header(restorer, tmp_path):
    path = tmp_path / "astronaut.png"
    images.write_png(path, np.ascontiguousarray(skdata.astronaut()[100:300, 150:350]))
    per = {kind: 2 for kind in hh.KINDS}
    rows = hh.measure(restorer, [str(path)], (10, 30, 50, 70, 90), seed=3, per_photo=per, sides=(120, 160))
    assert [r["kind"] for r in rows] == [k for k in hh.KINDS for _ in range(2)]
    for r in rows:
        assert r["best_gain"] >= 0 and r["best_qf"] in (10, 30, 50, 70, 90)
        assert r["kind"] != "single" or not r["earlier"]
        if r["source"] == "header" and r["earlier"]:  # photo.decide kept the header: one of its tests said so
            assert r["kept_by"] and set(r["kept_by"]) <= set(photo.EARLIER_KEPT_BY), r
        if r["source"] == "header":
            assert r["gain"] == r["header_gain"]
    s = hh.summary(rows)
    assert {k: v["n"] for k, v in s.items()} == per
    assert all(v["overruled"] == sum(r["source"] != "header" for r in rows if r["kind"] == k) for k, v in s.items())
    # The small photos' pass: a kind it skips makes no row, the others are summarized under their own name.
    small = {"single": 1, "resized, re-saved": 1, "shifted, recompressed": 0}
    rows = hh.measure(restorer, [str(path)], (10, 50, 90), seed=4, per_photo=small, sides=(96, 128), suffix=", small")
    assert [r["kind"] for r in rows] == ["single, small", "resized, re-saved, small"]
    assert all(r["header_qf"] == r["qf2"] for r in rows)  # every file ends in an IJG JPEG: its header is read
    assert list(hh.summary(rows)) == ["single, small", "resized, re-saved, small"]


def test_the_double_shifted_ceiling(restorer, tmp_path):
    path = tmp_path / "coffee.png"
    images.write_png(path, np.ascontiguousarray(skdata.coffee()[100:260, 150:390]))
    rows = hh.shifted_rows(restorer, [str(path)], qfs=(10,))
    assert len(rows) == 1 and rows[0]["single"] > 0.5  # a QF 10 JPEG of a photo gains
    r = rows[0]
    if r["source"] == "detector":  # restored at the QF the detector reads: the same pixels
        assert abs(r["decision"] - r["at_qf_read"]) < 0.02
    s = hh.shifted_summary(rows)["10"]
    assert s["n"] == 1 and s["decision"] == round(r["decision"] / r["single"], 3)


def test_texture_stress_counts(restorer):
    rows = hh.texture_rows(restorer, sides=(64,), seeds=1)
    assert len(rows) == 4 * 4 * 2  # textures x QFs x subsamplings
    s = hh.texture_summary(rows)
    assert set(s) == {"grain 12", "grain 25", "fine stripes", "1/f noise"} and all(v["n"] == 8 for v in s.values())
    for r in rows:
        if r["source"] == "header":
            assert r["qf_used"] == r["qf"] and photo.blend_for(r["qf"], r["subsampling"]) <= 1
