"""The headline metrics: the few numbers ``dvc exp show`` and ``dvc metrics diff`` compare.

An evaluation (reports/evaluation.json: every set x QF x mode) is boiled down to at most 8
short scalars, so that ``COLUMNS=160 dvc exp show --only-changed`` fits without ellipses:

- ``primary``: the primary metric, mean blind-mode PSNR gain (dB) over ``evaluate.primary_sets``
  x ``primary_qfs`` (what the registry promotes on);
- ``gain_<SET>``: mean blind-mode PSNR gain over every QF, per test set (not for a set that is
  the primary metric's only set: ``primary`` already is its gain);
- ``qf10``, ``qf40``: blind-mode PSNR (dB) of the first test set at QF 10 and 40 (when evaluated);
- ``real_world``: mean PSNR gain of the real-world cases that were compressed (when that
  evaluation exists; a never-compressed photo scores 100 dB when left unchanged, a convention
  that would swamp the mean: the report shows that case on its own);
- ``params_M``: parameters in millions; ``ms_img``: mean milliseconds to restore one test image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_KEYS = 8


def headline(evaluation: dict[str, Any]) -> dict[str, float]:
    """The headline metrics of an evaluation (the evaluate stage's detail file), rounded for reading."""
    results, primary = evaluation.get("results", {}), evaluation.get("primary", {})
    out: dict[str, float] = {}
    if primary.get("value") is not None:
        out["primary"] = round(float(primary["value"]), 3)
    for name, by_qf in results.items():
        if [name] != list(primary.get("sets", [])):
            out[f"gain_{name}"] = round(float(np.mean([r["blind"]["gain"] for r in by_qf.values()])), 3)
    first = results.get(next(iter(results), ""), {})
    for qf in (10, 40):
        if str(qf) in first:
            out[f"qf{qf}"] = round(float(first[str(qf)]["blind"]["psnr"]), 2)
    cases = [c for rw in (evaluation.get("real_world") or {}).values() for c in rw.get("cases", [])]
    gains = [c["gain"] for c in cases if c.get("psnr_in") is None or c["psnr_in"] < 99.0]
    if gains:
        out["real_world"] = round(float(np.mean(gains)), 3)
    params = (evaluation.get("model") or {}).get("params")
    if isinstance(params, (int, float)):
        out["params_M"] = round(params / 1e6, 3)
    ms = (evaluation.get("timing") or {}).get("ms_per_image")
    if ms is not None:
        out["ms_img"] = round(float(ms), 1)
    return out
