"""Plotly builders for the Denoise & inpaint and Generate pages and the classroom panels.

Arrays in, ``go.Figure`` out; no math beyond arranging tiles (the numbers come from
``aecore.inpainting`` / ``generate`` / ``units``). One builder, ``image_mosaic``, lays out
every grid of images here (samples, manifolds, comparisons, interpolations, traversals) on
``figures.tile_mosaic``; the rest are line, bar and scatter charts with titles, axis titles
and units, in the shared ``style_layout``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .figures import PALETTE, grid_axes, image_shape, style_layout, tile_mosaic

__all__ = ["image_mosaic", "comparison_figure", "sample_grid_figure", "manifold_figure", "interpolation_figure",
           "thinned_labels", "two_lines", "traversal_figure", "psnr_curve_figure", "kl_bars_figure", "rate_distortion_figure",
           "activation_histogram", "unit_means_figure", "mask_editor_figure", "HIDDEN_COLOR"]

HIDDEN_COLOR = "#E69F00"  # hidden pixels (Okabe-Ito orange): stands out on grey
GAP = 1


def _range(tiles: np.ndarray, value_range) -> tuple[float, float]:
    if value_range is not None:
        return float(value_range[0]), float(value_range[1])
    finite = tiles[np.isfinite(tiles)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


WRAP_AT = 9  # characters: a column label of several words longer than this gets two lines


def two_lines(text: str) -> str:
    """A label of several words longer than ``WRAP_AT`` broken at the space nearest its middle: in
    the 360 px plot of a narrow page five columns get about 72 px, and "denoising AE" (about 95 px)
    ran into its neighbours."""
    if len(text) <= WRAP_AT or " " not in text:
        return text
    i = min((i for i, c in enumerate(text) if c == " "), key=lambda i: abs(i - len(text) / 2))
    return text[:i] + "<br>" + text[i + 1:]


def image_mosaic(tiles: np.ndarray, shape: Sequence[int] | None, cols: int, title: str, *,
                 value_range: Sequence[float] | None = None, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, notes: Sequence[str] | None = None,
                 hidden: np.ndarray | None = None, x_title: str = "", y_title: str = "",
                 height: int | None = None, colorbar: bool = True, width_px: int = 900) -> go.Figure:
    """(n, D) images as a grid of ``cols`` columns in grey, on one colour scale.

    ``row_labels`` / ``col_labels`` name the rows (left) and columns (top); ``notes`` put one
    line under each tile (e.g. its PSNR); ``hidden`` (n, D) marks hidden pixels in orange.
    ``colorbar=False`` drops the pixel-value scale (narrow figures: the modebar then stands
    vertically at the right, off the title); ``width_px`` is the expected plot width, from which
    the height follows the mosaic's aspect ratio.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    n, d = tiles.shape
    h, w = image_shape(shape, d)
    pad = max(2, int(np.ceil(0.22 * h))) if notes is not None else 0  # room for the note under each tile
    th = h + pad
    padded = np.full((n, th * w), np.nan)
    padded[:, :h * w] = tiles
    mosaic, _ = tile_mosaic(padded, (th, w), cols, gap=GAP)
    lo, hi = _range(tiles, value_range)
    fig = go.Figure(go.Heatmap(z=mosaic, zmin=lo, zmax=hi, colorscale="gray_r" if h > 1 else "gray",
                               colorbar=dict(title=dict(text="pixel value"), thickness=14), showscale=colorbar,
                               hovertemplate="value %{z:.3g}<extra></extra>", hoverongaps=False))
    if hidden is not None:
        hid = np.full((n, th * w), np.nan)
        hid[:, :h * w] = np.where(np.asarray(hidden, bool), 1.0, np.nan)
        over, _ = tile_mosaic(hid, (th, w), cols, gap=GAP)
        fig.add_trace(go.Heatmap(z=over, zmin=0, zmax=1, colorscale=[[0, HIDDEN_COLOR], [1, HIDDEN_COLOR]],
                                 showscale=False, opacity=0.75, hoverongaps=False,
                                 hovertemplate="hidden pixel<extra></extra>"))
    rows = max(1, -(-n // cols))
    H, W = mosaic.shape
    if height is None:
        height = int(np.clip(150 + width_px * H / max(W, 1), 260, 900))
    style_layout(fig, title, "", "", height=height)
    grid_axes(fig, x_title, y_title)
    if not colorbar:
        fig.update_layout(modebar=dict(orientation="v"), margin=dict(r=40))
    if row_labels is not None:
        fig.update_yaxes(showticklabels=True, tickmode="array", tickfont=dict(size=14),
                         tickvals=[r * (th + GAP) + (h - 1) / 2 for r in range(rows)], ticktext=list(row_labels))
    if col_labels is not None:
        for c, text in enumerate(list(col_labels)[:cols]):
            fig.add_annotation(x=c * (w + GAP) + (w - 1) / 2, y=-0.5, text=two_lines(text), showarrow=False,
                               yanchor="bottom", font=dict(size=15), yshift=2)
        fig.update_layout(margin=dict(t=95))
    if notes is not None:
        for i, text in enumerate(notes):
            r, c = divmod(i, cols)
            fig.add_annotation(x=c * (w + GAP) + (w - 1) / 2, y=r * (th + GAP) + h - 0.5, text=text,
                               showarrow=False, yanchor="top", font=dict(size=14), yshift=-2)
    return fig


def comparison_figure(columns: Mapping[str, np.ndarray], psnr: Mapping[str, np.ndarray], shape,
                      value_range=None, hidden: np.ndarray | None = None, hidden_column: str | None = None,
                      row_labels: Sequence[str] | None = None,
                      title: str = "Original | corrupted | denoising AE | plain AE | PCA") -> go.Figure:
    """Rows: examples; columns: ``columns`` (name -> (n, D)); under each tile its PSNR in dB
    (``psnr``: name -> (n,); names without one get no number). ``hidden`` (n, D) marks the
    hidden pixels on the ``hidden_column`` tiles."""
    names = list(columns)
    mats = [np.asarray(columns[k], np.float64) for k in names]
    n, d = mats[0].shape
    tiles = np.stack(mats, axis=1).reshape(n * len(names), d)  # row-major: example, then method
    notes = []
    for i in range(n):
        for name in names:
            v = psnr.get(name)
            notes.append("" if v is None else ("∞ dB" if not np.isfinite(v[i]) else f"{v[i]:.1f} dB"))
    hid = None
    if hidden is not None and hidden_column in names:
        hid = np.zeros_like(tiles, dtype=bool)
        j = names.index(hidden_column)
        hid.reshape(n, len(names), d)[:, j, :] = np.asarray(hidden, bool)
    return image_mosaic(tiles, shape, len(names), title, value_range=value_range, col_labels=names, notes=notes,
                        hidden=hid, row_labels=row_labels, x_title="PSNR in dB under each image (higher is better)")


def sample_grid_figure(images: np.ndarray, shape, value_range=None, cols: int = 8,
                       title: str = "Samples: random codes z ~ N(0, I) decoded") -> go.Figure:
    n = len(images)
    return image_mosaic(images, shape, min(cols, n), title, value_range=value_range,
                        x_title=f"{n} samples, each decoded from its own random code")


def manifold_figure(images: np.ndarray, z1: np.ndarray, z2: np.ndarray, shape, title: str,
                    value_range=None, max_ticks: int = 5) -> go.Figure:
    """An n x n grid of decoded codes (as ``aecore.generate.manifold_grid`` orders them: top
    row = largest z2), with the code values on the axes. Meant for half a page: no colour bar."""
    n = len(z1)
    d = np.asarray(images).shape[1]
    h, w = image_shape(shape, d)
    fig = image_mosaic(images, shape, n, title, value_range=value_range, x_title="code unit 1 (z₁)",
                       y_title="code unit 2 (z₂)", colorbar=False, width_px=440)
    step = max(1, int(np.ceil((n - 1) / max(max_ticks - 1, 1))))  # n = 17, 5 ticks: every 4th, both ends
    cols = list(range(0, n, step))
    fig.update_xaxes(showticklabels=True, tickmode="array", tickvals=[c * (w + GAP) + (w - 1) / 2 for c in cols],
                     ticktext=[_tick(z1[c]) for c in cols])
    fig.update_yaxes(showticklabels=True, tickmode="array", tickvals=[r * (h + GAP) + (h - 1) / 2 for r in cols],
                     ticktext=[_tick(z2[n - 1 - r]) for r in cols])
    return fig


def _tick(v: float) -> str:
    """A short axis label: 1 decimal from 1 up, 2 below (2, -6.8, 0.52, 0)."""
    return f"{round(float(v), 1 if abs(v) >= 1 else 2) + 0.0:g}"


# Column labels need room: "t=0.44" is about 48 px wide in the 15 px font, and the interpolation strip
# may get as little as about 360 px of plot (the page at 1024 px with the sidebar open). At 10 steps
# every label in that width overlapped its neighbours, and at the slider's 16 steps even at 1280 px.
LABEL_PX, NARROWEST_PLOT_PX = 56, 360


def thinned_labels(texts: Sequence[str], n_tiles: int, plot_px: float = NARROWEST_PLOT_PX,
                   label_px: float = LABEL_PX) -> list[str]:
    """Every k-th of ``texts`` (the first and the last always), the rest blank, so that labels
    ``label_px`` wide over ``n_tiles`` equal tiles in ``plot_px`` do not touch."""
    texts = list(texts)
    if not texts:
        return []
    k = max(1, math.ceil(label_px * n_tiles / plot_px))
    keep = list(range(0, len(texts), k))
    if keep[-1] != len(texts) - 1:  # the last one shown, the one before it dropped if too close
        if len(texts) - 1 - keep[-1] < k and len(keep) > 1:
            keep[-1] = len(texts) - 1
        else:
            keep.append(len(texts) - 1)
    return [t if i in keep else "" for i, t in enumerate(texts)]


def interpolation_figure(images: np.ndarray, t: np.ndarray, shape, title: str, value_range=None,
                         ends: tuple[np.ndarray, np.ndarray] | None = None) -> go.Figure:
    """The decoded path (steps, D) labelled by t above the tiles (thinned so that they fit);
    ``ends`` = the two input images, shown first and last and marked "a" and "b" below."""
    tiles, labels = np.asarray(images), [f"t={v:.2f}" for v in t]
    notes = None
    n = len(tiles) + (2 if ends is not None else 0)
    labels = thinned_labels(labels, n)
    if ends is not None:
        tiles = np.concatenate([np.ravel(ends[0])[None], tiles, np.ravel(ends[1])[None]])
        labels = ["", *labels, ""]
        notes = ["a", *[""] * (len(tiles) - 2), "b"]
    return image_mosaic(tiles, shape, len(tiles), title, value_range=value_range, col_labels=labels, notes=notes,
                        x_title="codes (1 − t)·h_a + t·h_b decoded" + (", between inputs a and b" if ends else ""))


def traversal_figure(images: np.ndarray, dims: Sequence[int], values: Sequence[float], shape, title: str,
                     value_range=None) -> go.Figure:
    """Rows: the code units ``dims`` (0-based, labelled z₁, z₂, ...), columns: the values given to them."""
    return image_mosaic(images, shape, len(values), title, value_range=value_range,
                        row_labels=[f"z{_sub(k + 1)}" for k in dims], col_labels=[f"{v:+.1f}" for v in values],
                        x_title="value given to the code unit (others kept at the example's code)",
                        y_title="code unit varied")


def _sub(k: int) -> str:
    return str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def psnr_curve_figure(levels: Sequence[float], curves: Mapping[str, np.ndarray], x_title: str, title: str,
                      train_level: float | None = None, current: float | None = None) -> go.Figure:
    """PSNR (dB) against noise level, one line per method; the corrupted input dashed grey."""
    fig = go.Figure()
    i = 0
    for name, ys in curves.items():
        ys = [None if not np.isfinite(v) else float(v) for v in ys]
        baseline = name == "corrupted input"
        fig.add_trace(go.Scatter(x=list(levels), y=ys, name=name, mode="lines+markers",
                                 line=dict(width=2 if baseline else 3, dash="dash" if baseline else "solid",
                                           color="#777777" if baseline else PALETTE[i % len(PALETTE)]),
                                 marker=dict(size=7),
                                 hovertemplate=f"{name}<br>level %{{x:.3g}}<br>%{{y:.2f}} dB<extra></extra>"))
        i += 0 if baseline else 1
    if train_level is not None:
        fig.add_vline(x=train_level, line=dict(color="black", dash="dot", width=2),
                      annotation_text="training noise", annotation_position="top left")
    if current is not None:
        fig.add_vline(x=current, line=dict(color=HIDDEN_COLOR, width=2),
                      annotation_text="shown above", annotation_position="top right")
    style_layout(fig, title, x_title, "PSNR (dB, higher is better)", height=440)
    return fig


def kl_bars_figure(kl: np.ndarray, active: np.ndarray, threshold: float,
                   title: str = "KL per latent dimension") -> go.Figure:
    kl = np.asarray(kl, np.float64)
    active = np.asarray(active, bool)
    colors = [PALETTE[0] if a else "#BBBBBB" for a in active]
    fig = go.Figure(go.Bar(x=[f"z{_sub(k + 1)}" for k in range(len(kl))], y=kl, marker_color=colors,
                           text=[f"{v:.2f}" for v in kl], textposition="outside",
                           customdata=np.where(active, "active", "collapsed"),
                           hovertemplate="%{x}: %{y:.3g} nats (%{customdata})<extra></extra>", showlegend=False))
    for name, color in (("active", PALETTE[0]), ("collapsed", "#BBBBBB")):  # legend entries
        fig.add_trace(go.Bar(x=[None], y=[None], name=name, marker_color=color))
    # the cut-off is named in the legend: a label on the line sat on the last bar
    cut = dict(color="black", dash="dash", width=1.5)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=cut, name=f"cut-off, {threshold:g} nats"))
    fig.add_hline(y=threshold, line=cut)
    style_layout(fig, title, "latent dimension", "mean KL(q(z_k|x) ‖ N(0,1)), nats", height=400)
    fig.update_yaxes(rangemode="tozero")
    return fig


def rate_distortion_figure(points: Sequence[Mapping], title: str = "Rate against distortion, one point per β",
                           current_beta: float | None = None) -> go.Figure:
    """``points``: dicts with beta, rate, distortion (nats per example), sorted by β for the line."""
    pts = sorted(points, key=lambda p: p["beta"])
    fig = go.Figure(go.Scatter(
        x=[p["distortion"] for p in pts], y=[p["rate"] for p in pts], mode="lines+markers+text",
        text=[f"β={p['beta']:g}" for p in pts], textposition="top right", textfont=dict(size=14),
        line=dict(color="#999999", width=1.5, dash="dot"),
        marker=dict(size=14, color=[HIDDEN_COLOR if current_beta is not None and p["beta"] == current_beta
                                    else PALETTE[0] for p in pts], line=dict(width=1.5, color="white")),
        hovertemplate="distortion %{x:.2f} nats<br>rate %{y:.2f} nats<br>%{text}<extra></extra>", showlegend=False))
    style_layout(fig, title, "distortion −E[log p(x|z)] (nats per image)", "rate KL(q(z|x) ‖ p(z)) (nats per image)",
                 height=420)
    rates = [p["rate"] for p in pts] or [1.0]
    dists = [p["distortion"] for p in pts] or [0.0]
    top, (lo, hi) = max(max(rates), 1e-3), (min(dists), max(dists))
    pad = max(hi - lo, 1.0) * 0.08
    fig.update_yaxes(range=[-0.06 * top, 1.18 * top])  # room for markers at 0 (a collapsed code) and labels
    fig.update_xaxes(range=[lo - pad, hi + 2 * pad])
    return fig


def activation_histogram(counts: np.ndarray, edges: np.ndarray, title: str = "Code activations h_k(x)") -> go.Figure:
    counts, edges = np.asarray(counts), np.asarray(edges, np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    total = max(int(counts.sum()), 1)
    fig = go.Figure(go.Bar(x=centers, y=counts / total * 100, width=np.diff(edges), marker_color=PALETTE[0],
                           customdata=np.stack([edges[:-1], edges[1:], counts], axis=1),
                           hovertemplate="h in [%{customdata[0]:.3g}, %{customdata[1]:.3g})<br>"
                                         "%{y:.1f}% (%{customdata[2]:d} values)<extra></extra>"))
    style_layout(fig, title, "activation h_k (code value)", "share of all (example, unit) pairs (%)", height=380)
    fig.update_layout(bargap=0.02, modebar=dict(orientation="v"))  # half a page: toolbar off the title
    return fig


def unit_means_figure(mean: np.ndarray, target: float, dead: np.ndarray,
                      title: str = "Mean activation per unit vs target ρ") -> go.Figure:
    mean, dead = np.asarray(mean, np.float64), np.asarray(dead, bool)
    order = np.argsort(-mean, kind="stable")
    colors = ["#BBBBBB" if dead[k] else (PALETTE[1] if mean[k] > target else PALETTE[0]) for k in order]
    fig = go.Figure(go.Bar(x=np.arange(len(mean)), y=mean[order], marker_color=colors, customdata=order,
                           hovertemplate="unit %{customdata}<br>mean h = %{y:.3g}<extra></extra>", showlegend=False))
    for name, color in ((f"above ρ = {target:g}", PALETTE[1]), ("at or below ρ", PALETTE[0]),
                        ("dead (never > 0)", "#BBBBBB")):
        fig.add_trace(go.Bar(x=[None], y=[None], name=name, marker_color=color))
    fig.add_hline(y=target, line=dict(color="black", dash="dash", width=2),
                  annotation_text=f"target ρ = {target:g}", annotation_position="top right")
    style_layout(fig, title, "code units, sorted by mean activation", "mean activation over test images",
                 height=380)
    fig.update_xaxes(showticklabels=False)
    # the bars fall to the right: the legend fits in the empty top-right corner, the toolbar stands at the side
    fig.update_layout(legend=dict(orientation="v", x=0.98, xanchor="right", y=0.98, yanchor="top",
                                  bgcolor="rgba(255,255,255,0.8)"), modebar=dict(orientation="v"))
    return fig


def mask_editor_figure(image: np.ndarray, hidden: np.ndarray, shape, value_range=None,
                       title: str = "Select the pixels to hide") -> go.Figure:
    """One image, pixel coordinates on the axes, hidden pixels in orange; an invisible marker
    on every pixel centre makes box and lasso selection report the pixels (customdata = index)."""
    image = np.asarray(image, np.float64).ravel()
    h, w = image_shape(shape, image.size)
    lo, hi = _range(image, value_range)
    fig = go.Figure(go.Heatmap(z=image.reshape(h, w), zmin=lo, zmax=hi, colorscale="gray_r", showscale=False,
                               hoverinfo="skip"))
    hid = np.asarray(hidden, bool).ravel()
    fig.add_trace(go.Heatmap(z=np.where(hid, 1.0, np.nan).reshape(h, w), zmin=0, zmax=1, showscale=False,
                             colorscale=[[0, HIDDEN_COLOR], [1, HIDDEN_COLOR]], opacity=0.75, hoverinfo="skip"))
    rr, cc = np.divmod(np.arange(h * w), w)
    fig.add_trace(go.Scatter(x=cc, y=rr, mode="markers", customdata=np.arange(h * w), showlegend=False,
                             marker=dict(size=max(4, int(200 / max(h, w))), color="rgba(0,0,0,0)"),
                             selected=dict(marker=dict(color="rgba(0,0,0,0)")),
                             unselected=dict(marker=dict(opacity=0)),
                             hovertemplate="row %{y}, column %{x}<extra></extra>"))
    style_layout(fig, title, f"column ({w} pixels)", f"row ({h} pixels)", height=460)
    fig.update_xaxes(range=[-0.5, w - 0.5], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x", scaleratio=1,
                     constrain="domain")
    fig.update_layout(dragmode="select", clickmode="event+select", modebar=dict(orientation="v"))
    return fig
