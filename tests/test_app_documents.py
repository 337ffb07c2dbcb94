"""AppTest of the Documents page: the data-root hint, and a small run on a tiny corpus shows its figures."""
from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from streamlit.testing.v1 import AppTest
from apptest import APP, titles

PAGE = "../pages/documents.py"

SPACE = ["the rocket reached orbit after launch", "nasa shuttle launch to the moon", "orbit of the moon and planets",
         "astronauts on the shuttle in orbit", "the rocket engine for launch", "moon landing by nasa astronauts"]
CARS = ["the car engine needs oil", "driving the car on the road", "a fast car with a big engine",
        "wheels and tires of the car", "the road trip by car", "car dealer sold the sedan"]


@pytest.fixture
def at(tmp_path, monkeypatch):
    monkeypatch.setenv("AECORE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "data"))  # an empty data root: no 20 Newsgroups
    return AppTest.from_file(APP, default_timeout=60)


def open_page(at) -> AppTest:
    at.run()
    return at.switch_page(PAGE).run()


def test_without_20newsgroups_the_page_says_where_to_put_it(at, tmp_path):
    open_page(at)
    assert not at.exception and not at.error
    assert at.title[0].value == "Documents"
    hint = " ".join(i.value for i in at.info)
    assert "20news-bydate-train" in hint and str(tmp_path / "data" / "20newsgroups") in hint
    assert at.button(key="doc_train").disabled
    assert not at.get("plotly_chart")


def zipped_corpus() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for group, texts in (("space", SPACE), ("cars", CARS)):
            for i, t in enumerate(texts):
                z.writestr(f"mydocs/{group}/{i}.txt", t)
    return buf.getvalue()


def test_the_upload_choice_offers_no_server_path_and_trains_only_with_an_upload(at):
    open_page(at)
    at.radio(key="doc_source").set_value("Upload a CSV or a zip of text folders").run()
    assert not at.exception and len(at.get("file_uploader")) == 1
    assert "doc_path" not in [w.key for w in at.text_input]  # no box for a server folder any more
    assert at.button(key="doc_train").disabled  # nothing uploaded yet


def test_a_small_run_shows_curves_map_neighbours_and_unit_words(at, tmp_path):
    from dashboard import uploads

    open_page(at)
    at.radio(key="doc_source").set_value("Upload a CSV or a zip of text folders").run()
    # AppTest cannot drive st.file_uploader: store the upload as the page's callback does
    key = uploads.new_session_key()
    at.session_state["doc_upload_session"] = key
    at.session_state["doc_upload_file"] = uploads.save_upload(zipped_corpus(), "my docs.zip", key,
                                                              allowed=(".csv", ".zip"))
    at.run()
    at.number_input(key="doc_k").set_value(2)
    at.number_input(key="doc_epochs").set_value(5)
    at.text_input(key="doc_hidden").input("8").run()
    assert not at.button(key="doc_train").disabled
    at.button(key="doc_train").click().run()
    deadline = time.time() + 60
    while time.time() < deadline and not at.session_state["documents_task"].done:
        time.sleep(0.2)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    names = titles(at)
    assert any("precision vs recall at K = 2" in t for t in names), names
    assert any("test documents by their autoencoder codes" in t for t in names), names
    assert any("Code unit 0" in t for t in names), names
    pr = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {d["name"] for d in pr["data"]} == {"deep autoencoder", "LSA (truncated SVD of tf-idf)"}
    # neighbours of the picked test document: one table per method
    assert len(at.dataframe) >= 2
    # a typed query is encoded too
    at.radio(key="doc_query_mode").set_value("Type a query").run()
    at.text_area(key="doc_text").input("rocket launch to orbit").run()
    assert not at.exception and len(at.dataframe) >= 2
