"""The Sweep page end to end in headless Chromium: a 2 x 2 sweep on digits, then its small multiples."""
from __future__ import annotations

import time

import pytest

from browser import chromium_missing, errors, figure_boxes, figures, layout_faults, page_width, shot, wait_for_figure

pytestmark = pytest.mark.browser

_missing = chromium_missing()
if _missing:
    pytest.skip(f"browser tests need Chromium and Playwright: {_missing}", allow_module_level=True)

VIEWPORT = {"width": 1280, "height": 2200}


def test_sweep_page_runs_a_2x2_grid_and_shows_small_multiples(server, page):
    page.goto(server.url + "/sweep")
    page.get_by_role("heading", name="Sweep").first.wait_for(timeout=30_000)
    main = page.get_by_test_id("stMain")  # the sidebar has its own "Code size K"
    for name, value in (("Code sizes K", "8,16"), ("Penalty strengths λ", "0,0.3"), ("Epochs", "6")):
        box = main.get_by_label(name, exact=True)
        box.fill(value)
        box.press("Enter")
        time.sleep(0.5)
    main.get_by_text("4 configurations: 2 K × 2 λ × 1 seed(s), 6 epochs each.").wait_for(timeout=10_000)
    page.locator(".st-key-sweep_run button").click()
    wait_for_figure(page, "Sparsity against λ", timeout=120)
    wait_for_figure(page, "Test error against K")
    time.sleep(1.0)
    figs = figures(page)
    panels = [f for f in figs if f["title"].startswith("λ = ")]
    assert [f["title"] for f in panels] == ["λ = 0", "λ = 0.3"]  # one filter grid per λ
    lines = {f["title"]: f for f in figs}
    for t in ("Test error against λ", "Sparsity against λ", "Test error against K", "Sparsity against K"):
        assert lines[t]["traces"] == 2 and lines[t]["points"] == 2, lines[t]  # one line per K (or λ), 2 points each
    page.get_by_text("4 configurations on the local backend").first.wait_for(timeout=5_000)
    shot(page, "page-sweep")
    assert layout_faults(page) == []
    assert errors(page) == []

    # at 1024 px with the sidebar open the page is narrow: the filter panels (four columns to a row)
    # go two to a row, the pairs of line figures one to a row (dashboard.figures.LAYOUT_CSS)
    page.set_viewport_size({"width": 1024, "height": 2200})
    time.sleep(1.5)
    boxes = {b["title"]: b for b in figure_boxes(page)}
    width = page_width(page)
    a, b = boxes["λ = 0"], boxes["λ = 0.3"]
    assert abs(a["top"] - b["top"]) < 2 and b["left"] > a["left"], (a, b)  # side by side
    assert 0.4 * width < a["width"] < 0.55 * width, (a, width)
    err, sparse = boxes["Test error against λ"], boxes["Sparsity against λ"]
    assert sparse["top"] > err["top"] + 100 and err["width"] > 0.9 * width, (err, sparse, width)  # stacked
    shot(page, "page-sweep-1024px")
    assert layout_faults(page) == []
