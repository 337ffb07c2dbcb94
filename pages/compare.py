"""Compare with PCA: the linear autoencoder learns PCA's subspace; nonlinear ones can beat it.

1. a linear autoencoder (``tied`` or ``linear``, K from the sidebar) trains live; the principal
   angles between its decoder's subspace and PCA's fall towards 0°;
2. reconstruction error against K: PCA's exact curve and the autoencoder's points;
3. its filters vs PCA's components vs the components recovered from its weights by SVD;
4. nonlinear variants at the same K against PCA.

Every job here is a short background job of its own (not saved as a run, not the session's
current model); the page redraws while any of them trains.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from aecore.baselines import fit_pca, pca_error_curve, recovered_components
from aecore.config import ModelConfig, TrainConfig
from aecore.metrics import component_abs_cosines
from aecore.registry import variant_names
from dashboard import classroom
from dashboard import figures_latent as figs
from dashboard.figures_live import live_container
from dashboard import state
from dashboard.sidebar import configs_and_data

LIVE_EVERY = 0.5
JOBS_KEY = "cmp_jobs"  # {(dataset, variant, K): JobRecord}
LINEAR_VARIANTS = ("tied", "linear")
NONLINEAR_VARIANTS = ("sigmoid", "relu", "deep")
SWEEP_KS = (2, 4, 8, 16, 32)
STEP_BUDGET = 200 * 23  # 200 epochs of digits (1437 examples, batch 64): converges to PCA in ~1-2 s
MAX_COMPONENT_COLUMNS = 16


def _default_epochs(n_train: int, batch: int = 64) -> int:
    """About as many steps as 200 epochs of digits, whatever the data set's size."""
    steps_per_epoch = max(1, -(-n_train // batch))
    return int(max(2, min(200, round(STEP_BUDGET / steps_per_epoch))))


def _model_config(variant: str, k: int, ds) -> ModelConfig:
    """The variant's defaults at code size k; squared loss with a linear output when the data
    are not in [0, 1] (cross-entropy needs Bernoulli means)."""
    cfg = ModelConfig(variant=variant, code_size=k)
    lo, hi = ds.value_range
    if cfg.loss == "cross-entropy" and (lo < 0 or hi > 1):
        cfg = cfg.replace(loss="squared", output="linear")
    return cfg


def _train_config(ds_name: str, epochs: int, side: TrainConfig) -> TrainConfig:
    # cosine decay of lr = 1e-2 removes the mini-batch jitter at the end: the linear AE lands on PCA
    return TrainConfig(dataset=ds_name, epochs=epochs, batch_size=64, lr=1e-2, lr_schedule="cosine",
                       seed=side.seed, device=side.device, snapshot_every=0.1)


def _jobs() -> dict:
    return st.session_state.setdefault(JOBS_KEY, {})


def _submit(ds, variants, ks, epochs: int, side: TrainConfig) -> None:
    jobs = _jobs()
    for variant in variants:
        for k in ks:
            old = jobs.get((ds.name, variant, k))
            if old is not None and not old.done:
                continue  # already training
            job = state.job_manager().submit(_model_config(variant, k, ds), _train_config(ds.name, epochs, side), ds,
                                             data_info=state.data_info(ds), save=False)
            jobs[(ds.name, variant, k)] = job
    st.rerun()  # the whole page, so the live fragment starts its timer


def _running(ds_name: str) -> list:
    return [j for (name, _, _), j in _jobs().items() if name == ds_name and not j.done]


def _finished(ds_name: str, variant: str) -> dict[int, object]:
    return {k: j for (name, v, k), j in _jobs().items()
            if name == ds_name and v == variant and j.status == "finished" and j.metrics}


@st.cache_data(show_spinner=False, max_entries=8)
def _pca_curves(name: str, n_train: int, dim: int, _ds) -> dict[str, np.ndarray]:
    return {"PCA, test set": pca_error_curve(_ds.x_train, _ds.x_test),
            "PCA, training set (sum of discarded eigenvalues)": pca_error_curve(_ds.x_train)}


def _status_line(ds_name: str) -> None:
    running = _running(ds_name)
    if not running:
        return
    parts = []
    for j in running:
        p = j.progress
        how = f"{p.step / p.total_steps:.0%}" if p and p.total_steps else j.status
        parts.append(f"{j.model_cfg.variant} K={j.model_cfg.code_size}: {how}")
    st.caption("Training: " + " · ".join(parts))


# --- section 1 ---------------------------------------------------------------------------------
def _section_angles(ds, variant: str, k: int, epochs: int, side) -> None:
    st.subheader("1. A linear autoencoder finds PCA's subspace")
    job = _jobs().get((ds.name, variant, k))
    c1, c2 = st.columns([1, 3])
    busy = job is not None and not job.done
    if c1.button(f"Train {variant} AE (K = {k})", type="primary", key="cmp_train_live", disabled=busy,
                 help=f"{epochs} epochs, Adam, lr 1e-2 with cosine decay, batch 64, on {ds.name}."):
        _submit(ds, [variant], [k], epochs, side)
    if job is None:
        c2.info(f"Press the button: a {variant} autoencoder with K = {k} trains for about a second or two on "
                f"{ds.name}, and its subspace is compared with PCA's while it learns.")
        return
    if job.status == "failed":
        st.error(f"Training failed: {job.error}")
        return
    snaps = list(job.snapshots)
    fig = figs.principal_angles_figure([s.step for s in snaps], [s.principal_angles_deg for s in snaps],
                                       title=f"Principal angles between the {variant} AE's decoder subspace and "
                                             f"PCA's (K = {k})")
    st.plotly_chart(fig, key="cmp_angles")
    last = next((s.principal_angles_deg for s in reversed(snaps) if s.principal_angles_deg is not None), None)
    now = f" Largest angle now: **{float(np.max(last)):.2f}°**." if last is not None and len(last) else ""
    st.caption("One line per principal angle between the column space of the decoder W* and the span of PCA's "
               "first K components (0° = the same direction in both, 90° = orthogonal). Look for every line "
               "falling towards 0°: the autoencoder learns PCA's subspace without being told about PCA." + now)


# --- section 2 ---------------------------------------------------------------------------------
def _section_error_vs_k(ds, variant: str, epochs: int, side) -> None:
    st.subheader("2. Reconstruction error against K")
    ks = [k for k in SWEEP_KS if k <= ds.dim]
    c1, c2 = st.columns([1, 3])
    if c1.button(f"Train {variant} AE at K = {', '.join(map(str, ks))}", key="cmp_sweep",
                 disabled=any(j.model_cfg.variant == variant for j in _running(ds.name)),
                 help="One short job per K; they queue and train two at a time."):
        _submit(ds, [variant], ks, epochs, side)
    curves = _pca_curves(ds.name, ds.n_train, ds.dim, ds)
    points = {}
    for v in (*LINEAR_VARIANTS, *NONLINEAR_VARIANTS):
        done = _finished(ds.name, v)
        if done:
            points[f"{v} AE, test set"] = {k: float(j.metrics["test_sse"]) for k, j in sorted(done.items())}
    fig = figs.error_vs_k_figure(curves, points, title=f"Reconstruction error against code size K ({ds.name})")
    st.plotly_chart(fig, key="cmp_error_vs_k")
    st.caption("Lines: PCA's exact error at every K (solid: held-out test images; dotted: the training set, "
               "the sum of the discarded eigenvalues). Markers: trained autoencoders on the test images. Look "
               "for the linear autoencoder's markers sitting on PCA's line (on the training set no linear code "
               "can do better; on held-out images it lands within a hair of it), and nonlinear ones (section 4) "
               "dipping below it.")
    if not points:
        c2.info("No autoencoder trained yet on this data set: its points appear here as each job finishes.")


# --- section 3 ---------------------------------------------------------------------------------
def _section_components(ds, variant: str, k: int) -> None:
    st.subheader("3. Filters, PCA's components, and the components hidden in the weights")
    job = _jobs().get((ds.name, variant, k))
    snap = job.latest if job is not None else None
    if snap is None:
        st.info("Train the linear autoencoder in section 1 to see its filters next to PCA's components.")
        return
    pca = fit_pca(ds.x_train, k).components_  # (K, D)
    recovered = recovered_components(snap.decoder_W, ds.x_train, k)  # (K, D)
    filters = snap.W  # (K, D) rows of the encoder
    n = min(k, len(recovered), len(pca))
    cos_rec = component_abs_cosines(recovered[:n], pca[:n])
    cos_filt = component_abs_cosines(filters[:n], pca[:n])
    fig = figs.components_figure(
        {"AE filters (rows of W)": filters[:n], "PCA components": pca[:n],
         "recovered by SVD of W*": recovered[:n]},
        ds.shape, title=f"{variant} AE (K = {k}) vs PCA: filters, components, recovered components",
        column_notes=[f"|cos| {c:.3f}" for c in cos_rec], max_cols=MAX_COMPONENT_COLUMNS)
    st.plotly_chart(fig, key="cmp_components")
    st.caption("Top: the autoencoder's filters, a mix of PCA's components. Middle: PCA's components by "
               "decreasing variance. Bottom: PCA redone inside the decoder's subspace (orthonormal basis of W* by "
               "SVD, then the data's principal axes within it). Look for the bottom row matching the middle one up "
               "to sign; the number above each column is |cos| between the two (1 = same direction)."
               + (f" First {MAX_COMPONENT_COLUMNS} of {n} shown." if n > MAX_COMPONENT_COLUMNS else ""))
    table = pd.DataFrame({"component": np.arange(1, n + 1),
                          "|cos| recovered vs PCA": np.round(cos_rec, 4),
                          "|cos| AE filter vs PCA": np.round(cos_filt, 4)})
    st.dataframe(table, hide_index=True, key="cmp_cos_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns[1:]})
    st.caption(f"Recovered vs PCA: smallest |cos| {cos_rec.min():.3f} over the {n} components. The raw filters "
               "match PCA's components only by chance: any invertible mix of them reconstructs equally well.")


# --- section 4 ---------------------------------------------------------------------------------
def _section_nonlinear(ds, k: int, epochs: int, side) -> None:
    st.subheader(f"4. Nonlinear autoencoders at the same K = {k}")
    variants = [v for v in NONLINEAR_VARIANTS if v in variant_names()]
    if st.button(f"Train {', '.join(variants)} at K = {k}", key="cmp_nonlinear",
                 disabled=any(j.model_cfg.variant in variants for j in _running(ds.name)),
                 help=f"One job per variant, each with its own defaults, {epochs} epochs."):
        _submit(ds, variants, [k], epochs, side)
    jobs = _jobs()
    shown = [v for v in (*LINEAR_VARIANTS, *variants) if (ds.name, v, k) in jobs]
    if not any(v in variants for v in shown):
        st.info(f"Press the button to train {', '.join(variants)} autoencoders with K = {k} and compare their test "
                "error with PCA's.")
        return
    pca_sse = float(_pca_curves(ds.name, ds.n_train, ds.dim, ds)["PCA, test set"][min(k, ds.dim)])
    rows, names, sse = [], [], []
    for v in shown:
        j = jobs[(ds.name, v, k)]
        err = float(j.metrics["test_sse"]) if j.status == "finished" and j.metrics else None
        names.append(v)
        sse.append(err)
        mc = j.model_cfg
        rows.append({"variant": v, "activation": mc.activation, "hidden": ",".join(map(str, mc.hidden)) or "—",
                     "loss": mc.loss, "status": j.status, "test SSE": err,
                     "vs PCA": None if err is None else f"{(err / pca_sse - 1) * 100:+.1f}%"})
    st.plotly_chart(figs.variant_sse_figure(names, sse, pca_sse, k), key="cmp_variants")
    st.caption("Bars: each autoencoder's squared error per test image; dashed line: PCA with the same K. "
               "Look for which variants fall below the line: only a nonlinear code can beat PCA on squared error.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_variants_table",
                 column_config={"test SSE": st.column_config.NumberColumn(format="%.4g")})
    failed = [f"{jobs[(ds.name, v, k)].model_cfg.variant}: {jobs[(ds.name, v, k)].error}" for v in shown
              if jobs[(ds.name, v, k)].status == "failed"]
    for msg in failed:
        st.error(f"Training failed, {msg}")


# --- the page --------------------------------------------------------------------------------
st.title("Compare with PCA")
side_mc, side_tc, ds = configs_and_data()

k = min(int(side_mc.code_size), ds.dim)
c1, c2, c3 = st.columns([2, 1, 2])
variant = c1.radio("Linear autoencoder", LINEAR_VARIANTS, key="cmp_variant", horizontal=True,
                   format_func=lambda v: {"tied": "tied (W* = Wᵀ)", "linear": "untied (W* free)"}[v],
                   help="Both learn PCA's subspace; the tied one has half the weights.")
classroom.lesson_panel(variant)
epochs = int(c2.number_input("Epochs per job", min_value=1, max_value=10_000, value=_default_epochs(ds.n_train),
                             step=10, key="cmp_epochs",
                             help="200 epochs of digits converge to PCA in a second or two."))
c3.caption(f"Data: **{ds.name}** ({ds.n_train} training, {ds.n_test} test examples, D = {ds.dim}); "
           f"K = **{k}** from the sidebar" + (f" (capped at D = {ds.dim})" if k < side_mc.code_size else "")
           + ". Adam, lr 1e-2 with cosine decay, batch 64. These jobs are not saved as runs.")
if _running(ds.name) and st.button("Stop the comparison jobs", key="cmp_stop"):
    for j in _running(ds.name):
        j.stop()

live = bool(_running(ds.name))


@st.fragment(run_every=LIVE_EVERY if live else None)
def compare_view() -> None:
    with live_container("compare", live):  # no fades while jobs train
        _status_line(ds.name)
        _section_angles(ds, variant, k, epochs, side_tc)
        _section_error_vs_k(ds, variant, epochs, side_tc)
        _section_components(ds, variant, k)
        _section_nonlinear(ds, k, epochs, side_tc)
    if live and not _running(ds.name):
        st.rerun()  # once: redraw without the timer


compare_view()
