"""pipeline.evaluation.scoring's search for the best hand-picked QF of a real-world case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core import images
from pipeline.data import realworld
from pipeline.evaluation.scoring import best_qf, evaluate_case, hill_climb, summarize_cases
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer

ROOT = Path(__file__).resolve().parent.parent
GRID = [10, 20, 30, 40, 50, 60, 70, 80, 90]


@pytest.mark.parametrize("peak", GRID)
@pytest.mark.parametrize("start", [10, 47, 90])
def test_hill_climb_finds_the_peak_trying_few_points(peak, start):
    tried = []

    def gain(q: int) -> float:
        tried.append(q)
        return -((q - peak) ** 2) / 100

    assert hill_climb(gain, GRID, start) == (peak, 0.0)
    assert len(tried) == len(set(tried))  # each point once
    steps = abs(GRID.index(peak) - GRID.index(min(GRID, key=lambda q: abs(q - start))))
    assert len(tried) <= steps + 3  # the start, a step the wrong way, the climb, one past the peak


def test_hill_climb_on_a_plateau_stays_at_the_start():
    tried = []
    assert hill_climb(lambda q: tried.append(q) or 0.0, [30, 10, 20, 10], 24) == (20, 0.0)  # sorted, deduplicated
    assert sorted(tried) == [10, 20, 30]


def test_best_qf_is_the_best_of_the_grid(tmp_path, image_factory):
    """A double JPEG (QF 10, shifted, QF 30) restored by the shipped model at every QF of a grid:
    the search, which starts from the QF the decision used (30), finds the grid's best."""
    refs, folder = tmp_path / "refs", tmp_path / "double_shifted" / "qf_10"
    folder.mkdir(parents=True)
    for i in range(2):
        gt = image_factory(64, 64, seed=i)
        images.write_png(refs / f"p{i}.png", gt)
        (folder / f"p{i}.jpg").write_bytes(realworld.make_file("double_shifted", gt, 10))
    restorer = Restorer.load(ROOT / "models" / "pretrained" / "model.pt", RestoreOptions(engine="torch", device="cpu"))
    rows = evaluate_case(restorer, "double_shifted", 10, folder, refs)
    assert [r["qf_used"] for r in rows] == [30.0, 30.0]  # the decision: the second compression's QF
    grid = GRID[:5]
    every = {
        q: float(
            np.mean(
                [r["gain"] for r in evaluate_case(restorer.replace(qf=float(q)), "double_shifted", 10, folder, refs)]
            )
        )
        for q in grid
    }
    assert max(every, key=every.get) == 10 and every[10] > every[20] + 0.02 > every[30] + 0.02  # a climb of two steps
    q, gain = best_qf(restorer, rows, folder, refs, grid)
    assert (q, gain) == (10, pytest.approx(every[10], abs=1e-9))

    (case,) = summarize_cases(rows, {("double_shifted", 10): (q, gain)})
    assert case["best_qf"] == 10 and case["best_gain"] == gain
    assert case["share"] == pytest.approx(case["gain"] / gain) and 0 < case["share"] < 1
    (plain,) = summarize_cases(rows)
    assert plain["best_qf"] is None and plain["best_gain"] is None and plain["share"] is None
