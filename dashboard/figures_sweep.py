"""Plotly figure builders for the Sweep page: metrics against λ or K, one line per other value.

Rows come from ``aecore.sweep.summarize`` (means over seeds, with their spread); no math here
beyond picking and ordering the numbers. Same look as ``dashboard.figures``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go

from .figures import PALETTE, filter_grid, style_layout

__all__ = ["sweep_lines", "filter_panel", "METRICS", "lambda_label"]

# metric -> (name in titles, axis title)
METRICS = {
    "test_sse": ("Test error", "squared error per test image"),
    "mean_abs_code": ("Sparsity", "mean |h_k| (lower = sparser)"),
    "active_fraction": ("Active units", "fraction of |h_k| > 0.001"),
}
_AXES = {"reg": ("λ", "λ (L1 weight on the code)"), "code_size": ("K", "code size K")}


def lambda_label(reg: float) -> str:
    return f"{reg:g}"


def filter_panel(W, shape, title: str, max_tiles: int = 64, height: int = 330) -> go.Figure:
    """``filter_grid`` made compact for a row of small multiples: no colour bar or axis title
    (the page says once what the colours mean), small margins."""
    fig = filter_grid(W, shape, title=title, max_tiles=max_tiles, height=height)
    fig.update_traces(showscale=False)
    fig.update_layout(margin=dict(l=8, r=8, t=48, b=8))
    fig.update_xaxes(title_text="")
    return fig


def sweep_lines(rows: Sequence[Mapping], metric: str, x: str = "reg") -> go.Figure:
    """``metric`` against ``x`` ('reg' or 'code_size'), one line per value of the other.

    λ values are drawn as equally spaced categories (a sweep's λ grid is usually 0 and powers
    of ten; 0 has no place on a log axis). Error bars show the spread over seeds when there is one.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} must be one of {', '.join(METRICS)}")
    if x not in _AXES:
        raise ValueError(f"x={x!r} must be 'reg' or 'code_size'")
    other = "code_size" if x == "reg" else "reg"
    xs = sorted({r[x] for r in rows})
    fig = go.Figure()
    for i, value in enumerate(sorted({r[other] for r in rows})):
        line = sorted((r for r in rows if r[other] == value), key=lambda r: r[x])
        name = f"K = {value}" if other == "code_size" else f"λ = {lambda_label(value)}"
        spread = [r.get(f"{metric}_std", 0.0) for r in line]
        fig.add_trace(go.Scatter(
            x=[lambda_label(r[x]) if x == "reg" else str(r[x]) for r in line], y=[r[metric] for r in line],
            name=name, mode="lines+markers", line=dict(color=PALETTE[i % len(PALETTE)], width=3), marker=dict(size=9),
            error_y=dict(type="data", array=spread, visible=any(s > 0 for s in spread)),
            hovertemplate=f"{_AXES[x][0]} = %{{x}}<br>%{{y:.4g}}<extra>{name}</extra>"))
    what, y_title = METRICS[metric]
    style_layout(fig, f"{what} against {_AXES[x][0]}", _AXES[x][1], y_title, height=400)
    fig.update_xaxes(type="category", categoryorder="array",
                     categoryarray=[lambda_label(v) if x == "reg" else str(v) for v in xs])
    return fig
