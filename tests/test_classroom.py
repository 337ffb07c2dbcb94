"""Classroom features: a lesson for every registered variant, each preset's configuration
(AppTest), and the Train page's replay, unit statistics and export after a run."""
from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from aecore.registry import variant_names
from dashboard.classroom import PRESETS, lesson_blocks, lesson_text
from apptest import APP


@pytest.fixture
def at(tmp_path, monkeypatch):
    monkeypatch.setenv("AECORE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


# --- lessons -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", variant_names())
def test_every_registered_variant_has_a_lesson_with_its_equations(variant):
    text = lesson_text(variant)
    assert text is not None, f"assets/lessons/{variant}.md is missing"
    blocks = lesson_blocks(text)
    latex = "\n".join(body for kind, body in blocks if kind == "latex")
    assert latex, f"the {variant} lesson has no $$ equation block"
    assert "h = f(" in latex.replace(" ", " ") and r"\hat{x} = g(h)" in latex  # encoder and decoder
    assert r"\ell(\hat{x}, x) + \Omega(h)" in latex  # loss and regularizer, in the lecture's notation


def test_lesson_blocks_split_markdown_and_latex():
    assert lesson_blocks("intro\n$$\na = b\n$$\nend") == [("markdown", "intro"), ("latex", "a = b"),
                                                          ("markdown", "end")]
    with pytest.raises(ValueError, match="not closed"):
        lesson_blocks("$$\na = b")
    assert lesson_text("no-such-variant") is None


def test_train_page_shows_the_lesson_of_the_sidebar_variant(at):
    assert any(e.label.startswith("Lesson: the sigmoid autoencoder") for e in at.expander)
    assert any(r"\sigma(W x + b)" in l.value for l in at.latex)
    at.selectbox(key="sb_variant").set_value("sparse").run()
    assert any(e.label.startswith("Lesson: the sparse autoencoder") for e in at.expander)
    assert any(r"\lambda \sum_{k=1}^{K} \lvert h_k \rvert" in l.value for l in at.latex)


# --- presets ------------------------------------------------------------------------------------
EXPECTED = {
    "linear_pca": dict(variant="linear", code_size=8, activation="linear", loss="squared", epochs=100),
    "under_over": dict(variant="sigmoid", code_size=128, activation="sigmoid", epochs=30),
    "sparsity_lambda": dict(variant="sparse", code_size=64, activation="relu", reg=0.05, epochs=30),
    "denoising_wins": dict(variant="denoising", code_size=32, noise="gaussian", noise_level=0.3, epochs=30),
    "vae_samples": dict(variant="vae", code_size=2, beta=1.0, hidden=(400,), epochs=30),
}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.key)
def test_preset_sets_the_sidebar_the_url_and_says_where_to_look(at, preset):
    # start from something else, so the preset has to change it
    at.number_input(key="sb_code_size").set_value(5).run()
    at.number_input(key="sb_epochs").set_value(7).run()
    at.button(key=f"preset_{preset.key}").click().run()
    assert not at.exception, at.exception
    mc, tc = at.session_state["model_cfg"], at.session_state["train_cfg"]
    want = dict(EXPECTED[preset.key])
    epochs = want.pop("epochs")
    assert {name: getattr(mc, name) for name in want} == want
    assert tc.dataset == "digits" and tc.epochs == epochs and tc.lr == pytest.approx(0.01)
    assert at.query_params["variant"] == mc.variant and at.query_params["K"] == str(mc.code_size)
    assert at.query_params["epochs"] == str(epochs)
    # the notice names the preset, says where to look and links to that page
    text = " ".join(m.value for m in at.markdown)
    assert f"**Preset: {preset.title}.**" in text
    links = at.get("page_link")
    assert links and links[0].proto.label == f"Go to {preset.page_title}"
    at.button(key="preset_dismiss").click().run()
    assert not any("**Preset:" in m.value for m in at.markdown)
    assert at.session_state["model_cfg"] == mc  # dismissing keeps the settings


def test_apply_settings_rejects_unknown_keys():
    from dashboard.sidebar import apply_settings

    with pytest.raises(KeyError, match="sb_colour"):
        apply_settings({"sb_colour": "red"})


# --- after a run on the Train page ----------------------------------------------------------------
def test_replay_unit_statistics_and_export_after_a_run(at):
    at.selectbox(key="sb_variant").set_value("relu").run()
    at.number_input(key="sb_epochs").set_value(40).run()
    at.button(key="train_start").click().run()
    deadline = time.monotonic() + 60
    while not at.session_state["job"].done:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.3)
        at.run()
    at.run()
    assert not at.exception, at.exception
    job = at.session_state["job"]
    assert [t.label for t in at.tabs] == ["Replay", "Unit statistics", "Export"]

    def spec(title_part):
        for c in at.get("plotly_chart"):
            s = json.loads(c.proto.spec)
            if title_part in s["layout"]["title"]["text"]:
                return s
        raise AssertionError(title_part)

    # replay: scrub back to the first snapshot, the filters are those of the start
    slider = at.select_slider(key=f"replay_{job.id}")
    assert slider.value == len(job.snapshots) - 1 and len(job.snapshots) >= 2
    last = spec("Filters at epoch")["data"][0]["z"]
    slider.set_value(0).run()
    assert spec("Filters at epoch 0.0")["data"][0]["z"] != last
    spec("Reconstructions at epoch 0.0")
    spec("Codes at epoch 0.0")

    # unit statistics: dead units, units active per example, the histogram and the means
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["dead units (never > 0)"].endswith("%")
    hist = spec("Code activations on")
    assert hist["layout"]["xaxis"]["title"]["text"] == "activation h_k (code value)"
    means = spec("Mean activation per unit")
    assert len(means["data"][0]["y"]["bdata"] if isinstance(means["data"][0]["y"], dict) else means["data"][0]["y"])
    at.number_input(key=f"units_{job.id}_target").set_value(0.2).run()
    assert "target ρ = 0.2" in json.dumps(spec("Mean activation per unit")["layout"]["shapes"]) or \
        any("ρ = 0.2" in a["text"] for a in spec("Mean activation per unit")["layout"]["annotations"])

    # export: a download button for the run's zip
    buttons = at.get("download_button")
    assert any("Download the run (.zip)" in b.proto.label for b in buttons)
