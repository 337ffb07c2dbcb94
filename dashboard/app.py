"""Entry point: ``streamlit run dashboard/app.py``.

Builds the shared sidebar once (``dashboard.sidebar.sidebar``), then runs the chosen page.
Pages live in ``pages/`` at the repository root, one file each; they read the sidebar's
configs and the session's job through ``dashboard.sidebar`` / ``dashboard.state``.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402
from dashboard import classroom  # noqa: E402
from dashboard.figures import LAYOUT_CSS  # noqa: E402
from dashboard.figures_live import LIVE_CSS  # noqa: E402
from dashboard.sidebar import sidebar  # noqa: E402

PAGES_DIR = ROOT / "pages"

st.set_page_config(layout="wide", page_title="Autoencoder lab")
st.html(LIVE_CSS)  # live views without fades (a style-only st.html takes no room on the page)
st.html(LAYOUT_CSS)  # figures stacked on a narrow page, button labels wrapped

pg = st.navigation([
    st.Page(PAGES_DIR / "train.py", title="Train", default=True),
    st.Page(PAGES_DIR / "filters.py", title="Filters", url_path="filters"),
    st.Page(PAGES_DIR / "latent.py", title="Latent space", url_path="latent"),
    st.Page(PAGES_DIR / "compare.py", title="Compare with PCA", url_path="compare"),
    st.Page(PAGES_DIR / "sweep.py", title="Sweep", url_path="sweep"),
    st.Page(PAGES_DIR / "denoise.py", title="Denoise & inpaint", url_path="denoise"),
    st.Page(PAGES_DIR / "generate.py", title="Generate", url_path="generate"),
    st.Page(PAGES_DIR / "runs.py", title="Runs", url_path="runs"),
    st.Page(PAGES_DIR / "documents.py", title="Documents", url_path="documents"),
    st.Page(PAGES_DIR / "features.py", title="Features & pre-training", url_path="features"),
    st.Page(PAGES_DIR / "recommend.py", title="Recommend", url_path="recommend"),
])
state.job_manager()  # created (and its training fork server warmed up) with the first page view
sidebar()
classroom.presets_panel()  # one-click set-ups below the settings
classroom.preset_notice()  # after a preset: where to look, above the page
pg.run()
