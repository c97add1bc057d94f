"""The ablation table from ``dvc exp show --json`` (DVC 3.x): every finished experiment, queued
ones included, with its headline metrics and only the params it changed relative to the commit
it started from (its baseline, which ``dvc exp run`` records as ``DVC_EXP_BASELINE_REV``)::

    python -m pipeline.ablations            # Markdown on stdout; -o FILE to write it

Not part of the report stage: a report made inside ``dvc repro`` (or inside a queued experiment,
in a copy without the experiment refs) cannot list the experiments that finish after it, and its
table would depend on state DVC does not track. Run it once ``dvc queue status`` is done.

The JSON is a list of entries ``{rev, name, data: {params: {file: {data}}, metrics: {file: {data}}},
error, experiments: [{name, executor: null | {state}, revs: [an entry]}] | null}``: first
"workspace", then each baseline commit with the experiments that started from it. Experiments
queued from the committed ``params.yaml`` therefore list exactly their ``-S`` overrides; one run
in a workspace holding other edits lists those too, since it ran them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

Block = tuple


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _params(entry: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for f in ((entry.get("data") or {}).get("params") or {}).values():
        params |= flatten(f.get("data") or {})
    return params


def _headline(entry: dict[str, Any]) -> dict[str, float]:
    """The headline metrics file's scalars (the one with ``primary``), or {}."""
    for f in ((entry.get("data") or {}).get("metrics") or {}).values():
        data = f.get("data") or {}
        if "primary" in data:
            return {k: v for k, v in data.items() if isinstance(v, (int, float))}
    return {}


def parse(exp_show: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"baselines": [{name, rev, metrics}], "finished": [rows], "unfinished": {name: state}}``;
    a row is ``{name, rev, baseline, changed, metrics}``, ``changed`` relative to its baseline commit."""
    baselines, finished, unfinished = [], [], {}
    for commit in (e for e in exp_show if e.get("rev") != "workspace"):
        base_name = str(commit.get("name") or str(commit.get("rev", ""))[:7])
        base_params, exps = _params(commit), commit.get("experiments") or []
        if exps:
            baselines.append({"name": base_name, "rev": str(commit.get("rev", ""))[:7], "metrics": _headline(commit)})
        for exp in exps:
            rev = exp["revs"][0]  # the newest revision of the experiment
            name = exp.get("name") or rev.get("name") or str(rev.get("rev", ""))[:7]
            state = (exp.get("executor") or {}).get("state") or ("failed" if rev.get("error") else "success")
            metrics = _headline(rev)
            if state != "success" or not metrics:
                unfinished[name] = state if state != "success" else "no metrics"
                continue
            params = _params(rev)
            changed = {k: v for k, v in params.items() if base_params.get(k, object()) != v}
            row = {"name": name, "rev": str(rev.get("rev", ""))[:7], "baseline": base_name, "changed": changed}
            finished.append(row | {"metrics": metrics})
    return {"baselines": baselines, "finished": finished, "unfinished": unfinished}


def from_dvc(root: Path) -> dict[str, Any] | str:
    """``parse`` of ``dvc exp show --json`` run in ``root``, or why there is nothing to show."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"]  # the dvc installed beside this Python
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    try:
        out = subprocess.run(cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`dvc exp show` did not run ({e})."
    if out.returncode != 0:
        return f"`dvc exp show` failed: {(out.stderr.strip().splitlines() or ['no message'])[-1]}"
    try:
        return parse(json.loads(out.stdout))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:  # a format we do not know
        return f"could not read the output of `dvc exp show --json` ({e!r})."


def _cell(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def ablation_blocks(parsed: dict[str, Any] | str) -> list[Block]:
    """The ablation table, or a paragraph saying why there is none (``parsed`` may be an error message)."""
    if isinstance(parsed, str):
        return [("p", f"No ablation table: {parsed}")]
    rows, blocks = parsed["finished"], []
    if not rows:
        blocks.append(("p", "No finished experiments in `dvc exp show` (run `dvc exp run --queue -S key=value`)."))
    else:
        keys = list(dict.fromkeys(k for r in [*parsed["baselines"], *rows] for k in r["metrics"]))
        head = ["experiment", "rev", "changed params", *keys, "primary vs baseline"]
        table = []
        for base in parsed["baselines"]:
            cells = [_cell(base["metrics"].get(k, "-")) for k in keys]
            table.append([f"{base['name']} (baseline)", base["rev"], "-", *cells, "-"])
            for r in (r for r in rows if r["baseline"] == base["name"]):
                delta = r["metrics"].get("primary"), base["metrics"].get("primary")
                diff = f"{delta[0] - delta[1]:+.3f}" if None not in delta else "-"
                changed = ", ".join(f"{k}={v}" for k, v in r["changed"].items()) or "(nothing)"
                table.append([r["name"], r["rev"], changed, *(_cell(r["metrics"].get(k, "-")) for k in keys), diff])
        note = (
            "Headline metrics (reports/metrics.json, dB unless named otherwise) of every finished experiment, "
            "under the commit it started from; changed params are relative to that commit's params.yaml."
        )
        blocks += [("p", note), ("table", head, table)]
    if parsed["unfinished"]:
        shown = ", ".join(f"{n} ({s})" for n, s in parsed["unfinished"].items())
        blocks.append(("p", f"Not shown, not finished: {shown}."))
    return blocks
