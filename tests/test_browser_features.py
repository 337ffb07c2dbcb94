"""Documents and Features & pre-training pages end to end in headless Chromium: real clicks, figures, no errors."""
from __future__ import annotations

import time

import pytest

from browser import Server, chromium_missing, errors, layout_faults, shot, wait_for_figure

pytestmark = pytest.mark.browser

_missing = chromium_missing()
if _missing:
    pytest.skip(f"browser tests need Chromium and Playwright: {_missing}", allow_module_level=True)

TEXTS = {"space": ["the rocket reached orbit after launch", "nasa shuttle launch to the moon",
                   "orbit of the moon and planets", "astronauts on the shuttle in orbit",
                   "the rocket engine for launch", "moon landing by nasa astronauts"],
         "cars": ["the car engine needs oil", "driving the car on the road", "a fast car with a big engine",
                  "wheels and tires of the car", "the road trip by car", "car dealer sold the sedan"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    # an empty data root: no 20 Newsgroups, and digits is the only image set offline
    srv = Server(tmp, env={"AECORE_DATA": str(tmp / "data")})
    yield srv
    srv.stop()






def test_documents_page_trains_on_an_uploaded_zip_of_text_folders(server, page, tmp_path):
    import zipfile

    upload = tmp_path / "class docs.zip"
    with zipfile.ZipFile(upload, "w") as z:
        for group, texts in TEXTS.items():
            for i, t in enumerate(texts):
                z.writestr(f"{group}/{i}.txt", t)
    page.goto(server.url + "/documents")
    page.get_by_role("heading", name="Documents").first.wait_for(timeout=30_000)
    page.get_by_text("20 Newsgroups is not under the data root").first.wait_for(timeout=10_000)
    main = page.get_by_test_id("stMain")  # the sidebar has its own "Code size K"
    main.get_by_text("Upload a CSV or a zip of text folders").click()
    uploader = page.locator('[data-testid="stMain"] [data-testid="stFileUploaderDropzoneInput"]').first
    uploader.wait_for(state="attached", timeout=30_000)
    uploader.set_input_files(str(upload))
    main.get_by_text("class docs.zip:").first.wait_for(timeout=30_000)  # "N documents in 2 labels"
    assert "documents in 2 labels" in main.inner_text() and str(tmp_path) not in main.inner_text()
    for role, name, value in (("textbox", "Hidden layers", "8"), ("spinbutton", "Code size K", "2")):
        box = main.get_by_role(role, name=name)
        box.fill(value)
        box.press("Enter")
        time.sleep(0.5)
    time.sleep(1.0)
    page.get_by_role("button", name="Train autoencoder and LSA").click()
    wait_for_figure(page, "precision vs recall at K = 2")
    time.sleep(1.0)
    shot(page, "page-documents")
    assert layout_faults(page) == []
    assert errors(page) == []


def test_features_page_runs_a_probe_and_pretraining(server, page):
    page.goto(server.url + "/features")
    page.get_by_role("heading", name="Features & pre-training").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Train and probe").click()
    wait_for_figure(page, "Linear probe")
    page.get_by_role("tab", name="Pre-training").click()
    page.get_by_role("button", name="Pre-train and fine-tune").click()
    wait_for_figure(page, "Fine-tuning on digits")
    wait_for_figure(page, "Pre-trained, then fine-tuned")
    time.sleep(1.0)
    shot(page, "page-features")
    assert layout_faults(page) == []
    assert errors(page) == []
