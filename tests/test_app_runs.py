"""AppTest of the Runs page: the table, overlaid loss curves, metrics, loading and downloads."""
from __future__ import annotations


from streamlit.testing.v1 import AppTest
from apptest import figure, saved_run

PAGE = "../pages/runs.py"


def open_page(at) -> AppTest:
    at.run()
    return at.switch_page(PAGE).run()


def test_empty_store_says_how_to_get_runs(at):
    open_page(at)
    assert not at.exception and not at.error
    assert at.title[0].value == "Runs"
    assert any("No saved runs yet" in i.value for i in at.info)


def test_query_params_and_controls_work_on_this_page(at):
    at.query_params.update({"variant": "tied", "K": "3"})
    open_page(at)
    assert at.session_state["model_cfg"].variant == "tied" and at.session_state["model_cfg"].code_size == 3
    at.number_input(key="sb_code_size").set_value(5).run()
    assert at.session_state["model_cfg"].code_size == 5


def test_table_overlay_and_metrics_of_several_runs(at):
    a = saved_run("linear", 4)
    b = saved_run("sigmoid", 6)
    open_page(at)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table["id"]) == {a, b}
    for col in ("id", "variant", "dataset", "K", "status", "test_sse", "pca_sse", "seconds"):
        assert col in table.columns
    assert sorted(at.multiselect(key="runs_selected").value) == sorted([a, b])
    loss = figure(at, "Training loss of the selected runs")
    assert len(loss["data"]) == 2
    assert loss["layout"]["xaxis"]["title"]["text"] == "epoch"
    metrics = figure(at, "Test reconstruction error per run")
    assert {t["name"] for t in metrics["data"]} == {"autoencoder (test_sse)", "PCA at the same K (pca_sse)"}
    at.multiselect(key="runs_selected").unselect(a).run()
    assert len(figure(at, "Training loss of the selected runs")["data"]) == 1
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["config.json", "model.safetensors", "test-set codes (.npy)"]


def test_load_into_pages_makes_the_run_current(at):
    run_id = saved_run("linear", 5)
    open_page(at)
    at.button(key="runs_load").click().run()
    assert not at.exception and not at.error
    assert at.session_state["loaded_run_id"] == run_id
    assert at.session_state["current_source"] == "run"
    assert any(run_id in s.value for s in at.success)
    at.switch_page("../pages/filters.py").run()
    assert at.selectbox(key="filters_source").value == "__current__"
    assert "K=5" in figure(at, "Autoencoder: rows of W")["layout"]["title"]["text"]


def test_corrupted_run_shows_a_clear_error_and_the_page_stays_usable(at):
    from aecore.runs import RunStore

    good = saved_run("linear", 3)
    bad = saved_run("linear", 4)
    (RunStore().path(bad) / "config.json").write_text("{not json")
    open_page(at)
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert bad in errors and "config.json" in errors
    # the good run is still compared, and can still be used
    assert len(figure(at, "Training loss of the selected runs")["data"]) == 1
    at.selectbox(key="runs_focus").set_value(good).run()
    at.button(key="runs_load").click().run()
    assert at.session_state["loaded_run_id"] == good


def test_codes_download_is_the_encoded_test_set():
    import io

    import numpy as np
    import torch

    from aecore.data import load
    from aecore.runs import RunStore
    from dashboard import state

    run = RunStore().load(saved_run("linear", 5))
    codes = np.load(io.BytesIO(state.codes_npy(run.model, "digits")))  # what the download button serves
    x_test = load("digits").x_test
    assert codes.shape == (len(x_test), 5) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, run.model.encode(torch.as_tensor(x_test)).detach().numpy(),
                               rtol=1e-6)
