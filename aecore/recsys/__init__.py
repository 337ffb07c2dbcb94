"""Autoencoder recommenders on sparse ratings: AutoRec, CDAE, mDA-CF, baselines, evaluation.

    >>> from aecore.recsys import load, make
    >>> from aecore.recsys.evaluate import evaluate
    >>> data = load("movielens-100k", split="u1")
    >>> model = make("autorec-item", hidden=500).fit(data.train, data)
    >>> evaluate(model, data)     # {'rmse': ..., 'mae': ..., 'recall@10': ..., 'ndcg@10': ...}

Nothing happens at import beyond defining things (torch is imported when a model trains).
"""
from . import baselines, models  # noqa: F401  (registers the models and baselines)
from .base import BASELINES, MODELS, Recommender, make, model_names
from .data import Ratings, RatingsData, load, load_movielens, load_ratings_csv, movielens_info, random_split
from .evaluate import mae, recall_ndcg_at_k, rmse  # evaluate(): aecore.recsys.evaluate.evaluate

__all__ = ["BASELINES", "MODELS", "Recommender", "make", "model_names", "Ratings", "RatingsData", "load",
           "load_movielens", "load_ratings_csv", "movielens_info", "random_split", "rmse", "mae",
           "recall_ndcg_at_k"]
