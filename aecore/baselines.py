"""PCA at the same code size, the yardstick every autoencoder is compared with.

``PCABasis`` is scikit-learn-shaped (``components_``, ``mean_``, ``transform``,
``inverse_transform``) but solves the D x D covariance eigenproblem in float64, which on
MNIST (60,000 x 784) takes a fraction of a second instead of a full SVD of the data.
Tests check it against ``sklearn.decomposition.PCA``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy.linalg.blas import dsyrk

__all__ = ["PCABasis", "fit_pca", "pca_error_curve", "recovered_components"]


CHUNK_ROWS = 4096  # rows converted to float64 at a time: ~25 MB at D = 784 instead of two copies of the data


def _chunks(x: np.ndarray):
    """float64 copies of ``x``'s rows, a chunk at a time (copies: callers modify them in place)."""
    for i in range(0, x.shape[0], CHUNK_ROWS):
        yield np.array(x[i:i + CHUNK_ROWS], dtype=np.float64)


@dataclass(frozen=True)
class PCABasis:
    mean_: np.ndarray                # (D,)
    components_: np.ndarray          # (K, D) orthonormal rows, by decreasing variance
    explained_variance_: np.ndarray  # (K,)
    all_variances_: np.ndarray       # (D,) every eigenvalue, for the exact error-vs-K curve

    @property
    def n_components_(self) -> int:
        return self.components_.shape[0]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scores (N, K), float32; computed in float64 a chunk of rows at a time. One row (D,) gives (K,)."""
        x = np.asarray(x)
        if x.ndim == 1:
            return self.transform(x[None])[0]
        out = np.empty((x.shape[0], self.n_components_), np.float32)
        for i, xb in zip(range(0, x.shape[0], CHUNK_ROWS), _chunks(x)):
            out[i:i + CHUNK_ROWS] = (xb - self.mean_) @ self.components_.T
        return out

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Reconstructions (N, D) from scores, float32; computed in float64 a chunk at a time."""
        z = np.asarray(z)
        if z.ndim == 1:
            return self.inverse_transform(z[None])[0]
        out = np.empty((z.shape[0], self.components_.shape[1]), np.float32)
        for i, zb in zip(range(0, z.shape[0], CHUNK_ROWS), _chunks(z)):
            out[i:i + CHUNK_ROWS] = zb @ self.components_ + self.mean_
        return out

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        return self.inverse_transform(self.transform(x))

    def truncate(self, k: int) -> "PCABasis":
        return PCABasis(self.mean_, self.components_[:k], self.explained_variance_[:k], self.all_variances_)


_CACHE: "OrderedDict[tuple, PCABasis]" = OrderedDict()


def _full_basis(x: np.ndarray) -> PCABasis:
    n, d = x.shape
    mean = np.zeros(d)
    for xb in _chunks(x):
        mean += xb.sum(axis=0)
    mean /= n
    # the scatter matrix Σ_i (x_i - μ)(x_i - μ)ᵀ, one chunk at a time; BLAS syrk fills one triangle
    # (half the products of xcᵀ xc); xcᵀ of a C-ordered chunk is the Fortran-ordered (D, rows) it wants
    scatter = np.zeros((d, d), order="F")
    for xb in _chunks(x):
        xb -= mean
        scatter = dsyrk(1.0, xb.T, beta=1.0, c=scatter, trans=0, lower=0, overwrite_c=1)
    scatter = np.triu(scatter) + np.triu(scatter, 1).T
    cov = scatter / max(n - 1, 1)  # (D, D), the unbiased covariance sklearn reports
    evals, evecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    # sign convention: largest-magnitude entry of each component positive (stable across runs)
    signs = np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(d)])
    signs[signs == 0] = 1
    comps = (evecs * signs).T
    k_max = min(n, d)
    return PCABasis(mean, comps[:k_max], evals[:k_max], evals)


def fit_pca(x_train: np.ndarray, k: int) -> PCABasis:
    """PCA with min(k, D, N) components (an overcomplete K keeps every component).

    The full basis of an array is cached, so the pages,
    the trainer and the comparison at several K share one eigendecomposition.
    """
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    # identity plus a fingerprint of 64 rows, so a new array at a recycled address is not mistaken
    step = max(1, x_train.shape[0] // 64)
    key = (id(x_train), x_train.shape, hash(np.ascontiguousarray(x_train[::step]).tobytes()))
    basis = _CACHE.get(key)
    if basis is None:
        basis = _full_basis(x_train)
        _CACHE[key] = basis
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    return basis.truncate(k)


def pca_error_curve(x_train: np.ndarray, x_eval: np.ndarray | None = None) -> np.ndarray:
    """Mean per-image SSE of PCA (fit on x_train) on x_eval, for every K = 0 .. min(N, D).

    Entry K is  mean_i || x_i - x̂_i(K) ||²  with  x̂(K) = μ + V_K V_Kᵀ (x - μ).  With z = Vᵀ(x - μ)
    the scores on all components, the error is ||x - μ||² - Σ_{j<=K} z_j² (V orthonormal), so one
    projection and a cumulative sum give the whole curve.  On the training set it equals
    (N-1)/N times the sum of the discarded eigenvalues Σ_{j>K} λ_j (``all_variances_``); on
    held-out data it is slightly higher.  x_eval=None evaluates on x_train.
    """
    x_train = np.asarray(x_train)
    basis = fit_pca(x_train, x_train.shape[1])  # every component (min(N, D) of them)
    if x_eval is None:  # the eigenvalues already say it: no pass over the N rows (1.2 s on MNIST)
        n = x_train.shape[0]
        tail = np.concatenate([np.cumsum(basis.all_variances_[::-1])[::-1], [0.0]])  # Σ_{j>=K} λ_j
        return np.clip(tail[:basis.n_components_ + 1] * (n - 1) / max(n, 1), 0.0, None)
    x = np.asarray(x_eval)
    z2_sum = np.zeros(basis.components_.shape[0])
    total = 0.0
    for xb in _chunks(x):  # float64 one chunk at a time, not three (N, D) copies
        xb -= basis.mean_  # (rows, D)
        z2_sum += np.square(xb @ basis.components_.T).sum(axis=0)  # squared scores, summed over rows
        total += float(np.square(xb).sum())  # error at K = 0 (reconstruct with the mean)
    m = max(x.shape[0], 1)
    curve = total / m - np.concatenate([[0.0], np.cumsum(z2_sum / m)])
    return np.clip(curve, 0.0, None)


def recovered_components(decoder_W: np.ndarray, x_train: np.ndarray, k: int | None = None) -> np.ndarray:
    """Principal directions recovered from a linear autoencoder's decoder weights, (k, D).

    A linear autoencoder at its optimum spans PCA's top-K subspace, but its K columns are any
    invertible mix of the components (W* = V_K A), so the columns themselves do not match
    PCA's. The subspace does, so do PCA *inside* it:

        Q = orthonormal basis of col(W*)  (thin SVD W* = U S Rᵀ, Q = U; D x K)
        C = Qᵀ Σ Q   the data covariance seen inside the subspace (K x K), Σ from the cached
                     eigendecomposition of x_train's covariance (as in ``fit_pca``)
        C = R Λ Rᵀ   eigendecomposition, eigenvalues descending
        components = (Q R)ᵀ

    When col(W*) = span(V_K) the subspace is invariant under Σ, so Q R = V_K up to the sign of
    each column: the components come back in PCA's order. Signs follow PCA's convention
    (largest-magnitude entry positive). ``k`` keeps the first k (default: all K).
    """
    W = np.asarray(decoder_W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"decoder_W must be (D, K), got shape {W.shape}")
    x = np.asarray(x_train)
    if x.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ValueError(f"x_train must be (N, D={W.shape[0]}), got shape {x.shape}")
    u, s, _ = np.linalg.svd(W, full_matrices=False)  # u: (D, K)
    rank = int(np.sum(s > s.max() * 1e-10)) if s.size and s.max() > 0 else 0
    q = u[:, :rank]  # (D, r) orthonormal basis of the decoder's column space
    # C = Qᵀ Σ Q with Σ = Vᵀ diag(λ) V from the cached eigendecomposition of the data (exact:
    # the dropped eigenvalues of a rank-deficient Σ are 0), so a page can call this on every
    # snapshot without another pass over the data
    full = fit_pca(x_train, x.shape[1])
    qv = q.T @ full.components_.T  # (r, K_max)
    cov = (qv * full.explained_variance_) @ qv.T  # (r, r)
    evals, r = np.linalg.eigh(cov)
    comps = (q @ r[:, np.argsort(evals)[::-1]]).T  # (r, D), by decreasing variance
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1
    comps = comps * signs[:, None]
    if k is not None:
        if k < 1:
            raise ValueError(f"k={k} must be >= 1")
        comps = comps[:k]
    return comps
