"""Classroom features shared by the pages: lesson panels, presets, replay, unit statistics, export.

    lesson_panel(variant)     an expander with the variant's equations (assets/lessons/<variant>.md)
    presets_panel()           one-click set-ups in the sidebar (``PRESETS``); preset_notice() says where to look
    after_run(job)            on the Train page once a run ends: replay, unit statistics, export
    show_figure(fig, key, caption)   a plotly chart whose modebar downloads a PNG, with its caption

Lesson texts are Markdown files, one per registered variant; a block between two lines that
hold only ``$$`` is drawn with ``st.latex``, the rest with ``st.markdown`` (which also renders
inline ``$...$``). Presets set the sidebar's widget keys through ``sidebar.apply_settings``, so
the URL query parameters follow on the same run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from aecore import embedding
from aecore.export import export_run_zip
from aecore.units import DEFAULT_TARGET, unit_stats

from . import figures, state
from . import figures_generate as figs_gen
from . import figures_latent as figs_lat
from .sidebar import apply_settings

__all__ = ["LESSONS_DIR", "lesson_text", "lesson_blocks", "lesson_panel", "Preset", "PRESETS", "apply_preset",
           "presets_panel", "preset_notice", "png_config", "show_figure", "PNG_NOTE", "replay_panel",
           "unit_stats_panel", "export_button", "after_run"]

ROOT = Path(__file__).resolve().parent.parent
LESSONS_DIR = ROOT / "assets" / "lessons"
PAGES_DIR = ROOT / "pages"
NOTICE_KEY = "preset_notice"
PNG_NOTE = ("Every figure downloads as a PNG (twice the screen resolution): hover it and press the camera icon "
            "in its toolbar.")


# --- figures with a PNG download -----------------------------------------------------------
def png_config(filename: str) -> dict[str, Any]:
    """Plotly config: the modebar's camera button saves ``filename``.png at twice the size."""
    return {"displaylogo": False, "displayModeBar": True,
            "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}


def show_figure(fig, key: str, caption: str | None = None, filename: str | None = None, **kwargs):
    """``st.plotly_chart`` with the shared theme-free look and a PNG download; returns its value
    (the selection event when ``on_select`` is given)."""
    event = st.plotly_chart(fig, theme=None, key=key, config=png_config(filename or key), **kwargs)
    if caption:
        st.caption(caption)
    return event


# --- lesson panel ---------------------------------------------------------------------------
def lesson_text(variant: str) -> str | None:
    """The lesson for a variant (Markdown with ``$$`` blocks), or None when it has none."""
    path = LESSONS_DIR / f"{variant}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def lesson_blocks(text: str) -> list[tuple[str, str]]:
    """Split a lesson into ("markdown", text) and ("latex", equation) blocks, in order."""
    blocks: list[tuple[str, str]] = []
    buf: list[str] = []
    in_math = False
    for line in text.splitlines():
        if line.strip() == "$$":
            body = "\n".join(buf).strip()
            if body:
                blocks.append(("latex" if in_math else "markdown", body))
            buf, in_math = [], not in_math
        else:
            buf.append(line)
    body = "\n".join(buf).strip()
    if in_math:
        raise ValueError("a $$ block is not closed")
    if body:
        blocks.append(("markdown", body))
    return blocks


def lesson_panel(variant: str | None, expanded: bool = False) -> None:
    """A collapsible explanation of ``variant``: encoder h = f(x), decoder x̂ = g(h), loss ℓ(x̂, x) + Ω(h)."""
    if not variant:
        return
    text = lesson_text(variant)
    if text is None:
        return
    with st.expander(f"Lesson: the {variant} autoencoder, h = f(x), x̂ = g(h), loss ℓ(x̂, x) + Ω(h)",
                     expanded=expanded):
        for kind, body in lesson_blocks(text):
            (st.latex if kind == "latex" else st.markdown)(body)


# --- presets ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    settings: dict = field(hash=False)  # sidebar widget keys -> values (see dashboard.sidebar.PARAMS)
    page: str                           # file in pages/ where the story is seen
    page_title: str
    look: str                           # what to do and where to look


PRESETS: tuple[Preset, ...] = (
    Preset("linear_pca", "Linear AE = PCA",
           {"sb_dataset": "digits", "sb_variant": "linear", "sb_code_size": 8, "sb_epochs": 100, "sb_lr": 0.01},
           "compare.py", "Compare with PCA",
           "A linear autoencoder with K = 8 on digits. On **Compare with PCA** press its first *Train* button: the "
           "principal angles between its decoder's subspace and PCA's fall to 0°, and its error sits on PCA's "
           "curve. Or press **Train** here: the summary shows its test error next to PCA's at the same K."),
    Preset("under_over", "Undercomplete vs overcomplete",
           {"sb_dataset": "digits", "sb_variant": "sigmoid", "sb_code_size": 128, "sb_epochs": 30, "sb_lr": 0.01},
           "filters.py", "Filters",
           "K = 128 code units for D = 64 pixels: an *overcomplete* code, bigger than the input, so nothing forces "
           "a compression. Press **Train**, then look at **Filters**: many tiles are speckled noise and the "
           "reconstructions are nearly perfect. Set K = 16 (*undercomplete*) and train again: the filters become "
           "strokes, because the code must summarize."),
    Preset("sparsity_lambda", "Sparsity grows with λ",
           {"sb_dataset": "digits", "sb_variant": "sparse", "sb_code_size": 64, "sb_reg": 0.05, "sb_epochs": 30,
            "sb_lr": 0.01},
           "train.py", "Train",
           "A sparse ReLU autoencoder, K = 64, λ = 0.05. Press **Train**; when it ends, open *Unit statistics* "
           "below the run: mean activation per unit and the share of dead units. Train again with λ = 0.005 "
           "and λ = 0.2 (sidebar): as λ grows the mean activations fall and more units stay silent."),
    Preset("denoising_wins", "Denoising beats plain on noisy input",
           {"sb_dataset": "digits", "sb_variant": "denoising", "sb_code_size": 32, "sb_noise": "gaussian",
            "sb_noise_level": 0.3, "sb_epochs": 30, "sb_lr": 0.01},
           "denoise.py", "Denoise & inpaint",
           "A denoising autoencoder trained on Gaussian noise of standard deviation 0.3, K = 32. On **Denoise & "
           "inpaint** press *Train the two models* (this one and a plain one with the same K): at and above the "
           "training noise the denoising AE's PSNR curve lies above the plain AE's and PCA's."),
    Preset("vae_samples", "VAE samples from random codes",
           {"sb_dataset": "digits", "sb_variant": "vae", "sb_code_size": 2, "sb_beta": 1.0, "sb_epochs": 30,
            "sb_lr": 0.01},
           "generate.py", "Generate",
           "A variational autoencoder with a 2-D code. On **Generate** press *Train a VAE*: random codes "
           "z ~ N(0, I) decode into new digits, and the decoded 2-D manifold has no holes, unlike a plain "
           "autoencoder's next to it."),
)
_BY_KEY = {p.key: p for p in PRESETS}


def apply_preset(key: str) -> None:
    """Widget callback: set the sidebar to the preset and remember which one for the notice."""
    preset = _BY_KEY[key]
    apply_settings(preset.settings)
    st.session_state[NOTICE_KEY] = key


def presets_panel() -> None:
    """One button per preset, in the sidebar."""
    with st.sidebar.expander("Presets: one-click classroom set-ups", expanded=False):
        for p in PRESETS:
            st.button(p.title, key=f"preset_{p.key}", on_click=apply_preset, args=(p.key,),
                      width="stretch", help=p.look.replace("**", "").replace("*", ""))


def _dismiss() -> None:
    st.session_state.pop(NOTICE_KEY, None)


def preset_notice() -> None:
    """After a preset: what it set up, where to look, a link to that page and a dismiss button."""
    key = st.session_state.get(NOTICE_KEY)
    if key not in _BY_KEY:
        return
    p = _BY_KEY[key]
    with st.container(border=True):
        st.markdown(f"**Preset: {p.title}.** {p.look}")
        left, right = st.columns([3, 1])
        with left:
            st.page_link(str(PAGES_DIR / p.page), label=f"Go to {p.page_title}", icon=":material/arrow_forward:")
        right.button("Dismiss", key="preset_dismiss", on_click=_dismiss)


# --- after a run on the Train page: replay, unit statistics, export --------------------------
def replay_panel(job) -> None:
    """A slider over the run's snapshots: filters, reconstructions and codes as they were."""
    snaps = list(job.snapshots)
    if len(snaps) < 2:
        st.info("This run ended before a second snapshot: nothing to replay.")
        return
    info = job.data_info
    shape, vrange, names = info.get("shape"), info.get("value_range"), info.get("label_names")

    # the slider's labels as plain strings: Streamlit keeps a widget's format_func in the session's
    # state, and a lambda over the snapshots kept every finished job's snapshots alive (~30 MB each)
    labels = [f"epoch {s.epoch:.1f}" for s in snaps]

    @st.fragment
    def _replay() -> None:
        i = st.select_slider("Snapshot", options=list(range(len(snaps))), value=len(snaps) - 1,
                             key=f"replay_{job.id}", format_func=labels.__getitem__,
                             help="Drag back to see the model as it was at that point of training.")
        s = snaps[i]
        st.caption(f"Snapshot {i + 1} of {len(snaps)}: step {s.step}, epoch {s.epoch:.2f}, "
                   f"{s.elapsed:.1f} s into training.")
        left, right = st.columns(2)
        with left:
            show_figure(figures.filter_grid(s.W, shape, title=f"Filters at epoch {s.epoch:.1f}", max_tiles=64),
                        f"replay_filters_{job.id}",
                        "Rows of W at this snapshot (red positive, blue negative weights). Look for noise "
                        "turning into strokes as you drag forward.", filename="replay-filters")
        with right:
            if s.codes is not None and len(s.codes) >= 2:
                pts, used = embedding.embed_2d(s.codes, method="auto")
                axes = {"code": ("code unit h₁", "code unit h₂"), "code-1d": ("code unit h₁", "(none: 0)"),
                        "pca": ("principal component 1 (score)", "principal component 2 (score)")}[used]
                show_figure(figs_lat.latent_scatter(pts, s.code_labels, names, f"Codes at epoch {s.epoch:.1f}",
                                                    *axes, height=420),
                            f"replay_codes_{job.id}",
                            f"Codes of test examples ({embedding.METHOD_LABELS[used]}), coloured by label. "
                            "Look for the colours pulling apart.", filename="replay-codes")
        show_figure(figures.recon_strip(s.inputs, s.recon, shape, corrupted=s.corrupted, value_range=vrange,
                                        title=f"Reconstructions at epoch {s.epoch:.1f}"),
                    f"replay_recon_{job.id}",
                    "Top: test inputs; bottom: the model's output at this snapshot. Look for blur giving way to "
                    "detail.", filename="replay-reconstructions")

    _replay()


def unit_stats_panel(model, x: np.ndarray, key: str) -> None:
    """Histogram of code activations, dead units, mean activation per unit against a target ρ."""

    @st.fragment
    def _units() -> None:
        target = float(st.number_input("Sparsity target ρ (mean activation)", min_value=0.0, max_value=10.0,
                                       value=DEFAULT_TARGET, step=0.01, format="%g", key=f"{key}_target",
                                       help="A yardstick for the mean activation of each unit; 0.05 is the "
                                            "target of Ng's sparse-autoencoder notes."))
        s = unit_stats(model, x, target=target)
        c1, c2, c3 = st.columns(3)
        c1.metric("dead units (never > 0)", f"{s.dead_fraction:.0%}", help=f"{int(s.dead.sum())} of {s.dead.size}")
        c2.metric("units active per example", f"{s.mean_fraction_active:.0%}",
                  help="Average share of units with h_k > 0 on one test image.")
        c3.metric(f"units above ρ = {target:g}", f"{int(s.above_target.sum())} of {s.dead.size}")
        left, right = st.columns(2)
        with left:
            show_figure(figs_gen.activation_histogram(s.counts, s.edges,
                                                      title=f"Code activations on {len(x)} test images"),
                        f"{key}_hist",
                        "How often each code value occurs, over every unit and test image. Look for a tall bar at "
                        "0: a sparse code.", filename="unit-activations")
        with right:
            show_figure(figs_gen.unit_means_figure(s.mean_activation, target, s.dead), f"{key}_means",
                        "One bar per code unit, sorted. Look for how many bars rise above the dashed target; the "
                        "empty places at the right end are dead units (mean 0, counted above).",
                        filename="unit-means")
        note = {"relu": "ReLU code: a unit that is never > 0 gets no gradient and stays dead.",
                "sigmoid": "Sigmoid code: values lie in (0, 1), so no unit is ever exactly 0 or dead; look at the "
                           "means instead.",
                "linear": "Linear code (deep stack or VAE mean): values can be negative; 'dead' and the target "
                          "apply to ReLU codes."}.get(s.activation, f"{s.activation} code.")
        st.caption(note)

    _units()


def export_button(label: str, model_cfg, train_cfg, model, metrics, history, data_info, key: str,
                  name: str | None = None) -> None:
    """A download button for the run as a zip (built when clicked)."""
    folder = name or f"{model_cfg.variant}-K{model_cfg.code_size}-{train_cfg.dataset}"
    st.download_button(label, data=lambda: export_run_zip(model_cfg, train_cfg, model, metrics, history,
                                                          data_info, name=folder),
                       file_name=f"{folder}.zip", mime="application/zip", key=key, icon=":material/download:",
                       help="config.json, model.safetensors, metrics.json, history.csv and load_run.py, which "
                            "reloads the model with aecore.checkpoint.load_run and encodes an example.")


def after_run(job) -> None:
    """The Train page once a run has ended with a model: replay, unit statistics, export."""
    if job is None or not job.done or job.model is None:
        return
    st.subheader("After the run")
    replay, units, export = st.tabs(["Replay", "Unit statistics", "Export"])
    with replay:
        replay_panel(job)
    with units:
        name = job.data_info.get("name") or job.train_cfg.dataset
        ds = state.load_dataset(name)
        if ds is not None and ds.dim == job.data_info.get("input_dim", ds.dim):
            unit_stats_panel(job.model, ds.x_test, key=f"units_{job.id}")
        else:
            st.info("Unit statistics need the run's test data, which is not available.")
    with export:
        export_button("Download the run (.zip)", job.model_cfg, job.train_cfg, job.model, job.metrics or {},
                      job.history, job.data_info, key=f"export_{job.id}")
        st.caption("The zip holds config.json, model.safetensors, metrics.json, history.csv and load_run.py: "
                   "unzip it and run `python <folder>/load_run.py` to reload the model with aecore and encode an "
                   "example. " + PNG_NOTE)
