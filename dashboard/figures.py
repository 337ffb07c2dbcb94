"""Plotly figure builders: arrays and records in, ``go.Figure`` out.

No math lives here beyond reshaping and ordering for display (the numbers come from
``aecore``). Every figure has a title and labelled axes, with units where there are units,
and large enough fonts to read when projected. Pages show them with
``st.plotly_chart(fig, theme=None, key=...)``: Streamlit's theme would replace these font sizes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = ["filter_image", "recon_image", "style_layout", "tile_mosaic", "grid_axes", "loss_curve", "loss_overlay", "filter_grid", "recon_strip", "metric_comparison",
           "image_shape", "HISTORY_META", "term_names", "LOSS_UNITS", "LAYOUT_CSS", "NARROW_BELOW_PX"]

FONT = dict(size=15)
TITLE_FONT = dict(size=19)
# colours that stay apart for colour-blind viewers (Okabe-Ito), total in black
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
HISTORY_META = ("step", "epoch", "elapsed", "loss", "samples_per_second")
LOSS_UNITS = {"squared": "squared error per image", "cross-entropy": "nats per image"}

# Plotly never wraps a title, and Streamlit keeps columns side by side down to a 640 px window.
# With the sidebar open in a 1024 px window the page is about 565 px wide, so two figures side by
# side get about 270 px each: their titles ran past the edge and the filter tiles shrank to dots.
# Below this page width a row of columns that holds a figure is stacked, each figure as wide as
# the page (a container query on the page's own width, so an open or closed sidebar counts); a row
# of three or more (the Sweep page's filter panels, four to a row; the Train page's four numbers,
# whose "time left" ended in "…") goes two to a row instead. At 1280 px with the sidebar open the
# page is about 820 px wide and the figures stay side by side.
# A button's or a checkbox's label wraps rather than ending in "…" in a narrow column ("Train tied
# AE at K = 2, 4, 8, 16, 32" lost its last K at 1280 px; "Train the two models", "Order by norm"
# and "also fit the baselines" were cut at 1024 px).
NARROW_BELOW_PX = 720
LAYOUT_CSS = f"""<style>
[data-testid^="stBaseButton"] [data-testid="stMarkdownContainer"],
[data-testid^="stBaseButton"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stCheckbox"] [data-testid="stMarkdownContainer"],
[data-testid="stMain"] [data-testid="stCheckbox"] [data-testid="stMarkdownContainer"] p {{
  white-space: normal !important; text-overflow: clip !important; }}
[data-testid="stMainBlockContainer"] {{ container-type: inline-size; container-name: aecore-page; }}
@container aecore-page (max-width: {NARROW_BELOW_PX - 1}px) {{
  [data-testid="stHorizontalBlock"]:has([data-testid="stPlotlyChart"], svg.aecore-live-chart) {{ flex-wrap: wrap; }}
  [data-testid="stHorizontalBlock"]:has([data-testid="stPlotlyChart"], svg.aecore-live-chart) > [data-testid="stColumn"] {{
    width: 100% !important; flex: 1 1 100% !important; min-width: 100% !important; }}
  [data-testid="stHorizontalBlock"]:has([data-testid="stPlotlyChart"], [data-testid="stMetric"]):has(> [data-testid="stColumn"]:nth-child(3))
    > [data-testid="stColumn"] {{
    width: calc(50% - 1rem) !important; flex: 1 1 calc(50% - 1rem) !important; min-width: calc(50% - 1rem) !important; }}
}}
</style>"""


def style_layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    fig.update_layout(template="plotly_white", title=dict(text=title, font=TITLE_FONT), font=FONT, height=height,
                      margin=dict(l=70, r=20, t=60, b=60),
                      # below everything, growing downwards: a legend above the plot wraps onto the title
                      # in a narrow (half-width) figure, and plotly does not keep the two apart
                      legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", xanchor="center",
                                  x=0.5))
    axis = dict(tickfont=dict(size=14), title_font=dict(size=16))
    fig.update_xaxes(title_text=x_title, **axis)
    fig.update_yaxes(title_text=y_title, **axis)
    return fig


def term_names(history: Sequence[Mapping]) -> list[str]:
    """The named loss terms that appear in a history (every key that is not bookkeeping)."""
    names: list[str] = []
    for row in history:
        names += [k for k in row if k not in HISTORY_META and k not in names]
    return names


def line_mode(n_points: int) -> str:
    """A plotly line trace's mode: a trace of one point draws nothing as "lines", so it is a marker
    (a run that reported its loss once, a 1-epoch curve)."""
    return "lines" if n_points > 1 else "markers"


def loss_curve(history: Sequence[Mapping], title: str = "Training loss", unit: str = "per example",
               log_y: bool = False) -> go.Figure:
    """One line per named (weighted) loss term plus the total, against epochs.

    ``history`` rows are dicts with ``epoch``, ``loss`` (the total) and one key per term.
    """
    fig = go.Figure()
    epochs = [r.get("epoch") for r in history]
    names = term_names(history)
    for i, name in enumerate(names):
        fig.add_trace(go.Scatter(x=epochs, y=[r.get(name) for r in history], name=name, mode=line_mode(len(epochs)),
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2.5)))
    if len(names) != 1:  # with one term the total is the same line
        fig.add_trace(go.Scatter(x=epochs, y=[r.get("loss") for r in history], name="total", mode=line_mode(len(epochs)),
                                 line=dict(color="black", width=2, dash="dot")))
    style_layout(fig, title, "epoch", f"loss ({unit})")
    if log_y:
        fig.update_yaxes(type="log")
    if not history:
        fig.add_annotation(text="waiting for the first loss values…", showarrow=False, font=dict(size=16),
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def loss_overlay(histories: Mapping[str, Sequence[Mapping]], term: str = "loss",
                 title: str = "Training loss of the selected runs", unit: str = "per example",
                 log_y: bool = False) -> go.Figure:
    """One line per run (``label -> history``) for one term (``loss`` = the weighted total)."""
    fig = go.Figure()
    for i, (label, history) in enumerate(histories.items()):
        fig.add_trace(go.Scatter(x=[r.get("epoch") for r in history], y=[r.get(term) for r in history],
                                 name=label, mode=line_mode(len(history)),
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2.5)))
    style_layout(fig, title, "epoch", f"{'total loss' if term == 'loss' else term} ({unit})", height=420)
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def image_shape(shape: Sequence[int] | None, dim: int) -> tuple[int, int]:
    """How to draw one example of ``dim`` values: its own 2-D shape, else one row."""
    if shape is not None and len(shape) == 2 and int(shape[0]) * int(shape[1]) == dim:
        return int(shape[0]), int(shape[1])
    return 1, int(dim)


def tile_mosaic(tiles: np.ndarray, shape: tuple[int, int], cols: int, gap: int = 1):
    """Lay (n, D) rows out as a grid of (h, w) tiles separated by NaN gaps.

    Returns the mosaic (H, W) and a same-shaped array of tile numbers (for hover), -1 in gaps.
    """
    n = tiles.shape[0]
    h, w = shape
    rows = max(1, -(-n // cols))
    H, W = rows * (h + gap) - gap, cols * (w + gap) - gap
    mosaic = np.full((H, W), np.nan, dtype=np.float64)
    index = np.full((H, W), -1, dtype=np.int64)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = r * (h + gap), c * (w + gap)
        mosaic[top:top + h, left:left + w] = tiles[i].reshape(h, w)
        index[top:top + h, left:left + w] = i
    return mosaic, index


def grid_axes(fig: go.Figure, x_title: str, y_title: str) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title_text=x_title, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title_text=y_title,
                     autorange="reversed", scaleanchor="x", scaleratio=1, constrain="domain")


def _filter_layout(W: np.ndarray, shape, order: str, max_tiles: int, cols: int | None):
    """Tiles of W's rows in display order: (mosaic, where, shown, (h, w), symmetric scale m)."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D array (K, D), got shape {W.shape}")
    idx = np.arange(W.shape[0])
    if order == "norm":
        idx = np.argsort(-np.linalg.norm(W, axis=1), kind="stable")
    elif order != "index":
        raise ValueError(f"order={order!r} must be 'index' or 'norm'")
    shown = idx[:max_tiles]
    tiles = W[shown]
    h, w = image_shape(shape, W.shape[1])
    n = len(shown)
    if cols is None:
        cols = max(1, int(np.ceil(np.sqrt(n * h / w)))) if h > 1 else 1
    mosaic, where = tile_mosaic(tiles, (h, w), cols)
    m = float(np.nanmax(np.abs(tiles))) if tiles.size else 1.0
    return mosaic, where, shown, (h, w), (m if m > 0 else 1.0)


def filter_grid(W: np.ndarray, shape: Sequence[int] | None, title: str = "Filters: rows of W",
                order: str = "index", max_tiles: int = 64, labels: Sequence[str] | None = None,
                cols: int | None = None, value_title: str = "weight", height: int | None = None) -> go.Figure:
    """Each row of ``W`` (K, D) drawn as one tile of the image shape, on one shared symmetric colour scale.

    ``order='norm'`` sorts tiles by decreasing row norm (ordering for display only).
    ``labels`` names each row (default: its index), shown on hover.
    """
    W = np.asarray(W, dtype=np.float64)
    mosaic, where, shown, (h, w), m = _filter_layout(W, shape, order, max_tiles, cols)
    n = len(shown)
    names = np.array([str(x) for x in (labels if labels is not None else range(W.shape[0]))], dtype=object)
    hover = np.where(where >= 0, names[shown][np.clip(where, 0, None)], "")
    fig = go.Figure(go.Heatmap(z=mosaic, customdata=hover, zmin=-m, zmax=m, zmid=0, colorscale="RdBu_r",
                               colorbar=dict(title=dict(text=value_title), thickness=14),
                               hovertemplate="%{customdata}<br>value %{z:.3g}<extra></extra>", hoverongaps=False))
    suffix = f" (first {n} of {W.shape[0]})" if n < W.shape[0] else ""
    order_note = ", largest norm first" if order == "norm" else ""
    style_layout(fig, f"{title}{suffix}", "", "", height=height or _grid_height(mosaic.shape))
    grid_axes(fig, f"each tile: one row, {h}×{w} pixels{order_note}", "")
    return fig


def _grid_height(mosaic_shape, base: int = 420) -> int:
    H, W = mosaic_shape
    return int(np.clip(base * H / max(W, 1), 220, 640)) + 80


def recon_strip(inputs: np.ndarray, recon: np.ndarray, shape: Sequence[int] | None,
                corrupted: np.ndarray | None = None, title: str = "Reconstructions",
                value_range: Sequence[float] | None = None, max_cols: int = 16) -> go.Figure:
    """Rows: input / corrupted (when given) / output, one example per column, in grey."""
    rows = [("input", np.asarray(inputs))]
    if corrupted is not None:
        rows.append(("corrupted", np.asarray(corrupted)))
    rows.append(("output", np.asarray(recon)))
    n = min(max_cols, rows[0][1].shape[0])
    h, w = image_shape(shape, rows[0][1].shape[1])
    gap = 1
    tiles = np.concatenate([r[:n] for _, r in rows])  # (rows * n, D)
    mosaic, _ = tile_mosaic(tiles, (h, w), n, gap=gap)
    lo, hi = (value_range if value_range is not None else (float(np.nanmin(tiles)), float(np.nanmax(tiles))))
    fig = go.Figure(go.Heatmap(z=mosaic, zmin=lo, zmax=hi, colorscale="gray_r" if h > 1 else "gray",
                               colorbar=dict(title=dict(text="pixel value"), thickness=14),
                               hovertemplate="value %{z:.3g}<extra></extra>", hoverongaps=False))
    style_layout(fig, title, "", "", height=int(np.clip(70 + 110 * len(rows) * max(h, 4) / 8, 200, 520)))
    grid_axes(fig, f"{n} test examples ({h}×{w} pixels each)", "")
    fig.update_yaxes(showticklabels=True, tickmode="array",
                     tickvals=[i * (h + gap) + (h - 1) / 2 for i in range(len(rows))],
                     ticktext=[name for name, _ in rows], tickfont=dict(size=15))
    return fig


def metric_comparison(labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
                      title: str = "Test reconstruction error", y_title: str = "squared error per image",
                      x_title: str = "run") -> go.Figure:
    """Grouped bars: one group per label (a run, a model), one bar per series (e.g. autoencoder vs PCA).
    With one label the series name their own bars on the x axis and the label becomes its title: no
    legend, which in a narrow column wraps onto the figure's title."""
    fig = go.Figure()
    single = len(labels) == 1
    for i, (name, values) in enumerate(series.items()):
        vals = [None if v is None else float(v) for v in values]
        fig.add_trace(go.Bar(x=[name] if single else list(labels), y=vals, name=name,
                             marker_color=PALETTE[i % len(PALETTE)], showlegend=not single,
                             text=[("" if v is None else f"{v:.3g}") for v in vals], textposition="outside"))
    fig.update_layout(barmode="overlay" if single else "group")  # (one bar per category: full width)
    style_layout(fig, title, str(labels[0]) if single else x_title, y_title, height=400)
    return fig


# --- live images: the same mosaics as PNG-ready arrays ------------------------------------------
# While a job trains the Train page redraws several times a second; a plotly heatmap costs the
# browser far more to redraw than an image (measured: the two heatmaps took ~15 % of training
# throughput on a 2-core machine), so the live view shows these and the finished run plotly's.
_BLUE, _WHITE, _RED = np.array([33, 102, 172.0]), np.array([247, 247, 247.0]), np.array([178, 24, 43.0])
_GAP = np.array([225, 225, 225.0])


def _to_rgb(mosaic: np.ndarray, t: np.ndarray, diverging: bool, width: int) -> np.ndarray:
    if diverging:  # t in [-1, 1]: blue - white - red, as plotly's RdBu_r
        a = np.abs(t)[..., None]
        rgb = np.where(t[..., None] < 0, _WHITE + a * (_BLUE - _WHITE), _WHITE + a * (_RED - _WHITE))
    else:  # t in [0, 1]: white (0) to black (1), as plotly's gray_r
        rgb = np.repeat((255.0 * (1 - t))[..., None], 3, axis=2)
    rgb = np.where(np.isnan(mosaic)[..., None], _GAP, rgb)
    f = max(1, width // max(mosaic.shape[1], 1))  # nearest-neighbour upscaling keeps pixels crisp
    return np.repeat(np.repeat(np.nan_to_num(rgb), f, axis=0), f, axis=1).astype(np.uint8)


def filter_image(W: np.ndarray, shape: Sequence[int] | None, max_tiles: int = 64, width: int = 480) -> np.ndarray:
    """``filter_grid``'s mosaic as an (H, W, 3) uint8 image (red positive, blue negative)."""
    mosaic, _, _, _, m = _filter_layout(np.asarray(W, dtype=np.float64), shape, "index", max_tiles, None)
    return _to_rgb(mosaic, np.clip(np.nan_to_num(mosaic) / m, -1, 1), True, width)


def recon_image(inputs: np.ndarray, recon: np.ndarray, shape: Sequence[int] | None,
                corrupted: np.ndarray | None = None, value_range: Sequence[float] | None = None,
                max_cols: int = 16, width: int = 960) -> np.ndarray:
    """``recon_strip``'s rows (input / corrupted / output) as an (H, W, 3) uint8 image."""
    rows = [np.asarray(inputs)] + ([np.asarray(corrupted)] if corrupted is not None else []) + [np.asarray(recon)]
    n = min(max_cols, rows[0].shape[0])
    h, w = image_shape(shape, rows[0].shape[1])
    tiles = np.concatenate([r[:n] for r in rows])
    mosaic, _ = tile_mosaic(tiles, (h, w), n)
    lo, hi = value_range if value_range is not None else (float(np.nanmin(tiles)), float(np.nanmax(tiles)))
    t = np.clip((np.nan_to_num(mosaic) - lo) / ((hi - lo) or 1.0), 0, 1)
    return _to_rgb(mosaic, t, False, width)
