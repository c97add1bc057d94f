"""Score a folder of degraded images against their ground truth, with or without a model.

Shared by ``python -m pipeline.test`` and the evaluate stage. Every row carries RGB and Y
scores, the QF read from the file's quantization tables and the model's estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from torch import nn

from pipeline import images, metrics
from pipeline.datasets import EvalPair
from pipeline.engines import Engine
from pipeline.inference import estimate_qf_net, restore_float, to_uint8
from pipeline.jpeg import Header
from pipeline.photo import decide, restore_decided

Mode = Literal["header", "blind", "blind_net"]
KEYS = ("psnr", "ssim", "psnrb", "psnr_y", "ssim_y", "psnrb_y")


@dataclass(frozen=True)
class Loaded:
    name: str
    lq: np.ndarray
    gt: np.ndarray
    qf_header: int | None
    header: Header | None = None


def load_pair(pair: EvalPair) -> Loaded:
    """Decode one pair; a size mismatch raises ImageError naming both files."""
    dec = images.read_decoded(pair.lq)
    gt = images.read_image(pair.gt)
    if dec.rgb.shape != gt.shape:
        raise images.ImageError(
            f"size mismatch: {pair.lq} is {dec.rgb.shape[1]}x{dec.rgb.shape[0]} but {pair.gt} is {gt.shape[1]}x{gt.shape[0]}"
        )
    return Loaded(pair.name, dec.rgb, gt, dec.qf, dec.header)


def score_all(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RGB and Y-channel PSNR, SSIM and PSNR-B."""
    rgb, y = metrics.score(gt, pred, "rgb"), metrics.score(gt, pred, "y")
    return {**rgb, **{f"{k}_y": v for k, v in y.items()}}


def evaluate_pairs(
    pairs: Sequence[EvalPair],
    model: nn.Module | None = None,
    modes: Sequence[Mode] = ("header",),
    q: float | None = None,
    tta: bool = False,
    tile: int = 0,
    overlap: int = 64,
    on_restored: Callable[[Loaded, str, np.ndarray], None] | None = None,
    projection: str = "auto",
    engine: Engine | None = None,
) -> list[dict]:
    """One row per image and mode ("jpeg" for the input itself, plus each of ``modes`` when a
    model is given). Modes decide the QF and grid as ``pipeline.photo.decide`` does: header
    with the file's header, blind from the pixels alone (as for a re-saved PNG); blind_net
    conditions on the learned estimator alone, on the image as it is. ``q`` overrides them all.
    ``engine`` runs the network (``pipeline.engines.build_engine``; None: ``model`` in torch)."""
    rows = []
    for pair in pairs:
        item = load_pair(pair)
        blind = decide(model, item.lq, None, q) if model is not None else None
        qf_net = estimate_qf_net(model, item.lq) if model is not None else None
        base = {"image": item.name, "qf_header": item.qf_header, "qf_est": blind and blind.qf, "qf_net": qf_net}
        rows.append({**base, "mode": "jpeg", "qf_used": None, "seconds": 0.0, **score_all(item.gt, item.lq)})
        if model is None:
            continue
        for mode in modes:
            t = time.perf_counter()
            if mode == "blind_net":
                qf = q if q is not None else qf_net
                pred = to_uint8(restore_float(model, item.lq, qf, tile, overlap, tta, engine=engine))
            else:
                d = blind if mode == "blind" else decide(model, item.lq, item.header, q)
                qf = d.qf
                pred = to_uint8(restore_decided(model, item.lq, d, tile, overlap, tta, projection, engine=engine))
            seconds = time.perf_counter() - t
            rows.append({**base, "mode": mode, "qf_used": qf, "seconds": seconds, **score_all(item.gt, pred)})
            if on_restored:
                on_restored(item, mode, pred)
    return rows


def summarize(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean of every metric per mode; restored modes also get ``gain`` (PSNR over the JPEG's)."""
    out: dict[str, dict[str, float]] = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sel = [r for r in rows if r["mode"] == mode]
        out[mode] = {k: float(np.mean([r[k] for r in sel])) for k in KEYS}
        out[mode]["n"] = len(sel)
    for mode, s in out.items():
        if mode != "jpeg" and "jpeg" in out:
            s["gain"] = s["psnr"] - out["jpeg"]["psnr"]
    return out


def evaluate_grid(model: nn.Module, pairs: Callable[[str, int], list[EvalPair]], sets: Sequence[str],
                  qfs: Sequence[int], modes: tuple[Mode, ...] = ("blind", "header")) -> dict[str, dict[str, dict]]:  # fmt: skip
    """``summarize`` per test set and QF, shaped as metrics.json's ``results``: {set: {"<qf>": summary}},
    each summary with the image count ``n``. ``pairs(set, qf)`` lists the set's pairs at that QF."""
    results: dict[str, dict[str, dict]] = {}
    for s in sets:
        for q in qfs:
            summary = summarize(evaluate_pairs(pairs(s, q), model, modes))
            results.setdefault(s, {})[str(q)] = {**summary, "n": summary["jpeg"]["n"]}
    return results


def qf_error(rows: Sequence[dict], true_qf: float, key: str = "qf_est") -> float | None:
    """Mean absolute error of a QF estimate against the QF the test set was made with
    (``qf_est``: the blind estimate used; ``qf_net``: the learned head alone)."""
    est = [r[key] for r in rows if r["mode"] == "jpeg" and r[key] is not None]
    return float(np.mean(np.abs(np.array(est) - true_qf))) if est else None


def save_outputs(folder: Path) -> Callable[[Loaded, str, np.ndarray], None]:
    """A callback writing each restored image to ``folder/<mode>/<name>.png``."""

    def write(item: Loaded, mode: str, pred: np.ndarray) -> None:
        images.write_png(folder / mode / f"{item.name}.png", pred)

    return write
