"""Models page: the registered versions, their aliases, tags and source runs (read-only)."""

import pandas as pd
import streamlit as st

from app_pages import common
from pipeline import tracking


def _number(value: str) -> float | str:
    """Tags are strings: show numbers as numbers, so that the table sorts them."""
    try:
        return float(value)
    except ValueError:
        return value


st.title("Registered models")
name = common.load_params().register.model_name
versions = tracking.registered_versions(name)
if not versions:
    st.info(f"No registered versions of {name!r} in {tracking.tracking_uri()} yet: the register stage adds them.")
else:
    st.caption(f"`{name}` in {tracking.tracking_uri()}, newest first. Aliases: champion, candidate, previous.")
    rows = [
        {"version": int(v["version"]), "aliases": ", ".join(sorted(v["aliases"])),
         "created": pd.to_datetime(v["created"], unit="ms"), "run id": v["run_id"], "source": v["source"],
         **{k: _number(t) for k, t in sorted(v["tags"].items())}}
        for v in versions
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    for v in versions:
        if v["description"]:
            st.markdown(f"**Version {v['version']}**: {v['description']}")
