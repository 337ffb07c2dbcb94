"""Recommend: autoencoders that fill in a ratings matrix (AutoRec, CDAE, mDA-CF) on MovieLens 100K.

Train a model with the button (it is cached per configuration), then: pick a user to see what
they rated, their predicted top-10 and how the model did on their held-out ratings; rate a few
movies as a new user and watch the reconstruction and the top-10 change; look at a 2-D map of
the model's item codes coloured by genre; compare the models and baselines trained so far.
All numbers come from ``aecore.recsys``; MovieLens is never downloaded without a click.
Instead of MovieLens, a user can upload a ratings file (user, item, rating[, timestamp] per row):
bad rows are counted and reported, a file with no usable rows is refused with the reason.
"""
from __future__ import annotations

import os

import streamlit as st

from aecore.data import DataError
from aecore.recsys import explore, make, model_names, movielens_info
from aecore.recsys.data import load_movielens
from aecore.recsys.evaluate import evaluate
from dashboard import figures_recsys as figs
from dashboard import uploads

DATASET = "movielens-100k"
SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub", "random")
MODEL_LABELS = {
    "autorec-item": "I-AutoRec (item-based AutoRec)",
    "autorec-user": "U-AutoRec (user-based AutoRec)",
    "cdae": "CDAE (implicit feedback, top-N)",
    "mdacf": "mDA-CF (marginalized DAE + matrix factorization)",
}
BASELINE_LABELS = {"global-mean": "global mean", "popularity": "popularity (most-rated movies)",
                   "biased-baseline": "biased baseline", "biased-mf": "biased MF", "surprise-svd": "Surprise SVD"}
# the widgets each model shows: (label, config field, default, min, max, step, help)
PARAMS = {
    "autorec-item": [("hidden units K", "hidden", 500, 2, 2000, 10, "one sigmoid hidden layer"),
                     ("weight decay λ", "reg", 150.0, 0.0, 10000.0, 10.0, "λ/2 (‖W‖² + ‖V‖²), paper units"),
                     ("at most epochs", "epochs", 500, 1, 2000, 10, "the best epoch on a validation split is kept")],
    "cdae": [("hidden units K", "hidden", 50, 2, 1000, 10, "sigmoid hidden layer + a per-user node"),
             ("input dropout q", "corruption", 0.2, 0.0, 0.9, 0.05, "the denoising corruption"),
             ("at most epochs", "epochs", 200, 1, 2000, 10, "the best validation NDCG@10 is kept")],
    "mdacf": [("latent factors k", "factors", 10, 1, 500, 5, "R ≈ baseline + U Vᵀ"),
              ("coupling λ", "lam", 1.0, 0.0, 100.0, 0.1, "how strongly U, V follow the mDA codes"),
              ("at most iterations", "iterations", 30, 1, 500, 5, "alternating closed-form updates")],
}
PARAMS["autorec-user"] = [(a, f, 100.0 if f == "reg" else d, lo, hi, s, h) for a, f, d, lo, hi, s, h in
                          PARAMS["autorec-item"]]
RESULT_KEY, BOARD_KEY = "rec_trained", "rec_scoreboard"
MOVIELENS, UPLOAD = "MovieLens 100K", "Upload a ratings file…"
UPLOAD_KEY, UPLOAD_MSG, UPLOAD_SESSION = "rec_upload_data", "rec_upload_msg", "rec_upload_session"
TOP_K = 10


def _data_key() -> tuple[str, str]:
    return os.environ.get("AECORE_DATA", ""), os.environ.get("AECORE_CACHE", "")


@st.cache_resource(show_spinner=False, max_entries=8)
def _data(split: str, key):
    """MovieLens (``key``: the data folders) or an uploaded file (``key``: its ``uploads.Upload``, whose
    random id keeps it private to the session that uploaded it)."""
    if isinstance(key, uploads.Upload):
        return uploads.load_ratings_upload(key)
    return load_movielens(DATASET, split=split, download=False)


@st.cache_resource(show_spinner=False, max_entries=6)
def _trained(model_name: str, split: str, params: tuple, key):
    """Fit and evaluate one model (cached per configuration; shared by every session: read only)."""
    data = _data(split, key)
    model = make(model_name, **dict(params)).fit(data.train, data)
    return model, evaluate(model, data, k=TOP_K)


@st.cache_resource(show_spinner=False, max_entries=16)
def _baseline(name: str, split: str, key):
    data = _data(split, key)
    model = make(name).fit(data.train, data)
    return evaluate(model, data, k=TOP_K)


def _no_data(info: dict) -> None:
    st.info(f"MovieLens 100K is not on this machine. {info['hint']}")
    st.caption("The files are for research use only and may not be redistributed (GroupLens terms), so the "
               "lab never ships them. You can also fetch the publisher's zip into the cache (about 5 MB, checksummed).")
    if st.button("Download MovieLens 100K from GroupLens", key="rec_download"):
        with st.spinner("Downloading ml-100k.zip…"):
            try:
                load_movielens(DATASET, split="u1", download=True)
            except DataError as exc:
                st.error(f"Could not download MovieLens 100K: {exc}")
                return
        st.rerun()


def _on_upload() -> None:
    """Store the uploaded ratings file and read it; any problem becomes one message naming the file."""
    import logging

    ss = st.session_state
    f = ss.get("rec_upload")
    if f is None:
        return
    session_key = ss.setdefault(UPLOAD_SESSION, uploads.new_session_key())
    up = None
    try:
        up = uploads.save_upload(f, f.name, session_key, allowed=uploads.RATINGS_SUFFIXES)
        data = _data(_upload_split(up), up)
    except DataError as exc:
        if up is not None:
            uploads.discard(up)
        ss[UPLOAD_MSG] = f"Could not use the upload: {exc}"
        return
    except Exception as exc:  # noqa: BLE001 - a reader bug must not show a traceback; it is logged
        if up is not None:
            uploads.discard(up)
        logging.getLogger(__name__).exception("ratings upload %r failed", getattr(f, "name", "?"))
        ss[UPLOAD_MSG] = f"Could not use the upload '{uploads.display_name(f.name)}': {type(exc).__name__} while reading it"
        return
    ss[UPLOAD_KEY] = (up, data.n_users, data.n_items, len(data.train) + len(data.test), dict(data.skipped))
    ss.pop(UPLOAD_MSG, None)


def _upload_source() -> tuple[str, object] | None:
    """The uploader and what the current upload holds: (split label, key for ``_data``), or None."""
    st.file_uploader("Ratings file", type=[s.lstrip(".") for s in uploads.RATINGS_SUFFIXES], key="rec_upload",
                     on_change=_on_upload,
                     help="One rating per row: user, item, rating[, timestamp]; comma, tab, semicolon, '|' or "
                          "spaces between fields; an optional header (user,item,rating). Ids may be any text; "
                          "10 % of the ratings are held out at random for testing.")
    msg = st.session_state.get(UPLOAD_MSG)
    if msg:
        st.error(msg)
    hit = st.session_state.get(UPLOAD_KEY)
    if hit is None:
        if not msg:
            st.info("Upload a ratings file to train on it.")
        return None
    up, n_users, n_items, n_ratings, skipped = hit
    text = f"**{up.display}**: {n_ratings:,} ratings by {n_users:,} users of {n_items:,} items."
    if skipped:
        text += (f" Skipped {sum(skipped.values()):,} bad row(s): "
                 + ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in skipped.items()) + ".")
    (st.warning if skipped else st.caption)(text)
    return _upload_split(up), up


def _upload_split(up) -> str:
    return f"{up.display} (random 10 % held out)"


def _settings(splits: bool = True) -> tuple[str, str, dict, bool]:
    c1, c2, c3 = st.columns([2, 1, 1])
    model_name = c1.selectbox("Model", list(MODEL_LABELS), format_func=MODEL_LABELS.get, key="rec_model")
    split = "random"
    if splits:
        split = c2.selectbox("Split", SPLITS, key="rec_split",
                             help="u1..u5: the official 80/20 folds; ua, ub: 10 ratings per user held out; "
                                  "random: a seeded 90/10 split")
    with_baselines = c3.checkbox("also fit the baselines", value=True, key="rec_baselines",
                                 help="global mean, popularity, biased baseline, biased MF, and Surprise SVD if installed")
    params = {}
    cols = st.columns(len(PARAMS[model_name]))
    for col, (label, field, default, lo, hi, step, help_) in zip(cols, PARAMS[model_name]):
        if isinstance(default, int):
            params[field] = int(col.number_input(label, lo, hi, default, step, key=f"rec_{model_name}_{field}",
                                                 help=help_))
        else:
            params[field] = float(col.number_input(label, float(lo), float(hi), float(default), float(step),
                                                   key=f"rec_{model_name}_{field}", help=help_))
    if model_name.startswith("autorec"):
        default = bool(make(model_name).config.residual)
        params["residual"] = st.checkbox(
            "learn the residual of the biased baseline", value=default, key=f"rec_{model_name}_residual",
            help="The network learns r − (μ + b_u + b_i) and predicts the baseline plus its output. On MovieLens "
                 "100K this lowers I-AutoRec's RMSE (0.897 vs 0.901 on u1) but makes its top-10 lists worse "
                 "(Recall@10 0.075 vs 0.095): for recommending, try it off, or CDAE.")
    return model_name, split, params, with_baselines


def _train(model_name: str, split: str, params: dict, with_baselines: bool, key) -> None:
    frozen = tuple(sorted(params.items()))
    with st.spinner(f"Training {MODEL_LABELS[model_name]} on split {split}… (I-AutoRec: about half a minute)"):
        try:
            _, metrics = _trained(model_name, split, frozen, key)
        except (ValueError, DataError) as exc:
            st.error(f"Training failed: {exc}")
            return
    st.session_state[RESULT_KEY] = (model_name, split, frozen, key)
    board = st.session_state.setdefault(BOARD_KEY, {})
    board[(split, f"{model_name} {dict(frozen)}")] = {"model": MODEL_LABELS[model_name].split(" (")[0],
                                                      "settings": ", ".join(f"{k}={v}" for k, v in frozen),
                                                      **metrics}
    if with_baselines:
        from aecore.recsys.baselines import surprise_available

        with st.spinner("Fitting the baselines…"):
            for name in model_names(baselines=True):
                if name == "surprise-svd" and not surprise_available():
                    continue
                board[(split, name)] = {"model": BASELINE_LABELS.get(name, name), "settings": "defaults",
                                        **_baseline(name, split, key)}


def _fmt(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.4f}"


def _user_tab(model, data, metrics) -> None:
    user_id = st.number_input("User id", 1, data.n_users, 1, key="rec_user")
    u = int(user_id) - 1
    known = explore.known_ratings(data, u)
    held = explore.heldout(model, data, u)
    c1, c2 = st.columns(2)
    with c1:
        st.subheader(f"Rated in training ({len(known)})")
        st.dataframe(known, hide_index=True, height=360, column_order=("title", "genres", "rating"))
    with c2:
        st.subheader(f"Predicted top-{TOP_K}")
        label = explore.score_label(model)  # narrow genres, so that the score column is in view
        st.dataframe(explore.top_n(model, data, u, TOP_K), hide_index=True, height=360,
                     column_order=("title", "genres", label),
                     column_config={"genres": st.column_config.TextColumn(width="small"),
                                    label: st.column_config.NumberColumn(format="%.2f")})
    st.subheader(f"Held-out ratings of user {user_id} ({held['n']})")
    if not held["n"]:
        st.caption("This user has no held-out ratings in this split.")
        return
    if model.predicts_ratings:
        st.markdown(f"RMSE on this user's held-out ratings **{_fmt(held['rmse'])}**, MAE **{_fmt(held['mae'])}** "
                    f"(all users: RMSE {_fmt(metrics['rmse'])}, MAE {_fmt(metrics['mae'])}).")
    else:
        st.markdown("CDAE ranks items and predicts no ratings: here is its probability that the user rated each "
                    "held-out movie.")
    st.dataframe(held["rows"], hide_index=True, height=300)


def _new_user_tab(model, data) -> None:
    st.markdown("Rate a handful of popular movies (0 = not seen). The model is **not** retrained: the new user is "
                "folded in.")
    items = explore.popular_items(data, 12)
    ratings = {}
    cols = st.columns(3)
    for n, i in enumerate(items):
        v = cols[n % 3].slider(data.title(i), 0, 5, 0, key=f"rec_new_{i}")
        if v:
            ratings[i] = float(v)
    if not ratings:
        st.info("Move a slider to rate a movie.")
        return
    res = explore.new_user(model, data, ratings, TOP_K)
    st.caption("How: " + res["method"])
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("Your ratings, reconstructed")
        st.dataframe(res["rated"], hide_index=True, column_order=[k for k in res["rated"][0] if k != "item"])
    with c2:
        st.subheader(f"Your top-{TOP_K}")
        st.dataframe(res["top"], hide_index=True, column_order=[k for k in res["top"][0] if k != "item"])


def _map_tab(model, data) -> None:
    m = explore.item_map(model, data, min_ratings=5)
    if m is None:
        st.info("This model has no item vectors to map.")
        return
    axis = "code" if m.method == "code" else "principal component"
    st.plotly_chart(figs.item_map_figure(m.points, m.genre, m.genre_names, m.titles,
                                         title=f"Item codes, {len(m.items)} movies with at least 5 ratings",
                                         axis=axis), width="stretch", key="rec_map")
    how = {"pca": "PCA (the first two principal components)", "code": "nothing (K = 2: the code itself)"}
    st.caption(f"Each point is a movie: {m.what}, brought to 2-D by {how.get(m.method, m.method)}. "
               "Colour: the movie's first listed genre (click legend entries to hide genres).")


def _scores_tab(split: str) -> None:
    board = st.session_state.get(BOARD_KEY, {})
    rows = [dict(r) for (s, _), r in board.items() if s == split]
    if not rows:
        st.info("Nothing evaluated on this split yet.")
        return
    import pandas as pd

    table = pd.DataFrame([{"model": r["model"], "settings": r["settings"], "RMSE": r["rmse"], "MAE": r["mae"],
                           f"Recall@{TOP_K}": r[f"recall@{TOP_K}"], f"NDCG@{TOP_K}": r[f"ndcg@{TOP_K}"]} for r in rows])
    metrics = ["RMSE", "MAE", f"Recall@{TOP_K}", f"NDCG@{TOP_K}"]
    st.dataframe(table.style.format("{:.4f}", subset=metrics), hide_index=True, placeholder="n/a")
    st.plotly_chart(figs.metrics_figure(rows, TOP_K), width="stretch", key="rec_scores")
    st.caption(f"Held-out ratings of split {split}. Recall@{TOP_K} / NDCG@{TOP_K}: held-out ratings ≥ 4 are "
               "relevant, movies rated in training are never recommended. CDAE and popularity predict no ratings, "
               "and the global mean ranks nothing (the same score for every movie): n/a.")


st.title("Recommend")
st.caption("A ratings matrix is mostly empty. An autoencoder trained only on the known ratings fills in the rest; "
           "the highest predicted ratings become recommendations.")
source = st.radio("Ratings", [MOVIELENS, UPLOAD], horizontal=True, key="rec_source",
                  help="MovieLens 100K from GroupLens, or your own file of user, item, rating rows.")
if source == UPLOAD:
    picked = _upload_source()
    if picked is None:
        st.stop()
    split_label, data_key = picked
    model_name, _, params, with_baselines = _settings(splits=False)
    split = split_label
else:
    info = movielens_info(DATASET)
    if not info["available_offline"]:
        _no_data(info)
        st.stop()
    data_key = _data_key()
    model_name, split, params, with_baselines = _settings()
if st.button("Train", type="primary", key="rec_train"):
    _train(model_name, split, params, with_baselines, data_key)

trained = st.session_state.get(RESULT_KEY)
if trained is None or (trained[3] != data_key):  # trained on the other source: train again here
    st.info("Choose a model and press **Train** (it is trained once per setting and then kept).")
    st.stop()
t_model, t_split, t_params, t_key = trained
with st.spinner("Loading the trained model…"):
    model, metrics = _trained(t_model, t_split, t_params, t_key)
data = _data(t_split, t_key)
st.success(f"{MODEL_LABELS[t_model]} on split {t_split}: RMSE {_fmt(metrics['rmse'])}, MAE {_fmt(metrics['mae'])}, "
           f"Recall@{TOP_K} {_fmt(metrics[f'recall@{TOP_K}'])}, NDCG@{TOP_K} {_fmt(metrics[f'ndcg@{TOP_K}'])} "
           f"(best epoch {getattr(model, 'best_epoch_', '–')}, {model.fit_seconds_:.0f} s)")
tab_user, tab_new, tab_map, tab_scores = st.tabs(["A user", "New user", "Item map", "Scores"])
with tab_user:
    _user_tab(model, data, metrics)
with tab_new:
    _new_user_tab(model, data)
with tab_map:
    _map_tab(model, data)
with tab_scores:
    _scores_tab(t_split)
    history = getattr(model, "history_", [])
    key = "valid_rmse" if model.predicts_ratings else "valid_ndcg@10"
    if any(key in r for r in history):
        st.plotly_chart(figs.validation_curve(history, key, getattr(model, "best_epoch_", None)),
                        width="stretch", key="rec_valid")
