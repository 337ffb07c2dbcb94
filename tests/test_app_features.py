"""AppTest of the Features & pre-training page: renders, and small probe / pre-training runs show their figures."""
from __future__ import annotations

import json
import time

from streamlit.testing.v1 import AppTest
from apptest import titles

PAGE = "../pages/features.py"


def open_page(at) -> AppTest:
    at.run()
    return at.switch_page(PAGE).run()


def wait(at, key: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not at.session_state[key].done:
        time.sleep(0.2)
    assert at.session_state[key].done, f"{key} still running after {timeout} s"
    at.run()


def test_page_renders_both_tabs(at):
    open_page(at)
    assert not at.exception and not at.error
    assert at.title[0].value == "Features & pre-training"
    assert at.button(key="probe_task_run") and at.button(key="pretrain_task_run")
    assert not at.get("plotly_chart")


def test_a_small_probe_shows_the_accuracy_bars(at):
    open_page(at)
    at.selectbox(key="probe_ds").set_value("digits")
    at.number_input(key="probe_k").set_value(4)
    at.number_input(key="probe_epochs").set_value(2)
    at.multiselect(key="probe_variants").set_value(["tied"])
    at.multiselect(key="probe_labels").set_value(["100"]).run()
    at.button(key="probe_task_run").click().run()
    wait(at, "probe_task")
    assert not at.exception and not at.error, [e.value for e in at.error]
    bars = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "Linear probe" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    assert {d["name"] for d in bars["data"]} == {"raw inputs", "PCA (K = 4)", "tied"}
    assert all(0 < d["y"][0] <= 1 for d in bars["data"])


def test_a_small_pretraining_run_shows_curves_and_both_filter_sets(at):
    open_page(at)
    at.selectbox(key="pre_ds").set_value("digits").run()
    at.text_input(key="pre_hidden_True").input("16")
    at.text_input(key="pre_labels_True").input("30")
    at.number_input(key="pre_epochs_True").set_value(2)
    at.number_input(key="pre_ft_epochs").set_value(5).run()
    at.button(key="pretrain_task_run").click().run()
    wait(at, "pretrain_task")
    assert not at.exception and not at.error, [e.value for e in at.error]
    names = titles(at)
    assert any("Fine-tuning on digits" in t for t in names), names
    assert any("Test accuracy after fine-tuning" in t for t in names), names
    assert any(t.startswith("Pre-trained, then fine-tuned") for t in names), names
    assert any(t.startswith("Random init, then trained") for t in names), names
