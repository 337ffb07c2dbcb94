"""Uploads in headless Chromium: a good .npy trains, a bad file shows one clear error and the page
goes on working with the data set chosen before (AppTest cannot drive st.file_uploader)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from browser import chromium_missing, errors, layout_faults, shot, wait_for_final_figures

pytestmark = pytest.mark.browser

_missing = chromium_missing()
if _missing:
    pytest.skip(f"browser tests need Chromium and Playwright: {_missing}", allow_module_level=True)

UPLOADER = '[data-testid="stFileUploaderDropzoneInput"]'


def _choose_upload(page) -> None:
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Data set").first.wait_for(timeout=60_000)
    sidebar.locator(".st-key-sb_dataset").click()
    page.get_by_role("option", name="Upload a file…").click()
    page.locator(UPLOADER).first.wait_for(state="attached", timeout=30_000)


def _sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def _wait_sidebar(page, text: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in _sidebar_text(page):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the sidebar within {timeout} s: {_sidebar_text(page)[:800]}")


def test_bad_upload_shows_error_and_page_still_trains(server, page, tmp_path):
    bad = tmp_path / "ragged.csv"
    bad.write_text("1,2,3\n4,5,6\n7,8\n")
    page.goto(server.url + "/?variant=sigmoid&K=4&epochs=2")
    _choose_upload(page)
    assert "Until a file loads, the settings use digits" in _sidebar_text(page)
    page.locator(UPLOADER).first.set_input_files(str(bad))
    _wait_sidebar(page, "Could not use the upload")
    text = _sidebar_text(page)
    assert "'ragged.csv': row 3 has 2 values, expected 3" in text
    assert str(tmp_path) not in text and "uploads/" not in text  # no server path reaches the page
    assert page.locator('[data-testid="stException"]').count() == 0  # no traceback
    shot(page, "upload-bad-file")
    # the earlier choice (digits) still trains
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Finished after").first.wait_for(timeout=120_000)
    assert "on digits" in page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0


def test_good_npy_upload_trains(server, page, tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((120, 6, 5)) < 0.3).astype(np.uint8) * 255  # 120 binary 6x5 "images" in 0..255
    good = tmp_path / "my blobs.npy"
    np.save(good, x)
    page.goto(server.url + "/?variant=sigmoid&K=4&epochs=3")
    _choose_upload(page)
    page.locator(UPLOADER).first.set_input_files(str(good))
    _wait_sidebar(page, "Loaded 'my blobs.npy'")
    assert "96 training and 24 test examples of shape 6×5 (image)" in _sidebar_text(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Finished after").first.wait_for(timeout=120_000)
    body = page.inner_text("body")
    assert "my blobs.npy" in body
    assert errors(page) == []
    wait_for_final_figures(page)  # the uploaded 6x5 images as filters and reconstructions too
    shot(page, "upload-good-npy-trained")
    assert layout_faults(page) == []


def test_recommend_ratings_upload_bad_then_good(server, page, tmp_path):
    bad = tmp_path / "bad ratings.csv"
    bad.write_text("user,item,rating\n1,2,great\n3,4,awful\n")
    rng = np.random.default_rng(2)
    rows = ["user,item,rating"] + [f"{u},{i},{rng.integers(1, 6)}" for u in range(1, 21) for i in range(1, 11)
                                   if rng.random() < 0.6]
    good = tmp_path / "good ratings.csv"
    good.write_text("\n".join(rows + ["5,5,nan", "7"]) + "\n")
    page.goto(server.url + "/recommend")
    page.get_by_role("heading", name="Recommend").first.wait_for(timeout=60_000)
    page.get_by_text("Upload a ratings file…").click()
    uploader = page.locator(f'[data-testid="stMain"] {UPLOADER}').first
    uploader.wait_for(state="attached", timeout=30_000)
    uploader.set_input_files(str(bad))
    page.get_by_text("Could not use the upload").first.wait_for(timeout=30_000)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "ratings file 'bad ratings.csv': no usable rows (2 bad_rating)" in main
    assert str(tmp_path) not in main and page.locator('[data-testid="stException"]').count() == 0
    shot(page, "upload-ratings-bad")
    uploader.set_input_files(str(good))
    page.get_by_text("Skipped 2 bad row(s)").first.wait_for(timeout=30_000)
    assert "1 bad rating, 1 wrong field count" in page.locator('[data-testid="stMain"]').inner_text()
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("good ratings.csv (random 10 % held out): RMSE").first.wait_for(timeout=180_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "upload-ratings-trained")
    assert layout_faults(page) == []
