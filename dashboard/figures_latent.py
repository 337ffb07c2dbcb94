"""Plotly builders for the Latent space and Compare-with-PCA pages: arrays in, ``go.Figure`` out.

Like ``dashboard.figures`` (whose layout helpers these reuse), no math lives here beyond
reshaping and ordering for display: maps, accuracies, angles, errors and cosines come from
``aecore``. Every figure has a title and labelled axes with units.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from aecore.metrics import paired_sign_test

from .figures import PALETTE, grid_axes, image_shape, line_mode, style_layout, tile_mosaic

__all__ = ["label_colors", "latent_scatter", "code_bars", "image_pair", "principal_angles_figure",
           "error_vs_k_figure", "components_figure", "variant_sse_figure", "separation_verdict"]


def label_colors(n: int) -> list[str]:
    """n categorical colours: D3's 10 for up to 10 labels (digits), else Alphabet's 26, cycled."""
    base = qualitative.D3 if n <= 10 else qualitative.Alphabet
    return [base[i % len(base)] for i in range(n)]


def latent_scatter(points: np.ndarray, labels: np.ndarray | None, label_names: Sequence[str] | None,
                   title: str, x_title: str, y_title: str, index: np.ndarray | None = None,
                   highlight: int | None = None, height: int = 520) -> go.Figure:
    """A 2-D map, one trace per label (categorical colours, legend of label names).

    ``index`` (N,) is each point's example number, stored as ``customdata`` so a click tells
    the page which example it was. ``highlight`` (an example number) is marked with an arrow
    (an annotation, not a trace: the traces stay one per label).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {pts.shape}")
    n = len(pts)
    index = np.arange(n) if index is None else np.asarray(index)
    fig = go.Figure()
    hover = "example %{customdata[0]}<br>%{fullData.name}<extra></extra>"
    if labels is None:
        fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", name="examples",
                                 customdata=[[int(i)] for i in index], hovertemplate=hover,
                                 marker=dict(size=6, color=PALETTE[0], opacity=0.75)))
    else:
        labels = np.asarray(labels)
        values = np.unique(labels)  # sorted: the legend lists labels in order
        named = label_names is not None and values.min() >= 0 and values.max() < len(label_names)
        # with names a label keeps its colour (digit 3 is always the same), else colour by rank
        colors = label_colors(len(label_names) if named else len(values))
        for i, v in enumerate(values):
            m = labels == v
            fig.add_trace(go.Scatter(x=pts[m, 0], y=pts[m, 1], mode="markers",
                                     name=str(label_names[v]) if named else str(v),
                                     customdata=[[int(i)] for i in index[m]], hovertemplate=hover,
                                     marker=dict(size=6, opacity=0.8, color=colors[int(v) if named else i])))
    if highlight is not None:
        where = np.flatnonzero(index == highlight)
        if where.size:
            x, y = pts[where[0]]
            fig.add_annotation(x=x, y=y, text=f"#{highlight}", showarrow=True, arrowhead=2, arrowwidth=2,
                               ax=30, ay=-30, font=dict(size=14, color="black"), bgcolor="rgba(255,255,255,0.8)")
    style_layout(fig, title, x_title, y_title, height=height)
    # (style_layout's legend, below the plot: ten labels on the right of a half-width map were
    # moved over its title)
    fig.update_layout(legend_title_text="label", clickmode="event+select", dragmode="pan")
    return fig


def code_bars(code: np.ndarray, title: str = "Code h", y_title: str = "activation (code value)") -> go.Figure:
    """One bar per code unit h_k of one example."""
    code = np.asarray(code, dtype=np.float64).ravel()
    fig = go.Figure(go.Bar(x=np.arange(len(code)), y=code, marker_color=PALETTE[0],
                           hovertemplate="unit %{x}<br>h = %{y:.3g}<extra></extra>"))
    style_layout(fig, title, "code unit k", y_title, height=320)
    if len(code) <= 32:
        fig.update_xaxes(tickmode="linear", dtick=1 if len(code) <= 16 else 2)
    return fig


def image_pair(x: np.ndarray, x_hat: np.ndarray, shape: Sequence[int] | None, title: str,
               value_range: Sequence[float] | None = None,
               names: Sequence[str] = ("input", "reconstruction")) -> go.Figure:
    """Input | reconstruction of one example (or any two images, ``names`` above them), side by
    side on one grey scale."""
    x, x_hat = np.asarray(x, np.float64).ravel(), np.asarray(x_hat, np.float64).ravel()
    h, w = image_shape(shape, x.size)
    lo, hi = value_range if value_range is not None else (min(x.min(), x_hat.min()), max(x.max(), x_hat.max()))
    fig = make_subplots(rows=1, cols=2, subplot_titles=tuple(names), horizontal_spacing=0.06)
    for col, img in ((1, x), (2, x_hat)):
        fig.add_trace(go.Heatmap(z=img.reshape(h, w), zmin=lo, zmax=hi, colorscale="gray_r" if h > 1 else "gray",
                                 showscale=col == 2, colorbar=dict(title=dict(text="pixel value"), thickness=14),
                                 hovertemplate="row %{y}, col %{x}<br>value %{z:.3g}<extra></extra>"), 1, col)
    style_layout(fig, title, "", "", height=320 if h > 1 else 220)
    for col in (1, 2):
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         title_text=f"{w} pixels", row=1, col=col)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                         scaleanchor=f"x{'' if col == 1 else col}", scaleratio=1, constrain="domain",
                         title_text=f"{h} pixels" if col == 1 else "", row=1, col=col)
    return fig


def principal_angles_figure(steps: Sequence[float], angles: Sequence[np.ndarray | None],
                            title: str = "Principal angles: autoencoder subspace vs PCA's",
                            x_title: str = "training step") -> go.Figure:
    """One line per principal angle (degrees, largest first) over training; y from 0 to 90°."""
    rows = [(s, np.asarray(a, np.float64)) for s, a in zip(steps, angles) if a is not None]
    fig = go.Figure()
    if rows:
        k = max(len(a) for _, a in rows)
        xs = [s for s, _ in rows]
        colors = label_colors(k)
        for j in range(k):
            fig.add_trace(go.Scatter(x=xs, y=[a[j] if j < len(a) else None for _, a in rows], mode=line_mode(len(xs)),
                                     name=f"θ{j + 1}", line=dict(width=2.5, color=colors[j]),
                                     hovertemplate=f"θ{j + 1}" + " = %{y:.2f}°<br>step %{x}<extra></extra>"))
    else:
        fig.add_annotation(text="waiting for the first snapshot…", showarrow=False, font=dict(size=16),
                           xref="paper", yref="paper", x=0.5, y=0.5)
    style_layout(fig, title, x_title, "principal angle (degrees)", height=400)
    fig.update_yaxes(range=[0, 90], tickvals=[0, 15, 30, 45, 60, 75, 90])
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02))
    return fig


def error_vs_k_figure(pca_curves: Mapping[str, np.ndarray], ae_points: Mapping[str, Mapping[int, float]],
                      title: str = "Reconstruction error against code size K",
                      y_title: str = "squared error per image (sum over pixels)", log_x: bool = True,
                      k_max: int | None = None) -> go.Figure:
    """PCA's exact curves (``name -> curve[K]`` for K = 0..) as lines; autoencoder results
    (``name -> {K: error}``) as markers on the same axes."""
    fig = go.Figure()
    dashes = ("solid", "dot", "dash")
    for i, (name, curve) in enumerate(pca_curves.items()):
        curve = np.asarray(curve, np.float64)
        ks = np.arange(1, len(curve)) if k_max is None else np.arange(1, min(len(curve), k_max + 1))
        fig.add_trace(go.Scatter(x=ks, y=curve[ks], mode="lines", name=name,
                                 line=dict(color="black" if i == 0 else "#777777", width=2.5, dash=dashes[i % 3]),
                                 hovertemplate="K = %{x}<br>%{y:.4g}<extra>" + name + "</extra>"))
    symbols = ("circle", "diamond", "square", "triangle-up", "x", "star")
    for i, (name, pts) in enumerate(ae_points.items()):
        ks = sorted(pts)
        fig.add_trace(go.Scatter(x=ks, y=[pts[k] for k in ks], mode="markers", name=name,
                                 marker=dict(size=13, symbol=symbols[i % len(symbols)], color=PALETTE[i % len(PALETTE)],
                                             line=dict(width=1.5, color="white")),
                                 hovertemplate="K = %{x}<br>%{y:.4g}<extra>" + name + "</extra>"))
    style_layout(fig, title, "code size K (number of components)", y_title, height=440)
    if log_x:
        top = max([len(np.asarray(c)) - 1 for c in pca_curves.values()] + [max(p) for p in ae_points.values() if p]
                  + [1])
        ticks = [2 ** i for i in range(int(np.log2(top)) + 1)]
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks])
    fig.update_yaxes(rangemode="tozero")
    return fig


def components_figure(rows: Mapping[str, np.ndarray], shape: Sequence[int] | None,
                      title: str = "Autoencoder filters, PCA components and the components recovered by SVD",
                      column_notes: Sequence[str] | None = None, max_cols: int = 16) -> go.Figure:
    """A grid: one row per named (K, D) matrix, one column per component, each tile on its own
    symmetric colour scale (directions matter, not lengths). ``column_notes`` label the columns
    (e.g. |cos| between the recovered and PCA's component)."""
    names = list(rows)
    mats = [np.asarray(rows[n], np.float64) for n in names]
    d = mats[0].shape[1]
    n = min(max_cols, min(m.shape[0] for m in mats))
    h, w = image_shape(shape, d)
    # each tile scaled by its own max |value| so every direction is visible
    tiles = []
    for m in mats:
        t = m[:n]
        scale = np.abs(t).max(axis=1, keepdims=True)
        tiles.append(t / np.where(scale > 0, scale, 1.0))
    gap = 1
    mosaic, _ = tile_mosaic(np.concatenate(tiles), (h, w), n, gap=gap)
    fig = go.Figure(go.Heatmap(z=mosaic, zmin=-1, zmax=1, zmid=0, colorscale="RdBu_r",
                               colorbar=dict(title=dict(text="weight / max |weight|"), thickness=14),
                               hovertemplate="value %{z:.3g}<extra></extra>", hoverongaps=False))
    height = int(np.clip(90 + 120 * len(names) * max(h, 4) / 8 * 16 / max(n, 8), 220, 640))
    style_layout(fig, title, "", "", height=height)
    grid_axes(fig, f"component 1 … {n} (each tile {h}×{w} pixels, scaled to its own max |weight|)", "")
    fig.update_yaxes(showticklabels=True, tickmode="array",
                     tickvals=[i * (h + gap) + (h - 1) / 2 for i in range(len(names))], ticktext=names,
                     tickfont=dict(size=14))
    if column_notes is not None:
        for j, note in enumerate(list(column_notes)[:n]):
            fig.add_annotation(x=j * (w + gap) + (w - 1) / 2, y=-0.5, yshift=4, text=note, showarrow=False,
                               yanchor="bottom", font=dict(size=12))
    return fig


def variant_sse_figure(names: Sequence[str], sse: Sequence[float | None], pca_sse: float | None, k: int,
                       title: str | None = None) -> go.Figure:
    """Test error per variant at one K, with PCA's error at the same K as a reference line."""
    vals = [None if v is None else float(v) for v in sse]
    fig = go.Figure(go.Bar(x=list(names), y=vals, marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(names))],
                           text=["training…" if v is None else f"{v:.3g}" for v in vals], textposition="outside",
                           hovertemplate="%{x}<br>%{y:.4g}<extra></extra>", name="autoencoder"))
    if pca_sse is not None:
        fig.add_hline(y=pca_sse, line=dict(color="black", dash="dash", width=2),
                      annotation_text=f"PCA, K = {k}: {pca_sse:.3g}", annotation_position="top right")
    style_layout(fig, title or f"Test reconstruction error at K = {k}", "variant",
            "squared error per image (sum over pixels)", height=400)
    fig.update_yaxes(rangemode="tozero")
    return fig


def separation_verdict(code_right: np.ndarray, raw_right: np.ndarray, k: int = 5) -> str:
    """Whether the code's 2-D map separates labels better than the pixels' map: each map's per-example
    leave-one-out k-NN verdicts (``aecore.metrics.knn_correct``) on the same examples, compared by the
    exact sign test at the 5 % level (a gap of a point or two on a few hundred examples is chance)."""
    only_code, only_raw, p = paired_sign_test(code_right, raw_right)
    acc, acc_raw, n = float(code_right.mean()), float(raw_right.mean()), len(code_right)
    if p < 0.05:
        word = "better than" if only_code > only_raw else "worse than"
        why = f"Chance alone rarely gives a gap this size (sign test, p = {p:.2g})."
    else:
        word = "about as well as"
        why = f"Chance alone often gives a gap this size (sign test, p = {p:.2f})."
    return (f"On these 2-D maps the code separates labels **{word}** the raw pixels ({k}-NN accuracy "
            f"{acc:.2f} vs {acc_raw:.2f} on {n} examples; {only_code} are placed right only on the code's map, "
            f"{only_raw} only on the pixels'). {why}")
