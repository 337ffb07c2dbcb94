"""Latent space: a 2-D map of the test codes coloured by label, beside the same map of raw pixels.

The code itself when K = 2, else PCA or UMAP of the codes (UMAP compiles in a background
thread on the first visit; PCA is shown until it is ready). Click a point to see that input,
its reconstruction and its code. Each map states its 5-nearest-neighbour label accuracy.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from aecore import embedding
from aecore.metrics import knn_accuracy, knn_correct
from dashboard import figures_latent as figs
from dashboard.figures_live import live_container
from dashboard import classroom, state
from dashboard.sidebar import current_configs

MAX_POINTS = 2000  # a map of more points is unreadable (and slower to click)
KNN_K = 5
LIVE_EVERY = 1.0
EXAMPLE_KEY, LAST_SEL_KEY = "latent_example", "_latent_last_selection"
METHOD_OPTIONS = {"auto": "automatic (the code if K = 2, else PCA)", "pca": "PCA", "umap": "UMAP"}


def _start_quick_model() -> None:
    configs = current_configs()
    if configs is None:
        st.error("The settings in the sidebar are not valid; fix the field named there first.")
        return
    mc, tc = configs
    ds = state.load_dataset(tc.dataset)
    if ds is None:
        return
    job = state.job_manager().submit(mc, tc, ds, data_info=state.data_info(ds))
    state.set_current_job(job)
    st.rerun()


def _no_model(message: str) -> None:
    st.info(message)
    configs = current_configs()
    label = "Train a quick model"
    if configs is not None:
        mc, tc = configs
        st.caption(f"Trains the sidebar's model in the background: {mc.variant}, K={mc.code_size} on {tc.dataset}, "
                   f"{tc.epochs} epochs.")
    if st.button(label, type="primary", key="latent_train", disabled=configs is None):
        _start_quick_model()


def _map_method(requested: str, k: int) -> tuple[str, str | None]:
    """(method to run now, note): UMAP falls back to PCA while it is still compiling."""
    if requested != "umap" or embedding.umap_ready():
        return requested, None
    if embedding.umap_error():
        return "pca", f"UMAP is not available ({embedding.umap_error()}): showing PCA."
    return "pca", "UMAP is warming up (numba compiles it once per server, 10–20 s): showing PCA until it is ready."


@st.fragment(run_every=LIVE_EVERY)
def _rerun_when_umap_ready() -> None:
    if embedding.umap_ready() or embedding.umap_error():
        st.rerun()  # the whole page, now with the UMAP map


def _title(what: str, method_used: str, acc: float | None) -> str:
    how = {"code": "the code itself", "code-1d": "the code (x) and 0 (y)", "pca": "PCA", "umap": "UMAP"}[method_used]
    acc_txt = f" · {KNN_K}-NN accuracy {acc:.2f}" if acc is not None else ""
    return f"{what}: {how}{acc_txt}"


def _axes(method_used: str) -> tuple[str, str]:
    return {"code": ("code unit h₁", "code unit h₂"), "code-1d": ("code unit h₁", "(none: 0)"),
            "pca": ("principal component 1 (score)", "principal component 2 (score)"),
            "umap": ("UMAP 1 (arbitrary units)", "UMAP 2 (arbitrary units)")}[method_used]


def _selected_example(event) -> int | None:
    try:
        points = event.selection.points
    except AttributeError:
        return None
    for p in points or []:
        cd = p.get("customdata")  # [example number]; {"0": n} when plotly sent a typed array
        if isinstance(cd, dict):
            cd = cd.get("0", next(iter(cd.values()), None))
        elif isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            return int(cd)
    return None


def _map(codes: np.ndarray, labels, label_names, index, method: str, what: str, key: str, highlight: int):
    pts, used = embedding.embed_2d(codes, method=method)
    right = knn_correct(pts, labels, k=KNN_K) if labels is not None and len(pts) > KNN_K else None
    acc = None if right is None else float(right.mean())
    fig = figs.latent_scatter(pts, labels, label_names, _title(what, used, acc), *_axes(used), index=index,
                              highlight=highlight)
    event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode="points")
    return event, used, right



def _draw(cm, ds) -> None:
    mc = cm.model_cfg
    k = int(mc.code_size)
    embedding.start_umap_warmup()  # first visit: compile UMAP in a background thread (no-op once warm)
    idx = embedding.sample_indices(ds.n_test, MAX_POINTS, seed=0)  # which test examples the maps show
    x = ds.x_test[idx]
    labels = None if ds.y_test is None else ds.y_test[idx]
    names = ds.label_names
    codes = embedding.encode_array(cm.model, x)  # (n, K)

    c1, c2 = st.columns([2, 3])
    requested = c1.radio("Map of the codes", list(METHOD_OPTIONS), key="latent_method", horizontal=True,
                         format_func=lambda m: METHOD_OPTIONS[m],
                         help="PCA is a linear projection (fast, faithful to large distances); UMAP keeps "
                              "neighbourhoods (clusters) and warps distances.")
    method, note = _map_method(requested, k)
    if note:
        c2.info(note)
        if embedding.umap_error() is None:
            _rerun_when_umap_ready()
    if requested == "auto" and k > 2:
        method = "pca"
    raw_method = "umap" if method == "umap" else "pca"

    ss = st.session_state
    if ss.get(EXAMPLE_KEY) is None or not 0 <= int(ss[EXAMPLE_KEY]) < ds.n_test:
        ss[EXAMPLE_KEY] = int(idx[0])
    highlight = int(ss[EXAMPLE_KEY])
    left, right = st.columns(2)
    with left:
        ev_code, used, code_right = _map(codes, labels, names, idx, method, f"Codes (K = {k})", "latent_map_codes",
                                         highlight)
        st.caption(f"Each dot is one test example placed by its code ({embedding.METHOD_LABELS[used]}). "
                   "Look for tight, separate colours: labels the autoencoder learned to tell apart without "
                   f"seeing them. {KNN_K}-NN accuracy: how often an example's {KNN_K} nearest dots share its label.")
    with right:
        ev_raw, used_raw, right_raw = _map(x, labels, names, idx, raw_method, f"Raw pixels (D = {ds.dim})",
                                         "latent_map_raw", highlight)
        st.caption(f"The same examples placed by their raw pixels ({embedding.METHOD_LABELS[used_raw]}): the "
                   "baseline. Does the code's map separate labels better or worse than the pixels'?")
    if code_right is not None and right_raw is not None:
        st.markdown(figs.separation_verdict(code_right, right_raw, KNN_K))

    # a click on either map selects an example (applied once per new selection, so the
    # number box below can still be changed by hand afterwards)
    for name, ev in (("codes", ev_code), ("raw", ev_raw)):
        picked = _selected_example(ev)
        if picked is not None and ss.get(f"{LAST_SEL_KEY}_{name}") != picked:
            ss[f"{LAST_SEL_KEY}_{name}"] = picked
            ss[EXAMPLE_KEY] = picked
            st.rerun()  # redraw the maps with the arrow on the new point
        elif picked is None:
            ss.pop(f"{LAST_SEL_KEY}_{name}", None)

    st.subheader("One example")
    i = int(st.number_input("Test example #", min_value=0, max_value=ds.n_test - 1, step=1, key=EXAMPLE_KEY,
                            help="Click a dot on either map, or type an example number."))
    xi = ds.x_test[i:i + 1]
    code_i = embedding.encode_array(cm.model, xi)[0]
    recon_i = embedding.reconstruct_array(cm.model, xi)[0]
    label_txt = ""
    if ds.y_test is not None:
        y = int(ds.y_test[i])
        label_txt = f", label {names[y] if names is not None and 0 <= y < len(names) else y}"
    a, b = st.columns([3, 2])
    with a:
        st.plotly_chart(figs.image_pair(xi[0], recon_i, ds.shape, f"Example #{i}{label_txt}: input | reconstruction",
                                        value_range=ds.value_range), key="latent_pair")
        st.caption("Left the test input, right what the model rebuilds from its code. Look for which strokes survive.")
    with b:
        st.plotly_chart(figs.code_bars(code_i, title=f"Code of example #{i} (K = {k})"), key="latent_code")
        st.caption("The K numbers the encoder gives this example; the decoder sees only these. "
                   "Click nearby dots: similar inputs should have similar bars.")


def _live(job) -> None:
    """While the job trains: its progress and a map of its latest snapshot's codes."""

    @st.fragment(run_every=LIVE_EVERY)
    def live() -> None:
        current = state.current_job()
        if current is None or current.done:
            st.rerun()
            return
        with live_container("latent"):  # no fades
            p = current.progress
            st.progress(min(p.step / p.total_steps, 1.0) if p and p.total_steps else 0.0,
                        text=f"Training job {current.id}: " + (f"epoch {p.epoch:.1f} of {p.epochs}" if p else current.status))
            snap = current.latest
            if snap is None or snap.codes is None or len(snap.codes) < 2:
                st.caption("The map appears after the first snapshot.")
                return
            pts, used = embedding.embed_2d(snap.codes, method="auto")
            labels = snap.code_labels
            acc = knn_accuracy(pts, labels, k=KNN_K) if labels is not None and len(pts) > KNN_K else None
            names = current.data_info.get("label_names")
            st.plotly_chart(figs.latent_scatter(pts, labels, names, _title(f"Codes at epoch {snap.epoch:.1f}", used, acc),
                                                *_axes(used)), key="latent_live_map")
            st.caption("The codes of test examples as the model trains (redrawn every second). Look for the colours "
                       "pulling apart. Clicking and the pixel map come when training ends.")

    live()


st.title("Latent space")
cm = state.current_model()
classroom.lesson_panel(cm.model_cfg.variant if cm is not None else None)
if cm is None:
    _no_model("No trained model yet. Train one on the **Train** page, load a saved run on the **Runs** page, "
              "or train a quick one here.")
elif cm.model is None:
    job = cm.job
    if job is not None and job.status == "failed":
        st.error(f"The current job failed: {job.error}")
        _no_model("Train another model to explore its codes.")
    elif job is not None and not job.done:
        _live(job)
    else:
        _no_model("The current job ended before it produced a model.")
else:
    name = cm.data_info.get("name") or cm.train_cfg.dataset
    ds = state.load_dataset(name)
    if ds is not None:
        if ds.dim != cm.data_info.get("input_dim", ds.dim):
            st.error(f"The data set {name!r} now has {ds.dim} values per example, the model expects "
                     f"{cm.data_info.get('input_dim')}: its codes cannot be computed.")
        else:
            st.caption(f"Current model: {cm.label} — {cm.model_cfg.variant}, K = {cm.model_cfg.code_size}, "
                       f"trained on {name}; the maps show {min(ds.n_test, MAX_POINTS)} test examples.")
            _draw(cm, ds)
