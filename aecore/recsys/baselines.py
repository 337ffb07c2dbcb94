"""Yardsticks measured on the same split as the autoencoders.

* ``global-mean``: every prediction is the mean training rating mu (it ranks nothing: its
  Recall@k and NDCG@k are n/a, as ties would fall to the lowest item ids).
* ``popularity``: the top-N yardstick ("TopPop" in Cremonesi, Koren & Turrin 2010): every user
  is offered the items rated most often in training, minus their own; no ratings predicted.
* ``biased-baseline``: mu + b_u + b_i with regularized biases fitted by alternating least
  squares (Koren 2010, "Factor in the neighbors", sec. 2.1; Surprise's ``BaselineOnly`` with
  ALS): b_i = sum_u (r_ui - mu - b_u) / (reg_i + n_i), b_u = sum_i (r_ui - mu - b_i) / (reg_u + n_u).
* ``biased-mf``: mu + b_u + b_i + p_u . q_i fitted by per-rating SGD in Funk's style (the
  model and the defaults of Surprise's ``SVD``: 100 factors, 20 epochs, lr 0.005, reg 0.02,
  init N(0, 0.1^2)). The loop is compiled with numba (a dependency of umap-learn).
* ``surprise-svd``: Surprise's own ``SVD`` when the optional ``scikit-surprise`` is installed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .base import ConfigBase, Recommender, check_number, register
from .data import Ratings

__all__ = ["GlobalMean", "Popularity", "BiasedBaseline", "BiasedMF", "SurpriseSVD", "surprise_available"]


@register("global-mean", baseline=True)
class GlobalMean(Recommender):
    summary = "the mean training rating for every pair"
    ranks_items = False

    @dataclass(frozen=True)
    class Config(ConfigBase):
        pass

    def _fit(self, train, data, progress):
        self.mu_ = float(np.mean(train.rating, dtype=np.float64))

    def predict(self, users, items):
        return np.full(len(np.asarray(users)), np.clip(self.mu_, *self.rating_range_), np.float32)

    def score_users(self, users, clip: bool = True):
        return np.full((len(np.asarray(users)), self.n_items_), np.clip(self.mu_, *self.rating_range_), np.float32)


@register("popularity", baseline=True)
class Popularity(Recommender):
    summary = "the items rated most often in training, the same list for everyone (top-N only)"
    predicts_ratings = False

    @dataclass(frozen=True)
    class Config(ConfigBase):
        pass

    def _fit(self, train, data, progress):
        self.counts_ = np.bincount(train.item, minlength=train.n_items).astype(np.float32)  # (M,)

    def _score_raw(self, users):
        return np.tile(self.counts_, (len(np.asarray(users)), 1))

    fold_in_how = "popularity: the movies rated most often in training, whatever you rated (no personalisation)."

    def _fold_in_raw(self, items, ratings):
        return self.counts_.copy()


@register("biased-baseline", baseline=True)
class BiasedBaseline(Recommender):
    summary = "mu + b_u + b_i, regularized biases by ALS"

    @dataclass(frozen=True)
    class Config(ConfigBase):
        reg_user: float = 15.0
        reg_item: float = 10.0
        iterations: int = 10

        def __post_init__(self):
            check_number("reg_user", self.reg_user, 0.0)
            check_number("reg_item", self.reg_item, 0.0)
            check_number("iterations", self.iterations, 1, 10_000, integer=True)

    def fit_biases(self, train: Ratings) -> "BiasedBaseline":
        """Fit mu, b_u, b_i only (the fallback every other model carries)."""
        c = self.config
        u, i = train.user, train.item
        r = train.rating.astype(np.float64)
        self.mu_ = float(r.mean())
        n_u = np.bincount(u, minlength=train.n_users)
        n_i = np.bincount(i, minlength=train.n_items)
        bu = np.zeros(train.n_users)
        bi = np.zeros(train.n_items)
        for _ in range(c.iterations):
            bi = np.bincount(i, r - self.mu_ - bu[u], train.n_items) / (c.reg_item + n_i + 1e-12 * (n_i == 0))
            bu = np.bincount(u, r - self.mu_ - bi[i], train.n_users) / (c.reg_user + n_u + 1e-12 * (n_u == 0))
        self.bu_, self.bi_ = bu, bi  # unseen users/items: 0 (no ratings -> zero sums)
        return self

    def _fit(self, train, data, progress):
        self.fit_biases(train)

    def baseline_pairs(self, users, items) -> np.ndarray:
        return self.mu_ + self.bu_[users] + self.bi_[items]

    def baseline_rows(self, users) -> np.ndarray:
        return (self.mu_ + self.bu_[users][:, None] + self.bi_[None, :]).astype(np.float32)

    def _predict_raw(self, users, items):
        return self.baseline_pairs(users, items)

    def _score_raw(self, users):
        return self.baseline_rows(users)

    fold_in_how = "biased baseline: your bias b_u is the regularized mean of your residuals r - mu - b_i."

    def _fold_in_raw(self, items, ratings):
        r = np.asarray(ratings, np.float64)
        bu = float(np.sum(r - self.mu_ - self.bi_[items]) / (self.config.reg_user + len(items)))
        return self.mu_ + bu + self.bi_


@functools.lru_cache(maxsize=1)
def _sgd_kernel():
    """The per-rating SGD epoch, compiled by numba on first use (about a second)."""
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba comes with umap-learn
        njit = lambda **kw: (lambda f: f)  # noqa: E731  (slow pure-Python fallback)

    @njit(cache=False, nogil=True)
    def epoch(users, items, ratings, order, mu, bu, bi, p, q, lr, reg):
        k = p.shape[1]
        for t in range(order.shape[0]):
            j = order[t]
            u, i = users[j], items[j]
            dot = 0.0
            for f in range(k):
                dot += p[u, f] * q[i, f]
            err = ratings[j] - (mu + bu[u] + bi[i] + dot)
            bu[u] += lr * (err - reg * bu[u])
            bi[i] += lr * (err - reg * bi[i])
            for f in range(k):
                puf, qif = p[u, f], q[i, f]
                p[u, f] += lr * (err * qif - reg * puf)
                q[i, f] += lr * (err * puf - reg * qif)
    return epoch


@register("biased-mf", baseline=True)
class BiasedMF(Recommender):
    summary = "mu + b_u + b_i + p_u.q_i, SGD (Funk; Surprise's SVD defaults)"

    @dataclass(frozen=True)
    class Config(ConfigBase):
        factors: int = 100
        epochs: int = 20
        lr: float = 0.005
        reg: float = 0.02
        init_std: float = 0.1
        seed: int = 0

        def __post_init__(self):
            check_number("factors", self.factors, 1, 10_000, integer=True)
            check_number("epochs", self.epochs, 1, 100_000, integer=True)
            check_number("lr", self.lr, 0.0, 1.0, lo_open=True)
            check_number("reg", self.reg, 0.0)
            check_number("init_std", self.init_std, 0.0)
            check_number("seed", self.seed, 0, 2**63 - 1, integer=True)

    def _fit(self, train, data, progress):
        c = self.config
        rng = np.random.default_rng(c.seed)
        self.mu_ = float(np.mean(train.rating, dtype=np.float64))
        self.bu_ = np.zeros(train.n_users)
        self.bi_ = np.zeros(train.n_items)
        self.p_ = rng.normal(0, c.init_std, (train.n_users, c.factors))
        self.q_ = rng.normal(0, c.init_std, (train.n_items, c.factors))
        kernel = _sgd_kernel()
        users, items = train.user.astype(np.int64), train.item.astype(np.int64)
        ratings = train.rating.astype(np.float64)
        for e in range(c.epochs):
            kernel(users, items, ratings, rng.permutation(len(ratings)), self.mu_, self.bu_, self.bi_,
                   self.p_, self.q_, c.lr, c.reg)
            if progress:
                progress({"epoch": e + 1, "epochs": c.epochs})
            if self._stopping():
                break

    def _predict_raw(self, users, items):
        return self.mu_ + self.bu_[users] + self.bi_[items] + np.einsum("nk,nk->n", self.p_[users], self.q_[items])

    def _score_raw(self, users):
        return self.mu_ + self.bu_[users][:, None] + self.bi_[None, :] + self.p_[users] @ self.q_.T

    def item_embeddings(self):
        return self.q_.astype(np.float32), "item factors q_i of the biased MF"

    fold_in_how = "biased MF: your factors p_u and bias b_u by ridge regression on the fixed item factors q_i."

    def _fold_in_raw(self, items, ratings):
        """Ridge regression of the new user's residuals on the item factors (bias included)."""
        r = np.asarray(ratings, np.float64) - self.mu_ - self.bi_[items]
        x = np.hstack([self.q_[items], np.ones((len(items), 1))])
        reg = self.config.reg * max(len(items), 1)
        w = np.linalg.solve(x.T @ x + reg * np.eye(x.shape[1]), x.T @ r)
        return self.mu_ + self.bi_ + self.q_ @ w[:-1] + w[-1]


def surprise_available() -> bool:
    try:
        import surprise  # noqa: F401
    except ImportError:
        return False
    return True


@register("surprise-svd", baseline=True)
class SurpriseSVD(Recommender):
    summary = "Surprise's SVD (optional scikit-surprise), default parameters"

    @dataclass(frozen=True)
    class Config(ConfigBase):
        seed: int = 0

        def __post_init__(self):
            check_number("seed", self.seed, 0, 2**32 - 1, integer=True)

    def _fit(self, train, data, progress):
        try:
            import pandas as pd
            from surprise import SVD, Dataset, Reader
        except ImportError:
            raise ImportError("surprise-svd needs the optional package scikit-surprise "
                              "(pip install scikit-surprise)") from None
        df = pd.DataFrame({"u": train.user, "i": train.item, "r": train.rating.astype(np.float64)})
        trainset = Dataset.load_from_df(df, Reader(rating_scale=self.rating_range_)).build_full_trainset()
        algo = SVD(random_state=self.config.seed)
        algo.fit(trainset)
        k = algo.pu.shape[1]
        self.mu_ = float(trainset.global_mean)
        self.bu_, self.bi_ = np.zeros(train.n_users), np.zeros(train.n_items)
        self.p_, self.q_ = np.zeros((train.n_users, k)), np.zeros((train.n_items, k))
        raw_u = np.array([trainset.to_raw_uid(n) for n in range(trainset.n_users)], np.int64)
        raw_i = np.array([trainset.to_raw_iid(n) for n in range(trainset.n_items)], np.int64)
        self.bu_[raw_u], self.p_[raw_u] = algo.bu, algo.pu
        self.bi_[raw_i], self.q_[raw_i] = algo.bi, algo.qi

    _predict_raw = BiasedMF._predict_raw
    _score_raw = BiasedMF._score_raw
