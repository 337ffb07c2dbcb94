"""AppTest for the Denoise & inpaint page: the two models train on demand; noisy and partly hidden
images are compared with PSNR under each; the PSNR curve has one line per method."""
from __future__ import annotations

import importlib.util
import json
import time

import pytest
from streamlit.testing.v1 import AppTest
from apptest import APP


@pytest.fixture
def at(tmp_path, monkeypatch):
    monkeypatch.setenv("AECORE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.sidebar.number_input(key="sb_epochs").set_value(4).run()
    at.sidebar.number_input(key="sb_code_size").set_value(8).run()
    at.switch_page("../pages/denoise.py").run()
    assert not at.exception, at.exception
    return at


def charts(at) -> dict[str, dict]:
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def chart(at, title_part: str) -> dict:
    found = [spec for title, spec in charts(at).items() if title_part in title]
    assert found, f"no chart titled like {title_part!r}; have {list(charts(at))}"
    return found[0]


def notes(spec) -> list[str]:
    return [a["text"] for a in spec["layout"].get("annotations", [])]


def train_pair(at, timeout: float = 60) -> None:
    at.button(key="dn_train").click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + timeout
    while any(not j.done for j in at.session_state["dn_jobs"].values()):
        assert time.monotonic() < deadline, "the two models are still training"
        time.sleep(0.3)
        at.run()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_page_offers_to_train_the_two_models(at):
    assert at.title[0].value == "Denoise & inpaint"
    assert any(e.label.startswith("Lesson: the denoising autoencoder") for e in at.expander)
    assert at.button(key="dn_train").label == "Train the two models"
    assert any("Press **Train the two models**" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    caption = " ".join(c.value for c in at.caption)
    assert "denoising (K = 8, sigmoid, masking noise 0.25)" in caption and "camera icon" in caption


def test_denoise_and_inpaint_after_training(at):
    train_pair(at)
    jobs = at.session_state["dn_jobs"]
    cfgs = {key[1]: j.model_cfg for key, j in jobs.items()}
    assert cfgs["denoising AE"].noise == "masking" and cfgs["plain AE"].noise == "none"
    assert cfgs["denoising AE"].code_size == cfgs["plain AE"].code_size == 8

    # noise: 4 test images x 5 columns, PSNR under every tile but the originals
    at.selectbox(key="dn_noise").set_value("gaussian").run()
    at.slider(key="dn_level").set_value(0.4).run()
    spec = chart(at, "gaussian noise at level 0.4")
    texts = notes(spec)
    assert texts[:5] == ["original", "corrupted", "denoising<br>AE", "plain AE", "PCA"]  # (two lines: narrow columns)
    db = [t for t in texts if t.endswith(" dB")]
    assert len(db) == 4 * 4  # corrupted + three methods, four rows
    assert spec["layout"]["yaxis"]["ticktext"] == ["#0 (7)", "#1 (6)", "#2 (3)", "#3 (7)"]
    assert "Mean PSNR over these images" in at.markdown[-1].value or any(
        "Mean PSNR" in m.value for m in at.markdown)
    curve = chart(at, "PSNR against noise level")
    assert [t["name"] for t in curve["data"]] == ["denoising AE", "plain AE", "PCA", "corrupted input"]
    assert curve["layout"]["xaxis"]["title"]["text"].startswith("gaussian noise level")

    # choose other images
    at.text_input(key="dn_indices").set_value("5, 9-10").run()
    assert chart(at, "gaussian noise")["layout"]["yaxis"]["ticktext"][0].startswith("#5")
    at.text_input(key="dn_indices").set_value("5, 99999").run()
    assert any("99999 is not a test image number" in e.value for e in at.error)
    at.text_input(key="dn_indices").set_value("0").run()

    # hide a block: the hidden pixels are marked, observed pixels are kept by every method
    at.radio(key="dn_mode").set_value("hide").run()
    assert not at.exception, at.exception
    spec = chart(at, "Inpainting 16 hidden pixels")  # the default block: 4 x 4 in the middle of 8 x 8
    assert spec["layout"]["title"]["text"] == "Inpainting 16 hidden pixels, 3 iterations"  # short: fits 1024 px
    assert any("PCA with K = 8." in c.value for c in at.caption)  # (PCA's K, moved out of the title)
    assert len(spec["data"]) == 2  # the images and the orange overlay
    assert notes(spec)[:2] == ["original", "with hidden<br>pixels"]  # (two lines: narrow columns)
    assert chart(at, "PSNR against noise level")["layout"]["xaxis"]["title"]["text"].startswith("fraction of pixels")
    at.radio(key="dn_hide").set_value("random").run()
    at.slider(key="dn_frac").set_value(0.25).run()
    title = next(t for t in charts(at) if t.startswith("Inpainting"))
    assert 8 <= int(title.split()[1]) <= 24  # about a quarter of 64 pixels
    at.radio(key="dn_hide").set_value("box").run()
    assert any("drag a box" in i.value for i in at.info)
    assert chart(at, "Select the pixels to hide")["layout"]["dragmode"] == "select"
    # the canvas modes and drawing render without a drawing yet (or say which package they need)
    canvas = importlib.util.find_spec("streamlit_drawable_canvas") is not None
    at.radio(key="dn_hide").set_value("paint").run()
    assert not at.exception
    assert any("paint over the image" in i.value for i in at.info) if canvas else \
        any("streamlit-drawable-canvas" in w.value for w in at.warning)
    at.radio(key="dn_source").set_value("draw").run()
    assert not at.exception
    assert any("Draw something" in i.value for i in at.info) if canvas else \
        any("streamlit-drawable-canvas" in w.value for w in at.warning)
    # every figure here can be saved as a PNG from its toolbar
    configs = [json.loads(c.proto.config or "{}") for c in at.get("plotly_chart")]
    assert all(c.get("toImageButtonOptions", {}).get("format") == "png" for c in configs)

