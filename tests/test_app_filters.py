"""AppTest of the Filters page: W's rows next to PCA's components, for a job or a saved run."""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest
from apptest import figure, saved_run

PAGE = "../pages/filters.py"


def open_page(at) -> AppTest:
    at.run()
    return at.switch_page(PAGE).run()


def test_without_a_model_it_tells_the_user_to_train_first(at):
    open_page(at)
    assert not at.exception and not at.error
    assert at.title[0].value == "Filters"
    assert any("train one" in i.value.lower() for i in at.info)
    assert not at.get("plotly_chart")


def test_sidebar_controls_work_on_this_page(at):
    open_page(at)
    at.number_input(key="sb_code_size").set_value(5).run()
    assert at.session_state["model_cfg"].code_size == 5
    assert at.title[0].value == "Filters"


def test_saved_run_shows_w_next_to_pca_and_the_decoder(at):
    run_id = saved_run(k=6)
    open_page(at)
    assert not at.exception and not at.error
    assert at.selectbox(key="filters_source").value == run_id
    w = figure(at, "Autoencoder: rows of W")
    assert "K=6" in w["layout"]["title"]["text"]
    assert w["data"][0]["type"] == "heatmap"
    zmin, zmax = w["data"][0]["zmin"], w["data"][0]["zmax"]
    assert zmin == pytest.approx(-zmax)  # one shared symmetric colour scale
    figure(at, "PCA: first 6 components of digits")
    figure(at, "Decoder: columns")
    assert "akin to PCA" in " ".join(i.value for i in at.info)
    # ordering by norm is an option
    at.toggle(key="filters_order_norm").set_value(True).run()
    assert "largest norm first" in figure(at, "Autoencoder")["layout"]["xaxis"]["title"]["text"]


def test_current_job_is_shown_after_training(at):
    at.query_params.update({"K": "9", "epochs": "2"})
    at.run()
    at.button(key="train_start").click().run()
    deadline = time.time() + 40
    while not at.session_state["job"].done and time.time() < deadline:
        time.sleep(0.2)
    assert at.session_state["job"].status == "finished"
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="filters_source").value == "__current__"
    assert "K=9" in figure(at, "Autoencoder: rows of W")["layout"]["title"]["text"]
    figure(at, "PCA: first 9 components")


def test_a_corrupted_run_shows_an_error_and_the_page_stays_usable(at):
    good = saved_run(k=3)
    bad = saved_run(k=4)
    from aecore.runs import RunStore

    (RunStore().path(bad) / "model.safetensors").write_bytes(b"not a safetensors file")
    open_page(at)
    at.selectbox(key="filters_source").set_value(bad).run()
    assert not at.exception
    assert any(bad in e.value and "corrupted" in e.value for e in at.error)
    at.selectbox(key="filters_source").set_value(good).run()
    assert not at.error
    figure(at, "PCA: first 3 components")
