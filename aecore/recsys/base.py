"""What every recommender shares: the registry, validated configs, and the fallback rule.

A recommender is scikit-learn-shaped: ``fit(train, data=None, progress=None, stop=None)``
returns self, fitted attributes end in ``_``. ``stop`` (a ``threading.Event``; Ctrl-C in
``aecore recommend``) ends training after the current epoch; the model is then what it has
learned so far, and ``stopped_`` says so. Two ways to ask it:

* ``predict(users, items)`` -> (n,) ratings for index pairs, clipped to the rating range;
* ``score_users(users)`` -> (B, M) scores of every item for a batch of users (ratings for
  rating models, logits for CDAE), for top-N lists. B x M is one batch, never all users.

The fallback rule (issue 5): a user or item with no training rating gets the biased
baseline's prediction mu + b_u + b_i (with the missing bias at 0), never NaN. Subclasses
implement ``_fit``, ``_predict_raw`` and ``_score_raw``; this base applies the rule and the clip.

Models register by name (``@register("autorec-item")``); ``make(name, **params)`` builds one
from its config, and unknown parameters raise ConfigError naming them.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, ClassVar

import numpy as np

from ..config import ConfigError, check_choice, check_number
from .data import Ratings, RatingsData

__all__ = ["Recommender", "register", "make", "model_names", "MODELS", "BASELINES", "ConfigError",
           "check_number", "check_choice", "resolve_device", "Progress"]

Progress = Callable[[dict], None]
MODELS: dict[str, type["Recommender"]] = {}  # the autoencoders
BASELINES: dict[str, type["Recommender"]] = {}  # yardsticks on the same split


def register(name: str, *, baseline: bool = False):
    """Class decorator: put a Recommender into MODELS (or BASELINES) under ``name``."""
    def deco(cls):
        cls.name = name
        (BASELINES if baseline else MODELS)[name] = cls
        return cls
    return deco


def model_names(baselines: bool = False) -> list[str]:
    return list(BASELINES if baselines else MODELS)


def make(name: str, **params) -> "Recommender":
    """Build a registered model or baseline from keyword parameters of its config."""
    from . import baselines as _b, models as _m  # noqa: F401  (registration happens on import)

    cls = MODELS.get(name) or BASELINES.get(name)
    if cls is None:
        raise ConfigError(f"model={name!r} is not known; models: {', '.join(MODELS)}; "
                          f"baselines: {', '.join(BASELINES)}")
    return cls(cls.Config.from_dict(params))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is available; use device='cpu'")
    return device


class ConfigBase:
    """Frozen-dataclass mixin: ``to_dict`` / ``from_dict`` (unknown keys raise)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__qualname__} parameter(s): {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**d)


class Recommender:
    """Base class; see the module docstring."""

    name: ClassVar[str] = "?"
    predicts_ratings: ClassVar[bool] = True
    ranks_items: ClassVar[bool] = True  # False: every item scores the same, so top-N metrics mean nothing
    summary: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, train: Ratings, data: RatingsData | None = None, progress: Progress | None = None,
            stop=None):
        """Fit on ``train``; ``data`` supplies side information (genres, demographics) and the
        rating range (else the range of ``train``). Once ``stop`` (an object with ``is_set()``)
        is set, training ends after the current epoch and ``stopped_`` is True. Returns self."""
        from .baselines import BiasedBaseline

        if len(train) == 0:
            raise ValueError("cannot fit a recommender on 0 ratings")
        t0 = time.perf_counter()
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        lo, hi = data.rating_range if data is not None else (float(train.rating.min()), float(train.rating.max()))
        self.rating_range_ = (float(lo), float(hi))
        self.known_users_ = train.user_counts() > 0
        self.known_items_ = train.item_counts() > 0
        self.baseline_ = self if isinstance(self, BiasedBaseline) else BiasedBaseline().fit_biases(train)
        self.history_: list[dict] = []
        self._stop = stop
        try:
            self._fit(train, data, progress)
        finally:
            self._stop = None
        self.stopped_ = stop is not None and stop.is_set()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _stopping(self) -> bool:
        """Whether ``fit``'s caller asked training to end (checked by the models after each epoch)."""
        stop = getattr(self, "_stop", None)
        return stop is not None and stop.is_set()

    def _fit(self, train: Ratings, data: RatingsData | None, progress: Progress | None) -> None:
        raise NotImplementedError

    # -- asking ----------------------------------------------------------------------------
    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings (n,) for index pairs: baseline for unseen users/items, clipped."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if not self.predicts_ratings:
            raise ValueError(f"{self.name} ranks items (implicit feedback); it does not predict ratings")
        out = np.asarray(self._predict_raw(users, items), dtype=np.float64)
        unseen = ~(self.known_users_[users] & self.known_items_[items])
        if unseen.any():
            out[unseen] = self.baseline_.baseline_pairs(users[unseen], items[unseen])
        return np.clip(out, *self.rating_range_).astype(np.float32)

    def clip_scores(self, s: np.ndarray) -> np.ndarray:
        """Scores as ``score_users`` returns them: ratings clipped to the rating range; others as they are."""
        return np.clip(s, *self.rating_range_) if self.predicts_ratings else s

    def score_users(self, users, clip: bool = True) -> np.ndarray:
        """(B, M) scores of all items for ``users`` (ratings for rating models, with the baseline
        for unseen users/items). Higher is better. Ratings are clipped to the rating range unless
        ``clip`` is False, which is what ranking uses: clipping ties every item predicted above
        the top rating, and a tie goes to the lower item index, not to the higher prediction."""
        users = np.asarray(users, dtype=np.int64)
        s = np.asarray(self._score_raw(users), dtype=np.float32)
        if not self.predicts_ratings:
            return s
        s = s.copy() if not s.flags.writeable else s
        cold_items = ~self.known_items_
        cold_users = ~self.known_users_[users]
        if cold_items.any() or cold_users.any():
            base = self.baseline_.baseline_rows(users)
            s[:, cold_items] = base[:, cold_items]
            s[cold_users] = base[cold_users]
        return np.clip(s, *self.rating_range_, out=s) if clip else s

    def _predict_raw(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        # default: through the user scores, one batch of distinct users at a time
        out = np.empty(len(users), np.float64)
        uniq, inv = np.unique(users, return_inverse=True)
        for s in range(0, len(uniq), 512):
            chunk = uniq[s:s + 512]
            scores = self._score_raw(chunk)
            sel = (inv >= s) & (inv < s + len(chunk))
            out[sel] = scores[inv[sel] - s, items[sel]]
        return out

    def _score_raw(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- views for the page ----------------------------------------------------------------
    def item_embeddings(self) -> tuple[np.ndarray, str] | None:
        """(M, K) item vectors for a 2-D map, and what they are; None if the model has none."""
        return None

    def fold_in(self, items, ratings, clip: bool = True) -> np.ndarray:
        """Scores (M,) for a new user who rated ``items`` with ``ratings`` (no refit); ratings are
        clipped to the rating range unless ``clip`` is False (for ranking, as in ``score_users``)."""
        s = np.asarray(self._fold_in_raw(np.asarray(items, np.int64), ratings), np.float32)
        return self.clip_scores(s) if clip else s

    def _fold_in_raw(self, items: np.ndarray, ratings) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no fold-in for new users")

    fold_in_how: ClassVar[str] = ""  # one sentence for people: how ``fold_in`` works

    def describe(self) -> dict:
        return {"model": self.name, **self.config.to_dict()}
