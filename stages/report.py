"""DVC stage ``report``: reports/report.md, a self-contained report.html and PNG plots (``python -m stages.report``).

Built from what the train and evaluate stages wrote (reports/metrics.json, gain_vs_qf.csv, train_log.csv,
crops/), the published rows in reference/published.yaml and the experiments of ``dvc exp show --json``.
The report is logged into the training run that metrics.json names (else into a new "report" run).
Every file is written to a temporary name and renamed into place (``images.write_bytes``): a failure
leaves no half-written report.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline import images, report, tracking
from pipeline import params as params_mod
from pipeline.params import Params, ParamsError

PUBLISHED = Path(__file__).resolve().parent.parent / "reference" / "published.yaml"  # versioned with the code
CROP_QFS = (10, 30, 50)


def _number(cell: str | None) -> float | str | None:
    if cell in (None, ""):  # train logs are sparse
        return None
    try:
        return float(cell)
    except ValueError:  # a text column we do not plot
        return cell


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows with every column but ``set`` as a float or None; [] when the file is absent."""
    if not path.is_file():
        return []
    rows = csv.DictReader(io.StringIO(path.read_text()))
    return [{k: v if k == "set" else _number(v) for k, v in row.items()} for row in rows]


def find_crops(folder: Path, sets: list[str]) -> list[tuple[str, str]]:
    """(crops/<file>, caption) of the triptychs <SET>_qf<QF>_<image>.png at QF 10, 30 and 50, by set and QF.

    Set names may hold underscores (sample_test), so a file name is matched against the known sets.
    """
    found = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        for i, s in enumerate(sets):
            m = re.fullmatch(re.escape(s) + r"_qf(\d+)_(.+)\.png", path.name)
            if m and int(m[1]) in CROP_QFS:
                caption = f"{s}, QF {m[1]}, {m[2]}: JPEG | restored | ground truth"
                found.append(((i, int(m[1]), m[2]), f"crops/{path.name}", caption))
    return [(rel, caption) for _, rel, caption in sorted(found)]


def experiments(root: Path) -> list[dict[str, Any]] | str:
    """The rows of ``dvc exp show --json`` run in ``root``, or why there are none."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"]  # the dvc installed beside this Python
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    try:
        out = subprocess.run(cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`dvc exp show` did not run ({e})."
    if out.returncode != 0:
        return f"`dvc exp show` failed: {(out.stderr.strip().splitlines() or ['no message'])[-1]}"
    try:
        return report.parse_experiments(json.loads(out.stdout))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:  # a format we do not know
        return f"could not read the output of `dvc exp show --json` ({e!r})."


def build(
    metrics: dict[str, Any],
    published: dict[str, Any],
    crops: list[tuple[str, str]],
    gain_plots: dict[str, str],
    train_curve: str | None,
    train_log: list[dict[str, Any]],
    exps: list[dict[str, Any]] | str,
    rw_plots: dict[str, str] | None = None,
) -> list[report.Block]:
    """The report's blocks, in order. Plot and crop paths are relative to reports/."""
    model, primary, results = metrics.get("model", {}), metrics.get("primary", {}), metrics.get("results", {})
    n_params = f"{model['params'] / 1e6:.2f}M" if isinstance(model.get("params"), (int, float)) else "-"
    facts = [("architecture", model.get("arch")), ("parameters", n_params), ("training steps", model.get("steps")),
             ("MLflow training run", model.get("run_id")), ("checkpoint", model.get("checkpoint")),
             ("test-time augmentation (x8)", "yes" if metrics.get("tta") else "no")]  # fmt: skip
    sets, qfs = ", ".join(primary.get("sets", [])), ", ".join(map(str, primary.get("qfs", [])))
    value = report.fmt(primary.get("value"), 3, signed=True)
    blocks: list[report.Block] = [
        ("h", 1, "JPEG restoration report"),
        ("h", 2, "Model"),
        ("table", ["item", "value"], [[k, report.fmt(v, 0)] for k, v in facts]),
        ("h", 2, "Primary metric"),
        ("p", f"{primary.get('name', '?')} = {value} dB (sets: {sets}; QFs: {qfs})"),
        ("h", 2, "Results"),
        ("p", ("RGB PSNR / SSIM / PSNR-B on whole images (OpenCV 4:2:0 JPEG, no border crop); PSNR (Y) on luma. "
               "Published rows are the authors' numbers on the same protocol, labelled with their source "
               "(reference/published.yaml); their gain is over the published JPEG row.")),
    ]  # fmt: skip
    for set_name, by_qf in results.items():
        blocks += [("h", 3, set_name), report.set_table(set_name, by_qf, published, n_params)]
        if set_name in gain_plots:
            blocks.append(("img", gain_plots[set_name], f"{set_name}: PSNR gain over the JPEG input vs QF"))
    for set_name, rw in metrics.get("real_world", {}).items():
        blocks += [("h", 2, f"Photos as users have them: {set_name}")]
        blocks += [("p", ("Made from the references by `python -m stages.make_testsets realworld` and restored the way "
                          "`restore` does (header read, grid and QF decided by pipeline/photo.py). PSNR of identical "
                          "images is shown as 100 dB; the truth of a double JPEG is its stronger (first) compression."))]  # fmt: skip
        if rw["cases"]:
            blocks.append(report.real_world_table(rw["cases"]))
        if set_name in (rw_plots or {}):
            blocks.append(("img", rw_plots[set_name], f"{set_name}: gain vs QF per case"))
        for case, note in rw.get("excluded", {}).items():
            blocks.append(("p", f"{case}: {len(note['images'])} reference(s) left out ({note['reason']})."))
    negative = report.negative_gains(results, metrics.get("real_world"))
    blocks += [("h", 2, "Negative gains (the model made the images worse)")]
    blocks += [("list", negative) if negative else ("p", "none")]
    blocks += [("h", 2, "QF estimator: mean absolute error (quality units)"), report.qf_mae_table(results)]
    blocks += [("h", 2, f"Visual comparison at QF {', '.join(map(str, CROP_QFS))}")]
    blocks += [("img", rel, caption) for rel, caption in crops] or [("p", "No crops in reports/crops/.")]
    blocks += [("h", 2, "Training")]
    if train_curve:
        blocks.append(("img", train_curve, "training loss and validation PSNR vs step"))
        last = next((r for r in reversed(train_log) if r.get("val_psnr") is not None), None)
        if last:
            psnr, jpeg = report.fmt(last["val_psnr"]), report.fmt(last.get("val_psnr_jpeg"))
            blocks.append(
                ("p", f"Last validation (step {report.fmt(last.get('step'), 0)}): {psnr} dB, JPEG {jpeg} dB.")
            )
    else:
        blocks.append(("p", "No training log (reports/train_log.csv)."))
    return blocks + [("h", 2, "Ablations (dvc exp show)"), *report.ablation_blocks(exps)]


def log_report(experiment: str, train_run: str | None, files: list[Path], plots: list[Path]) -> tuple[str, bool]:
    """Log the report into ``train_run`` (else a new "report" run); (run id, whether it was the training run)."""
    with contextlib.ExitStack() as stack:
        active = None
        if train_run:
            try:
                active = stack.enter_context(tracking.start_run("report", experiment, run_id=train_run))
            except Exception:  # noqa: BLE001 - tracking exposes no error type; "run not found": another store
                active = None
        if active is None:
            active = stack.enter_context(tracking.start_run("report", experiment))
            if train_run:  # say which training run this report belongs to, though it lives elsewhere
                tracking.set_tags({"train_run_id": train_run})
        for path in files:
            tracking.log_artifact(path, "report")
        for path in plots:
            tracking.log_artifact(path, "report/plots")
        return active.info.run_id, active.info.run_id == train_run


def run(params: Params, root: Path) -> dict[str, Any]:
    """Write reports/report.md, report.html and plots/*.png under ``root``, log them to MLflow; a summary."""
    reports = Path(root) / "reports"
    if not (reports / "metrics.json").is_file():
        raise FileNotFoundError(f"{reports / 'metrics.json'}: not found; run the evaluate stage first")
    metrics = json.loads((reports / "metrics.json").read_text())
    results = metrics.get("results", {})
    gains = read_csv(reports / "gain_vs_qf.csv") or [  # no CSV: the same numbers from metrics.json
        {"set": s, "qf": float(q)} | {f"gain_{m}": r.get(m, {}).get("gain") for m in report.MODES}
        for s, by_qf in results.items()
        for q, r in by_qf.items()
    ]
    rw_plots = {}
    for set_name, rw in metrics.get("real_world", {}).items():
        png = report.real_world_plot(set_name, rw["cases"])
        if png:
            rw_plots[set_name] = f"plots/real_world_{set_name}.png"
            images.write_bytes(reports / rw_plots[set_name], png)
    gain_plots = {}
    for set_name in results:
        rows = [g for g in gains if g["set"] == set_name]
        if rows:
            gain_plots[set_name] = f"plots/gain_vs_qf_{set_name}.png"
            images.write_bytes(reports / gain_plots[set_name], report.gain_plot(set_name, rows))
    train_log = read_csv(reports / "train_log.csv")
    train_curve = "plots/train_curve.png" if train_log else None
    if train_curve:
        images.write_bytes(reports / train_curve, report.train_plot(train_log))
    crops = find_crops(reports / "crops", list(results))
    exps = experiments(Path(root))
    published = yaml.safe_load(PUBLISHED.read_text())
    blocks = build(metrics, published, crops, gain_plots, train_curve, train_log, exps, rw_plots)
    md, page = reports / "report.md", reports / "report.html"
    images.write_bytes(md, report.to_markdown(blocks).encode())
    images.write_bytes(page, report.to_html(blocks, "JPEG restoration report", reports).encode())
    curves = [*gain_plots.values(), *rw_plots.values(), *([train_curve] if train_curve else [])]
    plots = [reports / rel for rel in curves]
    run_id, into_train = log_report(
        params.tracking.experiment, metrics.get("model", {}).get("run_id"), [md, page], plots
    )
    return {
        "markdown": str(md),
        "html": str(page),
        "plots": [str(p) for p in plots],
        "crops": len(crops),
        "experiments": exps if isinstance(exps, str) else sum(not r["baseline"] for r in exps),
        "negative_gains": report.negative_gains(results, metrics.get("real_world")),
        "run_id": run_id,
        "logged_into_training_run": into_train,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        s = run(params_mod.load(args.params), Path.cwd())
    except (FileNotFoundError, json.JSONDecodeError, ParamsError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 1
    where = "the training run" if s["logged_into_training_run"] else "a new report run"
    print(f"report: {s['html']} ({len(s['plots'])} plots, {s['crops']} crops); logged to {where} {s['run_id']}")
    for line in s["negative_gains"]:
        print(f"report: warning: negative gain {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
