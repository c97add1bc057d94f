"""DVC stage ``report``: a Markdown report, a self-contained HTML page and PNG plots::

    python -m stages.report --evaluation FILE --gain-vs-qf FILE --train-log FILE --crops DIR
        --published FILE --md FILE --html FILE --plots DIR

Built from what the train and evaluate stages wrote (the evaluation, the gain-vs-QF and training
CSVs, the crops), the published rows (``--published``) and the registry's champion (its stored
evaluation, next to the model just evaluated). The ablation table is a command of its own,
``python -m pipeline.ablations``: a stage's output cannot list the experiments that finish after
it. The report is logged into the training run the evaluation names (else into a new "report"
run). Every file is written atomically: a failure leaves no half-written report.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import params as params_mod
from pipeline.core import files
from pipeline.evaluation import reporting
from pipeline.evaluation import results as results_mod
from pipeline.mlops import registry, tracking
from pipeline.params import Params, ParamsError

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


def find_crops(folder: Path, sets: list[str], base: Path) -> list[tuple[str, str]]:
    """(path relative to ``base``, caption) of the triptychs <SET>_qf<QF>_<image>.png at QF 10, 30
    and 50, by set and QF.

    Set names may hold underscores (sample_test), so a file name is matched against the known sets.
    """
    found = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        for i, s in enumerate(sets):
            m = re.fullmatch(re.escape(s) + r"_qf(\d+)_(.+)\.png", path.name)
            if m and int(m[1]) in CROP_QFS:
                caption = f"{s}, QF {m[1]}, {m[2]}: JPEG | restored | ground truth"
                found.append(((i, int(m[1]), m[2]), os.path.relpath(path, base), caption))
    return [(rel, caption) for _, rel, caption in sorted(found)]


def build(
    metrics: dict[str, Any],
    published: dict[str, Any],
    crops: list[tuple[str, str]],
    gain_plots: dict[str, str],
    train_curve: str | None,
    train_log: list[dict[str, Any]],
    rw_plots: dict[str, str] | None = None,
    champion: tuple[dict[str, Any] | None, str] = (None, "no registry"),
) -> list[reporting.Block]:
    """The report's blocks, in order. Plot and crop paths are relative to the report."""
    model, primary, results = metrics["model"], metrics["primary"], metrics["results"]
    n_params = f"{model['params'] / 1e6:.2f}M" if isinstance(model.get("params"), (int, float)) else "-"
    facts = [
        ("architecture", model.get("arch")),
        ("parameters", n_params),
        ("training steps", model.get("steps")),
        ("MLflow training run", model.get("run_id")),
        ("checkpoint", model.get("checkpoint")),
        ("test-time augmentation (x8)", "yes" if metrics["options"]["tta"] else "no"),
    ]
    sets, qfs = ", ".join(primary["sets"]), ", ".join(map(str, primary["qfs"]))
    value = reporting.fmt(primary["value"], 3, signed=True)
    blocks: list[reporting.Block] = [
        ("h", 1, "JPEG restoration report"),
        ("h", 2, "Model"),
        ("table", ["item", "value"], [[k, reporting.fmt(v, 0)] for k, v in facts]),
        ("h", 2, "Primary metric"),
        ("p", f"{primary['name']} = {value} dB (sets: {sets}; QFs: {qfs})"),
        ("table", ["headline metric", "value"], [[k, str(v)] for k, v in results_mod.headline(metrics).items()]),
        ("h", 2, "Against the registry's champion"),
        *reporting.champion_blocks(metrics, *champion),
        ("h", 2, "Results"),
        (
            "p",
            (
                "RGB PSNR / SSIM / PSNR-B on whole images (OpenCV 4:2:0 JPEG, no border crop); PSNR (Y) on luma. "
                "Published rows are the authors' numbers on the same protocol, labelled with their source "
                "(reference/published.yaml); their gain is over the published JPEG row."
            ),
        ),
    ]
    for set_name, by_qf in results.items():
        blocks += [("h", 3, set_name), reporting.set_table(set_name, by_qf, published, n_params)]
        if set_name in gain_plots:
            blocks.append(("img", gain_plots[set_name], f"{set_name}: PSNR gain over the JPEG input vs QF"))
    for set_name, rw in metrics["real_world"].items():
        blocks += [("h", 2, f"Photos as users have them: {set_name}")]
        blocks += [
            (
                "p",
                (
                    "Made from the references by `python -m stages.make_testsets realworld` and restored the way "
                    "`restore` does (header read, grid and QF decided by pipeline/restoration/photo.py). "
                    "PSNR of identical "
                    "images is shown as 100 dB; the truth of a double JPEG is its stronger (first) compression. "
                    "Where no QF is exact (resized, recompressed on a shifted grid), the best hand-picked QF is the "
                    "one of `evaluate.best_qf_grid` at which restoring every photo gains most; share: the part of "
                    "that gain the decision got."
                ),
            )
        ]
        if rw["cases"]:
            blocks.append(reporting.real_world_table(rw["cases"]))
        if set_name in (rw_plots or {}):
            blocks.append(("img", rw_plots[set_name], f"{set_name}: gain vs QF per case"))
        for case, note in rw.get("excluded", {}).items():
            blocks.append(("p", f"{case}: {len(note['images'])} reference(s) left out ({note['reason']})."))
    negative = [results_mod.sentence(n) for n in results_mod.negative_gains(metrics)]
    blocks += [("h", 2, "Negative gains (the model made the images worse)")]
    blocks += [("list", negative) if negative else ("p", "none")]
    blocks += [("h", 2, "QF estimator: mean absolute error (quality units)"), reporting.qf_mae_table(results)]
    blocks += [("h", 2, f"Visual comparison at QF {', '.join(map(str, CROP_QFS))}")]
    blocks += [("img", rel, caption) for rel, caption in crops] or [("p", "No crops.")]
    blocks += [("h", 2, "Training")]
    if train_curve:
        blocks.append(("img", train_curve, "training loss and validation PSNR vs step"))
        last = next((r for r in reversed(train_log) if r.get("val_psnr") is not None), None)
        if last:
            psnr, jpeg = reporting.fmt(last["val_psnr"]), reporting.fmt(last.get("val_psnr_jpeg"))
            blocks.append(
                ("p", f"Last validation (step {reporting.fmt(last.get('step'), 0)}): {psnr} dB, JPEG {jpeg} dB.")
            )
    else:
        blocks.append(("p", "No training log."))
    return blocks


def champion_evaluation(model_name: str, run_id: str | None) -> tuple[dict[str, Any] | None, str]:
    """The registry champion's stored evaluation and a label saying which version it is (or why none)."""
    try:
        champ = registry.alias_version(model_name, "champion")
        if champ is None:
            return None, f"the registry has no champion of {model_name} yet"
        label = f"{model_name} v{champ['version']}"
        if champ["run_id"] and champ["run_id"] == run_id:
            label += ", this very model"
        path = tracking.run_evaluation(champ["run_id"]) if champ["run_id"] else None
    except Exception as e:  # noqa: BLE001 - tracking exposes no error type; the report goes on without it
        return None, f"the registry could not be read ({e})"
    if path is None:
        return None, f"{label} has no stored evaluation"
    try:
        return results_mod.load(path), label
    except results_mod.ResultsError as e:
        return None, str(e)


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


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml passes them."""

    evaluation: Path
    gain_vs_qf: Path
    train_log: Path
    crops: Path
    published: Path
    md: Path
    html: Path
    plots: Path


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Write the report, its HTML page and plots, log them to MLflow; a summary."""
    if not Path(paths.evaluation).is_file():
        raise FileNotFoundError(f"{paths.evaluation}: not found; run the evaluate stage first")
    metrics = results_mod.load(paths.evaluation)
    results, base = metrics["results"], Path(paths.md).parent
    gains = read_csv(paths.gain_vs_qf) or [  # no CSV: the same numbers from the evaluation
        {"set": s, "qf": float(q)} | {f"gain_{m}": r.get(m, {}).get("gain") for m in reporting.MODES}
        for s, by_qf in results.items()
        for q, r in by_qf.items()
    ]

    def plot(name: str, png: bytes) -> str:
        files.write_bytes(Path(paths.plots) / name, png)
        return os.path.relpath(Path(paths.plots) / name, base)

    rw_plots = {}
    for set_name, rw in metrics["real_world"].items():
        png = reporting.real_world_plot(set_name, rw["cases"])
        if png:
            rw_plots[set_name] = plot(f"real_world_{set_name}.png", png)
    gain_plots = {}
    for set_name in results:
        rows = [g for g in gains if g["set"] == set_name]
        if rows:
            gain_plots[set_name] = plot(f"gain_vs_qf_{set_name}.png", reporting.gain_plot(set_name, rows))
    train_log = read_csv(paths.train_log)
    train_curve = plot("train_curve.png", reporting.train_plot(train_log)) if train_log else None
    crops = find_crops(Path(paths.crops), list(results), base)
    champion = champion_evaluation(params.register.model_name, metrics["model"].get("run_id"))
    published = yaml.safe_load(Path(paths.published).read_text())
    blocks = build(metrics, published, crops, gain_plots, train_curve, train_log, rw_plots, champion)
    files.write_bytes(paths.md, reporting.to_markdown(blocks).encode())
    files.write_bytes(paths.html, reporting.to_html(blocks, "JPEG restoration report", base).encode())
    curves = [*gain_plots.values(), *rw_plots.values(), *([train_curve] if train_curve else [])]
    plots = [base / rel for rel in curves]
    run_id, into_train = log_report(
        params.tracking.experiment, metrics["model"].get("run_id"), [Path(paths.md), Path(paths.html)], plots
    )
    return {
        "markdown": str(paths.md),
        "html": str(paths.html),
        "plots": [str(p) for p in plots],
        "crops": len(crops),
        "champion": champion[1],
        "negative_gains": [results_mod.sentence(n) for n in results_mod.negative_gains(metrics)],
        "run_id": run_id,
        "logged_into_training_run": into_train,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    for name in ("evaluation", "gain-vs-qf", "train-log", "crops", "published", "md", "html", "plots"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    paths = Paths(
        args.evaluation, args.gain_vs_qf, args.train_log, args.crops, args.published, args.md, args.html, args.plots
    )
    try:
        s = run(params_mod.load(args.params), paths)
    except (FileNotFoundError, results_mod.ResultsError, ParamsError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 1
    where = "the training run" if s["logged_into_training_run"] else "a new report run"
    print(f"report: {s['html']} ({len(s['plots'])} plots, {s['crops']} crops); logged to {where} {s['run_id']}")
    print("report: the ablation table of finished experiments is `python -m pipeline.ablations`")
    for line in s["negative_gains"]:
        print(f"report: warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
