"""Plotly builders for the Recommend page: arrays and records in, ``go.Figure`` out.

No math here beyond ordering for display: the map and the metrics come from ``aecore.recsys``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from .figures import line_mode

__all__ = ["item_map_figure", "metrics_figure", "validation_curve"]

FONT = dict(size=15)
TITLE_FONT = dict(size=19)


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=dict(text=title, font=TITLE_FONT), font=FONT, height=height,
                      margin=dict(l=70, r=20, t=60, b=60))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def item_map_figure(points: np.ndarray, genre: np.ndarray, genre_names: Sequence[str], titles: Sequence[str],
                    title: str, axis: str = "component", height: int = 560) -> go.Figure:
    """One trace per genre (legend entries toggle genres); hover shows the movie title."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {pts.shape}")
    genre = np.asarray(genre)
    palette = qualitative.Alphabet
    fig = go.Figure()
    for g in np.unique(genre):
        m = genre == g
        fig.add_trace(go.Scattergl(
            x=pts[m, 0], y=pts[m, 1], mode="markers", name=str(genre_names[int(g)]),
            text=[titles[i] for i in np.flatnonzero(m)], hovertemplate="%{text}<br>%{fullData.name}<extra></extra>",
            marker=dict(size=7, opacity=0.8, color=palette[int(g) % len(palette)])))
    _layout(fig, title, f"{axis} 1", f"{axis} 2", height=height)
    fig.update_layout(legend=dict(title="first genre"))
    return fig


def metrics_figure(table: Sequence[Mapping], k: int = 10) -> go.Figure:
    """Grouped bars: RMSE and MAE (lower is better) beside Recall@k and NDCG@k (higher is better)."""
    from plotly.subplots import make_subplots

    names = [str(r["model"]) for r in table]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("rating error (lower is better)",
                                                        f"top-{k} quality (higher is better)"))
    colors = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
    for j, key in enumerate(("rmse", "mae")):
        fig.add_trace(go.Bar(x=names, y=[r.get(key) for r in table], name=key.upper(),
                             marker_color=colors[j]), row=1, col=1)
    for j, key in enumerate((f"recall@{k}", f"ndcg@{k}")):
        fig.add_trace(go.Bar(x=names, y=[r.get(key) for r in table], name=key.replace("recall", "Recall")
                             .replace("ndcg", "NDCG"), marker_color=colors[2 + j]), row=1, col=2)
    fig.update_layout(barmode="group", title=dict(text="Models and baselines on the held-out ratings",
                                                  font=TITLE_FONT), font=FONT, height=420,
                      margin=dict(l=60, r=20, t=80, b=100))
    fig.update_yaxes(title_text="stars", row=1, col=1)
    fig.update_yaxes(title_text="fraction", row=1, col=2)
    return fig


def validation_curve(history: Sequence[Mapping], key: str = "valid_rmse", best_epoch: int | None = None) -> go.Figure:
    """The validation metric per epoch of the epoch-selection run, the chosen epoch marked."""
    rows = [r for r in history if key in r]
    fig = go.Figure(go.Scatter(x=[r["epoch"] for r in rows], y=[r[key] for r in rows], mode=line_mode(len(rows)),
                               name=key, line=dict(color="#0072B2", width=2.5)))
    if best_epoch:
        fig.add_vline(x=best_epoch, line_dash="dot", annotation_text=f"best epoch {best_epoch}")
    label = {"valid_rmse": "validation RMSE (stars)", "valid_ndcg@10": "validation NDCG@10"}.get(key, key)
    return _layout(fig, "Choosing the epoch on ratings held out from training", "epoch", label, height=340)
