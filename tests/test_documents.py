"""aecore.documents: loaders, bag of words, the retrieval metric (hand-checked), the CLI, 20 Newsgroups."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from aecore.cli import main
from aecore.data import DataError
from aecore.documents import (BagOfWords, DocTrainConfig, load_20newsgroups, load_corpus, load_text_csv,
                              load_text_dir, nearest, newsgroups_dir, precision_at_recall, run_documents,
                              unit_top_words)

SPACE = ["the rocket reached orbit after launch", "nasa shuttle launch to the moon", "orbit of the moon and planets",
         "astronauts on the shuttle in orbit", "the rocket engine for launch", "moon landing by nasa astronauts"]
CARS = ["the car engine needs oil", "driving the car on the road", "a fast car with a big engine",
        "wheels and tires of the car", "the road trip by car", "car dealer sold the sedan"]


def write_tree(root: Path) -> Path:
    for group, texts in (("space", SPACE), ("cars", CARS)):
        (root / group).mkdir(parents=True)
        for i, t in enumerate(texts):
            (root / group / f"{i + 1}").write_text(t)
    return root


# --- loaders -----------------------------------------------------------------------------------
def test_text_folder_is_split_per_label_with_a_seed(tmp_path):
    c = load_text_dir(write_tree(tmp_path / "docs"), test_size=0.34, seed=1)
    assert c.label_names == ("cars", "space")
    assert c.n_train + c.n_test == 12
    assert c.n_test == 4 and sorted(np.bincount(c.y_test)) == [2, 2]  # 2 of 6 per label held out
    for t, y in zip(c.texts_train + c.texts_test, np.concatenate([c.y_train, c.y_test])):
        assert t in (CARS if y == 0 else SPACE)
    again = load_text_dir(tmp_path / "docs", test_size=0.34, seed=1)
    assert again.texts_test == c.texts_test
    assert load_text_dir(tmp_path / "docs", test_size=0.34, seed=2).texts_test != c.texts_test


def test_latin1_files_are_read(tmp_path):
    root = write_tree(tmp_path / "docs")
    (root / "cars" / "99").write_bytes("caf\xe9 cr\xe8me car".encode("latin-1"))  # not valid UTF-8
    c = load_text_dir(root, test_size=0.3)
    assert any("café crème" in t for t in c.texts_train + c.texts_test)


def test_csv_with_header_in_any_column_order_and_without_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("label,text\n" + "".join(f'space,"{t}"\n' for t in SPACE) + "".join(f"cars,{t}\n" for t in CARS))
    c = load_text_csv(p, test_size=0.5)
    assert c.label_names == ("cars", "space") and c.n_train == 6 and c.n_test == 6
    assert set(c.texts_train + c.texts_test) == set(SPACE + CARS)
    q = tmp_path / "noheader.csv"
    q.write_text("".join(f"{t},space\n" for t in SPACE) + "".join(f"{t},cars\n" for t in CARS))
    assert set(load_corpus(csv_path=q).texts_train) <= set(SPACE + CARS)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly one column\n")
    with pytest.raises(DataError, match=r"row 2 has 1 column"):
        load_text_csv(bad)


def test_20newsgroups_tree_under_the_data_root(tmp_path, monkeypatch):
    base = tmp_path / "root" / "20newsgroups"
    for split, n in (("20news-bydate-train", 3), ("20news-bydate-test", 2)):
        for g in ("alt.atheism", "sci.space"):
            (base / split / g).mkdir(parents=True)
            for i in range(n):
                (base / split / g / str(100 + i)).write_bytes(f"Subject: {g} {i}\n\nbody \xe9".encode("latin-1"))
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "root"))
    assert newsgroups_dir() == base
    c = load_20newsgroups()
    assert (c.n_train, c.n_test) == (6, 4) and c.label_names == ("alt.atheism", "sci.space")
    assert c.texts_train[0].endswith("body é")  # read as latin-1


def test_missing_20newsgroups_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"20news-bydate-train.*empty/20newsgroups"):
        load_20newsgroups(download=False)


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_text_dir(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no sub-folders"):
        load_text_dir(tmp_path / "flat")
    with pytest.raises(DataError, match="exactly one"):
        load_corpus()


# --- bag of words --------------------------------------------------------------------------------
def test_vocabulary_counts_scaling_and_targets():
    texts = ["car car car engine road", "car engine road", "moon car the and the the"]
    assert BagOfWords(max_features=10).fit(texts).vocabulary_ == ("car", "engine", "moon", "road")  # no stop words
    bow = BagOfWords(max_features=3).fit(texts)  # counts: car 5, engine 2, road 2, moon 1
    vocab = bow.vocabulary_
    assert vocab == ("car", "engine", "road")
    counts = bow.counts(["car car car engine the", "nothing known here"]).toarray()
    car, engine = vocab.index("car"), vocab.index("engine")
    assert counts[0, car] == 3 and counts[0, engine] == 1 and counts[1].sum() == 0
    x = BagOfWords.inputs(counts)
    assert x.dtype == np.float32 and np.all((x >= 0) & (x <= 1))
    assert np.linalg.norm(x[0]) == pytest.approx(1.0)
    assert x[0, car] / x[0, engine] == pytest.approx(math.log(4) / math.log(2))  # log(1 + c)
    assert np.all(x[1] == 0)  # an empty document stays zero
    p = BagOfWords.targets(counts)
    assert p[0].sum() == pytest.approx(1.0) and p[0, car] == pytest.approx(0.75) and np.all(p[1] == 0)


def test_max_features_keeps_the_most_frequent_words():
    texts = ["alpha alpha alpha beta beta gamma"] * 3
    assert set(BagOfWords(max_features=2).fit(texts).vocabulary_) == {"alpha", "beta"}


# --- the retrieval metric, by hand --------------------------------------------------------------------
def test_precision_at_recall_against_a_database_by_hand():
    # query (1, 0), class 0. Cosines: a .995 (class 0), e .958 (1), b .874 (1), c .447 (0), d 0 (1)
    # ranking a e b c d; R = 2 relevant. recall 0.5 -> 1st relevant at rank 1: 1/1;
    # recall 1.0 -> 2nd relevant at rank 4: 2/4; recall 0.1 -> ceil(0.2) = 1 relevant: 1/1.
    db = np.array([[1, 0.1], [0.9, 0.5], [0.5, 1], [0, 1], [1, -0.3]])
    db_y = np.array([0, 1, 0, 1, 1])
    p = precision_at_recall(np.array([[1.0, 0.0]]), np.array([0]), levels=(0.1, 0.5, 1.0), db_codes=db, db_labels=db_y)
    assert p == pytest.approx({0.1: 1.0, 0.5: 1.0, 1.0: 0.5})


def test_precision_at_recall_leave_one_out_by_hand():
    # four unit vectors at 0, 10, 90, 100 degrees, classes 0 1 0 1; each query has R = 1 other
    # document of its class. Rankings (others by cosine): q0: 10,90*,100 -> 1/2; q10: 0,90,100* -> 1/3;
    # q90: 100,10,0* -> 1/3; q100: 90,10*,0 -> 1/2. Mean 5/12 at every recall level.
    ang = np.radians([0, 10, 90, 100])
    codes = np.c_[np.cos(ang), np.sin(ang)] * np.array([[1], [2], [3], [0.5]])  # lengths do not matter
    p = precision_at_recall(codes, np.array([0, 1, 0, 1]), levels=(0.01, 0.5, 1.0))
    assert p == pytest.approx({0.01: 5 / 12, 0.5: 5 / 12, 1.0: 5 / 12})


def test_perfect_and_chance_codes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    perfect = np.eye(4)[y] + 0.01 * rng.normal(size=(200, 4))
    assert precision_at_recall(perfect, y, levels=(0.1, 1.0))[1.0] == pytest.approx(1.0)
    noise = rng.normal(size=(200, 4))
    assert abs(precision_at_recall(noise, y, levels=(1.0,))[1.0] - 0.25) < 0.05  # chance = class share
    with pytest.raises(ValueError, match="recall levels"):
        precision_at_recall(perfect, y, levels=(0.0,))


def test_nearest_excludes_the_query_itself():
    codes = np.array([[1.0, 0], [0.9, 0.1], [0, 1]])
    idx, sims = nearest(codes[[0]], codes, k=2, exclude=np.array([0]))
    assert idx.tolist() == [[1, 2]] and sims[0, 0] > sims[0, 1]


def test_unit_top_words_follow_the_correlation():
    x = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.float32)
    h = x[:, [0]] - x[:, [1]]  # one unit: high with word a, low with word b
    (entry,) = unit_top_words(h, x, ["a", "b", "c"], n=1)
    assert entry["positive"][0][0] == "a" and entry["negative"][0][0] == "b"
    assert entry["positive"][0][1] == pytest.approx(1.0)


# --- the whole pipeline and the CLI ----------------------------------------------------------------
def test_run_documents_on_a_tiny_corpus(tmp_path):
    corpus = load_text_dir(write_tree(tmp_path / "docs"), test_size=0.34)
    res = run_documents(corpus, DocTrainConfig(code_size=2, hidden=(16,), epochs=40, lr=1e-2, device="cpu"))
    assert set(res.precision) == {"ae", "lsa"}
    for m in ("ae", "lsa"):
        assert res.codes_test[m].shape == (corpus.n_test, 2)
        assert all(0 <= v <= 1 for v in res.precision[m].values())
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    s = res.summary()
    assert set(s) == {"ae", "lsa", "code_size", "seconds"} and set(s["ae"]) == {"0.01", "0.1", "0.5"}
    assert res.encode_text(["rocket launch orbit"]).shape == (1, 2)


def test_documents_cli_prints_the_contract_line(tmp_path, capsys):
    root = write_tree(tmp_path / "docs")
    code = main(["documents", "--text-dir", str(root), "--code-size", "2", "--hidden", "8", "--epochs", "3",
                 "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    last = lines[-1]
    assert set(last) == {"ae", "lsa", "code_size", "seconds"}
    assert set(last["ae"]) == set(last["lsa"]) == {"0.01", "0.1", "0.5"}
    assert last["code_size"] == 2 and last["seconds"] > 0
    assert [ln for ln in lines if ln.get("event") == "epoch"][-1]["epoch"] == 3


def test_documents_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AECORE_DATA", str(tmp_path))
    assert main(["documents", "--dataset", "20newsgroups", "--no-download", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "20newsgroups" in err and "20news-bydate-train" in err
    assert main(["documents", "--text-dir", str(tmp_path), "--code-size", "0"]) == 2
    assert "code_size=0" in capsys.readouterr().err


# --- the real 20 Newsgroups (CI: AECORE_DATA points at ../shared/data) -----------------------------
def _real_root() -> Path | None:
    root = os.environ.get("AECORE_DATA", "").strip()
    if root and (Path(root) / "20newsgroups" / "20news-bydate-train").is_dir():
        return Path(root)
    return None


@pytest.mark.skipif(_real_root() is None, reason="20 Newsgroups not found: set AECORE_DATA to a data root with "
                                                  "20newsgroups/20news-bydate-{train,test}/ (CI uses ../shared/data)")
def test_real_20newsgroups_loads_and_retrieves_above_chance():
    corpus = load_20newsgroups(_real_root())
    assert (corpus.n_train, corpus.n_test) == (11314, 7532) and len(corpus.label_names) == 20
    assert corpus.label_names[0] == "alt.atheism"
    small = corpus.subset(n_train=1500, n_test=600, seed=0)
    res = run_documents(small, DocTrainConfig(code_size=10, hidden=(64,), epochs=3, device="cpu"))
    assert len(res.vocabulary) == 2000
    # 20 balanced groups: chance precision is ~0.05; both codes must do far better at recall 0.1
    assert res.precision["lsa"][0.1] > 0.12 and res.precision["ae"][0.1] > 0.1


# --- a zip of label folders (the Documents page's upload) -------------------------------------------
def _zip(tmp_path, entries: dict, name="docs.zip", method=None) -> "Path":
    import zipfile

    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=method or zipfile.ZIP_DEFLATED) as z:
        for n, text in entries.items():
            z.writestr(n, text)
    return path


def test_a_zip_of_label_folders_is_read_without_extracting(tmp_path):
    from aecore.documents import load_corpus, load_text_zip

    texts = {f"{g}/{i}.txt": f"{g} words number {i}" for g in ("alpha", "beta") for i in range(6)}
    flat = load_text_zip(_zip(tmp_path, texts), seed=0)
    wrapped = load_corpus(text_dir=_zip(tmp_path, {f"top/{k}": v for k, v in texts.items()} | {"top/README": "x"},
                                        name="w.zip"))
    for c in (flat, wrapped):
        assert c.label_names == ("alpha", "beta") and c.n_train + c.n_test == 12
        for t, y in zip(c.texts_train + c.texts_test, list(c.y_train) + list(c.y_test)):
            assert t.startswith(c.label_names[y])  # each text carries the label of its folder
    assert sorted(tmp_path.iterdir()) == [tmp_path / "docs.zip", tmp_path / "w.zip"]  # nothing was extracted


@pytest.mark.parametrize("entries, words", [
    ({"../evil/a.txt": "x", "ok/b.txt": "y"}, "'..' path"),
    ({"/abs/a.txt": "x", "ok/b.txt": "y"}, "absolute"),
    ({"loose.txt": "x"}, "no text files in label folders"),
    ({"a/1.txt": "only one label", "a/2.txt": "still one"}, "at least 2 labels"),
])
def test_bad_document_zips_are_refused_by_name(tmp_path, entries, words):
    from aecore.data import DataError
    from aecore.documents import load_text_zip

    with pytest.raises(DataError, match="zip file") as e:
        load_text_zip(_zip(tmp_path, entries))
    assert words in str(e.value)


def test_a_document_zip_bomb_and_a_non_zip_are_refused(tmp_path):
    from aecore.data import DataError
    from aecore.documents import load_text_zip

    bomb = _zip(tmp_path, {"a/1.txt": "0" * (9 << 20), "b/1.txt": "y"})  # 9 MB of zeros packs to ~9 kB
    with pytest.raises(DataError, match="zip bomb"):
        load_text_zip(bomb)
    with pytest.raises(DataError, match="over the limit"):
        load_text_zip(_zip(tmp_path, {"a/1.txt": "x" * 2000, "b/1.txt": "y" * 2000}, name="big.zip"), max_bytes=1000)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot be opened as a zip"):
        load_text_zip(junk)


def test_ctrl_c_stops_documents_training_and_still_compares_with_lsa(tmp_path):
    from interrupt import interrupt

    root = write_tree(tmp_path / "docs")
    code, lines, err = interrupt(["documents", "--text-dir", str(root), "--code-size", "2", "--hidden", "8",
                                  "--epochs", "100000", "--device", "cpu", "--json"],
                                 ready=lambda line: line.get("event") == "epoch")
    assert code == 130, err
    assert "aecore documents: SIGINT: stopping training" in err and "Traceback" not in err
    last = lines[-1]
    assert last["stopped"] is True and 1 <= last["epochs"] < 100000
    assert set(last["ae"]) == set(last["lsa"]) == {"0.01", "0.1", "0.5"}
    assert all(0 <= v <= 1 for v in last["ae"].values())
    epochs = [x for x in lines if x.get("event") == "epoch"]
    assert epochs[-1]["epoch"] == last["epochs"] and all(math.isfinite(x["loss"]) for x in epochs)


def test_a_stopped_epoch_reports_the_mean_loss_of_the_documents_it_saw():
    """Stopped after one batch of 2: the epoch's loss is that batch's mean, not half of it."""
    import threading

    import torch

    from aecore.documents import train_document_ae

    rng = np.random.default_rng(0)
    x = rng.random((8, 6)).astype(np.float32)
    p = x / x.sum(1, keepdims=True)
    stop = threading.Event()
    stop.set()
    torch.manual_seed(0)
    _, history = train_document_ae(x, p, DocTrainConfig(code_size=2, hidden=(4,), epochs=5, batch_size=2,
                                                        device="cpu"), stop=stop)
    assert len(history) == 1
    assert history[0]["loss"] > 0.8 * np.log(6)  # ≈ the cross-entropy of a near-uniform prediction, ~log 6 nats
