"""Evaluate stage (DVC stage ``evaluate``; dvc.yaml passes every path)::

    python -m stages.evaluate --model FILE --meta FILE --testsets DIR --metrics FILE --evaluation FILE
        --per-image FILE --gain-vs-qf FILE --real-world FILE --crops DIR

Scores the checkpoint on every generated test set x QF in blind mode (QF estimated from the
pixels) and header mode (QF from the file's quantization tables), with the JPEG input beside
it: PSNR, SSIM, PSNR-B on RGB and Y. Writes

- ``--metrics``: the headline metrics (``pipeline/evaluation/results.py``, at most 8 scalars: what
  ``dvc exp show`` and ``dvc metrics diff`` compare; kept in git, so no timings);
- ``--evaluation``: every set/QF/mode mean, gains, QF-estimator error, the primary metric, the
  negative gains, the real-world cases and the time per image (the report, the registry and
  the app read it; not a DVC metric);
- ``--per-image`` CSV; ``--gain-vs-qf`` CSV (the DVC plot, kept in git);
- ``--crops``: ``<SET>_qf<QF>_<image>.png`` triptychs, JPEG | restored | ground truth at QF 10, 30, 50;
- the real-world cases of ``evaluate.real_world_sets`` (``pipeline/data/realworld.py``), restored the
  way ``restore`` does: ``evaluation["real_world"]`` and the ``--real-world`` CSV (per case and
  QF: PSNR in and out, gain, the QF chosen against the truth, share left unchanged); for the
  cases without an exact QF (resized, recompressed on a shifted grid), also the best hand-picked
  QF on ``evaluate.best_qf_grid``, its gain and the share of it the decision got;

and logs it all, the time per image included, into the training run (its id is in ``--meta``, the
train stage's JSON: the checkpoint holds only what its weights depend on).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import files, images
from pipeline.core.device import DeviceError
from pipeline.data import realworld
from pipeline.data.datasets import eval_pairs, jpeg_dir, realworld_dir, refs_dir
from pipeline.evaluation import results as results_mod
from pipeline.evaluation.scoring import (
    Loaded,
    best_qf,
    evaluate_case,
    evaluate_pairs,
    qf_error,
    summarize,
    summarize_cases,
)
from pipeline.mlops import tracking
from pipeline.models.checkpoint import CheckpointError
from pipeline.params import Params, ParamsError, load
from pipeline.restoration.engines import EngineError
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer

CROP_QFS = (10, 30, 50)
CROP = 128


def crop_box(gt: np.ndarray, size: int = CROP) -> tuple[int, int]:
    """Top-left corner (multiple of 8) of the most textured ``size`` square: artifacts show there."""
    g = np.abs(np.diff(gt.astype(np.float32).mean(axis=2), axis=1))
    h, w = gt.shape[:2]
    best, where = -1.0, (0, 0)
    for y in range(0, max(1, h - size + 1), size // 2):
        for x in range(0, max(1, w - size + 1), size // 2):
            e = float(g[y : y + size, x : x + size - 1].mean())
            if e > best:
                best, where = e, (y // 8 * 8, x // 8 * 8)
    return where


def crop_writer(folder: Path, set_name: str, qf: int, limit: int = 2):
    """Callback saving a JPEG | restored | ground-truth triptych for the first images (blind mode)."""
    written: list[str] = []

    def write(item: Loaded, mode: str, pred: np.ndarray) -> None:
        if mode != "blind" or qf not in CROP_QFS or len(written) >= limit:
            return
        y, x = crop_box(item.gt)
        parts = [a[y : y + CROP, x : x + CROP] for a in (item.lq, pred, item.gt)]
        gap = np.full((parts[0].shape[0], 4, 3), 255, np.uint8)
        images.write_png(
            folder / f"{set_name}_qf{qf}_{item.name}.png", np.hstack([parts[0], gap, parts[1], gap, parts[2]])
        )
        written.append(item.name)

    return write


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml passes them."""

    model: Path
    meta: Path  # the train stage's JSON: the MLflow run id
    testsets: Path
    metrics: Path
    evaluation: Path
    per_image: Path
    gain_vs_qf: Path
    real_world: Path
    crops: Path


def run(params: Params, paths: Paths) -> dict:
    """Evaluate and write every output; returns the evaluation (the ``--evaluation`` file's content)."""
    ev, root = params.evaluate, Path(paths.testsets)
    restorer = Restorer.load(paths.model, RestoreOptions.from_params(ev))
    meta = restorer.meta
    run_id = json.loads(Path(paths.meta).read_text()).get("run_id")  # read first: a missing file fails early
    crops = Path(paths.crops)
    shutil.rmtree(crops, ignore_errors=True)
    crops.mkdir(parents=True)  # an output even when no QF gets crops
    results: dict[str, dict[str, dict]] = {}
    rows_out: list[dict] = []
    for name in params.data.test_sets:
        results[name] = {}
        for qf in params.data.qfs:
            pairs = eval_pairs(jpeg_dir(root, name, qf), refs_dir(root, name))
            rows = evaluate_pairs(pairs, restorer, ("blind", "header"), crop_writer(crops, name, qf))
            summary = summarize(rows)
            summary["n"] = summary["jpeg"]["n"]
            summary["qf_est_mae"] = qf_error(rows, qf)
            summary["qf_net_mae"] = qf_error(rows, qf, "qf_net")
            results[name][str(qf)] = summary
            rows_out += [{"set": name, "qf": qf, **r} for r in rows]
            print(
                f"{name} QF {qf}: JPEG {summary['jpeg']['psnr']:.2f}  blind {summary['blind']['psnr']:.2f} "
                f"({summary['blind']['gain']:+.2f})  "
                f"header {summary['header']['psnr']:.2f} ({summary['header']['gain']:+.2f}) dB"
            )
    real_world, rw_rows = real_world_results(params, root, restorer)
    blind_s = [r["seconds"] for r in rows_out if r["mode"] == "blind"]
    model = {
        "arch": meta["arch"],
        "params": meta.get("params"),
        "run_id": run_id,
        "steps": meta.get("steps"),
        "checkpoint": str(paths.model),
    }
    out = results_mod.build(
        model,
        restorer.options.as_dict(),
        results,
        list(ev.primary_sets),
        list(ev.primary_qfs),
        real_world,
        1000 * float(np.mean(blind_s)) if blind_s else None,
    )
    files.write_bytes(paths.evaluation, results_mod.dumps(out))
    files.write_bytes(paths.metrics, json.dumps(results_mod.headline(out), indent=1).encode())
    _write_csv(paths.per_image, rows_out)
    gains = [
        {"set": s, "qf": int(q), "gain_blind": r["blind"]["gain"], "gain_header": r["header"]["gain"]}
        for s, by_qf in results.items()
        for q, r in by_qf.items()
    ]
    _write_csv(paths.gain_vs_qf, gains)
    _write_csv(paths.real_world, rw_rows)
    _log(params, out, paths)
    for n in results_mod.negative_gains(out):
        print(f"warning: {results_mod.sentence(n)}", file=sys.stderr)
    return out


def real_world_results(params: Params, testsets: Path, restorer: Restorer) -> tuple[dict, list[dict]]:
    """Every real-world case of every ``evaluate.real_world_sets`` set: summaries per set, and
    the per-image rows (without the decision text) for reports/real_world.csv."""
    ev, out, csv_rows = params.evaluate, {}, []
    for name in ev.real_world_sets:
        folder = realworld_dir(testsets, name)
        if not folder.is_dir():
            raise images.ImageError(f"{folder}: missing (run `dvc repro realworld@{name}`)")
        rows, excluded, best, refs = [], {}, {}, refs_dir(testsets, name)
        for case, qf, sub in realworld.case_folders(folder, ev.real_world_qfs):
            if (sub / "excluded.json").is_file():
                excluded[case] = json.loads((sub / "excluded.json").read_text())
            if sub.is_dir() and images.list_images(sub):
                case_rows = evaluate_case(restorer, case, qf, sub, refs)
                rows += case_rows
                if realworld.CASES[case].search and ev.best_qf_grid:
                    best[case, qf] = best_qf(restorer, case_rows, sub, refs, ev.best_qf_grid)
        summary = summarize_cases(rows, best)
        for r in summary:
            searched = "" if r["best_qf"] is None else f"; best hand-picked QF {r['best_qf']} ({r['best_gain']:+.2f})"
            print(
                f"{name} real world, {r['case']} QF {r['qf']}: {r['psnr_in']:.2f} -> {r['psnr_out']:.2f} dB "
                f"({r['gain']:+.2f}), "
                f"QF used {r['qf_used_mean'] if r['qf_used_mean'] is None else round(r['qf_used_mean'])}, "
                f"unchanged {r['unchanged']:.0%}{searched}"
            )
        out[name] = {"cases": summary, "excluded": excluded}
        csv_rows += [{"set": name, **{k: v for k, v in r.items() if k != "message"}} for r in rows]
    return out, csv_rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    files.write_bytes(path, buf.getvalue().encode())


def _log(params: Params, out: dict, paths: Paths) -> None:
    """Into the training run when it exists in this store, else a run of its own."""
    run_id = out["model"]["run_id"]
    if run_id and not tracking.run_exists(run_id):
        run_id = None
    metrics = {
        "primary_psnr_gain": out["primary"]["value"],
        **{f"headline_{k}": v for k, v in results_mod.headline(out).items()},
    }
    if out["timing"]["ms_per_image"] is not None:  # machine-dependent: MLflow, not the headline file
        metrics["ms_per_image"] = out["timing"]["ms_per_image"]
    for s, by_qf in out["results"].items():
        for q, r in by_qf.items():
            for m in ("jpeg", "blind", "header"):
                metrics.update({f"{s}_qf{q}_{m}_{k}": v for k, v in r[m].items() if k != "n"})
            if r["qf_est_mae"] is not None:
                metrics[f"{s}_qf{q}_qf_est_mae"] = r["qf_est_mae"]
    with tracking.start_run("evaluate", params.tracking.experiment, run_id=run_id):
        tracking.log_metrics(metrics)
        tracking.log_dict(out, tracking.EVALUATION_ARTIFACT)  # what the registry and the app read
        for path in (paths.metrics, paths.gain_vs_qf, paths.per_image):
            tracking.log_artifact(path, "evaluate")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ("model", "meta", "testsets", "metrics", "evaluation", "per-image", "gain-vs-qf", "real-world", "crops")
    for name in names:
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    paths = Paths(
        args.model,
        args.meta,
        args.testsets,
        args.metrics,
        args.evaluation,
        args.per_image,
        args.gain_vs_qf,
        args.real_world,
        args.crops,
    )
    try:
        out = run(load(args.params), paths)
    except (ParamsError, images.ImageError, CheckpointError, DeviceError, EngineError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"primary metric (blind PSNR gain, {'+'.join(out['primary']['sets'])} QF {out['primary']['qfs']}): "
        f"{out['primary']['value']:+.3f} dB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
