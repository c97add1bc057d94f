"""Register and promote (DVC stage ``promote``; dvc.yaml passes every path)::

    python -m stages.promote --model FILE --meta FILE --evaluation FILE --testsets DIR --out FILE
                             [--force | --rollback | --force --version N]

Registers the trained model as a new version with the alias ``candidate``; ``champion`` moves to
it only when it beats the current champion's primary metric by ``register.threshold`` dB on the
same test images (``pipeline/mlops/promotion.py``, which the app's Models page also uses). The shipped
``register.pretrained`` model becomes the first champion of an empty registry. --force promotes
the candidate whatever the numbers (``--force --version N``: a registered version N);
--rollback gives ``champion`` back to ``previous``. The decision goes to ``--out`` and MLflow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core import images
from pipeline.mlops.promotion import PromotionError, promote_version, register, rollback
from pipeline.models.checkpoint import CheckpointError
from pipeline.params import ParamsError, load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--force", action="store_true", help="promote the candidate whatever the numbers")
    group.add_argument("--rollback", action="store_true", help="give the champion alias back to 'previous'")
    ap.add_argument("--version", help="with --force: promote this registered version instead of registering one")
    ap.add_argument("--model", type=Path, required=True, help="the trained checkpoint")
    ap.add_argument("--meta", type=Path, required=True, help="its metadata (the train stage's JSON)")
    ap.add_argument("--evaluation", type=Path, required=True, help="its evaluation (the evaluate stage's detail file)")
    ap.add_argument("--testsets", type=Path, required=True, help="the test-set folder (to re-score a champion)")
    ap.add_argument("--out", type=Path, required=True, help="where the decision is written (JSON)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if args.version and not args.force:
        ap.error("--version needs --force")
    try:
        params = load(args.params)
        if args.rollback:
            d = rollback(params, args.out)
        elif args.version:
            d = promote_version(params, args.version, args.out)
        else:
            d = register(params, args.model, args.meta, args.evaluation, args.testsets, args.out, args.force)
    except (ParamsError, PromotionError, CheckpointError, images.ImageError, LookupError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.rollback:
        print(f"rolled back: champion is now version {d['champion_after']} (was {d['champion_before']})")
    elif args.version:
        print(f"version {d['champion_after']} promoted to champion (was {d['champion_before']})")
    elif d["champion_before"] is None:
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
