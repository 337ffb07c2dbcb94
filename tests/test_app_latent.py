"""AppTest for the Latent space page: renders without a model, trains a quick one, then shows
two maps (codes | raw pixels) with one trace per label and a 5-NN accuracy in each title."""
from __future__ import annotations

import base64
import re
import time

import numpy as np
import pytest

from aecore import embedding

pytest.importorskip("streamlit.testing.v1", reason="the page tests need Streamlit's AppTest (pip install -e '.[test]')")
from streamlit.testing.v1 import AppTest  # noqa: E402
from apptest import APP

ACC = re.compile(r"5-NN accuracy (\d\.\d+)")


@pytest.fixture(autouse=True)
def _no_umap_warmup(monkeypatch):
    # the page compiles UMAP in a background thread on its first visit (10-20 s of CPU);
    # these tests look at the PCA maps, so keep that CPU for training
    monkeypatch.setattr(embedding, "start_umap_warmup", lambda: None)


def _open(code_size: int | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if code_size is not None:
        at.sidebar.number_input(key="sb_code_size").set_value(code_size)
        at.run()
    at.switch_page("../pages/latent.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Latent space"
    return at


def _train_quick_model(at: AppTest, timeout: float = 60) -> None:
    buttons = [b for b in at.button if b.label == "Train a quick model"]
    assert buttons, "the page offers to train a quick model when there is none"
    buttons[0].click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + timeout
    while True:  # AppTest does not fire run_every fragments: rerun until the job is done
        job = at.session_state["job"]
        if job.done:
            break
        assert time.monotonic() < deadline, f"job still {job.status} after {timeout} s"
        time.sleep(0.5)  # fewer reruns: the job thread needs the GIL more than the test
        at.run()
        assert not at.exception, at.exception  # the live view (map of the latest snapshot) draws
    assert job.status == "finished", job.error
    at.run()
    assert not at.exception, at.exception


def _values(v) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array form {"dtype", "bdata" (base64)}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def _title(chart) -> str:
    import json

    spec = json.loads(chart.proto.spec)
    return spec["layout"]["title"]["text"], spec


def test_without_a_model_offers_a_quick_one():
    at = _open()
    assert any("No trained model yet" in i.value for i in at.info)
    assert any(b.label == "Train a quick model" for b in at.button)
    assert not at.get("plotly_chart")


def test_maps_of_a_trained_model(monkeypatch):
    at = _open()
    _train_quick_model(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # codes map, raw map, image pair, code bars
    codes_title, codes_spec = _title(charts[0])
    raw_title, raw_spec = _title(charts[1])
    assert codes_title.startswith("Codes (K = 16): PCA")
    assert raw_title.startswith("Raw pixels (D = 64): PCA")
    for spec in (codes_spec, raw_spec):
        traces = spec["data"]
        assert len(traces) == 10  # one trace per digit label
        assert [t["name"] for t in traces] == [str(d) for d in range(10)]
        assert sum(len(_values(t["x"])) for t in traces) == 360  # every test example of digits
    acc_codes = float(ACC.search(codes_title).group(1))
    acc_raw = float(ACC.search(raw_title).group(1))
    assert acc_raw > 0.5  # PCA of raw digits pixels
    assert 0 < acc_codes <= 1
    # the two maps compared on the same examples, with the accuracies the titles give
    (verdict,) = [m.value for m in at.markdown if m.value.startswith("On these 2-D maps")]
    assert re.search(r"\*\*(better than|worse than|about as well as)\*\*", verdict), verdict
    assert f"accuracy {acc_codes:.2f} vs {acc_raw:.2f} on 360 examples" in verdict and "(sign test, p = " in verdict

    # picking an example (a click sets the same number) shows its pair and its code
    at.number_input(key="latent_example").set_value(7).run()
    assert not at.exception, at.exception
    titles = [_title(c)[0] for c in at.get("plotly_chart")]
    assert any(t.startswith("Example #7") and "input | reconstruction" in t for t in titles)
    bars = [s for c in at.get("plotly_chart") for t, s in [_title(c)] if t.startswith("Code of example #7")]
    assert bars and len(_values(bars[0]["data"][0]["y"])) == 16  # one bar per code unit

    # asking for UMAP before it is warm: PCA stays, with a note
    monkeypatch.setattr(embedding, "umap_ready", lambda: False)
    at.radio(key="latent_method").set_value("umap").run()
    assert not at.exception, at.exception
    assert any("UMAP is warming up" in i.value for i in at.info)
    assert _title(at.get("plotly_chart")[0])[0].startswith("Codes (K = 16): PCA")


def test_k2_code_is_its_own_map():
    at = _open(code_size=2)
    _train_quick_model(at)
    title, spec = _title(at.get("plotly_chart")[0])
    assert title.startswith("Codes (K = 2): the code itself")
    assert len(spec["data"]) == 10
    assert spec["layout"]["xaxis"]["title"]["text"] == "code unit h₁"
