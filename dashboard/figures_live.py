"""A light line chart for live views: an inline SVG string instead of a plotly figure.

While a job trains, the Train page redraws its loss curve about twice a second. Plotly redraws
its whole figure each time (axes, legend, modebar): measured on a 2-core host, that took the
browser 0.3 of a core and the server 0.1, taken from the training it shows (see BENCHMARKS.md,
dashboard section). An SVG of a few polylines costs the browser next to nothing to replace, and
the server a few milliseconds to write. When the run ends the page shows the interactive plotly
figure again (hover, zoom).

The chart carries what the browser tests and the dashboard benchmark read, as data attributes
of the ``<svg>``: ``data-title``, ``data-traces``, ``data-points`` (the most points of any line
before thinning) and ``data-sig`` (a checksum of the drawn lines).
"""
from __future__ import annotations

import html
import math
import zlib
from typing import Mapping, Sequence

import numpy as np

from .figures import PALETTE, term_names

__all__ = ["line_chart_svg", "loss_curve_svg", "nice_ticks", "log_ticks", "thin", "MAX_POINTS", "LIVE_CSS",
           "live_container"]

# While a rerun is under way Streamlit marks each element stale and fades it (a 1 s opacity
# transition after 0.5 s), and it slides a progress bar over 0.5 s. A live view reruns every
# 0.45-1 s, so the fades hardly show, yet Chromium animated them all the time: on the Train page it
# drew with about 0.08 of a core less without them (2-core host; that core is taken from the
# training on the page). In a live view an element keeps full opacity while stale (turning off only
# the transition would make a stale element blink faded at once). The entry point adds this rule to
# every page; a live view draws inside ``live_container(...)``.
LIVE_KEY = "live_"  # the key prefix of a live view's container (Streamlit gives it the class st-key-<key>)
LIVE_CSS = f"""<style>
[class*="st-key-{LIVE_KEY}"] [data-testid="stElementContainer"] {{ opacity: 1 !important; transition: none !important; }}
[class*="st-key-{LIVE_KEY}"] [data-testid="stProgressBarTrack"] * {{ transition: none !important; }}
</style>"""


def live_container(name: str, live: bool = True):
    """The container a view draws in: while ``live``, keyed ``live_<name>`` so that LIVE_CSS holds its
    fades; otherwise a plain one (a full rerun's fade then shows the page is working)."""
    import streamlit as st

    return st.container(key=LIVE_KEY + name) if live else st.container()

MAX_POINTS = 600  # per line: a long run's history is thinned to this many (its minima and maxima kept)
WIDTH, HEIGHT = 480, 340  # viewBox units; drawn at the column's width (about this many pixels in a half page)
LEFT, RIGHT, TOP, BOTTOM = 70, 14, 62, 54  # the plot area's margins


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"ticks need a finite range, got [{lo}, {hi}]")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    e = math.floor(math.log10((hi - lo) / max(n, 1)))

    def inside(step: float) -> list[float]:
        k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        return [round(k * step, 12) for k in range(k0, k1 + 1)]

    # the 1-2-5 step whose ticks inside the range come nearest n in number (on a tie, the fewer)
    steps = [m * 10.0 ** p for p in (e - 1, e, e + 1) for m in (1, 2, 5)]
    best = min(steps, key=lambda s: (abs(len(inside(s)) - n), -s))
    return inside(best)


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi] (both > 0): powers of ten, or 1-2-5 steps within a decade."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"a log axis needs a positive finite range, got [{lo}, {hi}]")
    if hi < lo:
        lo, hi = hi, lo
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [10.0 ** e for e in range(a, b + 1) if lo * (1 - 1e-9) <= 10.0 ** e <= hi * (1 + 1e-9)]
    if len(ticks) >= 2:
        return ticks
    ticks = [m * 10.0 ** e for e in range(a, b + 1) for m in (1, 2, 5)
             if lo * (1 - 1e-9) <= m * 10.0 ** e <= hi * (1 + 1e-9)]
    return ticks if len(ticks) >= 2 else [lo, hi]


def thin(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``max_points`` of (x, y), in order: each of ``max_points // 2`` equal runs keeps
    its smallest and largest y, so a spike (a divergence) survives the thinning. Non-finite y are kept
    (they break the line where they are)."""
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep = []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = y[a:b]
        bad = np.flatnonzero(~np.isfinite(seg))
        if bad.size:  # a gap must stay a gap
            keep.append(a + int(bad[0]))
        finite = np.where(np.isfinite(seg), seg, np.nan)
        if np.isfinite(finite).any():
            keep += [a + int(np.nanargmin(finite)), a + int(np.nanargmax(finite))]
    keep = np.unique(np.array(keep + [n - 1], dtype=int))
    return x[keep], y[keep]


def _label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
    return f"{v:.6g}"


def line_chart_svg(lines: Sequence[Mapping], title: str, x_title: str, y_title: str, log_y: bool = False,
                   empty_text: str = "waiting for the first values…") -> str:
    """An SVG line chart. Each line is ``{"name", "x", "y", "color", "dash": bool}``; points whose y is
    not finite (or not positive on a log axis) break the line there."""
    prepared, total_points = [], 0
    for line in lines:
        x = np.asarray(line["x"], dtype=float)
        y = np.asarray(line["y"], dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"line {line.get('name')!r}: x and y must be 1-D and the same length, "
                             f"got {x.shape} and {y.shape}")
        total_points = max(total_points, len(x))
        if log_y:
            y = np.where(y > 0, y, np.nan)
        x, y = thin(x, y)
        prepared.append((line, x, y))
    masks = [np.isfinite(x) & np.isfinite(y) for _, x, y in prepared]
    finite_x = np.concatenate([x[m] for (_, x, _), m in zip(prepared, masks)]) if prepared else np.empty(0)
    finite_y = np.concatenate([y[m] for (_, _, y), m in zip(prepared, masks)]) if prepared else np.empty(0)
    px0, px1, py0, py1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    out: list[str] = []
    paths: list[str] = []
    if finite_y.size:
        xlo, xhi = float(finite_x.min()), float(finite_x.max())  # x hugs the data, as the run grows
        x_ticks = [t for t in nice_ticks(xlo, xhi) if xlo <= t <= xhi] or [xlo]
        if xhi == xlo:
            xlo, xhi = xlo - 0.5, xhi + 0.5
        if log_y:
            lo, hi = float(finite_y.min()), float(finite_y.max())
            if hi == lo:
                lo, hi = lo / 1.5, hi * 1.5
            y_ticks = log_ticks(lo, hi)
            f = math.log10
            ylo, yhi = f(min(lo, y_ticks[0])), f(max(hi, y_ticks[-1]))
            pad = 0.03 * ((yhi - ylo) or 1.0)
            ylo, yhi = ylo - pad, yhi + pad
        else:
            y_ticks = nice_ticks(float(finite_y.min()), float(finite_y.max()))
            f = float
            step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
            # the y range ends on the ticks round the data (as 0 under a loss that starts near it)
            ylo = math.floor(float(finite_y.min()) / step + 1e-9) * step
            yhi = math.ceil(float(finite_y.max()) / step - 1e-9) * step
            if yhi <= ylo:
                ylo, yhi = y_ticks[0], y_ticks[-1]
            y_ticks = [t for t in nice_ticks(ylo, yhi) if ylo - 1e-9 * step <= t <= yhi + 1e-9 * step]
        xspan = (xhi - xlo) or 1.0
        yspan = (yhi - ylo) or 1.0

        def sx(v: float) -> float:
            return px0 + (v - xlo) / xspan * (px1 - px0)

        def sy(v: float) -> float:
            return py1 - (f(v) - ylo) / yspan * (py1 - py0)

        for t in x_ticks:
            X = sx(t)
            out.append(f'<line x1="{X:.1f}" y1="{py0}" x2="{X:.1f}" y2="{py1}" stroke="#e5e5e5"/>'
                       f'<text x="{X:.1f}" y="{py1 + 20}" text-anchor="middle" font-size="14">{_label(t)}</text>')
        for t in y_ticks:
            Y = sy(t)
            out.append(f'<line x1="{px0}" y1="{Y:.1f}" x2="{px1}" y2="{Y:.1f}" stroke="#e5e5e5"/>'
                       f'<text x="{px0 - 8}" y="{Y + 5:.1f}" text-anchor="end" font-size="14">{_label(t)}</text>')
        for (line, x, y), ok in zip(prepared, masks):
            segments, current = [], []
            for xi, yi, good in zip(x, y, ok):
                if good:
                    current.append(f"{sx(xi):.1f},{sy(yi):.1f}")
                elif current:
                    segments.append(current)
                    current = []
            if current:
                segments.append(current)
            dash = ' stroke-dasharray="5,4"' if line.get("dash") else ""
            width = 2 if line.get("dash") else 2.5
            for seg in segments:
                pts = " ".join(seg if len(seg) > 1 else seg * 2)  # a lone point still shows (as a dot)
                paths.append(f'<polyline points="{pts}" fill="none" stroke="{line["color"]}" stroke-width="{width}" '
                             f'stroke-linejoin="round" stroke-linecap="round"{dash}/>')
    else:
        out.append(f'<text x="{(px0 + px1) / 2:.0f}" y="{(py0 + py1) / 2:.0f}" text-anchor="middle" '
                   f'font-size="16" fill="#555">{html.escape(empty_text)}</text>')
    # legend: right-aligned along the top, as the plotly figures have it
    legend, x_at = [], WIDTH - RIGHT
    for line, _, _ in reversed(prepared):
        name = html.escape(str(line["name"]))
        w = 34 + 8.2 * len(str(line["name"]))
        x_at -= w
        dash = ' stroke-dasharray="5,4"' if line.get("dash") else ""
        legend.append(f'<line x1="{x_at:.0f}" y1="{TOP - 12}" x2="{x_at + 24:.0f}" y2="{TOP - 12}" '
                      f'stroke="{line["color"]}" stroke-width="2.5"{dash}/>'
                      f'<text x="{x_at + 29:.0f}" y="{TOP - 7}" font-size="14">{name}</text>')
    drawn = "".join(paths)
    sig = f"{len(drawn)}:{zlib.crc32(drawn.encode()):08x}"
    t = html.escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
            f'aria-label="{t}" class="aecore-live-chart" data-title="{t}" data-traces="{len(prepared)}" '
            f'data-points="{total_points}" data-sig="{sig}" font-family="sans-serif" fill="#2a3f5f">'
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>'
            f'<text x="10" y="26" font-size="19">{t}</text>'
            + "".join(out)
            + f'<rect x="{px0}" y="{py0}" width="{px1 - px0}" height="{py1 - py0}" fill="none" stroke="#bbb"/>'
            + drawn + "".join(legend)
            + f'<text x="{(px0 + px1) / 2:.0f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="16">'
              f'{html.escape(x_title)}</text>'
            + f'<text transform="translate(18 {(py0 + py1) / 2:.0f}) rotate(-90)" text-anchor="middle" '
              f'font-size="16">{html.escape(y_title)}{", log scale" if log_y else ""}</text></svg>')


def loss_curve_svg(history: Sequence[Mapping], title: str = "Training loss", unit: str = "per example",
                   log_y: bool = False) -> str:
    """``figures.loss_curve`` as a live SVG: one line per named (weighted) loss term, plus the total
    (dotted, black) when there is more than one term, against epochs."""
    epochs = [r.get("epoch") for r in history]
    names = term_names(history)
    # (a missing value, None, becomes NaN in line_chart_svg's float arrays: a gap in the line)
    lines = [{"name": n, "x": epochs, "y": [r.get(n) for r in history], "color": PALETTE[i % len(PALETTE)]}
             for i, n in enumerate(names)]
    if len(names) != 1:
        lines.append({"name": "total", "x": epochs, "y": [r.get("loss") for r in history], "color": "black",
                      "dash": True})
    return line_chart_svg(lines, title, "epoch", f"loss ({unit})", log_y=log_y,
                          empty_text="waiting for the first loss values…")
