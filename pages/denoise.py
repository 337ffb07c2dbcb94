"""Denoise & inpaint: a denoising autoencoder against a plain one (same K) and PCA.

1. both autoencoders train on demand (background jobs, remembered per session and data set);
2. pick test images or draw one; add Gaussian, masking or salt-and-pepper noise at a level, or
   hide pixels (a block, random pixels, a box or lasso selection, or paint);
3. original | corrupted | denoising AE | plain AE | PCA side by side, PSNR under each;
4. PSNR against the noise level (or the fraction hidden) for the three.

Inpainting keeps the observed pixels and takes each model's guess for the hidden ones
(``aecore.inpainting.inpaint``), iterated a few times.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from aecore.baselines import fit_pca
from aecore.config import ModelConfig
from aecore.inpainting import (HIDE_FRACTION, NOISE_KINDS, apply_mask, block, box_mask, corrupt_batch, inpaint,
                               mask_from_paint, psnr_curve, psnr_rows, random_mask, rasterize_drawing, reconstructor)
from dashboard import classroom, ondemand, state
from dashboard import figures_generate as figs
from dashboard.sidebar import configs_and_data

PAGE = "dn"
ROLES = ("denoising AE", "plain AE")
MAX_IMAGES = 8
CURVE_IMAGES = 200  # test images behind the PSNR curve
CANVAS_PX = 280
NOISE_LABELS = {"gaussian": "Gaussian (level = standard deviation)", "masking": "masking (level = fraction set to 0)",
                "salt-pepper": "salt-and-pepper (level = fraction set to 0 or 1)"}
HIDE_LABELS = {"block": "a block", "random": "random pixels", "box": "box or lasso selection",
               "paint": "paint over the image"}


def _canvas():
    """``streamlit_drawable_canvas.st_canvas``, or None when the package is missing or broken."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # ImportError, or a component that cannot register with this Streamlit
        return None
    return st_canvas


def _pair_configs(side: ModelConfig, ds) -> dict[str, ModelConfig]:
    """The denoising AE (the sidebar's when it is one, else the variant's defaults at the sidebar's K)
    and the same model without noise."""
    den = side if side.variant == "denoising" and side.noise != "none" and side.noise_level > 0 else \
        ModelConfig(variant="denoising", code_size=side.code_size)
    lo, hi = ds.value_range
    if den.loss == "cross-entropy" and (lo < 0 or hi > 1):  # Bernoulli pixels need data in [0, 1]
        den = den.replace(loss="squared", output="linear")
    plain = ModelConfig(variant="sigmoid", code_size=den.code_size, activation=den.activation, output=den.output,
                        tied=den.tied, loss=den.loss)
    return {ROLES[0]: den, ROLES[1]: plain}


def _parse_indices(text: str, n: int) -> list[int]:
    out = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ValueError(f"{bad[0]} is not a test image number (0 … {n - 1})")
    if not out:
        raise ValueError("no image numbers given")
    return list(dict.fromkeys(out))[:MAX_IMAGES]


def _models_section(ds, side_mc, side_tc) -> dict | None:
    """Train / show the two models; returns {role: model} once both are trained."""
    want = _pair_configs(side_mc, ds)
    have = {role: ondemand.get(PAGE, (ds.name, role)) for role in ROLES}
    busy = any(j is not None and not j.done for j in have.values())
    c1, c2 = st.columns([1, 3])
    if c1.button("Train the two models", type="primary", key="dn_train", disabled=busy,
                 help=f"{side_tc.epochs} epochs each on {ds.name} (sidebar), in the background."):
        for role in ROLES:
            ondemand.submit(PAGE, (ds.name, role), want[role], side_tc, ds)
        st.rerun()
    c2.caption(f"**{ROLES[0]}**: {ondemand.describe(want[ROLES[0]])} · **{ROLES[1]}**: the same without noise, "
               f"{ondemand.describe(want[ROLES[1]])} · {side_tc.epochs} epochs, lr {side_tc.lr:g} on **{ds.name}**. "
               "K, epochs and (for a denoising variant) the noise come from the sidebar.")
    ondemand.watch(PAGE, label=lambda key, job: f"Training the {key[1]}")
    for role, job in have.items():
        if job is not None and job.status == "failed":
            st.error(f"Training the {role} failed: {job.error}")
    if not all(ondemand.ready(j) for j in have.values()):
        if not busy:
            st.info("Press **Train the two models**: a denoising autoencoder and a plain one with the same code size "
                    "train for a few seconds on the sidebar's data set; then corrupt images and compare.")
        return None
    trained = {role: have[role].model_cfg for role in ROLES}
    if trained != want:
        st.caption("The models shown were trained with other settings than the sidebar's now "
                   f"({ondemand.describe(trained[ROLES[0]])}); press the button to retrain.")
    return {role: have[role].model for role in ROLES}


def _pick_images(ds):
    """(x (n, D), row labels) or None after a message."""
    h, w = ds.shape
    canvas = _canvas()
    c1, c2 = st.columns([1, 2])
    source = c1.radio("Images", ["test", "draw"], key="dn_source",
                      format_func={"test": "test images", "draw": "draw one"}.get,
                      help="Drawing needs the streamlit-drawable-canvas package.")
    if source == "test":
        text = c2.text_input("Test image numbers", value="0, 1, 2, 3", key="dn_indices",
                             help=f"Comma-separated, ranges allowed (e.g. 0-3, 17); at most {MAX_IMAGES}; "
                                  f"0 … {ds.n_test - 1}.")
        try:
            idx = _parse_indices(text, ds.n_test)
        except ValueError as exc:
            c2.error(f"Test image numbers: {exc}")
            return None
        names = ds.label_names
        labels = [f"#{i}" + (f" ({names[int(ds.y_test[i])]})" if ds.y_test is not None and names is not None
                             else "") for i in idx]
        return ds.x_test[idx], labels
    if canvas is None:
        c2.warning("Drawing needs the `streamlit-drawable-canvas` package (pip install streamlit-drawable-canvas); "
                   "pick test images meanwhile.")
        return None
    with c2:
        from PIL import Image

        bg = Image.new("RGB", (CANVAS_PX, CANVAS_PX), (243, 243, 243))
        res = canvas(stroke_width=int(np.clip(round(CANVAS_PX / max(h, w)), 18, 40)), stroke_color="#000000",
                     background_image=bg, height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw",
                     key="dn_draw_canvas", return_image_data=True)
        st.caption(f"Draw in the grey square (a digit, say); it is cropped, scaled to {h}×{w} pixels and centred like "
                   "the data. The bin icon clears it.")
    rgba = res.image_data if res is not None else None
    if rgba is None or not (rgba[..., 3] > 0).any():
        st.info("Draw something in the square to denoise it.")
        return None
    x = rasterize_drawing(rgba[..., 3] / 255.0, (h, w), ds.value_range)
    return x[None, :], ["your drawing"]


def _mask_for(ds, x: np.ndarray) -> np.ndarray | None:
    """The mask (n, D) of the chosen hiding method (1 = observed), or None after a message."""
    h, w = ds.shape
    how = st.radio("Hide", list(HIDE_LABELS), key="dn_hide", format_func=HIDE_LABELS.get, horizontal=True)
    if how == "block":
        c = st.columns(4)
        top = c[0].slider("top row", 0, h - 1, h // 4, key=f"dn_top_{ds.name}")
        left = c[1].slider("left column", 0, w - 1, w // 4, key=f"dn_left_{ds.name}")
        bh = c[2].slider("height (pixels)", 1, h, max(1, h // 2), key=f"dn_bh_{ds.name}")
        bw = c[3].slider("width (pixels)", 1, w, max(1, w // 2), key=f"dn_bw_{ds.name}")
        return np.broadcast_to(block((h, w), top, left, bh, bw).ravel(), x.shape)
    if how == "random":
        c1, c2 = st.columns(2)
        frac = c1.slider("fraction of pixels hidden", 0.0, 1.0, 0.5, 0.05, key="dn_frac")
        seed = int(c2.number_input("seed", 0, 2**31 - 1, 0, key="dn_mask_seed"))
        return random_mask(x.shape, frac, seed)
    store = f"dn_mask_{how}_{ds.name}"
    ss = st.session_state
    if how == "box":
        n_clear = ss.setdefault(f"{store}_n", 0)
        current = ss.get(store, np.ones(h * w, np.float32))
        left, right = st.columns([3, 2])
        with left:
            event = classroom.show_figure(
                figs.mask_editor_figure(x[0], current == 0, (h, w), ds.value_range),
                f"dn_mask_editor_{n_clear}", None, filename="mask", on_select="rerun", selection_mode=("box", "lasso"))
        new = _selection_mask(event, (h, w))
        if new is not None and not np.array_equal(new, current):
            ss[store] = new
            st.rerun()  # redraw the editor with the new hidden pixels
        with right:
            st.caption("The first chosen image, pixel by pixel. Drag with the box tool (or pick the lasso in the "
                       "figure's toolbar) over the pixels to hide; orange = hidden. The same mask is applied to every "
                       "chosen image.")
            if st.button("Clear the mask", key="dn_clear_box"):
                ss.pop(store, None)
                ss[f"{store}_n"] = n_clear + 1
                st.rerun()
        mask = ss.get(store)
    else:  # paint
        canvas = _canvas()
        if canvas is None:
            st.warning("Painting needs the `streamlit-drawable-canvas` package; use a box selection instead.")
            return None
        from PIL import Image

        lo, hi = ds.value_range
        img = np.clip((np.asarray(x[0]).reshape(h, w) - lo) / max(hi - lo, 1e-9), 0, 1)
        bg = Image.fromarray(((1 - img) * 255).astype(np.uint8)).resize((CANVAS_PX, CANVAS_PX), Image.Resampling.NEAREST)
        left, right = st.columns([2, 3])
        with left:
            res = canvas(stroke_width=max(8, CANVAS_PX // max(h, w)), stroke_color="rgba(230, 159, 0, 0.85)",
                         background_image=bg.convert("RGB"), height=CANVAS_PX, width=CANVAS_PX,
                         drawing_mode="freedraw", key=f"dn_paint_canvas_{ds.name}", return_image_data=True)
        right.caption("Paint (orange) over the first chosen image where pixels should be hidden; a pixel is hidden "
                      "when a quarter of it is painted. The same mask is applied to every chosen image.")
        rgba = res.image_data if res is not None else None
        mask = None if rgba is None or not (rgba[..., 3] > 0).any() else mask_from_paint(rgba[..., 3] / 255.0, (h, w)).ravel()
    if mask is None or mask.min() == 1:
        st.info("No pixel is hidden yet: " + ("drag a box over the image." if how == "box" else "paint over the image."))
        return None
    return np.broadcast_to(mask.ravel(), x.shape)


def _selection_mask(event, shape) -> np.ndarray | None:
    """A mask from a plotly selection: the box's extent, else the selected pixel markers."""
    try:
        sel = event.selection
    except AttributeError:
        return None
    h, w = shape
    boxes = sel.get("box") or []
    if boxes:
        b = boxes[-1]
        return box_mask(shape, rows=tuple(b["y"][:2]), cols=tuple(b["x"][:2])).ravel()
    idx = []
    for p in sel.get("points") or []:
        if p.get("x") is not None and p.get("y") is not None:
            idx.append(int(round(p["y"])) * w + int(round(p["x"])))
    if not idx:
        return None
    m = np.ones(h * w, np.float32)
    m[[i for i in idx if 0 <= i < h * w]] = 0
    return m


def _compare(ds, models: dict, x: np.ndarray, labels: list[str]) -> None:
    k = models[ROLES[0]].cfg.code_size
    pca = fit_pca(ds.x_train, k)
    lo, hi = ds.value_range
    data_range = float(hi - lo) or 1.0
    den_cfg = models[ROLES[0]].cfg
    mode = st.radio("What to do to the images", ["noise", "hide"], key="dn_mode", horizontal=True,
                    format_func={"noise": "add noise", "hide": "hide pixels (inpaint)"}.get)
    if mode == "noise":
        c1, c2, c3 = st.columns([2, 2, 1])
        kinds = list(NOISE_KINDS)
        st.session_state.setdefault("dn_noise", den_cfg.noise if den_cfg.noise in kinds else "gaussian")
        kind = c1.selectbox("Noise", kinds, key="dn_noise", format_func=NOISE_LABELS.get)
        level = c2.slider("Noise level", 0.0, 1.0, 0.3, 0.05, key="dn_level")
        seed = int(c3.number_input("seed", 0, 2**31 - 1, 0, key="dn_seed"))
        shown = corrupt_batch(x, kind, level, seed, ds.value_range)
        outputs = {name: reconstructor(m)(shown) for name, m in {**models, "PCA": pca}.items()}
        hidden, shown_name = None, "corrupted"
        # (the columns name themselves: the title says what is done to the images, and PCA's K)
        title = f"{kind} noise at level {level:g}; PCA with K = {k}"
    else:
        mask = _mask_for(ds, x)
        if mask is None:
            return
        iters = st.slider("Inpainting iterations", 1, 10, 3, key="dn_iters",
                          help="Each pass reconstructs the current guess and puts the observed pixels back.")
        shown = apply_mask(x, mask)
        outputs = {name: inpaint(m, x, mask, iters) for name, m in {**models, "PCA": pca}.items()}
        hidden, shown_name = mask == 0, "with hidden pixels"
        per_image = float((mask == 0).sum(axis=1).mean())
        # (PCA's K goes in the caption: the whole title ran past the figure's edge on a narrow page)
        title = (f"Inpainting {per_image:.0f} hidden pixels{' per image' if len(x) > 1 else ''}, "
                 f"{iters} iteration{'s' * (iters > 1)}")
    columns = {"original": x, shown_name: shown, **outputs}
    psnr = {name: psnr_rows(x, y, data_range) for name, y in columns.items() if name != "original"}
    classroom.show_figure(figs.comparison_figure(columns, psnr, ds.shape, ds.value_range, hidden=hidden,
                                                 hidden_column=shown_name, row_labels=labels, title=title),
                          "dn_compare",
                          "Each row one image; under each output its PSNR against the original (dB, higher is "
                          "better). " + ("Look for the denoising AE's column staying clean where the plain AE and PCA "
                                         "copy the noise." if mode == "noise" else
                                         "Orange: hidden pixels (shown to the models as 0). Observed pixels are "
                                         f"kept; look at what each model puts in the hole. PCA with K = {k}."),
                          filename="denoise-compare")
    means = " · ".join(f"{name} **{np.mean(v):.1f} dB**" for name, v in psnr.items() if np.all(np.isfinite(v)))
    st.markdown(f"Mean PSNR over these images: {means}.")

    # the PSNR curve over many test images
    xs = ds.x_test[:CURVE_IMAGES]
    if mode == "noise":
        noise, x_title = kind, f"{kind} noise level ({NOISE_LABELS[kind].split('(')[1].rstrip(')')})"
        current, train_level = level, (den_cfg.noise_level if den_cfg.noise == kind else None)
        iters_curve = 1
    else:
        noise, x_title = HIDE_FRACTION, "fraction of pixels hidden at random (inpainted)"
        current = st.session_state.get("dn_frac") if st.session_state.get("dn_hide") == "random" else None
        train_level, iters_curve = None, iters
    levels = np.round(np.linspace(0.0, 1.0, 11), 2)
    curves = psnr_curve(models, pca, xs, noise, levels, seed=0, data_range=data_range, value_range=ds.value_range,
                        iterations=iters_curve)
    classroom.show_figure(
        figs.psnr_curve_figure(levels, curves, x_title, f"PSNR against noise level on {len(xs)} test images",
                               train_level=train_level, current=current),
        "dn_curve",
        "One line per method; dashed grey: the corrupted input itself (doing nothing). Look for where the "
        "denoising AE's line rises above the plain AE's and PCA's: from about its training noise level upwards. "
        "At level 0 PCA and the plain AE, trained on clean images, do best.", filename="psnr-curve")


st.title("Denoise & inpaint")
classroom.lesson_panel("denoising")
st.caption("A denoising autoencoder learns to map corrupted inputs back to clean ones; here it faces a plain "
           "autoencoder of the same size and PCA on noisy and partly hidden images. " + classroom.PNG_NOTE)
side_mc, side_tc, ds = configs_and_data()
if len(ds.shape) != 2:
    st.error(f"This page works on images; {ds.name!r} holds vectors of shape {ds.shape}.")
    st.stop()

st.subheader("1. A denoising and a plain autoencoder, same K")
models = _models_section(ds, side_mc, side_tc)
if models is not None:
    st.subheader("2. Corrupt some images and compare")
    picked = _pick_images(ds)
    if picked is not None:
        _compare(ds, models, *picked)
    with st.expander("Download the two models"):
        cols = st.columns(2)
        for col, role in zip(cols, ROLES):
            job = ondemand.get(PAGE, (ds.name, role))
            with col:
                classroom.export_button(f"Download the {role} (.zip)", job.model_cfg, job.train_cfg, job.model,
                                        job.metrics or {}, job.history, job.data_info, key=f"dn_export_{role}",
                                        name=f"{role.replace(' ', '-')}-K{job.model_cfg.code_size}-{ds.name}")
