"""The Streamlit app: ``streamlit run app.py``. Pages live in app_pages/ and call pipeline.* for work."""

import streamlit as st

st.set_page_config(page_title="JPEG restoration", layout="wide")
pages = [
    st.Page("app_pages/restore.py", title="Restore", default=True),
    st.Page("app_pages/results.py", title="Results"),
    st.Page("app_pages/models.py", title="Models"),
]
st.navigation(pages).run()
