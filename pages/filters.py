"""Filters: the encoder's rows of W (and the decoder's columns) next to PCA's basis of the same data."""
from __future__ import annotations

import streamlit as st

from aecore.baselines import fit_pca
from aecore.checkpoint import CheckpointError
from dashboard import classroom, figures, figures_live, state

CURRENT = "__current__"
LIVE_EVERY = 1.0


def _source_label(option: str, cur, runs: dict) -> str:
    if option == CURRENT:
        return f"current model: {cur.label}"
    r = runs[option]
    return f"run {option} ({r['status']})"


def _resolve(option: str, cur):
    """(label, model_cfg, data_info, W, decoder_W, live) for the chosen source, or None after st.error."""
    if option == CURRENT:
        cur = state.current_model() or cur
        live = cur.job is not None and not cur.job.done
        return cur.label, cur.model_cfg, cur.data_info, cur.W, cur.decoder_W, live
    try:
        run = state.load_run(option)
    except CheckpointError as exc:
        st.error(f"Run {option} cannot be shown: {exc}")
        return None
    return (f"run {option}", run.model_cfg, run.data_info, run.model.W.detach().cpu().numpy(),
            run.model.decoder_weight.detach().cpu().numpy(), False)


def _draw(option: str, cur, order: str, max_tiles: int) -> None:
    resolved = _resolve(option, cur)
    if resolved is None:
        return
    label, mc, info, W, dW, live = resolved
    if W is None:
        st.info("The job has not produced its first snapshot yet; the filters appear in a moment.")
        return
    shape = info.get("shape")
    k = mc.code_size
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.filter_grid(W, shape, title=f"Autoencoder: rows of W ({mc.variant}, K={k})",
                                            order=order, max_tiles=max_tiles),
                        theme=None, key="filters_w")
        st.caption(f"{label}. Each tile is one row of W (K×D): the weights from every pixel into one code unit. "
                   "Red: the unit responds to ink there; blue: to its absence.")
    with right:
        ds = state.load_dataset(info.get("name", "")) if info.get("name") else None
        if ds is None:
            st.info("PCA needs the training data, which is not available here.")
        elif ds.dim != W.shape[1]:
            st.warning(f"The data set {ds.name!r} now has {ds.dim} values per example, the model {W.shape[1]}: "
                       "PCA is not comparable.")
        else:
            pca = fit_pca(ds.x_train, k)
            st.plotly_chart(figures.filter_grid(pca.components_, shape,
                                                title=f"PCA: first {pca.n_components_} components of {ds.name}",
                                                order="index", max_tiles=max_tiles, value_title="loading"),
                            theme=None, key="filters_pca")
            st.caption("PCA's basis, by decreasing variance explained. A component's sign is arbitrary.")
    left, right = st.columns(2)
    left.plotly_chart(figures.filter_grid(dW.T, shape, title="Decoder: columns of W*",
                                          order=order, max_tiles=max_tiles),
                      theme=None, key="filters_dec")
    with right:
        st.markdown("#### What to look for")
        st.info("W captures the patterns in the data, akin to PCA's basis: a linear autoencoder's filters span the "
                "same subspace as the first K components (not the same vectors); nonlinear and sparse ones find more "
                "local strokes and parts.")
    left.caption("Each tile is one column of the last decoder layer: the image a unit adds to the output when "
                 "it fires. With tied weights it equals the matching row of W"
                 + ("; for a deep model it belongs to the last hidden layer, not the code." if mc.hidden else "."))
    if live:
        st.caption("The job is still training: these filters refresh every second.")


st.title("Filters")
current = state.current_model()
classroom.lesson_panel(current.model_cfg.variant if current is not None else None)
try:
    saved = {r["id"]: r for r in state.visible_runs() if r["status"] in ("finished", "stopped")}
except Exception as exc:  # an unreadable index must not break the page
    st.error(f"The run store cannot be read: {exc}")
    saved = {}
options = ([CURRENT] if current is not None else []) + list(saved)
if not options:
    st.info("No model yet: train one on the **Train** page (or load a saved run on the **Runs** page), "
            "then come back to see its filters.")
else:
    c1, c2, c3 = st.columns([3, 1, 1])
    choice = c1.selectbox("Model", options, key="filters_source",
                          format_func=lambda o: _source_label(o, current, saved))
    by_norm = c2.toggle("Order by norm", key="filters_order_norm",
                        help="Largest-norm filters first: the units that matter most for the code.")
    max_tiles = c3.number_input("Tiles shown (max)", min_value=4, max_value=1024, value=64, step=4,
                                key="filters_max_tiles")
    order = "norm" if by_norm else "index"
    live = choice == CURRENT and current.job is not None and not current.job.done

    @st.fragment(run_every=LIVE_EVERY if live else None)
    def filters_view() -> None:
        with figures_live.live_container("filters_page", live):  # no fades while live
            _draw(choice, current, order, int(max_tiles))
        job = state.current_job()
        if live and (job is None or job.done):
            st.rerun()  # once: redraw without the timer

    filters_view()
