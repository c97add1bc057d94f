"""Move the registry's ``champion`` by hand (the app's Models page runs the same functions)::

    python -m pipeline.promote                 # champion, candidate, previous and the champion history
    python -m pipeline.promote --version 3     # version 3 becomes champion, whatever its numbers
    python -m pipeline.promote --candidate     # the version holding `candidate` becomes champion
    python -m pipeline.promote --rollback      # back to the champion before; again: one further back

Decisions go to MLflow only (a "promote" run, and the registered model's ``champion_history``
tag), never to a DVC output: ``dvc status`` stays clean. The automatic gate is the DVC stage
``promote`` (``pipeline/mlops/promotion.py``).
"""

from __future__ import annotations

import argparse
import sys

from pipeline.mlops import registry
from pipeline.mlops.promotion import PromotionError, promote_version, rollback
from pipeline.mlops.tracking import tracking_uri
from pipeline.params import ParamsError, load


def describe(name: str) -> list[str]:
    """Champion, candidate and previous (shipped or trained, by which experiment, primary metric),
    and the champion history, one line each."""
    lines = [f"registry {name} ({tracking_uri()}):"]
    for alias in ("champion", "candidate", "previous"):
        v = registry.alias_version(name, alias)
        if v is None:
            lines.append(f"  {alias:9} -")
            continue
        facts = ["shipped" if v["tags"].get("pretrained_sha256") else "trained"]
        if exp := registry.run_tag(v["run_id"], "dvc_exp_name"):
            facts.append(f"experiment {exp}")
        if (value := v["tags"].get("primary_value")) is not None:
            facts.append(f"primary {float(value):+.3f} dB")
        lines.append(f"  {alias:9} v{v['version']} ({', '.join(facts)})")
    history = registry.champion_history(name)
    lines.append("  history   " + (" -> ".join(f"v{h}" for h in history) or "-") + "  (--rollback walks it back)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.promote",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    move = ap.add_mutually_exclusive_group()
    move.add_argument("--version", help="make this registered version the champion")
    move.add_argument("--candidate", action="store_true", help="make the version holding 'candidate' the champion")
    move.add_argument("--rollback", action="store_true", help="give champion back to the version before it")
    ap.add_argument("--params", default="params.yaml", help="for register.model_name and the tracking experiment")
    args = ap.parse_args(argv)
    try:
        params = load(args.params)
        name = params.register.model_name
        if args.rollback:
            d = rollback(params)
            print(f"rolled back: champion is now version {d['champion_after']} (was {d['champion_before']})")
        elif args.version or args.candidate:
            version = args.version
            if args.candidate:
                candidate = registry.alias_version(name, "candidate")
                if candidate is None:
                    raise PromotionError(f"{name}: no version has the alias 'candidate'")
                version = candidate["version"]
            d = promote_version(params, version)
            print(f"version {d['champion_after']} promoted to champion (was {d['champion_before']})")
        print("\n".join(describe(name)))
    except (ParamsError, PromotionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
