"""Plotly figure builders for the Documents and Features & pre-training pages.

Arrays and result records from ``aecore.documents`` / ``aecore.features`` in, ``go.Figure``
out; no math beyond ordering and sampling for display. Same look as ``dashboard.figures``
(fonts, colour-blind-safe palette, titled and labelled axes).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .figures import FONT, PALETTE, line_mode, style_layout as _layout

__all__ = ["precision_recall", "document_map", "unit_words", "probe_bars", "pretrain_curves", "METHOD_NAMES"]

METHOD_NAMES = {"ae": "deep autoencoder", "lsa": "LSA (truncated SVD of tf-idf)"}
# 20 groups need more colours than the palette: the palette first, then plotly's Dark24-like set
_MANY = PALETTE + ("#000000", "#882255", "#44AA99", "#117733", "#332288", "#DDCC77", "#999933", "#AA4499",
                   "#661100", "#6699CC", "#888888", "#E7298A", "#1B9E77", "#7570B3", "#66A61E")


def precision_recall(precision: Mapping[str, Mapping[float, float]], code_size: int | None = None,
                     title: str | None = None) -> go.Figure:
    """One line per method: precision against recall (log axis), as Hinton & Salakhutdinov's Fig. 4."""
    fig = go.Figure()
    for i, (method, curve) in enumerate(precision.items()):
        levels = sorted(curve)
        fig.add_trace(go.Scatter(x=levels, y=[curve[r] for r in levels], name=METHOD_NAMES.get(method, method),
                                 mode="lines+markers", line=dict(color=PALETTE[i % len(PALETTE)], width=3),
                                 marker=dict(size=8),
                                 hovertemplate="recall %{x:g}<br>precision %{y:.3f}<extra>%{fullData.name}</extra>"))
    k = f" at K = {code_size}" if code_size else ""
    _layout(fig, title or f"Retrieval: precision vs recall{k}", "recall (fraction of the query's group retrieved)",
            "precision (fraction retrieved in the query's group)", height=420)
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.02])
    return fig


def document_map(points: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                 hover: Sequence[str] | None = None, highlight: Sequence[int] | None = None,
                 query: int | None = None, title: str = "Test documents by code",
                 method: str = "the first two principal components") -> go.Figure:
    """A 2-D map of documents, one colour per group; ``highlight`` rings the retrieved documents and
    ``query`` marks the query (indices into ``points``)."""
    pts = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    hover = np.asarray(hover if hover is not None else [""] * len(pts), dtype=object)
    fig = go.Figure()
    for c, name in enumerate(label_names):
        m = labels == c
        if not m.any():
            continue
        # SVG, not WebGL: pages draw at most a few thousand points, and WebGL canvases stay blank
        # in some browsers (and in headless screenshots)
        fig.add_trace(go.Scatter(x=pts[m, 0], y=pts[m, 1], mode="markers", name=str(name),
                                 marker=dict(size=6, color=_MANY[c % len(_MANY)], opacity=0.75),
                                 customdata=hover[m], hovertemplate="%{customdata}<extra>" + str(name) + "</extra>"))
    if highlight is not None and len(highlight):
        h = np.asarray(highlight, dtype=int)
        fig.add_trace(go.Scatter(x=pts[h, 0], y=pts[h, 1], mode="markers", name="retrieved",
                                 marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(color="black", width=2)),
                                 customdata=hover[h], hovertemplate="%{customdata}<extra>retrieved</extra>"))
    if query is not None:
        fig.add_trace(go.Scatter(x=[pts[query, 0]], y=[pts[query, 1]], mode="markers", name="query",
                                 marker=dict(size=20, symbol="star", color="gold", line=dict(color="black", width=1.5)),
                                 customdata=[hover[query]], hovertemplate="%{customdata}<extra>query</extra>"))
    _layout(fig, title, f"map axis 1 ({method})", "map axis 2", height=560)
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02, font=dict(size=12)))
    return fig


def unit_words(entry: Mapping, title: str | None = None) -> go.Figure:
    """Horizontal bars: the words most correlated (positively, negatively) with one code unit."""
    pos = list(entry.get("positive", []))
    neg = list(entry.get("negative", []))
    words = [w for w, _ in neg[::-1]] + [w for w, _ in pos[::-1]]
    vals = [r for _, r in neg[::-1]] + [r for _, r in pos[::-1]]
    colors = [PALETTE[1]] * len(neg) + [PALETTE[0]] * len(pos)
    fig = go.Figure(go.Bar(x=vals, y=[f"{w} " for w in words], orientation="h", marker_color=colors,
                           hovertemplate="%{y}: r = %{x:.3f}<extra></extra>"))
    _layout(fig, title or f"Code unit {entry.get('unit', '?')}: the words it responds to",
            "correlation of the unit's value with the word's (scaled) count", "", height=120 + 26 * max(len(words), 1))
    fig.update_layout(showlegend=False)
    return fig


def probe_bars(accuracy: Mapping[str, Mapping[str, float]], labels: Sequence[str],
               std: Mapping[str, Mapping[str, float]] | None = None, code_size: int | None = None,
               dataset: str = "") -> go.Figure:
    """Grouped bars: one group per labelled-example count, one bar per representation."""
    fig = go.Figure()
    xs = [f"{k} labels" for k in labels]
    for i, (name, accs) in enumerate(accuracy.items()):
        vals = [accs.get(k) for k in labels]
        err = None
        if std is not None and any(std.get(name, {}).get(k, 0) for k in labels):
            err = dict(type="data", array=[std[name].get(k, 0) for k in labels], visible=True)
        pretty = {"raw": "raw inputs", "pca": f"PCA (K = {code_size})" if code_size else "PCA"}.get(name, name)
        fig.add_trace(go.Bar(x=xs, y=vals, name=pretty, marker_color=PALETTE[i % len(PALETTE)], error_y=err,
                             text=[("" if v is None else f"{v:.3f}") for v in vals], textposition="outside"))
    fig.update_layout(barmode="group")
    on = f" on {dataset}" if dataset else ""
    _layout(fig, f"Linear probe: test accuracy of a logistic regression{on}", "labelled training examples",
            "test accuracy", height=440)
    fig.update_yaxes(range=[0, 1.08])
    return fig


def pretrain_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], dataset: str = "",
                    value: str = "accuracy") -> go.Figure:
    """Test accuracy (or training loss, ``value='loss'``) against fine-tuning epochs: solid =
    pre-trained, dashed = random init; one colour per label count."""
    fig = go.Figure()
    for i, (key, c) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        for which, dash in (("pretrained", "solid"), ("random", "dash")):
            ys = c.get(which if value == "accuracy" else f"{which}_loss")
            if ys is None:
                continue
            fig.add_trace(go.Scatter(x=list(c["epoch"]), y=list(ys), mode=line_mode(len(ys)),
                                     name=f"{key} labels, {'pre-trained' if which == 'pretrained' else 'random init'}",
                                     line=dict(color=color, width=3 if which == "pretrained" else 2.5, dash=dash)))
    on = f" on {dataset}" if dataset else ""
    if value == "accuracy":
        _layout(fig, f"Fine-tuning{on}: pre-trained (solid) vs random init (dashed)",
                "fine-tuning epoch (passes over the labelled examples)", "test accuracy", height=440)
        fig.update_yaxes(range=[0, 1.02])
    else:
        _layout(fig, f"Fine-tuning{on}: training loss", "fine-tuning epoch (passes over the labelled examples)",
                "cross-entropy on the labelled examples (nats)", height=440)
    fig.update_layout(legend=dict(orientation="v", yanchor="bottom", y=0.02, xanchor="right", x=0.99,
                                  font=FONT, bgcolor="rgba(255,255,255,0.7)"))
    return fig
