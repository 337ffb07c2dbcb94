"""Rating and top-N evaluation on held-out ratings.

* RMSE, MAE over the held-out (user, item, rating) triplets, predictions clipped to the range.
* Recall@k and NDCG@k, per user, averaged over users with at least one *relevant* held-out
  item (held-out rating >= ``threshold``, 4 by default). Candidates are all items except the
  ones the user rated in training. Binary relevance:

      Recall@k = |top-k ∩ relevant| / |relevant|
      DCG@k    = sum_{j=1..k} rel_j / log2(j + 1)        (j = rank, 1-based)
      NDCG@k   = DCG@k / IDCG@k,  IDCG@k = sum_{j=1..min(k, |relevant|)} 1 / log2(j + 1)

  Items with equal scores are ordered by item index (the lower index first; for catalogues of
  more than 20,000 items a tie across the k-th place is broken arbitrarily).
Scores are computed one batch of users at a time (B x M), never for all users at once.
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy import sparse

__all__ = ["rmse", "mae", "topk_indices", "recall_ndcg_at_k", "rating_metrics", "topn_metrics", "evaluate",
           "metric_keys"]


def metric_keys(k: int = 10) -> tuple[str, ...]:
    return ("rmse", "mae", f"recall@{k}", f"ndcg@{k}")


def rmse(pred, truth) -> float:
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: predictions {pred.shape} vs truth {truth.shape}")
    return float(np.sqrt(np.mean(np.square(pred - truth)))) if len(pred) else math.nan


def mae(pred, truth) -> float:
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: predictions {pred.shape} vs truth {truth.shape}")
    return float(np.mean(np.abs(pred - truth))) if len(pred) else math.nan


def topk_indices(scores: np.ndarray, k: int, exclude: sparse.spmatrix | None = None) -> np.ndarray:
    """(B, k) item indices by decreasing score; ``exclude`` (B x M, nonzero = excluded) never
    appears unless fewer than k candidates remain (then excluded items fill the tail, last)."""
    s = np.array(scores, dtype=np.float64)  # a copy: excluded entries are overwritten
    b, m = s.shape
    if exclude is not None:
        ex = sparse.csr_matrix(exclude)
        rows = np.repeat(np.arange(b), np.diff(ex.indptr))
        s[rows, ex.indices] = -np.inf
    k = min(int(k), m)
    if m <= 20000:  # a full stable sort: ties go to the lower item index
        return np.argsort(-s, axis=1, kind="stable")[:, :k]
    # large catalogues: partition, then order the k by (score, index); ties across the cut are arbitrary
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recall_ndcg_at_k(scores: np.ndarray, relevant: sparse.spmatrix, exclude: sparse.spmatrix | None,
                     k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user Recall@k and NDCG@k for a batch: scores (B, M); relevant, exclude (B, M) sparse.

    Returns (recall, ndcg, has_relevant): users with no relevant item get NaN and False.
    """
    rel = sparse.csr_matrix(relevant, dtype=np.float64)
    rel.data = (rel.data != 0).astype(np.float64)
    rel.eliminate_zeros()
    top = topk_indices(scores, k, exclude)  # (B, k)
    hits = np.asarray(rel[np.arange(top.shape[0])[:, None], top].todense()) > 0  # (B, k)
    n_rel = np.diff(rel.indptr)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))  # rank j=1..k -> 1/log2(j+1)
    dcg = (hits * discounts).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(n_rel, top.shape[1])]
    has = n_rel > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(has, hits.sum(axis=1) / np.maximum(n_rel, 1), np.nan)
        ndcg = np.where(has, dcg / np.where(idcg > 0, idcg, 1), np.nan)
    return recall, ndcg, has


def rating_metrics(model, test) -> dict:
    """RMSE and MAE of ``model.predict`` on the held-out triplets (NaN for ranking-only models)."""
    if not getattr(model, "predicts_ratings", True) or len(test) == 0:
        return {"rmse": math.nan, "mae": math.nan}
    pred = model.predict(test.user, test.item)
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{model.name} predicted NaN or inf for some held-out ratings")
    return {"rmse": rmse(pred, test.rating), "mae": mae(pred, test.rating)}


def topn_metrics(model, train, test, k: int = 10, threshold: float = 4.0, batch: int | None = None) -> dict:
    """Mean Recall@k and NDCG@k over users with a held-out rating >= threshold (NaN for a model
    that gives every item the same score, such as the global mean).

    Users are scored ``batch`` at a time (default: about 2^21 scores per batch)."""
    batch = batch or max(1, (1 << 21) // max(train.n_items, 1))
    relevant = test.subset(test.rating >= threshold).csr()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if not getattr(model, "ranks_items", True):  # one score for every item: its "top k" is the k lowest indices
        return {f"recall@{k}": math.nan, f"ndcg@{k}": math.nan, "n_users_topn": int(len(users))}
    exclude = train.mask_csr()
    recalls, ndcgs = [], []
    for s in range(0, len(users), batch):
        u = users[s:s + batch]
        r, n, _ = recall_ndcg_at_k(model.score_users(u, clip=False), relevant[u], exclude[u], k)
        recalls.append(r)
        ndcgs.append(n)
    if not recalls:
        return {f"recall@{k}": math.nan, f"ndcg@{k}": math.nan, "n_users_topn": 0}
    return {f"recall@{k}": float(np.mean(np.concatenate(recalls))),
            f"ndcg@{k}": float(np.mean(np.concatenate(ndcgs))), "n_users_topn": int(len(users))}


def evaluate(model, data, k: int = 10, threshold: float = 4.0) -> dict:
    """All four metrics of a fitted model on ``data.test`` (top-N excludes ``data.train``)."""
    t0 = time.perf_counter()
    out = {**rating_metrics(model, data.test), **topn_metrics(model, data.train, data.test, k, threshold)}
    out["eval_seconds"] = time.perf_counter() - t0
    return out
