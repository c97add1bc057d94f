"""Models page: every registered version, the selected one's card or run, promote and roll back.

The buttons run the same code as ``python -m pipeline.promote --version N`` and
``python -m pipeline.promote --rollback`` (alias moves under the registry lock, the champion
history and the decision in MLflow; no DVC output touched), each after a confirmation.
"""

import pandas as pd
import streamlit as st

from app_pages import common, tables
from pipeline.mlops import promotion, registry, tracking

st.title("Registered models")
p = common.load_params()
name, uri = p.register.model_name, tracking.tracking_uri()
if notice := st.session_state.pop("models_notice", None):
    st.success(notice)
versions = registry.registered_versions(name)
if not versions:
    st.info(f"No registered versions of {name!r} in {uri} yet: the register stage adds them.")
else:
    st.caption(f"`{name}` in {uri}, newest first. `champion` is the model the Restore page and `restore` use.")
    rows = []
    for v in versions:
        facts = (
            {} if v["tags"].get("arch") and v["tags"].get("params") else common.version_facts(name, v["version"], uri)
        )
        rows.append(tables.version_row(v, facts))
    config = {
        "primary metric (dB)": st.column_config.NumberColumn(format="%+.3f"),
        "data": st.column_config.TextColumn(width="medium", help="what it was trained on"),
    }
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=config)

    by_version = {v["version"]: v for v in versions}
    label = {
        n: f"version {n}" + (f" ({', '.join(sorted(v['aliases']))})" if v["aliases"] else "")
        for n, v in by_version.items()
    }
    chosen = by_version[st.selectbox("Version", list(by_version), format_func=label.get)]
    card = tracking.run_artifact(chosen["run_id"], "model/MODEL_CARD.md") if chosen["run_id"] else None
    if card is not None:
        with st.expander(f"Model card of version {chosen['version']}", expanded=True):
            st.markdown(card.read_text())
    elif chosen["run_id"]:
        run = next((r for r in tracking.search_runs(p.tracking.experiment) if r["run_id"] == chosen["run_id"]), None)
        with st.expander(f"Run {chosen['run_id'][:8]} that trained version {chosen['version']}", expanded=True):
            if run is None:
                st.info(f"Run {chosen['run_id']} is not in experiment {p.tracking.experiment!r}.")
            else:
                st.caption(f"{run['name']}, started {pd.to_datetime(run['start'], unit='ms'):%Y-%m-%d %H:%M}")
                left, right = st.columns(2)
                left.dataframe(pd.Series(run["params"], name="value").rename_axis("parameter"))
                right.dataframe(pd.Series(run["metrics"], name="value").rename_axis("metric"))
    if chosen["description"]:
        st.markdown(chosen["description"])

    st.subheader("Promote or roll back")
    champion = next((v for v in versions if "champion" in v["aliases"]), None)
    previous = next((v for v in versions if "previous" in v["aliases"]), None)
    left, right = st.columns(2)
    if left.button(
        f"Make version {chosen['version']} the champion",
        disabled=champion is not None and chosen["version"] == champion["version"],
    ):
        st.session_state["models_pending"] = ("promote", chosen["version"])
    if right.button("Roll back to the previous champion", disabled=previous is None):
        st.session_state["models_pending"] = ("rollback", previous["version"])
    pending = st.session_state.get("models_pending")
    if pending:
        action, target = pending
        before = champion["version"] if champion else "none"
        command = f"python -m pipeline.promote {'--rollback' if action == 'rollback' else f'--version {target}'}"
        after = "leaves the champion history" if action == "rollback" else "becomes `previous`"
        st.warning(
            f"Move `champion` from version {before} to version {target}? Version {before} {after}; "
            f"the Restore page and `restore` will use version {target}. Same as `{command}`."
        )
        yes, no = st.columns(2)
        if yes.button("Yes, move the champion", type="primary"):
            del st.session_state["models_pending"]
            try:
                if action == "rollback":
                    d = promotion.rollback(p)
                else:
                    d = promotion.promote_version(p, target)
            except promotion.PromotionError as e:
                st.error(f"Nothing changed: {e}")
            else:
                common.registry_changed()
                st.session_state["models_notice"] = (
                    f"Version {d['champion_after']} is the champion (was {d['champion_before']})."
                )
                st.rerun()
        if no.button("Cancel"):
            del st.session_state["models_pending"]
            st.rerun()

st.subheader("MLflow UI")
if uri.startswith(("http://", "https://")):
    st.markdown(f"Open {uri} (the team's tracking server).")
else:
    st.code(f"mlflow ui --backend-store-uri {uri}", language="bash")
    st.caption("then http://127.0.0.1:5000: runs, metrics, artifacts and this registry.")
