"""AppTest for the Compare with PCA page: the linear AE trains live and its subspace reaches PCA's,
the components recovered from its weights match PCA's, the K sweep and the nonlinear variants add
their points."""
from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

pytest.importorskip("streamlit.testing.v1", reason="the page tests need Streamlit's AppTest (pip install -e '.[test]')")
from streamlit.testing.v1 import AppTest  # noqa: E402
from apptest import APP


def _values(v) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array form {"dtype", "bdata" (base64)}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=float)


def _chart(at: AppTest, title_start: str) -> dict:
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        if spec["layout"]["title"]["text"].startswith(title_start):
            return spec
    raise AssertionError(f"no chart titled {title_start!r}; have "
                         f"{[json.loads(c.proto.spec)['layout']['title']['text'] for c in at.get('plotly_chart')]}")


def _table(at: AppTest, column: str):
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a column {column!r}")


def _open(code_size: int) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.number_input(key="sb_code_size").set_value(code_size)
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare with PCA"
    return at


def _click(at: AppTest, key: str) -> None:
    at.button(key=key).click().run()
    assert not at.exception, at.exception


def _wait(at: AppTest, timeout: float = 60) -> None:
    """AppTest does not fire run_every fragments on a timer: rerun until no job trains."""
    deadline = time.monotonic() + timeout
    while any(not j.done for j in at.session_state["cmp_jobs"].values()):
        assert time.monotonic() < deadline, "comparison jobs still training"
        time.sleep(0.5)  # fewer reruns: the job thread needs the GIL more than the test
        at.run()
        assert not at.exception, at.exception
    at.run()
    assert not at.exception, at.exception
    failed = {key: j.error for key, j in at.session_state["cmp_jobs"].items() if j.status != "finished"}
    assert not failed, failed


def test_page_renders_before_any_job():
    at = _open(code_size=4)
    assert any("Press the button" in i.value for i in at.info)
    spec = _chart(at, "Reconstruction error against code size K")
    names = [t["name"] for t in spec["data"]]
    assert names == ["PCA, test set", "PCA, training set (sum of discarded eigenvalues)"]
    test_curve = _values(spec["data"][0]["y"])
    assert len(test_curve) == 64 and np.all(np.diff(test_curve) <= 1e-9)  # K = 1..D, falling
    assert spec["layout"]["yaxis"]["title"]["text"].startswith("squared error per image")


def test_linear_ae_reaches_pca(monkeypatch):
    at = _open(code_size=4)
    at.radio(key="cmp_variant").set_value("tied")
    at.number_input(key="cmp_epochs").set_value(100).run()
    _click(at, "cmp_train_live")
    _wait(at)

    # (1) principal angles fall: the last snapshot's largest angle is under 10 degrees
    spec = _chart(at, "Principal angles")
    assert len(spec["data"]) == 4  # one line per angle
    assert spec["layout"]["yaxis"]["range"] == [0, 90]
    first = max(_values(t["y"])[0] for t in spec["data"])
    last = max(_values(t["y"])[-1] for t in spec["data"])
    assert last < 10 < first

    # (3) components recovered from the decoder by SVD match PCA's, |cos| > 0.95 each
    table = _table(at, "|cos| recovered vs PCA")
    assert list(table["component"]) == [1, 2, 3, 4]
    assert (table["|cos| recovered vs PCA"] > 0.95).all(), table
    _chart(at, "tied AE (K = 4) vs PCA")

    # (2) the K sweep puts the AE's test error on PCA's test curve
    _click(at, "cmp_sweep")
    _wait(at)
    spec = _chart(at, "Reconstruction error against code size K")
    pca_test = _values(spec["data"][0]["y"])  # K = 1..64
    ae = next(t for t in spec["data"] if t["name"] == "tied AE, test set")
    ks, errs = _values(ae["x"]).astype(int), _values(ae["y"])
    assert list(ks) == [2, 4, 8, 16, 32]
    # on PCA's test curve (within 5%; on held-out images a linear code can land a hair below PCA)
    np.testing.assert_allclose(errs, pca_test[ks - 1], rtol=0.05)

    # (4) nonlinear variants at the same K, against PCA's line (30 epochs: enough for deep to win)
    at.number_input(key="cmp_epochs").set_value(30).run()
    _click(at, "cmp_nonlinear")
    _wait(at)
    spec = _chart(at, "Test reconstruction error at K = 4")
    assert list(spec["data"][0]["x"]) == ["tied", "sigmoid", "relu", "deep"]
    sse = dict(zip(spec["data"][0]["x"], _values(spec["data"][0]["y"])))
    assert np.all(np.isfinite(list(sse.values())))
    assert sse["deep"] < sse["tied"]  # a deep nonlinear code beats the best linear one
    table = _table(at, "vs PCA")
    assert list(table["status"]) == ["finished"] * 4
