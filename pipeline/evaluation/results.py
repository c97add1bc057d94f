"""The evaluation results: the one owner of ``evaluation.json`` (the evaluate stage's detail file,
also logged in every evaluated run as ``tracking.EVALUATION_ARTIFACT``).

Every reader (the report, the registry, the app, the scripts, the model card) goes through this
module: its keys, modes, primary metric, negative gains and headline metrics. The shape::

    {"version": 2,
     "model": {"arch", "params", "run_id", "steps", "checkpoint"},
     "options": RestoreOptions as a dict (how the restorations were made),
     "primary": {"name": "psnr_gain", "mode": "blind", "sets": [SET...], "qfs": [QF...], "value": dB},
     "results": {SET: {"<QF>": {"jpeg" | "blind" | "header": {psnr, ssim, psnrb, psnr_y, ..., "gain", "n"},
                                "n", "qf_est_mae", "qf_net_mae"}}},
     "real_world": {SET: {"cases": [per case and QF: psnr_in, psnr_out, gain, ..., best_qf, best_gain, share],
                          "excluded": {...}}},
     "timing": {"ms_per_image": ms}}

The headline metrics (``headline``) are the few numbers ``dvc exp show`` and ``dvc metrics diff``
compare: ``primary``; ``gain_<SET>`` (mean blind gain over every QF, for each set other than the
primary metric's only one); ``qf10``/``qf40`` (blind PSNR of the first set); ``real_world`` (mean
gain of the compressed real-world cases; a never-compressed photo left unchanged scores 100 dB,
a convention that would swamp the mean); ``params_M``. Timings stay out of them: they depend on
the machine, and the headline file is tracked in git as every clone's baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 2
MODES = ("blind", "header")  # the restored modes, beside "jpeg" (the input itself)
MODE_TITLES = {"blind": "QF estimated from the pixels (blind)", "header": "QF read from the JPEG header"}
IDENTICAL_PSNR = 100.0  # PSNR reported for identical images (instead of infinity)


class ResultsError(ValueError):
    """An evaluation file this code cannot read; the message names it."""


def primary_key(sets: list[str], qfs: list[int]) -> str:
    """The registry tag under which a version's primary metric on these sets and QFs is kept."""
    return f"score.psnr_gain_blind.{'+'.join(sets)}.qf{'-'.join(map(str, qfs))}"


def primary_value(results: dict[str, Any], sets: list[str], qfs: list[int]) -> float:
    """Mean blind-mode PSNR gain (dB) over ``sets`` x ``qfs``."""
    return float(np.mean([results[s][str(q)]["blind"]["gain"] for s in sets for q in qfs]))


def primary_scope(results: dict[str, Any], sets: list[str], qfs: list[int]) -> tuple[list[str], list[int]]:
    """The sets and QFs the primary metric is taken over: those asked for that were evaluated
    (all of them when none was)."""
    chosen = [s for s in sets if s in results] or list(results)
    first = results[chosen[0]]
    return chosen, [q for q in qfs if str(q) in first] or sorted(map(int, first))


def build(
    model: dict[str, Any],
    options: dict[str, Any],
    results: dict[str, Any],
    sets: list[str],
    qfs: list[int],
    real_world: dict[str, Any] | None = None,
    ms_per_image: float | None = None,
) -> dict[str, Any]:
    """A complete evaluation; the primary metric over ``sets`` x ``qfs`` (see ``primary_scope``)."""
    sets, qfs = primary_scope(results, sets, qfs)
    return {
        "version": VERSION,
        "model": model,
        "options": options,
        "primary": {
            "name": "psnr_gain",
            "mode": "blind",
            "sets": sets,
            "qfs": qfs,
            "value": primary_value(results, sets, qfs),
        },
        "results": results,
        "real_world": real_world or {},
        "timing": {"ms_per_image": ms_per_image},
    }


def parse(data: Any, source: str) -> dict[str, Any]:
    """``data`` checked to be an evaluation this code writes; ``source`` names it in errors."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        raise ResultsError(
            f"{source}: not an evaluation of version {VERSION} (found {found!r}); "
            "run `dvc repro evaluate` to write it again"
        )
    for key in ("model", "primary", "results"):
        if key not in data:
            raise ResultsError(f"{source}: evaluation without {key!r}")
    return data


def load(path: str | Path) -> dict[str, Any]:
    """Read and check an evaluation file (raises ResultsError naming the file)."""
    try:
        return parse(json.loads(Path(path).read_text()), str(path))
    except (OSError, ValueError) as e:
        if isinstance(e, ResultsError):
            raise
        raise ResultsError(f"{path}: cannot read the evaluation: {e}") from None


def dumps(evaluation: dict[str, Any]) -> bytes:
    return json.dumps(evaluation, indent=1).encode()


def merge(evaluation: dict[str, Any], grid: dict[str, Any]) -> dict[str, Any]:
    """``evaluation`` with the set x QF results of ``grid`` (``scoring.evaluate_grid``) added."""
    results = {s: dict(by_qf) for s, by_qf in evaluation["results"].items()}
    for s, by_qf in grid.items():
        results.setdefault(s, {}).update(by_qf)
    return {**evaluation, "results": results}


def missing(evaluation: dict[str, Any] | None, sets: list[str], qfs: list[int]) -> list[tuple[str, int]]:
    """(set, QF) pairs of ``sets`` x ``qfs`` the evaluation does not cover."""
    results = (evaluation or {}).get("results", {})
    return [(s, q) for s in sets for q in qfs if str(q) not in results.get(s, {})]


def gains(results: dict[str, Any], mode: str = "blind") -> dict[str, dict[int, float]]:
    """{set: {QF: PSNR gain over the JPEG input}} of one mode."""
    return {
        s: {int(q): r[mode]["gain"] for q, r in by_qf.items() if "gain" in r.get(mode, {})}
        for s, by_qf in results.items()
    }


def compressed_cases(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The real-world case summaries whose input was compressed (not the never-compressed photos)."""
    cases = [c for rw in (evaluation.get("real_world") or {}).values() for c in rw["cases"]]
    return [c for c in cases if c["psnr_in"] < IDENTICAL_PSNR - 1]


def negative_gains(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every set/QF/mode, and every real-world case, where restoring made the photos worse than
    its input: {"set", "qf", "mode", "gain"} (mode: blind, header, or "real world: <case title>")."""
    found = [
        {"set": s, "qf": int(q), "mode": m, "gain": r[m]["gain"]}
        for s, by_qf in evaluation["results"].items()
        for q, r in sorted(by_qf.items(), key=lambda kv: int(kv[0]))
        for m in MODES
        if r.get(m, {}).get("gain", 0.0) < 0
    ]
    found += [
        {"set": s, "qf": c["qf"], "mode": f"real world: {c['title']}", "gain": c["gain"]}
        for s, rw in (evaluation.get("real_world") or {}).items()
        for c in rw["cases"]
        if c["gain"] < 0
    ]
    return found


def sentence(negative: dict[str, Any]) -> str:
    """One of ``negative_gains`` as a sentence."""
    how = MODE_TITLES.get(negative["mode"], negative["mode"])
    qf = "" if negative["qf"] is None else f" at QF {negative['qf']}"
    return (
        f"{negative['set']}{qf}: restoring ({how}) makes the photos {abs(negative['gain']):.3f} dB worse (PSNR) "
        "than the input."
    )


def headline(evaluation: dict[str, Any]) -> dict[str, float]:
    """The headline metrics of an evaluation, rounded for reading (see the module's docstring)."""
    results, primary = evaluation["results"], evaluation["primary"]
    out: dict[str, float] = {"primary": round(float(primary["value"]), 3)}
    for name, by_qf in results.items():
        if [name] != list(primary["sets"]):
            out[f"gain_{name}"] = round(float(np.mean([r["blind"]["gain"] for r in by_qf.values()])), 3)
    first = results.get(next(iter(results), ""), {})
    for qf in (10, 40):
        if str(qf) in first:
            out[f"qf{qf}"] = round(float(first[str(qf)]["blind"]["psnr"]), 2)
    cases = compressed_cases(evaluation)
    if cases:
        out["real_world"] = round(float(np.mean([c["gain"] for c in cases])), 3)
    params = evaluation["model"].get("params")
    if isinstance(params, (int, float)):
        out["params_M"] = round(params / 1e6, 3)
    return out
