"""Print the pipeline's results and where to look next (the end of ./quickstart.sh)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline.evaluation import results as results_mod
from pipeline.mlops import registry, tracking
from pipeline.mlops.tracking import tracking_uri
from pipeline.params import load
from pipeline.promote import describe


def side_by_side(name: str) -> list[str]:
    """The champion's blind PSNR gain beside the candidate's, per set and QF, from each version's
    stored evaluation (nothing when they are the same version or one has none)."""
    champ, cand = (registry.alias_version(name, a) for a in ("champion", "candidate"))
    if not champ or not cand or champ["version"] == cand["version"]:
        return []
    gains = []
    for v in (champ, cand):
        path = tracking.run_evaluation(v["run_id"]) if v["run_id"] else None
        try:
            gains.append(results_mod.gains(results_mod.load(path)["results"]) if path else {})
        except results_mod.ResultsError:
            gains.append({})
    c, k = f"champion v{champ['version']}", f"candidate v{cand['version']}"
    lines = [f"\n  {'set':14} {'QF':>3} {c:>14} {k:>14}  (blind PSNR gain, dB)"]
    for s_name, by_qf in gains[1].items():
        for q, g in by_qf.items():
            ch = gains[0].get(s_name, {}).get(q)
            lines.append(f"  {s_name:14} {q:>3} {'-' if ch is None else format(ch, '+.2f'):>14} {g:>+14.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, help="how long the pipeline took")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the evaluations it reads back
    root = Path.cwd()
    metrics = json.loads((root / "reports" / "evaluation.json").read_text())
    print(
        f"\n{'set':14} {'QF':>3} {'JPEG PSNR':>9} {'blind':>7} {'gain':>6} {'header':>7} {'gain':>6} "
        f"{'SSIM':>12} {'PSNR-B':>13}"
    )
    for name, by_qf in metrics["results"].items():
        for q, r in by_qf.items():
            j, b, h = r["jpeg"], r["blind"], r["header"]
            print(
                f"{name:14} {q:>3} {j['psnr']:9.2f} {b['psnr']:7.2f} {b['gain']:+6.2f} "
                f"{h['psnr']:7.2f} {h['gain']:+6.2f} "
                f"{j['ssim']:.3f}>{b['ssim']:.3f} {j['psnrb']:6.2f}>{b['psnrb']:6.2f}"
            )
    headline = json.loads((root / "reports" / "metrics.json").read_text())
    print("\nheadline metrics (reports/metrics.json): " + ", ".join(f"{k} {v}" for k, v in headline.items()))
    p = metrics["primary"]
    print(f"\nprimary metric: {p['value']:+.3f} dB (blind PSNR gain, {'+'.join(p['sets'])} QF {p['qfs']})")
    model_name = load(root / "params.yaml").register.model_name
    print("\n" + "\n".join([*describe(model_name), *side_by_side(model_name)]))
    if args.seconds is not None:
        print(f"pipeline time: {args.seconds // 60} min {args.seconds % 60} s")
    print(f"""
report:     {root / "reports" / "report.html"}  (and report.md)
MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {tracking_uri()}
app:        .venv/bin/streamlit run app.py   (http://127.0.0.1:8501)
restore:    .venv/bin/python -m pipeline.restore photo.jpg -o restored/
experiments: source .venv/bin/activate, then README "Reproduce and extend" (dvc exp run --queue ...)""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
