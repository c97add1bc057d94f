"""Print the pipeline's results and where to look next (the end of ./quickstart.sh)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.mlops.tracking import tracking_uri


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, help="how long the pipeline took")
    args = ap.parse_args(argv)
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
    promo = root / "reports" / "promotion.json"
    if promo.exists():
        d = json.loads(promo.read_text())
        before = d.get("champion_before") or {}
        print(
            f"registry: candidate v{d['candidate']['version']} ({d['candidate']['value']:+.3f} dB) vs champion "
            f"v{before.get('version', '-')} ({before.get('value', float('nan')):+.3f} dB): "
            f"{'promoted' if d['promoted'] else 'not promoted'}; champion is v{d['champion_after']}"
        )
    if args.seconds is not None:
        print(f"pipeline time: {args.seconds // 60} min {args.seconds % 60} s")
    print(f"""
report:     {root / "reports" / "report.html"}  (and report.md)
MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {tracking_uri()}
app:        .venv/bin/streamlit run app.py   (http://127.0.0.1:8501)
restore:    .venv/bin/python -m pipeline.restore photo.jpg -o restored/""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
