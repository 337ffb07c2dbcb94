"""Documents: a deep autoencoder vs LSA on bags of words, judged by retrieval.

The page turns widgets into an ``aecore.documents`` run in a background thread, then shows
what aecore computed: the precision-recall curves, a 2-D map of the test documents, the
nearest documents of a chosen document or a typed query, and the words each code unit
responds to.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from aecore.documents import (DocTrainConfig, doc_title, load_corpus, nearest, newsgroups_dir, newsgroups_hint,
                              run_documents, unit_top_words)
from aecore.embedding import embed_2d, sample_indices, umap_ready, start_umap_warmup, METHOD_LABELS
from aecore.data import DataError
from dashboard import uploads
from dashboard.feature_tasks import start_task
from dashboard.figures_features import document_map, precision_recall, unit_words

KEY = "documents_task"
MAX_MAP_POINTS = 3000
SOURCES = ("20 Newsgroups", "Upload a CSV or a zip of text folders")

st.title("Documents")
st.markdown(
    "Each document becomes the counts of the 2,000 most frequent words (English stop words removed). "
    "A deep autoencoder (words → 500 → 250 → 125 → **K** by default) learns a K-number code per document; "
    "LSA (a truncated SVD of the tf-idf matrix) gives another at the same K. Every test document then "
    "asks for its most similar test documents by the cosine of their codes: the better code retrieves "
    "more documents from the query's own group (Hinton & Salakhutdinov, *Science* 2006, Fig. 4).")

UPLOAD_KEY, UPLOAD_MSG, UPLOAD_SESSION = "doc_upload_file", "doc_upload_msg", "doc_upload_session"


def _on_doc_upload() -> None:
    """Store the uploaded documents and read them once; a problem becomes one message naming the file."""
    import logging

    ss = st.session_state
    f = ss.get("doc_upload")
    if f is None:
        return
    session_key = ss.setdefault(UPLOAD_SESSION, uploads.new_session_key())
    try:
        up = uploads.save_upload(f, f.name, session_key, allowed=(".csv", ".zip"))
        try:
            corpus = load_corpus(text_dir=up.path)
        except DataError as exc:
            # name the file as the user called it, never the server path
            raise DataError(str(exc).replace(str(up.path), up.display).replace(up.path.stem, up.display)) from None
    except DataError as exc:
        ss.pop(UPLOAD_KEY, None)
        ss[UPLOAD_MSG] = ("error", f"Could not use the upload: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - a reader bug must not show a traceback; it is logged
        logging.getLogger(__name__).exception("documents upload %r failed", getattr(f, "name", "?"))
        ss.pop(UPLOAD_KEY, None)
        ss[UPLOAD_MSG] = ("error", f"Could not use the upload '{uploads.display_name(f.name)}': "
                                   f"{type(exc).__name__} while reading it")
        return
    ss[UPLOAD_KEY] = up
    ss[UPLOAD_MSG] = ("ok", f"{up.display}: {corpus.n_train + corpus.n_test} documents in "
                            f"{len(corpus.label_names)} labels ({', '.join(corpus.label_names[:8])}"
                            f"{', ...' if len(corpus.label_names) > 8 else ''})")


# --- settings -----------------------------------------------------------------------------------
source = st.radio("Documents", SOURCES, horizontal=True, key="doc_source")
can_run = True
path = None
if source == SOURCES[0]:
    found = newsgroups_dir()
    if found is None:
        can_run = False
        st.info("**20 Newsgroups is not under the data root.** " + newsgroups_hint()
                + " Or choose *a folder of text files* above.")
    else:
        st.caption(f"20 Newsgroups (bydate): {found}")
else:
    # the browser names no server path: the documents come as an upload, stored under a
    # server-chosen name in this session's upload folder
    st.file_uploader("A CSV of (text, label) rows, or a zip with one folder of text files per label",
                     type=["csv", "zip"], key="doc_upload", on_change=_on_doc_upload,
                     help=f"Up to {uploads.max_upload_bytes() >> 20} MB. The CSV may have a header naming its "
                          "text and label columns; 30 % of each label is held out for testing.")
    kind, msg = st.session_state.get(UPLOAD_MSG, (None, None))
    if kind == "error":
        st.error(msg)
    elif kind == "ok":
        st.caption(msg)
    up = st.session_state.get(UPLOAD_KEY)
    path = str(up.path) if up is not None and up.path.is_file() else None
    can_run = path is not None

c1, c2, c3, c4 = st.columns(4)
code_size = c1.number_input("Code size K", min_value=1, max_value=200, value=10, step=1, key="doc_k")
epochs = c2.number_input("Epochs", min_value=1, max_value=500, value=10, step=1, key="doc_epochs",
                         help="About 5-15 s per epoch on 20 Newsgroups on a CPU.")
hidden_text = c3.text_input("Hidden layers", value="500,250,125", key="doc_hidden",
                            help="Encoder layers between the words and the code; the decoder mirrors them.")
n_train = c4.number_input("Training documents (0 = all)", min_value=0, value=0, step=500, key="doc_ntrain",
                          help="A seeded subset trains faster.")

try:
    hidden = tuple(int(h) for h in hidden_text.replace(" ", "").split(",") if h)
    cfg = DocTrainConfig(code_size=int(code_size), hidden=hidden, epochs=int(epochs))
except ValueError as exc:  # ConfigError is a ValueError
    st.error(f"Settings: {exc}")
    cfg = None

task = st.session_state.get(KEY)
running = task is not None and not task.done
b1, b2, _ = st.columns([2, 1, 5])
if b1.button("Train autoencoder and LSA", type="primary", disabled=not can_run or cfg is None or running,
             key="doc_train"):
    params = {"source": source, "path": path, "n_train": int(n_train) or None, "cfg": cfg}

    def work(rec):
        rec.on_stage("reading the documents")
        corpus = load_corpus(dataset="20newsgroups") if params["path"] is None else load_corpus(text_dir=params["path"])
        if params["n_train"]:
            corpus = corpus.subset(n_train=params["n_train"], seed=params["cfg"].seed)
        return run_documents(corpus, params["cfg"], on_epoch=rec.on_row, on_stage=rec.on_stage, stop=rec.stop_event)

    def after(rec, res):
        return {"unit_words": unit_top_words(res.codes_train["ae"], res.x_train, res.vocabulary, n=8),
                "titles": [f"{res.corpus.label_names[y]} | {doc_title(t)}"
                           for t, y in zip(res.corpus.texts_test, res.corpus.y_test)]}

    task = st.session_state[KEY] = start_task("documents", params, work, after, slots=1)  # trains here
    running = True
if running and b2.button("Stop", key="doc_stop"):
    task.stop()


@st.fragment(run_every=1.0)
def progress_panel():
    t = st.session_state.get(KEY)
    if t is None:
        return
    if not t.done:
        epochs_done = t.rows[-1]["epoch"] if t.rows else 0
        total = t.params["cfg"].epochs
        st.progress(min(epochs_done / total, 1.0),
                    text=f"{t.stage} — epoch {epochs_done}/{total}"
                         + (f", loss {t.rows[-1]['loss']:.4f} nats per word" if t.rows else "")
                         + f" ({t.elapsed:.0f} s)")
    elif st.session_state.get("_doc_shown") is not t:
        st.session_state["_doc_shown"] = t
        st.rerun(scope="app")  # the task just ended: redraw the whole page with its results


if running:
    progress_panel()

# --- results ------------------------------------------------------------------------------------
task = st.session_state.get(KEY)
if task is None or not task.done:
    if task is None:
        st.caption("Press the button to train; the page shows the results when training ends.")
    st.stop()
if task.status == "failed":
    st.error(f"The run failed: {task.error}")
    st.stop()
res = task.result
st.session_state["_doc_shown"] = task
if res is None:  # stopped while it waited for a training slot
    st.info("Stopped before training started.")
    st.stop()
corpus = res.corpus
if task.status == "stopped":
    st.warning("Training was stopped early; these are the results of the partly trained autoencoder.")
m1, m2, m3 = st.columns(3)
m1.metric("Autoencoder: precision at recall 0.1", f"{res.precision['ae'][0.1]:.3f}",
          delta=f"{res.precision['ae'][0.1] - res.precision['lsa'][0.1]:+.3f} vs LSA")
m2.metric("LSA: precision at recall 0.1", f"{res.precision['lsa'][0.1]:.3f}")
m3.metric("Train / test documents", f"{corpus.n_train} / {corpus.n_test}")
m3.caption(f"{len(corpus.label_names)} groups, {len(res.vocabulary)} words; {res.seconds:.0f} s")
st.plotly_chart(precision_recall(res.precision, res.config.code_size), key="doc_pr")

tab_map, tab_near, tab_words = st.tabs(["Map of the test documents", "Nearest documents", "What the units respond to"])
titles = task.extra["titles"]

with tab_near:
    mode = st.radio("Query", ("Pick a test document", "Type a query"), horizontal=True, key="doc_query_mode")
    if mode == "Pick a test document":
        qi = st.selectbox("Test document", range(corpus.n_test), format_func=lambda i: titles[i], key="doc_pick")
        q_codes = {m: res.codes_test[m][[qi]] for m in ("ae", "lsa")}
        exclude = np.array([qi])
        with st.expander("The query document"):
            st.text(corpus.texts_test[qi][:3000])
    else:
        text = st.text_area("Query text", key="doc_text", placeholder="e.g. the shuttle launch was delayed by NASA")
        qi, exclude = None, None
        q_codes = {m: res.encode_text([text], m) for m in ("ae", "lsa")} if text.strip() else None
        if q_codes is not None and not res.bow.counts([text]).sum():
            st.warning("None of the query's words is in the vocabulary: its code carries no information.")
    k = st.slider("How many neighbours", 5, 30, 10, key="doc_k_near")
    near = {}
    if q_codes is not None:
        cols = st.columns(2)
        for col, m in zip(cols, ("ae", "lsa")):
            idx, sims = nearest(q_codes[m], res.codes_test[m], k=k, exclude=exclude)
            near[m] = idx[0]
            rows = [{"cosine": round(float(s), 3), "group": corpus.label_names[corpus.y_test[j]],
                     "title": doc_title(corpus.texts_test[j])} for j, s in zip(idx[0], sims[0])]
            if qi is not None:
                hits = sum(corpus.y_test[j] == corpus.y_test[qi] for j in idx[0])
                col.markdown(f"**{'Autoencoder' if m == 'ae' else 'LSA'} codes**: {hits} of {len(idx[0])} "
                             f"in the query's group")
            else:
                col.markdown(f"**{'Autoencoder' if m == 'ae' else 'LSA'} codes**")
            col.dataframe(pd.DataFrame(rows), hide_index=True)

with tab_map:
    c1, c2 = st.columns(2)
    which = c1.radio("Codes", ("ae", "lsa"), format_func=lambda m: {"ae": "autoencoder", "lsa": "LSA"}[m],
                     horizontal=True, key="doc_map_codes")
    method = c2.radio("2-D map", ("pca", "umap"), format_func=lambda m: {"pca": "PCA", "umap": "UMAP"}[m],
                      horizontal=True, key="doc_map_method",
                      help="UMAP compiles for ~15 s the first time in a process.")
    if method == "umap" and not umap_ready():
        start_umap_warmup()
    # a seeded sample keeps the map readable; the query and its neighbours are always drawn
    shown = [j for j in ([qi] if qi is not None else []) + list(near.get(which, []))]
    sel = np.union1d(sample_indices(corpus.n_test, MAX_MAP_POINTS, seed=0), np.asarray(shown, dtype=np.int64))
    codes = res.codes_test[which]
    with st.spinner("Computing the map…"):
        # "auto" is the code itself when K <= 2, else PCA
        emb = embed_2d(codes[sel], method="auto" if method == "pca" else method)
    pos = {int(j): i for i, j in enumerate(sel)}
    hl = [pos[int(j)] for j in near.get(which, []) if int(j) in pos]
    st.plotly_chart(document_map(emb.points, corpus.y_test[sel], corpus.label_names,
                                 hover=[titles[j] for j in sel], highlight=hl,
                                 query=pos.get(int(qi)) if qi is not None else None,
                                 title=f"{len(sel)} test documents by their "
                                       f"{'autoencoder' if which == 'ae' else 'LSA'} codes",
                                 method=METHOD_LABELS.get(emb.method, emb.method)), key="doc_map")
    st.caption("Star: the test document picked on the *Nearest documents* tab; rings: its nearest documents "
               "by these codes.")

with tab_words:
    entries = task.extra["unit_words"]
    st.markdown("For each unit of the autoencoder's code, the words whose counts go up (blue) or down "
                "(orange) with the unit's value across the training documents.")
    unit = st.selectbox("Code unit", range(len(entries)), key="doc_unit")
    st.plotly_chart(unit_words(entries[unit]), key="doc_unit_words")
    st.dataframe(pd.DataFrame([{"unit": e["unit"], "high when": ", ".join(w for w, _ in e["positive"]),
                                "low when": ", ".join(w for w, _ in e["negative"])} for e in entries]),
                 hide_index=True)
