"""Statistics of the code units h_k over a data set: how often and how strongly each unit fires.

    s = unit_stats(model, x_test, target=0.05)
    s.dead_fraction        # ReLU units that are never > 0 on x (they get no gradient: "dead")
    s.mean_activation      # (K,) mean h_k over x, to hold against a sparsity target ρ
    s.counts, s.edges      # histogram of every activation h_k(x_i)

The sparsity target ρ is the average activation a sparse code aims for (Ng's CS294A notes
on the sparse autoencoder use ρ = 0.05); the L1 penalty λ Σ|h_k| has no explicit target, so
the target here is a yardstick to compare the means with, not a training setting.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .embedding import encode_array

__all__ = ["UnitStats", "unit_stats", "DEFAULT_TARGET"]

DEFAULT_TARGET = 0.05


@dataclass(frozen=True)
class UnitStats:
    activation: str              # the code layer's nonlinearity ("relu", "sigmoid", "linear", ...)
    counts: np.ndarray           # (bins,) how many activations h_k(x_i) fall in each bin
    edges: np.ndarray            # (bins + 1,) bin edges
    mean_activation: np.ndarray  # (K,) mean of h_k over the examples
    max_activation: np.ndarray   # (K,) largest h_k over the examples
    fraction_active: np.ndarray  # (K,) fraction of examples with h_k > 0
    dead: np.ndarray             # (K,) bool: never > 0 on the data
    target: float                # the sparsity target ρ the means are compared with

    @property
    def dead_fraction(self) -> float:
        """Fraction of units never > 0 on the data (dead ReLUs when the code is ReLU)."""
        return float(self.dead.mean()) if self.dead.size else 0.0

    @property
    def above_target(self) -> np.ndarray:
        """(K,) bool: units whose mean activation exceeds the target."""
        return self.mean_activation > self.target

    @property
    def mean_fraction_active(self) -> float:
        """Average over examples of the fraction of units with h_k > 0 (how dense a code is)."""
        return float(self.fraction_active.mean()) if self.fraction_active.size else 0.0


def _code_activation(model) -> str:
    """The nonlinearity of the code layer: a deep stack's code is linear, a VAE's mean μ too."""
    if hasattr(model, "code_activation"):
        return str(model.code_activation)
    if hasattr(model, "encode_dist"):
        return "linear"
    return str(getattr(getattr(model, "cfg", None), "activation", "unknown"))


def unit_stats(model, x: np.ndarray, target: float = DEFAULT_TARGET, bins: int = 30) -> UnitStats:
    """Histogram of the code activations on ``x`` (N, D), dead units, mean activation per unit."""
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins={bins!r} must be a whole number >= 1")
    if not np.isfinite(target):
        raise ValueError(f"target={target!r} must be a finite number")
    h = encode_array(model, x).astype(np.float64)  # (N, K)
    if h.shape[0] == 0:
        raise ValueError("x is empty: no activations to count")
    counts, edges = np.histogram(h.ravel(), bins=int(bins))
    return UnitStats(activation=_code_activation(model), counts=counts, edges=edges,
                     mean_activation=h.mean(axis=0), max_activation=h.max(axis=0),
                     fraction_active=(h > 0).mean(axis=0), dead=~(h > 0).any(axis=0), target=float(target))
