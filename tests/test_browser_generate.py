"""End to end in headless Chromium for the Denoise & inpaint and Generate pages: a real server,
real clicks and drags; a denoised image, an inpainted one (box-selected and painted masks) and
a VAE's sample grid must render. Screenshots land in screenshots/."""
from __future__ import annotations

import importlib.util
import time

import pytest

from browser import chromium_missing, errors, figure_titles, layout_faults, shot, wait_for_figure

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1280, "height": 3400}

_missing = chromium_missing()
if _missing:
    pytest.skip(f"browser tests need Chromium and Playwright: {_missing}", allow_module_level=True)








def drag(page, box: dict, start=(0.3, 0.3), end=(0.65, 0.7), steps: int = 12) -> None:
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, steps + 1):
        page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
    page.mouse.up()


def test_denoise_page_denoises_then_inpaints_a_box_and_a_painted_mask(server, page):
    page.goto(server.url + "/denoise?epochs=20&K=16")
    page.get_by_role("button", name="Train the two models").click()
    noisy = wait_for_figure(page, "noise at level")
    assert noisy["traces"] >= 1
    wait_for_figure(page, "PSNR against noise level")
    time.sleep(1.0)
    shot(page, "denoise-noise")
    assert layout_faults(page) == []
    assert errors(page) == []

    # hide a box-selected region: drag over the mask editor
    page.get_by_text("hide pixels (inpaint)").click()
    page.get_by_text("box or lasso selection").click()
    wait_for_figure(page, "Select the pixels to hide")
    editor = page.locator(".js-plotly-plot").filter(has_text="Select the pixels to hide").first
    editor.scroll_into_view_if_needed()
    drag(page, editor.locator(".nsewdrag").first.bounding_box())
    boxed = wait_for_figure(page, "Inpainting")
    assert boxed["traces"] == 2  # the images and the orange overlay of the hidden pixels
    time.sleep(1.0)
    shot(page, "denoise-box")
    assert layout_faults(page) == []
    assert errors(page) == []

    # paint the region instead
    if importlib.util.find_spec("streamlit_drawable_canvas") is None:
        pytest.skip("painting needs streamlit-drawable-canvas (not installed); the box selection passed")
    page.get_by_text("paint over the image").click()
    page.get_by_text("No pixel is hidden yet").wait_for(timeout=30_000)
    canvas = page.locator("canvas").last
    canvas.scroll_into_view_if_needed()
    drag(page, canvas.bounding_box(), start=(0.2, 0.5), end=(0.8, 0.5))
    painted = wait_for_figure(page, "Inpainting")
    assert painted["traces"] == 2
    time.sleep(1.0)
    shot(page, "denoise-paint")
    assert layout_faults(page) == []
    assert errors(page) == []


def test_preset_leads_to_generate_where_a_vae_trains_and_shows_samples_and_manifolds(server, page):
    page.goto(server.url + "/")
    page.get_by_text("Presets: one-click classroom set-ups").click()
    page.get_by_role("button", name="VAE samples from random codes").click()
    page.get_by_text("Preset: VAE samples from random codes.").wait_for(timeout=30_000)
    assert "variant=vae" in page.url and "K=2" in page.url
    page.get_by_role("link", name="Go to Generate").click()
    page.get_by_role("heading", name="Generate").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Train a VAE").click()
    samples = wait_for_figure(page, "samples: random codes")
    wait_for_figure(page, "VAE: codes in")
    page.get_by_role("button", name="New samples").click()
    wait_for_figure(page, "samples: random codes", changed_from=samples["sig"], timeout=30)
    page.get_by_role("button", name="Train the plain autoencoder (K = 2)").click()
    wait_for_figure(page, "Plain AE")
    page.set_viewport_size({"width": 1280, "height": 5200})  # the whole page in one screenshot
    time.sleep(1.5)
    shot(page, "generate-vae")
    assert layout_faults(page) == []
    titles = figure_titles(page)
    for part in ("Interpolating", "Traversal", "KL per latent dimension", "Rate against distortion"):
        assert any(part in t for t in titles), (part, titles)
    assert errors(page) == []
