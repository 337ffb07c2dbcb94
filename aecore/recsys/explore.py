"""What the Recommend page shows, computed here (the page only lays it out).

    rows = known_ratings(data, user)                   # the user's training ratings
    rows = top_n(model, data, user, k=10)              # predicted top-10, rated items excluded
    info = heldout(model, data, user)                  # the user's held-out ratings + RMSE
    res  = new_user(model, data, {item: rating, ...})  # fold-in: reconstructed ratings + top-10
    m    = item_map(model, data)                       # 2-D map of the model's item vectors
    items = popular_items(data, 12)                    # movies to offer a new user

Rows are plain dicts (title, genres, rating / predicted ...) so the page can hand them to
``st.dataframe`` as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import RatingsData

__all__ = ["known_ratings", "top_n", "heldout", "new_user", "item_map", "popular_items", "primary_genres",
           "ItemMap", "score_label"]


def score_label(model) -> str:
    return "predicted rating" if model.predicts_ratings else "score (probability)"


def _display_scores(model, s: np.ndarray) -> np.ndarray:
    # CDAE's scores are logits: show the model's probability sigmoid(logit)
    return s if model.predicts_ratings else 1.0 / (1.0 + np.exp(-np.clip(s, -50, 50)))


def _item_row(data: RatingsData, i: int, **extra) -> dict:
    return {"item": int(data.item_ids[i]) if np.issubdtype(np.asarray(data.item_ids).dtype, np.integer)
            else str(data.item_ids[i]), "title": data.title(i), "genres": ", ".join(data.genres_of(i)), **extra}


def _check_user(data: RatingsData, user: int) -> int:
    if isinstance(user, bool) or not isinstance(user, (int, np.integer)) or not 0 <= user < data.n_users:
        raise ValueError(f"user={user!r} must be an index in 0..{data.n_users - 1}")
    return int(user)


def known_ratings(data: RatingsData, user: int) -> list[dict]:
    """The user's training ratings, best first."""
    user = _check_user(data, user)
    row = data.train.csr()[user]
    order = np.lexsort((row.indices, -row.data))
    return [_item_row(data, int(row.indices[j]), rating=float(row.data[j])) for j in order]


def top_n(model, data: RatingsData, user: int, k: int = 10) -> list[dict]:
    """The model's top-k for a known user; items rated in training are excluded."""
    from .evaluate import topk_indices

    user = _check_user(data, user)
    scores = model.score_users(np.array([user]), clip=False)  # ranked unclipped, shown clipped
    top = topk_indices(scores, k, data.train.mask_csr()[user])[0]
    shown = _display_scores(model, model.clip_scores(scores[0, top]))
    return [_item_row(data, int(i), **{score_label(model): float(s)}) for i, s in zip(top, shown)]


def heldout(model, data: RatingsData, user: int) -> dict:
    """The user's held-out ratings with the model's predictions, and the user's RMSE / MAE."""
    user = _check_user(data, user)
    row = data.test.csr()[user]
    items, truth = row.indices, row.data
    out = {"n": int(len(items)), "rows": [], "rmse": math.nan, "mae": math.nan}
    if not len(items):
        return out
    if model.predicts_ratings:
        pred = model.predict(np.full(len(items), user), items)
        out["rmse"] = float(np.sqrt(np.mean(np.square(pred - truth))))
        out["mae"] = float(np.mean(np.abs(pred - truth)))
        out["rows"] = [_item_row(data, int(i), rating=float(t), predicted=float(p))
                       for i, t, p in zip(items, truth, pred)]
    else:
        s = _display_scores(model, model.score_users(np.array([user]))[0, items])
        out["rows"] = [_item_row(data, int(i), rating=float(t), **{score_label(model): float(p)})
                       for i, t, p in zip(items, truth, s)]
    return out


def new_user(model, data: RatingsData, ratings: dict[int, float], k: int = 10) -> dict:
    """Fold a new user into a fitted model (no refit): {"rated": rows with the given and the
    reconstructed rating, "top": top-k rows among the unrated items, "method": how}."""
    from .evaluate import topk_indices

    items = np.array(sorted(ratings), dtype=np.int64)
    if not len(items):
        raise ValueError("rate at least one item")
    if items.min() < 0 or items.max() >= data.n_items:
        raise ValueError(f"item indices must lie in 0..{data.n_items - 1}")
    given = np.array([float(ratings[i]) for i in items])
    s = np.asarray(model.fold_in(items, given, clip=False), dtype=np.float64)  # ranked unclipped
    shown = _display_scores(model, model.clip_scores(s))
    label = score_label(model)
    exclude = np.zeros((1, data.n_items))
    exclude[0, items] = 1
    from scipy import sparse

    top = topk_indices(s[None, :], k, sparse.csr_matrix(exclude))[0]
    return {
        "rated": [_item_row(data, int(i), rating=float(g), **{("reconstructed" if model.predicts_ratings
                                                               else label): float(shown[i])})
                  for i, g in zip(items, given)],
        "top": [_item_row(data, int(i), **{label: float(shown[i])}) for i in top],
        "method": model.fold_in_how,
    }


def popular_items(data: RatingsData, n: int = 12) -> list[int]:
    """The n most-rated items in training (ties: lower index), for a new user to rate."""
    counts = data.train.item_counts()
    return [int(i) for i in np.lexsort((np.arange(len(counts)), -counts))[:n]]


def primary_genres(data: RatingsData) -> tuple[np.ndarray, tuple[str, ...]]:
    """(M,) index of each item's first listed genre (skipping 'unknown'), and the genre names.
    Items with no genre get the last index, named 'no genre'."""
    if data.item_genres is None:
        return np.zeros(data.n_items, np.int64), ("all items",)
    g = np.asarray(data.item_genres).astype(bool).copy()
    names = list(data.genre_names)
    if names and names[0] == "unknown":
        g[:, 0] = False
    first = np.where(g.any(axis=1), g.argmax(axis=1), len(names))
    return first.astype(np.int64), tuple(names) + ("no genre",)


@dataclass(frozen=True)
class ItemMap:
    points: np.ndarray  # (M', 2)
    items: np.ndarray  # (M',) item index of each point
    genre: np.ndarray  # (M',) index into genre_names
    genre_names: tuple[str, ...]
    titles: tuple[str, ...]
    what: str  # what the vectors are
    method: str  # how they were brought to 2-D


def item_map(model, data: RatingsData, min_ratings: int = 5, method: str = "auto") -> ItemMap | None:
    """2-D map (PCA of the codes unless K = 2; ``aecore.embedding.embed_2d``) of the model's item
    vectors, for items with at least ``min_ratings`` training ratings. None if the model has none."""
    from ..embedding import embed_2d

    emb = model.item_embeddings()
    if emb is None:
        return None
    vectors, what = emb
    keep = np.flatnonzero(data.train.item_counts() >= min_ratings)
    if len(keep) < 2:
        keep = np.arange(data.n_items)
    pts, used = embed_2d(np.asarray(vectors, np.float64)[keep], method=method)
    genre, names = primary_genres(data)
    return ItemMap(points=pts, items=keep, genre=genre[keep], genre_names=names,
                   titles=tuple(data.title(int(i)) for i in keep), what=what, method=used)
