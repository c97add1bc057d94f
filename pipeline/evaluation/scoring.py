"""Score restorations against their ground truth: the test sets (pairs of a JPEG and its
reference, with or without a model) and the real-world cases (``pipeline/data/realworld.py``).

Shared by ``python -m pipeline.test``, the evaluate stage and the registry. Every row carries
RGB and Y scores, the QF read from the file's quantization tables and the model's estimate.
Restorations go through a ``Restorer``, as every door's do.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.core import images
from pipeline.core.jpeg import Header
from pipeline.data import realworld
from pipeline.data.datasets import EvalPair
from pipeline.evaluation import metrics
from pipeline.evaluation.results import IDENTICAL_PSNR
from pipeline.restoration.restorer import Restorer
from pipeline.restoration.tiles import restore_float, to_uint8

Mode = Literal["header", "blind", "blind_net"]
KEYS = ("psnr", "ssim", "psnrb", "psnr_y", "ssim_y", "psnrb_y")


@dataclass(frozen=True)
class Loaded:
    """lq: the JPEG's pixels as it stores them (restored so); gt: the reference, upright."""

    name: str
    lq: np.ndarray
    gt: np.ndarray
    qf_header: int | None
    header: Header | None = None
    orientation: int = 1

    def upright(self, img: np.ndarray) -> np.ndarray:
        """``img`` (as the JPEG stores its pixels) turned as its EXIF orientation asks, as ``gt`` is."""
        return np.ascontiguousarray(images.turn(img, self.orientation))


def load_pair(pair: EvalPair) -> Loaded:
    """Decode one pair; a size mismatch raises ImageError naming both files."""
    dec = images.read_decoded(pair.lq)
    gt = images.read_image(pair.gt)
    (w, h), (gh, gw) = dec.size, gt.shape[:2]
    if (h, w) != (gh, gw):
        raise images.ImageError(f"size mismatch: {pair.lq} is {w}x{h} but {pair.gt} is {gw}x{gh}")
    return Loaded(pair.name, dec.rgb, gt, dec.qf, dec.header, dec.orientation)


def score_all(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RGB and Y-channel PSNR, SSIM and PSNR-B."""
    rgb, y = metrics.score(gt, pred, "rgb"), metrics.score(gt, pred, "y")
    return {**rgb, **{f"{k}_y": v for k, v in y.items()}}


def evaluate_pairs(
    pairs: Sequence[EvalPair],
    restorer: Restorer | None = None,
    modes: Sequence[Mode] = ("header",),
    on_restored: Callable[[Loaded, str, np.ndarray], None] | None = None,
) -> list[dict]:
    """One row per image and mode ("jpeg" for the input itself, plus each of ``modes`` when a
    restorer is given). Modes decide the QF and grid as ``Restorer.decide`` does: header with the
    file's header, blind from the pixels alone (as for a re-saved PNG); blind_net conditions on
    the learned estimator alone, on the image as it is. The restorer's ``options.qf`` overrides
    them all."""
    rows = []
    for pair in pairs:
        item = load_pair(pair)
        blind = restorer.decide(item.lq) if restorer is not None else None
        qf_net = restorer.estimate(item.lq) if restorer is not None else None
        base = {"image": item.name, "qf_header": item.qf_header, "qf_est": blind and blind.qf, "qf_net": qf_net}
        jpeg_scores = score_all(item.gt, item.upright(item.lq))
        rows.append({**base, "mode": "jpeg", "qf_used": None, "seconds": 0.0, **jpeg_scores})
        if restorer is None:
            continue
        o = restorer.options
        for mode in modes:
            t = time.perf_counter()
            if mode == "blind_net":
                qf = o.qf if o.qf is not None else qf_net
                pred = to_uint8(restore_float(restorer.engine, item.lq, qf, o.tile, o.overlap, o.tta))
            else:
                d = blind if mode == "blind" else restorer.decide(item.lq, item.header)
                qf = d.qf
                pred = to_uint8(restorer.restore(item.lq, d))
            pred = item.upright(pred)
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


def evaluate_grid(
    restorer: Restorer,
    pairs: Callable[[str, int], list[EvalPair]],
    sets: Sequence[str],
    qfs: Sequence[int],
    modes: tuple[Mode, ...] = ("blind", "header"),
) -> dict[str, dict[str, dict]]:
    """``summarize`` per test set and QF, shaped as metrics.json's ``results``: {set: {"<qf>": summary}},
    each summary with the image count ``n``. ``pairs(set, qf)`` lists the set's pairs at that QF."""
    results: dict[str, dict[str, dict]] = {}
    for s in sets:
        for q in qfs:
            summary = summarize(evaluate_pairs(pairs(s, q), restorer, modes))
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


def psnr_or_cap(gt: np.ndarray, img: np.ndarray) -> float:
    return IDENTICAL_PSNR if np.array_equal(gt, img) else min(IDENTICAL_PSNR, metrics.psnr(gt, img))


def case_files(case: str, folder: Path, refs: Path) -> list[tuple[str, np.ndarray, images.Decoded]]:
    """(name, reference, decoded file) for every file of one real-world case folder; the reference
    (``refs/<stem>.*``) cropped or resized like the file."""
    ref_by_stem = {p.stem: p for p in images.list_images(refs)}
    reference = realworld.CASES[case].reference
    return [
        (path.stem, reference(images.read_image(ref_by_stem[path.stem])), images.read_decoded(path))
        for path in images.list_images(folder)
    ]


def evaluate_case(restorer: Restorer, case: str, qf: int | None, folder: Path, refs: Path) -> list[dict]:
    """Restore every file of one real-world case folder as ``restore`` would (header read) and
    score it against its reference."""
    rows = []
    for name, gt, dec in case_files(case, folder, refs):
        t = time.perf_counter()
        restored = restorer.restore_photo(dec.rgb, dec.header)  # on the pixels as stored, then upright
        d, out, lq = restored.decision, np.ascontiguousarray(dec.upright(to_uint8(restored.pixels))), dec.upright()
        rows.append(
            {
                "case": case,
                "qf": qf,
                "image": name,
                "psnr_in": psnr_or_cap(gt, lq),
                "psnr_out": psnr_or_cap(gt, out),
                "qf_true": qf,  # None for the never-compressed cases
                "qf_used": d.qf,
                "source": d.source,
                "offset": f"{d.offset[0]},{d.offset[1]}",
                "unchanged": bool(np.array_equal(out, lq)),
                "seconds": time.perf_counter() - t,
                "message": d.message,
            }
        )
        rows[-1]["gain"] = rows[-1]["psnr_out"] - rows[-1]["psnr_in"]
    return rows


def hill_climb(gain: Callable[[int], float], grid: Sequence[int], start: float) -> tuple[int, float]:
    """(QF, gain) at the peak of ``gain`` over ``grid``, climbing from the grid point nearest
    ``start`` to a local maximum (``gain`` has one peak over QF; it is called once per point tried)."""
    grid, seen = sorted(set(grid)), {}

    def at(i: int) -> float:
        if i not in seen:
            seen[i] = gain(grid[i])
        return seen[i]

    i = min(range(len(grid)), key=lambda j: abs(grid[j] - start))
    step = -1 if i > 0 and at(i - 1) > at(i) else 1  # one peak: uphill is on one side only
    while 0 <= i + step < len(grid) and at(i + step) > at(i):
        i += step
    return grid[i], at(i)


def best_qf(
    restorer: Restorer, rows: Sequence[dict], folder: Path, refs: Path, grid: Sequence[int]
) -> tuple[int, float]:
    """The best hand-picked QF of one real-world case folder and its mean gain: every photo
    restored at the same QF, as ``restorer.replace(qf=...)`` restores it, climbing ``grid`` from
    the mean QF the decision used (``evaluate_case``'s ``rows`` of ``folder``; 50 when it left
    every photo unchanged)."""
    files = case_files(rows[0]["case"], folder, refs)
    before = [psnr_or_cap(gt, dec.upright()) for _, gt, dec in files]
    # A hand-picked QF restores on the grid the pixels show, whatever the QF: decide once per photo.
    fixed = restorer.replace(qf=float(grid[0]))
    grids = [fixed.decide(dec.rgb, dec.header) for _, _, dec in files]

    def gain(q: int) -> float:
        out = []
        for (_, gt, dec), d, psnr_in in zip(files, grids, before):
            pred = restorer.restore(dec.rgb, dataclasses.replace(d, qf=float(q)))
            out.append(psnr_or_cap(gt, np.ascontiguousarray(dec.upright(to_uint8(pred)))) - psnr_in)
        return float(np.mean(out))

    used = [r["qf_used"] for r in rows if r["qf_used"] is not None]
    return hill_climb(gain, grid, float(np.mean(used)) if used else 50.0)


def summarize_cases(
    rows: Sequence[dict], best: dict[tuple[str, int | None], tuple[int, float]] | None = None
) -> list[dict]:
    """Means per (case, qf): PSNR in/out, gain, the QF chosen against the truth, unchanged share;
    ``best``: {(case, qf): ``best_qf``'s (QF, gain)} for the cases searched, with ``share`` the
    part of that best gain the decision got (None unless the best gain is positive)."""
    out = []
    for key in dict.fromkeys((r["case"], r["qf"]) for r in rows):
        sel = [r for r in rows if (r["case"], r["qf"]) == key]
        used = [r["qf_used"] for r in sel if r["qf_used"] is not None]
        errors = [abs(r["qf_used"] - r["qf_true"]) for r in sel if r["qf_used"] is not None and r["qf_true"]]
        gain = float(np.mean([r["gain"] for r in sel]))
        top_qf, top_gain = (best or {}).get(key, (None, None))
        out.append(
            {
                "case": key[0],
                "title": realworld.CASES[key[0]].title,
                "qf": key[1],
                "n": len(sel),
                "psnr_in": float(np.mean([r["psnr_in"] for r in sel])),
                "psnr_out": float(np.mean([r["psnr_out"] for r in sel])),
                "gain": gain,
                "qf_used_mean": float(np.mean(used)) if used else None,
                "qf_abs_error": float(np.mean(errors)) if errors else None,
                "unchanged": float(np.mean([r["unchanged"] for r in sel])),
                "sources": {s: sum(r["source"] == s for r in sel) for s in dict.fromkeys(r["source"] for r in sel)},
                "best_qf": top_qf,
                "best_gain": top_gain,
                "share": gain / top_gain if top_gain is not None and top_gain > 0 else None,
            }
        )
    return out
