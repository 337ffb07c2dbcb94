"""Generate: what a VAE's decoder makes from codes.

Samples from random codes (temperature, new-sample button); for K = 2 the decoded manifold
next to a plain autoencoder's over its training codes; interpolation between two test images;
a slider per latent dimension and a traversal grid; the KL per dimension (active vs collapsed
units); a β slider that trains more VAEs and puts each on a rate-distortion chart.

The VAE is the current model when it is one, or one trained here (a background job,
remembered per session; K = 2 by default so the manifold can be drawn).
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from aecore.config import ModelConfig
from aecore.embedding import encode_array
from aecore.generate import (ACTIVE_KL_NATS, DEFAULT_PRIOR_SPAN, active_units, decode_codes, is_vae, kl_per_dim,
                             manifold_grid, rate_distortion, sample_grid, interpolate, traverse)
from dashboard import classroom, ondemand, state
from dashboard import figures_generate as figs
from dashboard import figures_latent as figs_lat
from dashboard.sidebar import configs_and_data

PAGE = "gen"
CURRENT = "current"
N_SAMPLES = 32
GRID_SIDE = 17  # ±2 in steps of 0.25
MAX_SLIDERS = 8
BETAS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SLIDER_SPAN = 3.0  # sliders and traversals cover ±3 prior standard deviations
RD_IMAGES = 1000  # test images behind rate and distortion


def _vae_config(k: int, beta: float, side: ModelConfig, ds) -> ModelConfig:
    """A VAE at code size k and weight β: the sidebar's VAE settings when it is one, else the defaults."""
    base = side if side.variant == "vae" else ModelConfig(variant="vae")
    cfg = base.replace(code_size=int(k), beta=float(beta))
    lo, hi = ds.value_range
    if cfg.loss == "cross-entropy" and (lo < 0 or hi > 1):
        cfg = cfg.replace(loss="squared", output="linear")
    return cfg


def _plain_config(vae_cfg: ModelConfig) -> ModelConfig:
    """The same network without the prior: a deep autoencoder with the VAE's layers and K = 2."""
    return ModelConfig(variant="deep", code_size=2, hidden=vae_cfg.hidden, activation=vae_cfg.activation,
                       output=vae_cfg.output, loss=vae_cfg.loss)


def _sources(ds) -> dict[str, tuple[str, object, object]]:
    """option -> (label, model, record with model_cfg/train_cfg/metrics/history/data_info) for every trained VAE."""
    out = {}
    cm = state.current_model()
    if cm is not None and cm.model is not None and is_vae(cm.model) and cm.data_info.get("name") == ds.name:
        out[CURRENT] = (f"current model: {cm.label}, K = {cm.model_cfg.code_size}, β = {cm.model_cfg.beta:g}",
                        cm.model, cm)
    for key, job in ondemand.jobs(PAGE).items():
        if key[0] == "vae" and key[1] == ds.name and ondemand.ready(job):
            out[f"job{job.id}"] = (f"trained here: K = {job.model_cfg.code_size}, β = {job.model_cfg.beta:g} "
                                   f"(job {job.id})", job.model, job)
    return out


def _train_section(ds, side_mc, side_tc) -> None:
    c1, c2, c3 = st.columns([1, 1, 3])
    k = int(c1.number_input("K of a new VAE", min_value=1, max_value=64, value=2, step=1, key="gen_k",
                            help="2 lets the page draw the decoded manifold; try 16 to see units collapse."))
    busy = bool(ondemand.running(PAGE))
    if c2.button("Train a VAE", type="primary", key="gen_train", disabled=busy,
                 help=f"{side_tc.epochs} epochs on {ds.name} (sidebar settings), in the background."):
        cfg = _vae_config(k, 1.0, side_mc, ds)
        job = ondemand.submit(PAGE, ("vae", ds.name, cfg), cfg, side_tc, ds)
        st.session_state["gen_pick"] = f"job{job.id}"
        st.rerun()
    c3.caption(f"Trains {ondemand.describe(_vae_config(k, 1.0, side_mc, ds))} for {side_tc.epochs} epochs, lr "
               f"{side_tc.lr:g}, on **{ds.name}** (epochs, lr and, for a VAE in the sidebar, its layers come from "
               "the sidebar).")


def _samples(model, info, tag: str) -> None:
    c1, c2 = st.columns([1, 3])
    ss = st.session_state
    if c1.button("New samples", key="gen_new_samples", help="Draw new random codes."):
        ss["gen_seed"] = ss.get("gen_seed", 0) + 1
    temp = c2.slider("Temperature T (codes z ~ N(0, T² I))", 0.0, 2.0, 1.0, 0.1, key="gen_temp",
                     help="T < 1 stays near the prior's centre (typical, blander samples); T > 1 reaches its tails.")
    seed = ss.get("gen_seed", 0)
    images = sample_grid(model, N_SAMPLES, temperature=temp, seed=seed)
    classroom.show_figure(
        figs.sample_grid_figure(images, info["shape"], info["value_range"], cols=8,
                                title=f"{N_SAMPLES} samples: random codes z ~ N(0, {temp:g}² I) decoded (draw {seed})"),
        f"gen_samples_{tag}",
        "Each tile is the decoder's output for a random code from the prior, no input image involved. Look for "
        "plausible new examples; lower T for cleaner, more average ones.", filename="vae-samples")


def _manifolds(model, rec, ds, side_tc, tag: str) -> None:
    info = rec.data_info
    left, right = st.columns(2)
    grid = manifold_grid(model, GRID_SIDE)
    with left:
        classroom.show_figure(
            figs.manifold_figure(grid.images, grid.z1, grid.z2, info["shape"],
                                 f"VAE: codes in [−{DEFAULT_PRIOR_SPAN:g}, {DEFAULT_PRIOR_SPAN:g}]² decoded",
                                 info["value_range"]),
            f"gen_manifold_{tag}",
            f"A {GRID_SIDE}×{GRID_SIDE} grid of codes, ±{DEFAULT_PRIOR_SPAN:g} standard deviations of the prior, each "
            "decoded. Look for smooth changes from tile to tile and no empty regions.", filename="vae-manifold")
    plain_cfg = _plain_config(rec.model_cfg)
    key = ("plain", ds.name, plain_cfg)
    job = ondemand.get(PAGE, key)
    with right:
        if ondemand.ready(job):
            pgrid = manifold_grid(job.model, GRID_SIDE, x=ds.x_train[:5000])
            (a0, a1), (b0, b1) = (float(pgrid.z1[0]), float(pgrid.z1[-1])), (float(pgrid.z2[0]), float(pgrid.z2[-1]))
            classroom.show_figure(
                figs.manifold_figure(pgrid.images, pgrid.z1, pgrid.z2, info["shape"],
                                     "Plain AE (K = 2): its code box decoded",
                                     info["value_range"]),
                f"gen_plain_manifold_{tag}",
                f"The same grid over the box its training codes fill (z₁ ∈ [{a0:.2g}, {a1:.2g}], z₂ ∈ "
                f"[{b0:.2g}, {b1:.2g}]). Look for the holes: regions no training code reached decode to blurs or "
                "blends. Without a prior nothing fills them.", filename="plain-manifold")
        else:
            busy = job is not None and not job.done
            st.info("Next to it: the same grid decoded by a plain autoencoder with the same layers and K = 2. "
                    "Its codes leave holes that a random code can fall into.")
            if st.button("Train the plain autoencoder (K = 2)", key="gen_train_plain", disabled=busy,
                         help=f"{ondemand.describe(plain_cfg)}, {side_tc.epochs} epochs."):
                ondemand.submit(PAGE, key, plain_cfg, side_tc, ds)
                st.rerun()
            if job is not None and job.status == "failed":
                st.error(f"Training the plain autoencoder failed: {job.error}")


def _interpolation(model, ds, tag: str) -> None:
    c1, c2, c3 = st.columns(3)
    a = int(c1.number_input("From test image #", 0, ds.n_test - 1, 0, key="gen_a"))
    b = int(c2.number_input("To test image #", 0, ds.n_test - 1, min(1, ds.n_test - 1), key="gen_b"))
    steps = int(c3.slider("Steps", 3, 16, 10, key="gen_steps"))
    path = interpolate(model, ds.x_test[a], ds.x_test[b], steps)
    classroom.show_figure(
        figs.interpolation_figure(path.images, path.t, ds.shape, f"Interpolating between test images #{a} and #{b}",
                                  ds.value_range, ends=(ds.x_test[a], ds.x_test[b])),
        f"gen_interp_{tag}",
        "First and last tiles: the two test images; between them, the decoder's output along the straight line "
        "between their codes. Look for a gradual morph that stays on plausible images.", filename="interpolation")


def _traversal(model, ds, tag: str, kl: np.ndarray) -> None:
    k = model.cfg.code_size
    # with more than MAX_SLIDERS dimensions, the most used ones (largest KL), in index order
    dims = sorted(np.argsort(-kl, kind="stable")[:MAX_SLIDERS].tolist())
    left, right = st.columns([2, 3])
    with right:
        ex = int(st.number_input("Start from test image #", 0, ds.n_test - 1, 0, key="gen_trav_ex"))
        code = encode_array(model, ds.x_test[ex:ex + 1])[0]
        z = code.copy()
        cols = st.columns(2)
        for j, d in enumerate(dims):
            z[d] = cols[j % 2].slider(f"z{d + 1}", -SLIDER_SPAN, SLIDER_SPAN,
                                      float(np.clip(round(float(code[d]), 2), -SLIDER_SPAN, SLIDER_SPAN)), 0.05,
                                      key=f"gen_z_{tag}_{ex}_{d}")
        st.caption("One slider per latent dimension"
                   + (f" (the {MAX_SLIDERS} of {k} with the largest KL, section 5)" if k > MAX_SLIDERS else "")
                   + "; they start at this image's code μ. Look for what each dimension controls: slant, width, "
                     "which digit.")
    with left:
        classroom.show_figure(
            figs_lat.image_pair(ds.x_test[ex], decode_codes(model, z[None])[0], ds.shape,
                                "Decoded from the sliders", ds.value_range, names=(f"test image #{ex}", "decoded"))
            .update_layout(modebar=dict(orientation="v")).update_traces(showscale=False),  # narrow: toolbar off the title
            f"gen_sliders_{tag}", None, filename="latent-sliders")
    values = np.linspace(-SLIDER_SPAN, SLIDER_SPAN, 9)
    imgs = np.concatenate([traverse(model, ds.x_test[ex], d, values)[1] for d in dims])
    classroom.show_figure(
        figs.traversal_figure(imgs, dims, values, ds.shape, f"Traversal from test image #{ex}", ds.value_range),
        f"gen_traversal_{tag}",
        "Each row sweeps one latent dimension from −3 to +3 with the others held at the image's code. Look for "
        "rows that change the image (active units) and rows that change nothing (collapsed ones).",
        filename="traversal")


def _kl(model, ds, tag: str, kl: np.ndarray) -> None:
    active = active_units(kl)
    classroom.show_figure(
        figs.kl_bars_figure(kl, active, ACTIVE_KL_NATS,
                            title=f"KL per latent dimension: {int(active.sum())} of {len(kl)} active"),
        f"gen_kl_{tag}",
        f"Mean KL(q(z_k|x) ‖ N(0, 1)) over the {ds.n_test} test images, per dimension; the bars add up to the "
        f"model's KL term ({kl.sum():.2f} nats). A dimension is active above {ACTIVE_KL_NATS:g} nats (the cut-off of "
        "Burda et al. 2016); grey ones have collapsed to the prior and carry nothing. Look for how many stay "
        "active as K or β grows.", filename="kl-per-dimension")


def _beta_section(model, rec, ds, side_tc, tag: str) -> None:
    base = rec.model_cfg
    c1, c2 = st.columns([3, 1])
    beta = c1.select_slider("β for another VAE", options=list(BETAS), value=4.0, key="gen_beta",
                            help="Weight of the KL term: β > 1 buys a cheaper code with worse reconstructions.")
    cfg = base.replace(beta=float(beta))
    busy = bool(ondemand.running(PAGE))
    if c2.button(f"Train at β = {beta:g}", key="gen_train_beta", disabled=busy,
                 help=f"Same network as the VAE shown (K = {base.code_size}), {side_tc.epochs} epochs."):
        ondemand.submit(PAGE, ("vae", ds.name, cfg), cfg, side_tc, ds)
        st.rerun()
    x = ds.x_test[:RD_IMAGES]
    points = {float(base.beta): {"beta": float(base.beta), **rate_distortion(model, x)}}
    for key, job in ondemand.jobs(PAGE).items():
        mc = job.model_cfg
        if key[0] == "vae" and key[1] == ds.name and ondemand.ready(job) and mc.replace(beta=base.beta) == base:
            points.setdefault(float(mc.beta), {"beta": float(mc.beta), **rate_distortion(job.model, x)})
    classroom.show_figure(
        figs.rate_distortion_figure(list(points.values()), current_beta=float(base.beta),
                                    title=f"Rate against distortion, one point per β (K = {base.code_size})"),
        f"gen_rd_{tag}",
        "Each point is one trained VAE (orange: the one shown above); rate = its KL in nats, distortion = its "
        "reconstruction term in nats, both per test image. Look for larger β moving points down and to the right: "
        "cheaper codes, worse reconstructions.", filename="rate-distortion")
    if len(points) < 2:
        st.caption("Train at another β to add a point.")


st.title("Generate")
classroom.lesson_panel("vae")
st.caption("A variational autoencoder's decoder turns any code into an image: here it samples, walks and "
           "sweeps its latent space. " + classroom.PNG_NOTE)
side_mc, side_tc, ds = configs_and_data()

_train_section(ds, side_mc, side_tc)
ondemand.watch(PAGE, label=lambda key, job: f"Training {ondemand.describe(job.model_cfg)}")
for job in ondemand.jobs(PAGE).values():
    if job.status == "failed":
        st.error(f"Training {ondemand.describe(job.model_cfg)} failed: {job.error}")
sources = _sources(ds)
if not sources:
    st.info(f"No trained VAE for {ds.name} yet. Press **Train a VAE** (K = 2 draws the manifold), or train variant "
            "*vae* on the Train page; it appears here when it finishes.")
    st.stop()
ss = st.session_state
if ss.get("gen_pick") in sources:  # a VAE just trained here is shown first
    ss["gen_source"] = ss.pop("gen_pick")
if ss.get("gen_source") not in sources:
    ss["gen_source"] = next(iter(sources))
choice = st.selectbox("VAE shown", list(sources), key="gen_source", format_func=lambda o: sources[o][0])
_, model, rec = sources[choice]
tag = choice if choice != CURRENT else f"cur{id(model)}"
info = rec.data_info
k = model.cfg.code_size

st.subheader("1. Samples from random codes")
_samples(model, info, tag)
st.subheader("2. The decoded manifold")
if k == 2:
    _manifolds(model, rec, ds, side_tc, tag)
else:
    st.info(f"The manifold is drawn for a 2-D code; this VAE has K = {k}. Train one with K = 2 above.")
st.subheader("3. Interpolation")
_interpolation(model, ds, tag)
kl = kl_per_dim(model, ds.x_test)  # (K,) nats: which dimensions the sliders show, and section 5
st.subheader("4. One slider per latent dimension")
_traversal(model, ds, tag, kl)
st.subheader("5. Which latent dimensions are used: KL per dimension")
_kl(model, ds, tag, kl)
st.subheader("6. β: rate against distortion")
_beta_section(model, rec, ds, side_tc, tag)
with st.expander("Download this VAE"):
    classroom.export_button("Download the VAE (.zip)", rec.model_cfg, rec.train_cfg, model, rec.metrics or {},
                            rec.history, info, key=f"gen_export_{tag}")
