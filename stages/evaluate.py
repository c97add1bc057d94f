"""Evaluate stage: ``python -m stages.evaluate`` (DVC stage ``evaluate``).

Scores models/model.pt on every generated test set x QF in blind mode (QF estimated from the
pixels) and header mode (QF from the file's quantization tables), with the JPEG input beside
it: PSNR, SSIM, PSNR-B on RGB and Y. Writes

- ``reports/metrics.json`` (DVC metrics: per set/QF means, gains, QF-estimator error, the
  primary metric, and every set/QF/mode where the model made the image worse);
- ``reports/eval/per_image.csv``; ``reports/gain_vs_qf.csv`` (DVC plot);
- ``reports/crops/<SET>_qf<QF>_<image>.png``: JPEG | restored | ground truth at QF 10, 30, 50;
- the real-world cases of ``evaluate.real_world_sets`` (``pipeline/realworld.py``), restored the
  way ``restore`` does: ``metrics.json["real_world"]`` and ``reports/real_world.csv`` (per case
  and QF: PSNR in and out, gain, the QF chosen against the truth, share left unchanged);

and logs it all into the training run (its id is in the checkpoint's metadata).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from pipeline import images, realworld, tracking
from pipeline.checkpoint import CheckpointError, load_checkpoint
from pipeline.datasets import eval_pairs
from pipeline.device import pick_device
from pipeline.engines import build_engine
from pipeline.evaluation import Loaded, evaluate_pairs, qf_error, summarize
from pipeline.params import Params, ParamsError, load
from stages.make_testsets import jpeg_dir, realworld_dir, refs_dir

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


def run(params: Params, root: Path) -> dict:
    ev = params.evaluate
    model, meta = load_checkpoint(root / "models" / "model.pt", pick_device(ev.device))
    engine = build_engine(ev.engine, model, root / "models" / "model.pt", ev.precision)
    crops = root / "reports" / "crops"
    shutil.rmtree(crops, ignore_errors=True)
    results: dict[str, dict[str, dict]] = {}
    rows_out: list[dict] = []
    for name in params.data.test_sets:
        results[name] = {}
        for qf in params.data.qfs:
            pairs = eval_pairs(jpeg_dir(root, name, qf), refs_dir(root, name))
            rows = evaluate_pairs(pairs, model, ("blind", "header"), None, ev.tta, ev.tile, ev.overlap,
                                  crop_writer(crops, name, qf), ev.projection, engine)  # fmt: skip
            summary = summarize(rows)
            summary["n"] = summary["jpeg"]["n"]
            summary["qf_est_mae"] = qf_error(rows, qf)
            summary["qf_net_mae"] = qf_error(rows, qf, "qf_net")
            results[name][str(qf)] = summary
            rows_out += [{"set": name, "qf": qf, **r} for r in rows]
            print(f"{name} QF {qf}: JPEG {summary['jpeg']['psnr']:.2f}  blind {summary['blind']['psnr']:.2f} "
                  f"({summary['blind']['gain']:+.2f})  header {summary['header']['psnr']:.2f} ({summary['header']['gain']:+.2f}) dB")  # fmt: skip
    primary_sets = [s for s in ev.primary_sets if s in results] or list(results)
    primary_qfs = [q for q in ev.primary_qfs if str(q) in results[primary_sets[0]]] or list(params.data.qfs)
    primary = float(np.mean([results[s][str(q)]["blind"]["gain"] for s in primary_sets for q in primary_qfs]))
    negative = [
        {"set": s, "qf": int(q), "mode": m, "gain": r[m]["gain"]}
        for s, by_qf in results.items() for q, r in by_qf.items() for m in ("blind", "header") if r[m]["gain"] < 0
    ]  # fmt: skip
    real_world, rw_rows = real_world_results(params, root, model)
    negative += [{"set": s, "qf": r["qf"], "mode": f"real world: {r['title']}", "gain": r["gain"]}
                 for s, v in real_world.items() for r in v["cases"] if r["gain"] < 0]  # fmt: skip
    out = {
        "model": {"arch": meta["arch"], "params": meta.get("params"), "run_id": meta.get("run_id"), "steps": meta.get("steps"),
                  "checkpoint": "models/model.pt"},
        "primary": {"name": "psnr_gain", "mode": "blind", "sets": primary_sets, "qfs": primary_qfs, "value": primary},
        "results": results, "negative_gains": negative, "tta": ev.tta, "projection": ev.projection,
        "real_world": real_world,
    }  # fmt: skip
    reports = root / "reports"
    images.write_bytes(reports / "metrics.json", json.dumps(out, indent=1).encode())
    _write_csv(reports / "eval" / "per_image.csv", rows_out)
    gains = [{"set": s, "qf": int(q), "gain_blind": r["blind"]["gain"], "gain_header": r["header"]["gain"]}
             for s, by_qf in results.items() for q, r in by_qf.items()]  # fmt: skip
    _write_csv(reports / "gain_vs_qf.csv", gains)
    _write_csv(reports / "real_world.csv", rw_rows)
    _log(params, out, reports)
    for n in negative:
        print(
            f"warning: the model makes {n['set']} QF {n['qf']} worse in {n['mode']} mode ({n['gain']:+.3f} dB)",
            file=sys.stderr,
        )
    return out


def real_world_results(params: Params, root: Path, model) -> tuple[dict, list[dict]]:
    """Every real-world case of every ``evaluate.real_world_sets`` set: summaries per set, and
    the per-image rows (without the decision text) for reports/real_world.csv."""
    ev, out, csv_rows = params.evaluate, {}, []
    engine = build_engine(ev.engine, model, root / "models" / "model.pt", ev.precision)
    for name in ev.real_world_sets:
        folder = realworld_dir(root, name)
        if not folder.is_dir():
            raise images.ImageError(f"{folder}: missing (run `dvc repro realworld@{name}`)")
        rows, excluded = [], {}
        for case, qf, sub in realworld.case_folders(folder, ev.real_world_qfs):
            if (sub / "excluded.json").is_file():
                excluded[case] = json.loads((sub / "excluded.json").read_text())
            if sub.is_dir() and images.list_images(sub):
                rows += realworld.evaluate_folder(model, case, qf, sub, refs_dir(root, name), ev.tile, ev.overlap,
                                                  ev.projection, engine)  # fmt: skip
        summary = realworld.summarize(rows)
        for r in summary:
            print(f"{name} real world, {r['case']} QF {r['qf']}: {r['psnr_in']:.2f} -> {r['psnr_out']:.2f} dB "
                  f"({r['gain']:+.2f}), QF used {r['qf_used_mean'] if r['qf_used_mean'] is None else round(r['qf_used_mean'])}, "
                  f"unchanged {r['unchanged']:.0%}")  # fmt: skip
        out[name] = {"cases": summary, "excluded": excluded}
        csv_rows += [{"set": name, **{k: v for k, v in r.items() if k != "message"}} for r in rows]
    return out, csv_rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    images.write_bytes(path, buf.getvalue().encode())


def _log(params: Params, out: dict, reports: Path) -> None:
    """Into the training run when it exists in this store, else a run of its own."""
    run_id = out["model"]["run_id"]
    if run_id and not tracking.run_exists(run_id):
        run_id = None
    metrics = {"primary_psnr_gain": out["primary"]["value"]}
    for s, by_qf in out["results"].items():
        for q, r in by_qf.items():
            for m in ("jpeg", "blind", "header"):
                metrics.update({f"{s}_qf{q}_{m}_{k}": v for k, v in r[m].items() if k != "n"})
            if r["qf_est_mae"] is not None:
                metrics[f"{s}_qf{q}_qf_est_mae"] = r["qf_est_mae"]
    with tracking.start_run("evaluate", params.tracking.experiment, run_id=run_id):
        tracking.log_metrics(metrics)
        for name in ("metrics.json", "gain_vs_qf.csv", "eval/per_image.csv"):
            tracking.log_artifact(reports / name, "evaluate")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    try:
        out = run(load(args.params), Path.cwd())
    except (ParamsError, images.ImageError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"primary metric (blind PSNR gain, {'+'.join(out['primary']['sets'])} QF {out['primary']['qfs']}): {out['primary']['value']:+.3f} dB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
