"""Register and promote (DVC stage ``promote``; dvc.yaml passes every path)::

    python -m stages.promote --model FILE --meta FILE --evaluation FILE --testsets DIR --out FILE

Registers the trained model as a new version with the alias ``candidate``; ``champion`` moves to
it only when it beats the current champion's primary metric by ``register.threshold`` dB on the
same test images (``pipeline/mlops/promotion.py``). The shipped ``register.pretrained`` model
becomes the first champion of an empty registry. The decision goes to ``--out`` and MLflow. To
move the champion by hand: ``python -m pipeline.promote`` (it writes no DVC output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core import images
from pipeline.mlops.promotion import PromotionError, register
from pipeline.models.checkpoint import CheckpointError
from pipeline.params import ParamsError, load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="the trained checkpoint")
    ap.add_argument("--meta", type=Path, required=True, help="its metadata (the train stage's JSON)")
    ap.add_argument("--evaluation", type=Path, required=True, help="its evaluation (the evaluate stage's detail file)")
    ap.add_argument("--testsets", type=Path, required=True, help="the test-set folder (to re-score a champion)")
    ap.add_argument("--out", type=Path, required=True, help="where the decision is written (JSON)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    try:
        params = load(args.params)
        d = register(params, args.model, args.meta, args.evaluation, args.testsets, args.out)
    except (ParamsError, PromotionError, CheckpointError, images.ImageError, LookupError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if d["champion_before"] is None:
        print(f"version {d['candidate']['version']} is the first champion ({d['candidate']['value']:+.3f} dB)")
    else:
        verdict = "promoted to champion" if d["promoted"] else "not promoted"
        print(
            f"version {d['candidate']['version']}: {d['candidate']['value']:+.3f} dB "
            f"vs champion v{d['champion_before']['version']} "
            f"{d['champion_before']['value']:+.3f} dB (threshold {d['threshold']}): {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
