"""Train: start a job from the sidebar's settings and watch it learn, live."""
from __future__ import annotations

import math

import streamlit as st

from dashboard import classroom, figures, figures_live, state
from dashboard.sidebar import current_configs

LIVE_EVERY = 0.45  # seconds between redraws while a job runs


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _dataset_label(name: str) -> str:
    """How a data set is named on the page: an upload by the user's file name, not its internal id."""
    from dashboard import uploads

    return f"{name.split(':', 2)[2]} (uploaded)" if uploads.is_upload_name(name) else name


def _describe(mc, tc) -> str:
    extra = []
    if mc.reg:
        extra.append(f"λ={mc.reg:g}")
    if mc.noise != "none":
        extra.append(f"{mc.noise} noise {mc.noise_level:g}")
    if mc.hidden:
        extra.append(f"hidden {','.join(map(str, mc.hidden))}")
    extra = f" ({', '.join(extra)})" if extra else ""
    training = [f"{tc.epochs} epochs", f"lr {tc.lr:g}", f"batch {tc.batch_size}", f"seed {tc.seed}", f"device {tc.device}"]
    if tc.augment_shift:
        training.append(f"random shifts ≤ {tc.augment_shift} px")
    if tc.precision != "float32":
        training.append(tc.precision)
    if tc.output_bias != "data":
        training.append("output bias from the model's own init")
    return (f"**{mc.variant}**{extra}, K={mc.code_size}, {mc.activation}, {mc.loss} loss on **{_dataset_label(tc.dataset)}** — "
            + ", ".join(training))


def _start(mc, tc) -> None:
    ds = state.load_dataset(tc.dataset)  # progress bar while downloading; st.error on failure
    if ds is None:
        return
    job = state.job_manager().submit(mc, tc, ds, data_info=state.data_info(ds))
    state.set_current_job(job)
    st.rerun()  # redraw the buttons (Train off, Stop on) and start the live view


def _stop() -> None:
    job = state.current_job()
    if job is not None:
        job.stop()


def _draw_progress(job) -> None:
    p = job.progress
    if job.status == "queued":
        pos = state.job_manager().queue_position(job)
        st.info(f"Queued: position {pos} in line. Other sessions are training; this job starts when a slot frees up."
                if pos else "Starting…")
    frac = min(p.step / p.total_steps, 1.0) if p and p.total_steps else (1.0 if job.done and job.metrics else 0.0)
    text = f"epoch {p.epoch:.1f} of {p.epochs} · step {p.step} of {p.total_steps}" if p else job.status
    st.progress(frac, text=text)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("loss per example", f"{p.loss:.4g}" if p else "—")
    c2.metric("samples / s", f"{p.samples_per_second:,.0f}" if p else "—")
    c3.metric("elapsed", _duration(p.elapsed if p else None))
    c4.metric("time left", "0 s" if job.done else _duration(p.eta if p else None))


def _memo(name: str, token, build):
    """Reuse a figure while its data have not changed (a snapshot comes every 0.5 s, redraws every 0.4 s):
    building plotly figures holds the GIL that the training thread needs."""
    cache = st.session_state.setdefault("_train_figures", {})
    hit = cache.get(name)
    if hit is not None and hit[0] == token:
        return hit[1]
    fig = build()
    cache[name] = (token, fig)
    return fig


def _draw_figures(job) -> None:
    mc, info = job.model_cfg, job.data_info
    shape, vrange = info.get("shape"), info.get("value_range")
    live = not job.done  # while training: light images; when done: interactive plotly figures
    left, right = st.columns(2)
    with left:
        log_y = st.toggle("Log scale", key="train_log_y", help="Show small terms (a penalty) next to large ones.")
        if live:  # an SVG redraws far more cheaply than a plotly figure (see figures_live)
            st.markdown(_memo("loss_svg", (job.id, len(job.history), log_y), lambda: figures_live.loss_curve_svg(
                job.history, title="Training loss by term", unit="per example", log_y=log_y)), unsafe_allow_html=True)
        else:
            st.plotly_chart(figures.loss_curve(job.history, title="Training loss by term", unit="per example",
                                               log_y=log_y),
                            theme=None, key=f"train_loss_{job.id}")
        st.caption("Each named loss term (weighted as in training) and their total, per example. "
                   "Look for a steady fall that flattens out; with a regularizer, watch it trade against recon."
                   + (" (Hover and zoom when the run ends.)" if live else ""))
    snap = job.latest
    with right:
        if snap is None:
            st.info("Filters appear after the first snapshot.")
        elif live:  # an image redraws far more cheaply than a heatmap (see figures.filter_image)
            with st.container(key="live_filters"):
                st.markdown(f"**Filters: rows of W** · step {snap.step}")
                st.image(_memo("filters_img", (job.id, snap.step, snap.elapsed),
                               lambda: figures.filter_image(snap.W, shape, max_tiles=64)), width="stretch")
        else:
            st.plotly_chart(_memo("filters", (job.id, snap.step, snap.elapsed),
                                  lambda: figures.filter_grid(snap.W, shape, title="Filters: rows of W", max_tiles=64)),
                            theme=None, key=f"train_filters_{job.id}")
        if snap is not None:
            st.caption("Each tile is one row of W, the weights from every pixel into one code unit "
                       "(red positive, blue negative). Look for noise turning into strokes and blobs.")
    if snap is None:
        return
    noisy = snap.corrupted is not None
    if live:
        rows = "input / corrupted / output" if noisy else "input / output"
        with st.container(key="live_recon"):
            st.markdown(f"**Reconstructions of fixed test examples** (epoch {snap.epoch:.1f}; rows: {rows})")
            st.image(_memo("recon_img", (job.id, snap.step, snap.elapsed), lambda: figures.recon_image(
                snap.inputs, snap.recon, shape, corrupted=snap.corrupted, value_range=vrange)), width="stretch")
    else:
        st.plotly_chart(_memo("recon", (job.id, snap.step, snap.elapsed), lambda: figures.recon_strip(
                            snap.inputs, snap.recon, shape, corrupted=snap.corrupted, value_range=vrange,
                            title=f"Reconstructions of fixed test examples (epoch {snap.epoch:.1f})")),
                        theme=None, key=f"train_recon_{job.id}")
    st.caption("Top row: test inputs; " + ("middle: the corrupted input the model saw; " if noisy else "")
               + "bottom: the model's output. Look for blur giving way to detail as training goes on.")


def _draw_summary(job) -> None:
    if job.status == "failed":
        st.error(f"Training failed: {job.error}")
        reason = (job.error or "").lower()
        if "diverged" in reason or "not finite" in reason:
            st.info(f"The loss blew up. Lower the learning rate (now {job.train_cfg.lr:g}) in the sidebar, "
                    "e.g. by a factor of 10, and train again.")
        elif "out of memory" in reason or "not enough memory" in reason:
            st.info(f"The model did not fit in memory. Lower the code size K (now {job.model_cfg.code_size}), "
                    f"the hidden layer sizes or the batch size (now {job.train_cfg.batch_size}) in the sidebar; "
                    "other students' jobs were not affected.")
        return
    m = job.metrics
    if not m:
        st.warning("Stopped before training started: no model, no metrics.")
        return
    mc = job.model_cfg
    how = "Stopped early" if job.status == "stopped" else "Finished"
    saved = f" Saved as run `{job.run_id}`." if job.run_id else ""
    st.success(f"{how} after {m.get('epochs', 0):.1f} epochs in {_duration(m.get('seconds'))}.{saved}")
    if job.save_error:
        st.warning(job.save_error)
    k = m.get("pca_components", mc.code_size)
    rows = [("squared error per image, test set (`test_sse` / `pca_sse`)", m.get("test_sse"), m.get("pca_sse")),
            ("mean squared error per pixel (`test_mse` / `pca_mse`)", m.get("test_mse"), m.get("pca_mse"))]
    table = [f"| metric | autoencoder | PCA, same K={k} |", "| --- | ---: | ---: |"]
    table += [f"| {name} | {a:.4g} | {b:.4g} |" for name, a, b in rows if a is not None and b is not None]
    extra = []
    if "max_principal_angle_deg" in m:
        extra.append(f"Largest principal angle between the decoder's subspace and PCA's: "
                     f"**{m['max_principal_angle_deg']:.2f}°** (0° = the same subspace).")
    if "test_elbo" in m:
        extra.append(f"Test ELBO: **{m['test_elbo']:.4g}** nats per example (higher is better; log p(x) ≥ ELBO).")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("\n".join(table))
        for line in extra:
            st.markdown(line)
        st.caption("PCA is the best any linear code of size K can do on squared error; "
                   "a nonlinear autoencoder can beat it, a linear one can at best match it.")
    with right:
        if m.get("test_sse") is not None and m.get("pca_sse") is not None:
            st.plotly_chart(figures.metric_comparison(["test set"], {"autoencoder": [m["test_sse"]],
                                                                     f"PCA (K={k})": [m["pca_sse"]]},
                                                      title="Test error vs PCA",
                                                      y_title="squared error per image", x_title=""),
                            theme=None, key=f"train_cmp_{job.id}")
            st.caption("Lower is better. Look for which bar is shorter.")


def _draw_job(job) -> None:
    st.markdown(f"Job {job.id}: {_describe(job.model_cfg, job.train_cfg)}")
    if job.done:
        _draw_summary(job)
    _draw_progress(job)
    _draw_figures(job)


st.title("Train")
configs = current_configs()
classroom.lesson_panel(configs[0].variant if configs else None)
job = state.current_job()
running = job is not None and not job.done

buttons = st.container(horizontal=True)
start = buttons.button("Train", type="primary", key="train_start", disabled=configs is None or running,
                  help="Train the model the sidebar describes (in the background; the page stays live).")
buttons.button("Stop", key="train_stop", disabled=not running, on_click=_stop, help="End the run within a second.")
if configs is None:
    st.error("The settings in the sidebar are not valid; fix the field named there to train.")
elif not running:
    st.caption(f"Will train: {_describe(*configs)}")
if start and configs is not None and not running:
    _start(*configs)

if job is None:
    st.info("Press **Train** to train the model described in the sidebar. Loss, filters and reconstructions "
            "update live while it learns; the run is saved when it ends.")
else:
    started_live = not job.done

    @st.fragment(run_every=LIVE_EVERY if started_live else None)
    def live_view() -> None:
        current = state.current_job()
        if current is None:
            return
        with figures_live.live_container("train", started_live):  # no fades while it trains
            _draw_job(current)
        if started_live and current.done:
            st.rerun()  # once: the full page redraws with the summary, the buttons and no timer

    live_view()
    if not started_live:
        classroom.after_run(job)  # replay, unit statistics, export
