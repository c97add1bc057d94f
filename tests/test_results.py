"""pipeline.evaluation.results: the one owner of evaluation.json (shape, version, primary metric,
negative gains, headline metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.evaluation import results
from pipeline.restoration.options import RestoreOptions


def entry(jpeg: float, blind: float, header: float) -> dict:
    def scores(psnr: float, gain: float | None = None) -> dict:
        return {"psnr": psnr, "ssim": 0.8, "n": 2} | ({} if gain is None else {"gain": gain})

    return {"n": 2, "jpeg": scores(jpeg), "blind": scores(jpeg + blind, blind), "header": scores(jpeg + header, header)}


RESULTS = {
    "LIVE1": {"10": entry(25.0, 1.5, 1.6), "40": entry(30.0, 0.8, 0.9), "90": entry(38.0, -0.05, 0.01)},
    "BSDS500": {"10": entry(25.5, 1.2, 1.3)},
}
CASES = [
    {"case": "resized", "title": "resized", "qf": 10, "psnr_in": 26.0, "psnr_out": 27.0, "gain": 1.0},
    {"case": "cropped_png", "title": "cropped", "qf": 30, "psnr_in": 30.0, "psnr_out": 29.9, "gain": -0.1},
    {"case": "never_compressed", "title": "clean", "qf": None, "psnr_in": 100.0, "psnr_out": 100.0, "gain": 0.0},
]


def evaluation() -> dict:
    model = {"arch": "qacnet", "params": 5_990_000, "run_id": "r1", "steps": 10, "checkpoint": "m.pt"}
    real_world = {"LIVE1": {"cases": CASES, "excluded": {}}}
    return results.build(model, RestoreOptions().as_dict(), RESULTS, ["LIVE1"], [10, 40], real_world, 123.4)


def test_build_and_load_round_trip(tmp_path: Path) -> None:
    ev = evaluation()
    assert ev["version"] == results.VERSION and ev["primary"]["value"] == pytest.approx((1.5 + 0.8) / 2)
    path = tmp_path / "evaluation.json"
    path.write_bytes(results.dumps(ev))
    assert results.load(path) == json.loads(json.dumps(ev))


def test_only_the_current_shape_is_read(tmp_path: Path) -> None:
    """Shapes earlier revisions wrote are refused with a message naming the file and the fix."""
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"model": {}, "primary": {}, "results": {}}))
    with pytest.raises(results.ResultsError, match=r"old\.json: not an evaluation of version 2.*dvc repro evaluate"):
        results.load(old)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(results.ResultsError, match="bad.json: cannot read"):
        results.load(bad)
    with pytest.raises(results.ResultsError, match="missing.json"):
        results.load(tmp_path / "missing.json")


def test_primary_scope_falls_back_to_what_was_evaluated() -> None:
    assert results.primary_scope(RESULTS, ["LIVE1"], [10, 20, 40]) == (["LIVE1"], [10, 40])
    assert results.primary_scope(RESULTS, ["Urban100"], [30]) == (["LIVE1", "BSDS500"], [10, 40, 90])
    assert results.primary_key(["LIVE1"], [10, 40]) == "score.psnr_gain_blind.LIVE1.qf10-40"


def test_negative_gains_cover_test_sets_and_real_world_cases() -> None:
    found = results.negative_gains(evaluation())
    assert found == [
        {"set": "LIVE1", "qf": 90, "mode": "blind", "gain": -0.05},
        {"set": "LIVE1", "qf": 30, "mode": "real world: cropped", "gain": -0.1},
    ]
    assert results.sentence(found[0]) == (
        "LIVE1 at QF 90: restoring (QF estimated from the pixels (blind)) makes the photos 0.050 dB worse (PSNR) "
        "than the input."
    )


def test_headline_has_no_timing_and_leaves_clean_photos_out() -> None:
    head = results.headline(evaluation())
    assert head == {
        "primary": 1.15,
        "gain_BSDS500": 1.2,
        "qf10": 26.5,
        "qf40": 30.8,
        "real_world": 0.45,
        "params_M": 5.99,
    }
    assert "ms_img" not in head  # machine-dependent: kept in the evaluation's timing only


def test_merge_and_missing() -> None:
    ev = evaluation()
    assert results.missing(ev, ["LIVE1", "Urban100"], [10, 20]) == [("LIVE1", 20), ("Urban100", 10), ("Urban100", 20)]
    merged = results.merge(ev, {"Urban100": {"10": entry(24.0, 2.0, 2.1)}})
    assert results.missing(merged, ["Urban100"], [10]) == [] and "Urban100" not in ev["results"]
    assert results.gains(merged["results"])["Urban100"] == {10: 2.0}
