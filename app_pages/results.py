"""Results page: the evaluation report in reports/ and a comparison of the MLflow runs."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import common
from pipeline import tracking

REPORTS = Path("reports")
METRICS = ("psnr", "ssim", "psnrb", "psnr_y", "ssim_y", "psnrb_y")


def results_table(results: dict, metric: str) -> pd.DataFrame:
    """One row per (set, QF): the JPEG input, blind and header-QF restorations, and their gains."""
    rows = []
    for set_name, by_qf in results.items():
        for qf, r in by_qf.items():
            jpeg = r.get("jpeg", {}).get(metric)
            row = {"set": set_name, "QF": int(qf), "images": r.get("n"), "JPEG": jpeg}
            for mode in ("blind", "header"):
                value = r.get(mode, {}).get(metric)
                row[mode] = value
                row[f"{mode} gain"] = None if value is None or jpeg is None else value - jpeg
            row["QF estimate MAE"] = r.get("qf_est_mae")
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["set", "QF"])


st.title("Results")
st.header("Evaluation")
metrics_file, plots = REPORTS / "metrics.json", sorted((REPORTS / "plots").glob("*.png"))
if not metrics_file.is_file() and not plots:
    st.info("No evaluation reports yet: reports/ is empty. Run the pipeline (`dvc repro`) to evaluate a model.")
if metrics_file.is_file():
    try:
        report = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as e:
        st.error(f"{metrics_file} cannot be read: {e}")
        report = {}
    primary = report.get("primary")
    if primary:
        where = f"{', '.join(map(str, primary.get('sets', [])))} at QF {', '.join(map(str, primary.get('qfs', [])))}"
        value = primary.get("value")
        shown_value = f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
        st.metric(f"Primary metric: {primary.get('name')}", shown_value, help=where)
    if report.get("results"):
        metric = st.selectbox("Metric", METRICS, format_func=lambda m: m.upper().replace("_Y", " (luma)"))
        st.dataframe(results_table(report["results"], metric), hide_index=True)
    if report.get("negative_gains"):
        worse = "\n".join(f"- {g}" for g in report["negative_gains"])
        st.warning(f"Restoration made these worse than the JPEG input:\n{worse}")
    if report.get("model"):
        with st.expander("Model evaluated"):
            st.json(report["model"])
for plot in plots:
    st.image(str(plot), caption=plot.stem)

st.header("MLflow runs")
experiment = common.load_params().tracking.experiment
runs = tracking.search_runs(experiment)
if not runs:
    st.info(f"No MLflow runs in experiment {experiment!r} ({tracking.tracking_uri()}) yet.")
else:
    stages = sorted({r["tags"].get("stage", "") for r in runs})
    shown = st.multiselect("Stages", stages, default=[s for s in stages if "train" in s] or stages)
    rows = [
        {"run": r["name"], "id": r["run_id"][:8], "stage": r["tags"].get("stage", ""), "status": r["status"],
         "started": pd.to_datetime(r["start"], unit="ms"),
         **{f"param {k}": v for k, v in r["params"].items()}, **{f"metric {k}": v for k, v in r["metrics"].items()}}
        for r in runs if r["tags"].get("stage", "") in shown
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    if len(table) > 1 and st.checkbox("Only parameters that differ between these runs", value=True):
        same = [c for c in table.columns if c.startswith("param ") and table[c].nunique(dropna=False) <= 1]
        table = table.drop(columns=same)
    st.dataframe(table, hide_index=True)
