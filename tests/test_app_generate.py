"""AppTest for the Generate page: a VAE trained on demand (or the current model when it is one)
gives samples, the 2-D manifold next to a plain autoencoder's, interpolation, sliders, a
traversal, KL per dimension and a rate-distortion point per β."""
from __future__ import annotations

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
    at.sidebar.number_input(key="sb_epochs").set_value(3).run()
    return at


def charts(at) -> dict[str, dict]:
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def chart(at, title_part: str) -> dict:
    found = [spec for title, spec in charts(at).items() if title_part in title]
    assert found, f"no chart titled like {title_part!r}; have {list(charts(at))}"
    return found[0]


def wait(at, key: str = "gen_jobs", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(not j.done for j in at.session_state[key].values()):
        assert time.monotonic() < deadline, "still training"
        time.sleep(0.3)
        at.run()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_trains_a_vae_and_shows_what_its_decoder_makes(at):
    at.switch_page("../pages/generate.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Generate"
    assert any(e.label.startswith("Lesson: the vae autoencoder") for e in at.expander)
    assert any("No trained VAE" in i.value for i in at.info)
    at.button(key="gen_train").click().run()
    wait(at)
    (key, job), = at.session_state["gen_jobs"].items()
    assert job.model_cfg.variant == "vae" and job.model_cfg.code_size == 2 and job.model_cfg.beta == 1.0

    samples = chart(at, "32 samples: random codes")
    assert samples["layout"]["xaxis"]["title"]["text"].startswith("32 samples")
    manifold = chart(at, "VAE: codes in [−2, 2]² decoded")
    assert manifold["layout"]["xaxis"]["title"]["text"] == "code unit 1 (z₁)"
    assert manifold["layout"]["xaxis"]["ticktext"] == ["-2", "-1", "0", "1", "2"]
    chart(at, "Interpolating between test images #0 and #1")
    chart(at, "Decoded from the sliders")
    traversal = chart(at, "Traversal from test image #0")
    assert traversal["layout"]["yaxis"]["ticktext"] == ["z₁", "z₂"]
    kl = chart(at, "KL per latent dimension")
    assert len(kl["data"][0]["x"]) == 2
    assert [d.get("name") for d in kl["data"][1:]] == ["active", "collapsed", "cut-off, 0.01 nats"]
    rd = chart(at, "Rate against distortion")
    assert rd["data"][0]["text"] == ["β=1"]

    # new samples: another draw of random codes
    before = chart(at, "32 samples")["data"][0]["z"]
    at.button(key="gen_new_samples").click().run()
    assert "(draw 1)" in next(t for t in charts(at) if "samples" in t)
    assert chart(at, "32 samples")["data"][0]["z"] != before
    at.slider(key="gen_temp").set_value(0.5).run()
    assert any("N(0, 0.5² I)" in t for t in charts(at))

    # a slider moves the decoded image
    tag = at.session_state["gen_source"]
    sliders = [s for s in at.slider if s.key.startswith(f"gen_z_{tag}_0_")]
    assert len(sliders) == 2
    before = chart(at, "Decoded from the sliders")["data"][1]["z"]
    sliders[0].set_value(2.5).run()
    assert chart(at, "Decoded from the sliders")["data"][1]["z"] != before

    # the plain autoencoder's manifold next to the VAE's
    at.button(key="gen_train_plain").click().run()
    wait(at)
    plain = chart(at, "Plain AE (K = 2)")
    assert plain["layout"]["xaxis"]["title"]["text"] == "code unit 1 (z₁)"
    plain_job = next(j for k, j in at.session_state["gen_jobs"].items() if k[0] == "plain")
    assert plain_job.model_cfg.variant == "deep" and plain_job.model_cfg.hidden == job.model_cfg.hidden

    # another β: a second point on the rate-distortion chart
    at.select_slider(key="gen_beta").set_value(4.0).run()
    at.button(key="gen_train_beta").click().run()
    wait(at)
    rd = chart(at, "Rate against distortion")
    assert sorted(rd["data"][0]["text"]) == ["β=1", "β=4"]
    assert at.selectbox(key="gen_source").value == tag  # the VAE shown stays the one picked


def test_current_model_vae_with_k3_is_used_and_has_no_manifold(at):
    at.selectbox(key="sb_variant").set_value("vae").run()
    at.number_input(key="sb_code_size").set_value(3).run()
    at.button(key="train_start").click().run()
    deadline = time.monotonic() + 60
    while not at.session_state["job"].done:
        assert time.monotonic() < deadline
        time.sleep(0.3)
        at.run()
    at.run()
    at.switch_page("../pages/generate.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="gen_source").value == "current"
    assert any("this VAE has K = 3" in i.value for i in at.info)
    assert len(chart(at, "KL per latent dimension")["data"][0]["x"]) == 3
    assert chart(at, "Traversal")["layout"]["yaxis"]["ticktext"] == ["z₁", "z₂", "z₃"]
    assert len([s for s in at.slider if s.key.startswith("gen_z_")]) == 3
