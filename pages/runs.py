"""Runs: every saved run, loss curves and metrics side by side, load one into the pages, download it."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from aecore.checkpoint import CheckpointError
from dashboard import figures, state

LOADABLE = ("finished", "stopped")
TABLE_METRICS = ("test_sse", "pca_sse", "test_mse", "pca_mse", "seconds")


def _label(r: dict) -> str:
    return f"{r['variant']} K={r['code_size']} · {r['dataset']} · {r['id'][-6:]}"


def _table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for r in runs:
        m = r.get("metrics") or {}
        rows.append({"id": r["id"], "variant": r["variant"], "dataset": r["dataset"], "K": r["code_size"],
                     "status": r["status"], **{k: m.get(k) for k in TABLE_METRICS},
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])) if r["created"] else "",
                     "note": r.get("reason") or ""})
    return pd.DataFrame(rows)


def _file_bytes(path):
    return lambda: path.read_bytes()


def _compare(selected: list[str], by_id: dict) -> None:
    histories, rows = {}, []
    for rid in selected:
        try:
            run = state.load_run(rid)
        except CheckpointError as exc:
            st.error(f"Run {rid} cannot be read: {exc}")
            continue
        label = _label(by_id[rid])
        histories[label] = run.history
        rows.append((label, run.metrics))
    if not rows:
        return
    terms = ["loss"] + [t for t in figures.term_names(next(iter(histories.values())))
                        if all(t in figures.term_names(h) for h in histories.values())]
    c1, c2 = st.columns([2, 1])
    term = c1.selectbox("Curve", terms, key="runs_term",
                        format_func=lambda t: "total loss" if t == "loss" else f"term: {t}")
    log_y = c2.toggle("Log scale", key="runs_log_y")
    st.plotly_chart(figures.loss_overlay(histories, term=term, log_y=log_y, unit="per example"),
                    theme=None, key="runs_loss")
    st.caption("Training loss of each selected run against epochs. Look for which run falls lowest and how "
               "fast; compare like with like (same data set and loss).")
    labels = [label for label, _ in rows]
    st.plotly_chart(figures.metric_comparison(
        labels, {"autoencoder (test_sse)": [m.get("test_sse") for _, m in rows],
                 "PCA at the same K (pca_sse)": [m.get("pca_sse") for _, m in rows]},
        title="Test reconstruction error per run", y_title="squared error per image", x_title="run"),
        theme=None, key="runs_metrics")
    st.caption("Lower is better. Each run's PCA bar is the best linear code of the same size on the same data.")
    keys = sorted({k for _, m in rows for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    st.dataframe(pd.DataFrame([{"run": label, **{k: m.get(k) for k in keys}} for label, m in rows]),
                 hide_index=True)


def _actions(rid: str, by_id: dict) -> None:
    try:
        run = state.load_run(rid)
    except CheckpointError as exc:
        st.error(f"Run {rid} cannot be loaded: {exc}")
        return
    c1, c2, c3, c4 = st.columns(4)
    if c1.button("Load into pages", key="runs_load", type="primary",
                 help="Make this run the current model of the Filters, Latent space and Compare pages."):
        try:
            state.set_loaded_run(rid)
            st.success(f"Run {rid} is now the current model of every page.")
        except CheckpointError as exc:
            st.error(f"Run {rid} cannot be loaded: {exc}")
    c2.download_button("config.json", _file_bytes(run.path / "config.json"), file_name=f"{rid}-config.json",
                       mime="application/json", key="runs_dl_config", on_click="ignore")
    c3.download_button("model.safetensors", _file_bytes(run.path / "model.safetensors"),
                       file_name=f"{rid}-model.safetensors", mime="application/octet-stream",
                       key="runs_dl_model", on_click="ignore")
    dataset = run.data_info.get("name") or by_id[rid]["dataset"]
    c4.download_button("test-set codes (.npy)", lambda: state.codes_npy(run.model, dataset),
                       file_name=f"{rid}-codes-test.npy", mime="application/octet-stream", key="runs_dl_codes",
                       on_click="ignore",
                       help=f"The code of every test example of {dataset}: an (N, K) float32 array for numpy.load.")


st.title("Runs")
cur = state.current_model()
if cur is not None:
    st.caption(f"The pages now show: {cur.label}.")
try:
    all_runs = state.visible_runs()
except Exception as exc:  # an unreadable index must not break the page
    st.error(f"The run store cannot be read: {exc}")
    all_runs = []
if not all_runs:
    st.info("No saved runs yet. Train a model on the **Train** page; every run is saved when it ends.")
else:
    st.dataframe(_table(all_runs), hide_index=True, key="runs_table",
                 column_config={"test_sse": st.column_config.NumberColumn(format="%.4g"),
                                "pca_sse": st.column_config.NumberColumn(format="%.4g"),
                                "test_mse": st.column_config.NumberColumn(format="%.4g"),
                                "pca_mse": st.column_config.NumberColumn(format="%.4g"),
                                "seconds": st.column_config.NumberColumn(format="%.1f")})
    st.caption(f"Saved under {state.run_store().root}. test_sse / pca_sse: squared error per test image of the "
               "autoencoder and of PCA with the same K.")
    by_id = {r["id"]: r for r in all_runs}
    loadable = [r["id"] for r in all_runs if r["status"] in LOADABLE]
    if not loadable:
        st.info("No finished run yet: the runs above are still training, failed or were interrupted.")
    else:
        ss = st.session_state
        ss["runs_selected"] = [i for i in ss.get("runs_selected", loadable[:2]) if i in loadable]
        st.subheader("Compare")
        selected = st.multiselect("Runs to compare", loadable, key="runs_selected",
                                  format_func=lambda i: _label(by_id[i]))
        if selected:
            _compare(selected, by_id)
        st.subheader("Use one run")
        if ss.get("runs_focus") not in loadable:
            ss["runs_focus"] = loadable[0]
        focus = st.selectbox("Run", loadable, key="runs_focus", format_func=lambda i: f"{i} ({by_id[i]['status']})")
        _actions(focus, by_id)
