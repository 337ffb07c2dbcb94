"""AppTest for the Recommend page: where to put MovieLens when it is missing; with the files,
train a small U-AutoRec, then a user's tables, the new-user fold-in, the item map, the scores."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit.testing.v1", reason="the page tests need Streamlit's AppTest (pip install -e '.[test]')")
from streamlit.testing.v1 import AppTest  # noqa: E402
from apptest import APP



def _open() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("../pages/recommend.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Recommend"
    return at


def _data_root() -> str:
    root = os.environ.get("AECORE_DATA", "").strip()
    if not root:
        pytest.skip("AECORE_DATA is not set: the Recommend page needs <root>/movielens-100k/ (CI sets it)")
    if not (Path(root) / "movielens-100k" / "u.data").is_file():
        pytest.skip(f"no MovieLens 100K files under {root}/movielens-100k")
    return root


def test_without_movielens_the_page_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "empty-root"))
    at = _open()
    text = " ".join(i.value for i in at.info)
    assert "MovieLens 100K is not on this machine" in text
    assert str(tmp_path / "empty-root" / "movielens-100k") in text and "ml-100k.zip" in text
    assert any(b.label.startswith("Download MovieLens 100K") for b in at.button)
    assert not any(b.label == "Train" for b in at.button)  # nothing to train on, nothing downloaded
    assert not (tmp_path / "aecore-cache" / "movielens-100k").exists()


def test_train_then_user_new_user_map_and_scores():
    _data_root()
    at = _open()
    assert any("press **Train**" in i.value for i in at.info)
    assert at.checkbox(key="rec_autorec-item_residual").value is True  # I-AutoRec's default
    at.selectbox(key="rec_model").set_value("autorec-user").run()
    assert at.checkbox(key="rec_autorec-user_residual").value is False  # U-AutoRec's default
    at.checkbox(key="rec_autorec-user_residual").check()
    at.number_input(key="rec_autorec-user_hidden").set_value(16)
    at.number_input(key="rec_autorec-user_epochs").set_value(3)
    at.checkbox(key="rec_baselines").uncheck()
    at.run()
    at.button(key="rec_train").click().run()
    assert not at.exception, at.exception
    assert at.success and "U-AutoRec" in at.success[0].value and "RMSE" in at.success[0].value
    assert dict(at.session_state["rec_trained"][2])["residual"] is True  # the switch reached the model

    # a user: training ratings, top-10, held-out ratings with predictions
    frames = at.dataframe
    assert len(frames) >= 3
    known, top, held = frames[0].value, frames[1].value, frames[2].value
    assert len(known) == 135 or len(known) > 0  # user 1 rated many movies in u1.base
    assert len(top) == 10 and "predicted rating" in top.columns
    assert top["predicted rating"].between(1, 5).all()
    assert not set(top["title"]) & set(known["title"])  # rated movies are never recommended
    assert {"rating", "predicted"} <= set(held.columns)

    # a new user: rate two movies, the reconstruction and the top-10 appear
    sliders = [s for s in at.slider if s.key.startswith("rec_new_")]
    assert len(sliders) == 12
    sliders[0].set_value(5)
    sliders[1].set_value(1)
    at.run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "How: " in captions and "network" in captions
    frames = at.dataframe
    rated = [f.value for f in frames if "reconstructed" in f.value.columns]
    assert rated and len(rated[0]) == 2 and rated[0]["reconstructed"].between(1, 5).all()

    # the item map (one trace per genre) and the scores chart
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    specs = list(charts.values())
    maps = [s for s in specs if "Item codes" in s["layout"]["title"]["text"]]
    assert maps and len(maps[0]["data"]) > 5
    assert any("Models and baselines" in s["layout"]["title"]["text"] for s in specs)


def test_train_with_baselines_fills_the_scores_table():
    _data_root()
    at = _open()
    at.selectbox(key="rec_model").set_value("mdacf").run()
    at.number_input(key="rec_mdacf_factors").set_value(5)
    at.number_input(key="rec_mdacf_iterations").set_value(2)
    at.run()
    at.button(key="rec_train").click().run()
    assert not at.exception, at.exception
    tables = [f.value for f in at.dataframe if "NDCG@10" in f.value.columns]
    assert tables
    models = list(tables[0]["model"])
    assert models[0] == "mDA-CF" and {"global mean", "popularity (most-rated movies)", "biased baseline",
                                      "biased MF"} <= set(models)
    t = tables[0].set_index("model")
    assert t["RMSE"].iloc[0] < t.loc["global mean", "RMSE"]
    # the global mean ranks nothing and popularity predicts no ratings: n/a, not numbers of no meaning
    assert np.isnan(t.loc["global mean", "Recall@10"]) and np.isnan(t.loc["popularity (most-rated movies)", "RMSE"])
    assert t.loc["popularity (most-rated movies)", "Recall@10"] > 0
