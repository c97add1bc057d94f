"""Train-detector stage (DVC stage ``train_detector``)::

    python -m stages.train_detector --data DIR --out FILE [--params FILE]
        [--set-dirs DIR ...] [--clean-sets SET ...] [--skip-sets SET ...] [--not-clean STEM ...]

Trains the JPEG-history detector (``pipeline/training/detector.py``) on the training photos of
``<--data>/<SET>`` for SET in ``data.train_sets`` (never a test set), calibrates it on held-out
training photos and writes ``--out`` (``detector.npz``, beside the restoration model: the
evaluate stage, ``restore``, the app and every registered version decide with it). The
calibration figures and the time go to its own MLflow run and into the file's metadata.

``--set-dirs`` and the ``--clean-sets``/``--skip-sets``/``--not-clean`` overrides are for a
detector trained outside the pipeline on folders of your own; the shipped one
(``models/pretrained/detector.npz``, its command in the model card) was made so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipeline.core import images
from pipeline.mlops import tracking
from pipeline.params import DetectorParams, ParamsError, load
from pipeline.training.detector import fit


def flat_figures(figures: dict, prefix: str = "") -> dict[str, float]:
    """The calibration figures as MLflow metrics: nested keys joined by '.', numbers only."""
    out: dict[str, float] = {}
    for k, v in figures.items():
        key = f"{prefix}{k}".replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        if isinstance(v, dict):
            out |= flat_figures(v, key + ".")
        elif isinstance(v, (int, float)):
            out[key] = float(v)
    return out


def run(p: DetectorParams, set_dirs: list[Path], out: Path, experiment: str) -> dict:
    """Train, calibrate and write ``out``; returns the detector's metadata."""
    missing = [str(d) for d in set_dirs if not d.is_dir()]
    if missing:
        raise images.ImageError(f"training set folder(s) not found: {', '.join(missing)}")
    with tracking.start_run("train_detector", experiment):
        tracking.log_params({f"detector.{k}": v for k, v in dataclasses.asdict(p).items()})
        tracking.log_params({"set_dirs": [str(d) for d in set_dirs]})
        det = fit(p, set_dirs)
        det.save(out)
        tracking.log_metrics(flat_figures({"calibration": det.meta["calibration"], "seconds": det.meta["seconds"]}))
        tracking.log_dict(det.meta, "detector/meta.json")
        tracking.log_artifact(out, "detector")
    return det.meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="the training sets' root: <DIR>/<SET> for SET in data.train_sets")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set-dirs", type=Path, nargs="+", help="set folders to train on instead of --data's")
    for name in ("clean-sets", "skip-sets", "not-clean"):
        ap.add_argument(f"--{name}", nargs="*", help=f"instead of detector.{name.replace('-', '_')}")
    args = ap.parse_args(argv)
    try:
        params = load(args.params, check_archs=False)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.set_dirs is None and args.data is None:
        ap.error("give --data (the sets of data.train_sets under it) or --set-dirs")
    p = params.detector
    overrides = {
        k: tuple(getattr(args, k)) for k in ("clean_sets", "skip_sets", "not_clean") if getattr(args, k) is not None
    }
    p = dataclasses.replace(p, **overrides)
    set_dirs = args.set_dirs or [args.data / s for s in params.data.train_sets]
    try:
        meta = run(p, set_dirs, args.out, params.tracking.experiment)
    except (images.ImageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cal = meta["calibration"]
    print(
        f"trained the JPEG-history detector on {meta['samples']} samples in {meta['seconds']['total']:.0f} s: "
        f"held-out never-compressed variants unchanged {cal['clean_variants']['unchanged']:.2%}, "
        f"random never-compressed histories {cal['clean_random_samples']['unchanged']:.2%}; wrote {args.out}"
    )
    print(json.dumps(cal["compressed_png"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
