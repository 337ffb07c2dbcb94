"""The live views' SVG line chart: ticks, thinning, and that every drawn point is where its value is."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from dashboard.figures_live import MAX_POINTS, line_chart_svg, log_ticks, loss_curve_svg, nice_ticks, thin

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # also proves the SVG is well-formed XML


def _polylines(root) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in pl.get("points").split()] for pl in root.iter(NS + "polyline")]


def _axis_maps(root):
    """Pixel -> value for each axis, fitted from the tick labels the chart prints (x: labels under the
    plot, anchored middle; y: labels left of it, anchored end)."""
    xs, ys = [], []
    for t in root.iter(NS + "text"):
        try:
            v = float(t.text)
        except (TypeError, ValueError):
            continue
        if t.get("text-anchor") == "middle":
            xs.append((float(t.get("x")), v))
        elif t.get("text-anchor") == "end":
            ys.append((float(t.get("y")) - 5, v))  # labels sit 5 units below their grid line
    return xs, ys


def _fit(pairs, log=False):
    px = np.array([p for p, _ in pairs])
    v = np.array([math.log10(v) if log else v for _, v in pairs])
    a, b = np.polyfit(px, v, 1)
    return lambda p: (10 ** (a * p + b)) if log else a * p + b


@pytest.mark.parametrize("lo,hi", [(0.1, 23), (0, 1), (-3.2, 7.7), (1e-4, 3e-4), (12345, 98765), (99.1, 99.4)])
def test_nice_ticks_are_round_steps_covering_the_range(lo, hi):
    t = nice_ticks(lo, hi)
    assert 3 <= len(t) <= 11, t
    steps = np.diff(t)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5)), steps[0]
    assert lo - 1e-12 <= t[0] and t[-1] <= hi + 1e-12  # inside the range
    assert t[0] - lo < steps[0] and hi - t[-1] < steps[0]  # and no step left uncovered at either end


def test_nice_ticks_refuses_a_range_that_is_not_finite():
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0, math.inf)


def test_log_ticks_are_powers_of_ten_or_one_two_five():
    assert log_ticks(0.03, 250) == pytest.approx([0.1, 1, 10, 100])
    assert log_ticks(11, 60) == pytest.approx([20, 50])
    with pytest.raises(ValueError, match="positive"):
        log_ticks(0, 10)


def test_thin_keeps_the_extremes_the_last_point_and_the_gaps():
    x = np.arange(10_000, dtype=float)
    y = np.sin(x / 300) + 0.001 * x
    y[4321] = 50.0  # a spike: a divergence must not vanish in the thinning
    y[7000] = np.nan
    tx, ty = thin(x, y, max_points=200)
    assert len(tx) <= 2 * 100 + 2 and len(tx) < len(x)
    assert np.all(np.diff(tx) > 0)
    assert 4321 in tx and 7000 in tx and tx[-1] == x[-1]
    assert np.nanmax(ty) == 50.0 and np.nanmin(ty) == pytest.approx(np.nanmin(y))
    assert np.isnan(ty[list(tx).index(7000)])
    sx, sy = thin(x[:50], y[:50])  # short: unchanged
    assert np.array_equal(sx, x[:50])


def _history(n=40, terms=("recon", "sparsity")):
    rows = []
    for i in range(n):
        r = {"step": i, "epoch": (i + 1) * 0.5, "elapsed": 0.1 * i, "samples_per_second": 1000.0}
        r["recon"] = 30.0 * math.exp(-i / 10) + 5
        if "sparsity" in terms:
            r["sparsity"] = 0.5 + 0.01 * i
        r["loss"] = sum(r[t] for t in terms)
        rows.append(r)
    return rows


def test_every_point_is_drawn_where_its_value_is():
    h = _history()
    root = _parse(loss_curve_svg(h, title="Training loss by term"))
    assert root.get("data-title") == "Training loss by term"
    assert root.get("data-traces") == "3" and root.get("data-points") == "40"
    lines = _polylines(root)
    assert len(lines) == 3 and all(len(pl) == 40 for pl in lines)
    xs, ys = _axis_maps(root)
    fx, fy = _fit(xs), _fit(ys)
    for pl, key in zip(lines, ("recon", "sparsity", "loss")):
        got_x = np.array([fx(p[0]) for p in pl])
        got_y = np.array([fy(p[1]) for p in pl])
        assert np.allclose(got_x, [r["epoch"] for r in h], atol=0.1)
        assert np.allclose(got_y, [r[key] for r in h], atol=0.1)
    # higher loss is higher on the page (smaller y): the axis is not upside down
    recon = lines[0]
    assert recon[0][1] < recon[-1][1]
    names = [t.text for t in root.iter(NS + "text")]
    assert {"recon", "sparsity", "total"} <= set(names) and "epoch" in names
    assert sum(pl.get("stroke-dasharray") is not None for pl in root.iter(NS + "polyline")) == 1  # the total


def test_log_scale_places_points_by_their_logarithm_and_drops_non_positive_values():
    h = _history(terms=("recon",))
    h[5]["recon"] = 0.0  # cannot be drawn on a log axis: the line breaks there
    root = _parse(loss_curve_svg(h, log_y=True))
    lines = _polylines(root)
    assert len(lines) == 2 and len(lines[0]) == 5 and len(lines[1]) == 34  # one term: no separate total
    _, ys = _axis_maps(root)
    fy = _fit(ys, log=True)
    drawn = [fy(p[1]) for p in lines[0] + lines[1]]
    want = [r["recon"] for i, r in enumerate(h) if i != 5]
    assert np.allclose(np.log10(drawn), np.log10(want), atol=0.005)
    assert any("log scale" in (t.text or "") for t in root.iter(NS + "text"))


def test_a_nan_breaks_the_line_and_an_empty_history_says_it_is_waiting():
    h = _history(terms=("recon",))
    h[20]["recon"] = float("nan")
    assert [len(pl) for pl in _polylines(_parse(loss_curve_svg(h)))] == [20, 19]
    del h[30]["recon"]  # a row without the term: a gap too
    assert [len(pl) for pl in _polylines(_parse(loss_curve_svg(h)))] == [20, 9, 9]
    empty = _parse(loss_curve_svg([]))
    assert not _polylines(empty) and empty.get("data-points") == "0"
    assert any("waiting" in (t.text or "") for t in empty.iter(NS + "text"))


def test_a_long_history_is_thinned_but_its_size_is_reported():
    h = _history(n=5000, terms=("recon",))
    root = _parse(loss_curve_svg(h))
    assert root.get("data-points") == "5000"
    assert all(len(pl) <= MAX_POINTS + 2 for pl in _polylines(root))


def test_the_signature_follows_the_data_and_names_are_escaped():
    h = _history()
    assert loss_curve_svg(h) == loss_curve_svg([dict(r) for r in h])
    a = _parse(loss_curve_svg(h)).get("data-sig")
    h[-1]["recon"] += 1.0
    assert _parse(loss_curve_svg(h)).get("data-sig") != a
    svg = line_chart_svg([{"name": "<script>alert(1)</script>", "x": [0, 1], "y": [1, 2], "color": "red"}],
                         title='a "title" & <b>', x_title="x", y_title="y")
    assert "<script>" not in svg and "<b>" not in svg
    root = _parse(svg)
    assert root.get("data-title") == 'a "title" & <b>'
    with pytest.raises(ValueError, match="same length"):
        line_chart_svg([{"name": "a", "x": [0, 1], "y": [1], "color": "red"}], "t", "x", "y")
