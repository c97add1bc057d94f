"""app_pages.tables: the pure tables and sentences behind the Results and Models pages."""

from __future__ import annotations

from app_pages import tables


def entry(gain: float, header_gain: float = 0.0) -> dict:
    jpeg = {"psnr": 30.0, "ssim": 0.8, "psnrb": 29.0}
    restored = {k: v + gain for k, v in jpeg.items()}
    return {"n": 3, "jpeg": jpeg, "blind": {**restored, "gain": gain}, "header": {**restored, "gain": header_gain}}


CHAMPION = {"LIVE1": {"10": entry(1.0), "20": entry(0.5)}, "Urban100": {"10": entry(2.0)}}
CANDIDATE = {"LIVE1": {"20": entry(0.75), "10": entry(0.5, header_gain=-0.02)}, "BSDS500": {"10": entry(9.0)}}


def test_comparison_keeps_only_what_both_scored():
    table = tables.comparison(CHAMPION, CANDIDATE)
    assert list(zip(table["set"], table["QF"], strict=True)) == [("LIVE1", 10), ("LIVE1", 20)]
    assert list(table["Δ gain"]) == [-0.5, 0.25] and list(table["candidate PSNR"]) == [30.5, 30.75]
    assert list(table["images"]) == [3, 3] and list(table["JPEG PSNR"]) == [30.0, 30.0]
    assert list(tables.comparison(CHAMPION, CANDIDATE, "header")["Δ gain"]) == [-0.02, 0.0]
    assert tables.comparison(CHAMPION, {"BSDS500": CANDIDATE["BSDS500"]}).empty


def test_verdict_says_where_the_candidate_wins():
    text = tables.verdict(tables.comparison(CHAMPION, CANDIDATE), "champion v1", "candidate v2")
    assert text == (
        "**LIVE1**: candidate v2 is better at QF 20 and worse at QF 10 than champion v1 (mean PSNR gain -0.125 dB)."
    )
    same = tables.comparison(CHAMPION, CHAMPION)
    assert "equal at every QF" in tables.verdict(same, "a", "b")


def test_gain_curves_one_column_per_model_and_set():
    curves = tables.gain_curves({"champion v1": CHAMPION, "candidate v2": CANDIDATE})
    assert list(curves.index) == [10, 20] and curves.index.name == "QF"
    assert curves["candidate v2, LIVE1"].tolist() == [0.5, 0.75] and curves["champion v1, Urban100"].tolist()[0] == 2.0


def test_version_row():
    shipped = {
        "version": "1",
        "aliases": ["previous", "champion"],
        "run_id": "0123456789",
        "created": 0,
        "tags": {
            "pretrained_sha256": "x",
            "source": "models/pretrained/model.pt",
            "primary_value": "1.25",
            "primary_key": "score.psnr_gain_blind.LIVE1+BSDS500.qf10-20",
        },
    }
    row = tables.version_row(shipped, {"arch": "qacnet", "params": 5994377, "steps": 18078, "data": "BSD200 + T91"})
    assert row["aliases"] == "champion, previous" and row["source"] == "shipped: models/pretrained/model.pt"
    assert (row["arch"], row["parameters (M)"], row["steps"], row["data"]) == ("qacnet", 5.99, 18078.0, "BSD200 + T91")
    assert (row["primary metric (dB)"], row["scored on"]) == (1.25, "LIVE1+BSDS500, QF 10-20")
    trained = {**shipped, "aliases": [], "tags": {"arch": "dncnn", "steps": "40"}}
    row = tables.version_row(trained, {})
    assert (row["source"], row["arch"], row["steps"], row["primary metric (dB)"]) == (
        "trained: run 01234567",
        "dncnn",
        40.0,
        None,
    )
