"""Choosing hyperparameters on ratings held out from the *training* ratings, never the test set.

    >>> from aecore.recsys.selection import AUTOREC_ITEM_GRID, select
    >>> data = load_movielens("movielens-100k", split="u1")
    >>> rows, best = select("autorec-item", AUTOREC_ITEM_GRID, data.train, data)  # data.test is not read

``select`` carves a seeded validation split (``fraction`` of ``train``, seed ``SELECT_SEED``) out of
the training ratings, fits one model per candidate on the rest, and ranks the candidates by
validation RMSE. The test ratings are removed from ``data`` before any model sees it, so nothing
downstream can peek. The model's own epoch selection (``valid_fraction``) then carves its split out
of the remaining 90 %: three disjoint parts of u1.base (fit / epoch choice / candidate choice).

How the defaults of I-AutoRec were chosen (``python -m bench.recsys`` shows the table again): the
grid below on ML-100K u1.base only; the winner became ``_AutoRec.Config``'s defaults, which every
fold u1..u5 then uses unchanged. Two rounds: first lambda and the ensemble size (plain AutoRec:
lambda 150, 3 networks, validation RMSE 0.9000); then one model change, the residual target
(``residual``: the network predicts r - (mu + b_u + b_i)), adopted only because it beat 0.9000 on
the validation ratings by more than 0.001 (0.8957 at the same lambda and ensemble); u1.test was
not read for it. (Residual inputs as well as targets: 0.9185, not kept.)
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np

from .base import make
from .data import Ratings, RatingsData, random_split
from .evaluate import mae, rmse

__all__ = ["SELECT_SEED", "AUTOREC_ITEM_GRID", "validation_split", "select"]

SELECT_SEED = 1  # differs from the models' seed 0, so the epoch-choice split is not the same draw
# candidates for I-AutoRec (paper settings: K = 500, full-batch Rprop); ``ensemble`` averages
# networks trained from different seeds for the chosen number of epochs; ``residual``: the networks
# predict the ratings minus the biased baseline (round 2, at round 1's lambda and neighbours)
AUTOREC_ITEM_GRID: tuple[dict, ...] = (
    {"reg": 150.0, "ensemble": 1, "residual": False},
    {"reg": 200.0, "ensemble": 1, "residual": False},
    {"reg": 100.0, "ensemble": 3, "residual": False},
    {"reg": 150.0, "ensemble": 3, "residual": False},
    {"reg": 200.0, "ensemble": 3, "residual": False},
    {"reg": 150.0, "ensemble": 5, "residual": False},
    {"reg": 150.0, "ensemble": 1, "residual": True},
    {"reg": 100.0, "ensemble": 3, "residual": True},
    {"reg": 150.0, "ensemble": 3, "residual": True},
    {"reg": 200.0, "ensemble": 3, "residual": True},
)


def validation_split(train: Ratings, fraction: float = 0.1, seed: int = SELECT_SEED) -> tuple[Ratings, Ratings]:
    """(fit, valid): a seeded random ``fraction`` of the training ratings held out for selection."""
    return random_split(train, fraction, seed)


def select(name: str, grid: Sequence[dict], train: Ratings, data: RatingsData | None = None,
           fraction: float = 0.1, seed: int = SELECT_SEED, fixed: dict | None = None,
           progress: Callable[[dict], None] | None = None) -> tuple[list[dict], int]:
    """Fit ``name`` with each candidate of ``grid`` (plus ``fixed`` parameters) on ``train`` minus a
    validation split, and score it there. Returns (rows, index of the best row by validation RMSE;
    the first listed wins a tie). A row: params, valid_rmse, valid_mae, fit_seconds, best_epoch."""
    if not grid:
        raise ValueError("select: the grid is empty; give at least one candidate")
    fit_part, valid = validation_split(train, fraction, seed)
    side = None
    if data is not None:  # side information and rating range only: the test ratings are dropped here
        empty = train.subset(np.zeros(len(train), dtype=bool))
        side = dataclasses.replace(data, train=fit_part, test=empty)
    rows = []
    for params in grid:
        model = make(name, **{**(fixed or {}), **params})
        t0 = time.perf_counter()
        model.fit(fit_part, side)
        pred = model.predict(valid.user, valid.item)
        row = {"params": dict(params), "valid_rmse": rmse(pred, valid.rating), "valid_mae": mae(pred, valid.rating),
               "fit_seconds": time.perf_counter() - t0, "best_epoch": getattr(model, "best_epoch_", None),
               "n_fit": len(fit_part), "n_valid": len(valid)}
        rows.append(row)
        if progress:
            progress(row)
    best = int(np.argmin([r["valid_rmse"] for r in rows]))  # argmin: the first of equal values
    return rows, best
