"""Results page: the champion against the latest candidate, the evaluation report in reports/, the MLflow runs."""

from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import common, tables
from pipeline.evaluation import results
from pipeline.mlops import registry, tracking

REPORTS = Path("reports")
METRICS = ("psnr", "ssim", "psnrb", "psnr_y", "ssim_y", "psnrb_y")


def results_table(by_set: dict, metric: str) -> pd.DataFrame:
    """One row per (set, QF): the JPEG input, blind and header-QF restorations, and their gains."""
    rows = []
    for set_name, by_qf in by_set.items():
        for qf, r in by_qf.items():
            jpeg = r.get("jpeg", {}).get(metric)
            row = {"set": set_name, "QF": int(qf), "images": r.get("n"), "JPEG": jpeg}
            for mode in results.MODES:
                value = r.get(mode, {}).get(metric)
                row[mode] = value
                row[f"{mode} gain"] = None if value is None or jpeg is None else value - jpeg
            row["QF estimate MAE"] = r.get("qf_est_mae")
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["set", "QF"])


def read_report(path: Path) -> dict:
    try:
        return results.load(path)
    except results.ResultsError as e:
        st.error(str(e))
        return {}


def evaluation(version: dict | None, local: dict) -> dict | None:
    """A version's evaluation: reports/evaluation.json when it scored this version, else the one in its run."""
    if version is None or not version["run_id"]:
        return None
    if local.get("model", {}).get("run_id") == version["run_id"]:
        return local
    return common.run_evaluation(version["run_id"], tracking.tracking_uri())


def real_world(report: dict) -> None:
    """The real-world cases' table (photos as users have them), when the evaluation has them."""
    rows = [
        {"set": s, **{k: v for k, v in c.items() if k != "sources"}}
        for s, rw in report["real_world"].items()
        for c in rw["cases"]
    ]
    if rows:
        st.subheader("Real-world cases")
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def warn(who: str, evaluation: dict) -> None:
    negative = results.negative_gains(evaluation)
    if negative:
        worse = "\n".join(f"- {results.sentence(n)}" for n in negative)
        st.warning(f"{who} made these worse than the input:\n{worse}")


st.title("Results")
metrics_file, plots = REPORTS / "evaluation.json", sorted((REPORTS / "plots").glob("*.png"))
report = read_report(metrics_file) if metrics_file.is_file() else {}
name = common.load_params().register.model_name
champion, candidate = registry.alias_version(name, "champion"), registry.alias_version(name, "candidate")
champ_eval, cand_eval = evaluation(champion, report), evaluation(candidate, report)
if not metrics_file.is_file() and not plots and not (champ_eval or cand_eval):
    st.info("No evaluation reports yet: reports/ is empty. Run the pipeline (`dvc repro`) to evaluate a model.")

comparing = bool(champion and candidate and champ_eval and cand_eval)
if comparing:
    st.header("Champion and latest candidate")
    champ_label, cand_label = f"champion v{champion['version']}", f"candidate v{candidate['version']}"
    if champion["version"] == candidate["version"]:
        st.success(f"The latest candidate, version {candidate['version']}, is the champion.")
    else:
        mode = st.radio("QF given to the models", results.MODES, format_func=results.MODE_TITLES.get, horizontal=True)
        table = tables.comparison(champ_eval["results"], cand_eval["results"], mode)
        if table.empty:
            st.info(
                f"Version {champion['version']} and version {candidate['version']} were not scored on a "
                "common test set and QF: nothing to compare."
            )
        else:
            values = [e["primary"]["value"] for e in (champ_eval, cand_eval)]
            left, right = st.columns(2)
            left.metric(f"Primary metric, {champ_label}", f"{values[0]:+.3f} dB")
            right.metric(f"Primary metric, {cand_label}", f"{values[1]:+.3f} dB", f"{values[1] - values[0]:+.3f} dB")
            st.markdown(tables.verdict(table, champ_label, cand_label))
            formats = {
                c: st.column_config.NumberColumn(format="%.4f" if "SSIM" in c else "%.3f")
                for c in table.columns
                if c not in ("set", "QF", "images")
            }
            st.dataframe(table, hide_index=True, column_config=formats)
            both = {champ_label: champ_eval["results"], cand_label: cand_eval["results"]}
            st.caption(f"PSNR gain over the JPEG input by QF, {results.MODE_TITLES[mode]}")
            st.line_chart(tables.gain_curves(both, mode), x_label="JPEG quality factor", y_label="PSNR gain (dB)")
    compared = {champion["version"]: (champ_label, champ_eval), candidate["version"]: (cand_label, cand_eval)}
    for label, ev in compared.values():
        warn(label, ev)
elif champion or candidate:
    missing = [
        f"{a} v{v['version']}"
        for a, v, e in (("champion", champion, champ_eval), ("candidate", candidate, cand_eval))
        if v and not e
    ]
    st.info(
        f"No stored evaluation for {', '.join(missing)} (evaluate/evaluation.json in its MLflow run): "
        "the champion-candidate comparison needs both. `dvc repro` evaluates and registers a candidate."
    )

if report:
    model, primary = report["model"], report["primary"]
    st.header(f"Model evaluated last ({model.get('arch')}, run {str(model.get('run_id'))[:8]})")
    where = f"{', '.join(map(str, primary['sets']))} at QF {', '.join(map(str, primary['qfs']))}"
    st.metric(f"Primary metric: {primary['name']}", f"{primary['value']:.3f}", help=where)
    metric = st.selectbox("Metric", METRICS, format_func=lambda m: m.upper().replace("_Y", " (luma)"))
    st.dataframe(results_table(report["results"], metric), hide_index=True)
    if not (comparing and (report is champ_eval or report is cand_eval)):  # else its warnings are above
        warn("Restoration", report)
    real_world(report)
    with st.expander("Model evaluated"):
        st.json(model)
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
        {
            "run": r["name"],
            "id": r["run_id"][:8],
            "stage": r["tags"].get("stage", ""),
            "status": r["status"],
            "started": pd.to_datetime(r["start"], unit="ms"),
            **{f"param {k}": v for k, v in r["params"].items()},
            **{f"metric {k}": v for k, v in r["metrics"].items()},
        }
        for r in runs
        if r["tags"].get("stage", "") in shown
    ]
    table = pd.DataFrame(rows)
    if len(table) > 1 and st.checkbox("Only parameters that differ between these runs", value=True):
        same = [c for c in table.columns if c.startswith("param ") and table[c].nunique(dropna=False) <= 1]
        table = table.drop(columns=same)
    st.dataframe(table, hide_index=True)
