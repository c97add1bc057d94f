"""The shipped model's card numbers, reproduced on the CPU by the evaluation CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED, needs_shared

from pipeline import test as test_cli
from pipeline.core import images

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "models" / "pretrained" / "live1.json"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())["live1"]


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("qf", [10, 40])
def test_cli_reproduces_the_model_card(qf: int, card: dict, tmp_path: Path) -> None:
    folder = tmp_path / f"qf_{qf}"
    for p in images.list_images(SHARED / "LIVE1"):
        images.write_bytes(folder / f"{p.stem}.jpg", images.encode_jpeg(images.read_image(p), qf))
    out = tmp_path / "scores.json"
    args = ["--input", str(folder), "--gt", str(SHARED / "LIVE1"), "--ckpt", str(ROOT / "models/pretrained/model.pt")]
    assert test_cli.main([*args, "--blind", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    want = card[str(qf)]["blind"]
    assert got["n"] == 29
    assert got["psnr"] == pytest.approx(want["psnr"], abs=0.01)
    assert got["ssim"] == pytest.approx(want["ssim"], abs=0.001)
    assert got["psnrb"] == pytest.approx(want["psnrb"], abs=0.01)
    if qf == 10:
        assert got["psnr"] >= 27.47  # never below the previously shipped model (JPEG input 25.69, FBCNN 27.77)
    assert got["psnr"] > card[str(qf)]["jpeg"]["psnr"]


def test_card_never_below_the_jpeg_input(card: dict) -> None:
    """Every QF 10..90 of the card, blind and header modes, is above the JPEG input."""
    assert sorted(map(int, card)) == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    for q, row in card.items():
        for mode in ("blind", "header"):
            assert row[mode]["psnr"] > row["jpeg"]["psnr"], (q, mode)
