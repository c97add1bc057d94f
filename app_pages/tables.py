"""Pure helpers of the Results and Models pages: evaluations and registry versions -> tables and sentences.

An evaluation's ``results`` is ``{set: {qf: {"jpeg", "blind", "header": {psnr, ssim, psnrb, ..., "gain"}, "n"}}}``
(``pipeline/evaluation/results.py`` owns the shape).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COMPARED = {"gain": "gain", "psnr": "PSNR", "ssim": "SSIM", "psnrb": "PSNR-B"}  # in this order on the page


def _cells(r: dict, mode: str) -> dict[str, float | None]:
    restored = r.get(mode, {})
    return {label: restored.get(key) for key, label in COMPARED.items()}


def comparison(champion: dict, candidate: dict, mode: str = "blind") -> pd.DataFrame:
    """One row per (set, QF) scored for both: each model's PSNR, SSIM, PSNR-B and gain over the
    JPEG input, and the candidate minus the champion ("Δ"). Empty when they share no set and QF."""
    rows = []
    for set_name, by_qf in candidate.items():
        for qf, cand in by_qf.items():
            champ = champion.get(set_name, {}).get(qf)
            if champ is None:
                continue
            a, b = _cells(champ, mode), _cells(cand, mode)
            row = {
                "set": set_name,
                "QF": int(qf),
                "images": cand.get("n"),
                "JPEG PSNR": cand.get("jpeg", {}).get("psnr"),
            }
            for label in COMPARED.values():
                row[f"champion {label}"], row[f"candidate {label}"] = a[label], b[label]
                row[f"Δ {label}"] = None if a[label] is None or b[label] is None else b[label] - a[label]
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["set", "QF"], ignore_index=True) if rows else pd.DataFrame()


def verdict(table: pd.DataFrame, champion: str, candidate: str) -> str:
    """ "Is the candidate better, at which QFs?" in one sentence per test set, from ``comparison``."""
    lines = []
    for set_name, rows in table.groupby("set", sort=True):
        better = [str(q) for q, d in zip(rows["QF"], rows["Δ gain"], strict=True) if d is not None and d > 0]
        worse = [str(q) for q, d in zip(rows["QF"], rows["Δ gain"], strict=True) if d is not None and d < 0]
        mean = rows["Δ gain"].mean()
        parts = [
            f"better at QF {', '.join(better)}" if better else "",
            f"worse at QF {', '.join(worse)}" if worse else "",
        ]
        said = " and ".join(p for p in parts if p) or "equal at every QF"
        lines.append(f"**{set_name}**: {candidate} is {said} than {champion} (mean PSNR gain {mean:+.3f} dB).")
    return "\n\n".join(lines)


def gain_curves(evaluations: dict[str, dict], mode: str = "blind") -> pd.DataFrame:
    """PSNR gain over the JPEG input by QF (index), one column per model and test set."""
    columns = {}
    for label, results in evaluations.items():
        for set_name, by_qf in results.items():
            points = {int(q): r.get(mode, {}).get("gain") for q, r in by_qf.items()}
            columns[f"{label}, {set_name}"] = pd.Series({q: g for q, g in points.items() if g is not None}, dtype=float)
    return pd.DataFrame(columns).sort_index().rename_axis("QF")


def primary_text(key: str | None) -> str:
    """``score.psnr_gain_blind.LIVE1+BSDS500.qf10-20`` -> ``LIVE1+BSDS500, QF 10-20``."""
    if not key or not key.startswith("score.psnr_gain_blind."):
        return key or ""
    sets, _, qfs = key.removeprefix("score.psnr_gain_blind.").rpartition(".qf")
    return f"{sets}, QF {qfs}"


def source_text(version: dict) -> str:
    """Where a version came from: the shipped file or the run that trained it."""
    tags = version["tags"]
    if "pretrained_sha256" in tags:
        return f"shipped: {tags.get('source', 'models/pretrained')}"
    return f"trained: run {version['run_id'][:8]}" if version.get("run_id") else "unknown"


def version_row(version: dict, facts: dict) -> dict[str, Any]:
    """A Models-page row: ``facts`` (arch, params, steps, data) fill what the tags lack."""
    tags = version["tags"]

    def fact(key: str) -> Any:
        value = tags.get(key) or facts.get(key)
        try:
            return float(value) if key in ("params", "steps") and value is not None else value
        except ValueError:
            return value

    params, primary = fact("params"), tags.get("primary_value")
    return {
        "version": int(version["version"]),
        "aliases": ", ".join(sorted(version["aliases"])),
        "source": source_text(version),
        "arch": fact("arch"),
        "parameters (M)": None if params is None else round(params / 1e6, 2),
        "steps": fact("steps"),
        "primary metric (dB)": None if primary is None else float(primary),
        "scored on": primary_text(tags.get("primary_key")),
        "data": fact("data"),
        "created": pd.to_datetime(version["created"], unit="ms"),
    }
