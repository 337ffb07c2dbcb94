"""2-D views of codes (and of raw inputs): the code itself when K = 2, PCA, or UMAP.

    points, method = embed_2d(codes)                  # auto: the code if K == 2, else PCA
    points, method = embed_2d(codes, method="umap")   # UMAP (lazy import)

UMAP compiles its numba kernels on the first call in a process (10-20 s). A page calls
``start_umap_warmup()`` once (idempotent: one daemon thread per process) and shows PCA
until ``umap_ready()`` says the kernels are compiled. Results are cached by a hash of the
codes, so redrawing a page never recomputes a map.

Also here: ``encode_array`` / ``reconstruct_array``, the model -> numpy helpers a view needs.
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

__all__ = ["METHODS", "METHOD_LABELS", "Embedding2D", "embed_2d", "warm_umap", "start_umap_warmup",
           "umap_ready", "umap_error", "encode_array", "reconstruct_array", "sample_indices", "clear_cache"]

METHODS = ("auto", "code", "pca", "umap")
# what each ``method_used`` means, for captions
METHOD_LABELS = {
    "code": "the code itself (K = 2)",
    "code-1d": "the code itself (K = 1) on x, y = 0",
    "pca": "the first two principal components",
    "umap": "UMAP (15 neighbours)",
}


class Embedding2D(NamedTuple):
    points: np.ndarray  # (N, 2) float64
    method: str         # one of METHOD_LABELS


_CACHE: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_CACHE_SIZE = 32
_LOCK = threading.Lock()

_UMAP_READY = threading.Event()
_UMAP_THREAD: threading.Thread | None = None
_UMAP_ERROR: str | None = None
_UMAP_LOCK = threading.Lock()


def _key(codes: np.ndarray, method: str, seed: int) -> tuple:
    c = np.ascontiguousarray(codes)
    digest = hashlib.blake2b(c.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return (digest, c.shape, c.dtype.str, method, int(seed))


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _pca_2d(codes: np.ndarray) -> np.ndarray:
    """Scores on the first two principal components (sklearn's PCA up to the sign of each axis)."""
    from .baselines import _full_basis

    x = np.asarray(codes, dtype=np.float64)
    basis = _full_basis(x)  # not fit_pca: its cache is meant for training sets, codes are transient
    comps = basis.components_[:2]  # (<=2, K)
    pts = (x - basis.mean_) @ comps.T  # (N, <=2)
    if pts.shape[1] < 2:  # one example or K == 1: pad the missing axis with zeros
        pts = np.pad(pts, ((0, 0), (0, 2 - pts.shape[1])))
    return pts


def _umap_2d(codes: np.ndarray, seed: int) -> np.ndarray:
    import umap  # lazy: importing it pulls in numba (seconds)

    n = codes.shape[0]
    if n < 4:  # UMAP's spectral init needs a few points; PCA is the honest fallback
        return _pca_2d(codes)
    # random_state makes it deterministic (and serial: the parallel kernels would compile again)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed, init="spectral")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", spectral init on tiny sets
        return np.asarray(reducer.fit_transform(np.asarray(codes, dtype=np.float32)), dtype=np.float64)


def embed_2d(codes: np.ndarray, method: str = "auto", seed: int = 0) -> Embedding2D:
    """A 2-D map of ``codes`` (N, K): returns ``(points (N, 2), method_used)``.

    ``auto``: the code itself when K == 2 (exact, no copy of meaning lost), ``code-1d`` when
    K == 1 (x = the code, y = 0, so nearest neighbours are still code distances), PCA
    otherwise. ``code`` asks for the code itself (K must be <= 2). ``pca`` and ``umap`` always
    reduce (PCA of a K = 2 code is a rotation of it).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed; choose one of {', '.join(map(repr, METHODS))}")
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] < 1:
        raise ValueError(f"codes must be a non-empty (N, K) array, got shape {codes.shape}")
    if not np.all(np.isfinite(codes)):
        raise ValueError("codes contain NaN or inf; the model may have diverged")
    k = codes.shape[1]
    if method == "code" and k > 2:
        raise ValueError(f"method='code' needs K <= 2 (the code is the map); got K={k}. Use 'pca' or 'umap'")
    if method in ("auto", "code") and k <= 2:
        if k == 2:
            return Embedding2D(codes.astype(np.float64, copy=True), "code")
        return Embedding2D(np.column_stack([codes[:, 0].astype(np.float64), np.zeros(len(codes))]), "code-1d")
    used = "pca" if method == "auto" else method
    key = _key(codes, used, seed)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return Embedding2D(hit.copy(), used)
    pts = _umap_2d(codes, seed) if used == "umap" else _pca_2d(codes)
    if used == "umap":
        _UMAP_READY.set()  # a finished UMAP fit means its kernels are compiled
    with _LOCK:
        _CACHE[key] = pts
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return Embedding2D(pts.copy(), used)


# --- UMAP warm-up ------------------------------------------------------------------------
def warm_umap() -> None:
    """Import UMAP and compile its kernels with a small fit (blocks 10-20 s the first time)."""
    global _UMAP_ERROR
    if _UMAP_READY.is_set():
        return
    try:
        x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        _umap_2d(x, seed=0)
    except Exception as exc:  # missing package, numba failure: say so instead of dying in a thread
        _UMAP_ERROR = f"{type(exc).__name__}: {exc}"
        raise
    _UMAP_READY.set()


def _warm_quietly() -> None:
    try:
        warm_umap()
    except Exception:
        pass  # recorded in _UMAP_ERROR


def _import_pandas_first() -> None:
    """Import pandas in the calling thread, before the warm-up thread imports it (umap-learn does).

    plotly looks pandas up in ``sys.modules`` without importing it; while another thread is still
    importing pandas it finds a half-initialized module and fails ("partially initialized module
    'pandas' has no attribute 'Series'"): the Latent page's first draw on MNIST lost its last two
    figures to this, for about 0.3 s of every warm-up.
    """
    try:
        import pandas  # noqa: F401
    except ImportError:  # (then umap-learn cannot import it either)
        pass


def start_umap_warmup() -> threading.Thread | None:
    """Start ``warm_umap`` in one daemon thread per process; returns it (None when already warm)."""
    global _UMAP_THREAD
    with _UMAP_LOCK:
        if _UMAP_READY.is_set():
            return None
        if _UMAP_THREAD is None or (not _UMAP_THREAD.is_alive() and _UMAP_ERROR is None):
            _import_pandas_first()
            _UMAP_THREAD = threading.Thread(target=_warm_quietly, name="aecore-umap-warmup", daemon=True)
            _UMAP_THREAD.start()
        return _UMAP_THREAD


def umap_ready() -> bool:
    """True once UMAP's kernels are compiled in this process (a UMAP map is then ~1-3 s)."""
    return _UMAP_READY.is_set()


def umap_error() -> str | None:
    """Why warming UMAP failed (e.g. umap-learn missing), or None."""
    return _UMAP_ERROR


# --- model -> numpy ----------------------------------------------------------------------
def _run_batched(model, fn_name: str, x: np.ndarray, batch: int) -> np.ndarray:
    import torch

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be (N, D), got shape {x.shape}")
    param = next(model.parameters())
    fn = getattr(model, fn_name)
    # encode() and reconstruct() do not depend on train/eval mode (corruption happens in
    # loss_terms, the VAE's reconstruct uses μ), so a model shared between threads is not touched
    with torch.no_grad():
        outs = [fn(torch.tensor(x[i:i + batch], device=param.device, dtype=param.dtype)).cpu().numpy()
                for i in range(0, max(len(x), 1), batch)]  # an empty x still gives (0, K)
    return np.concatenate(outs).astype(np.float32, copy=False)


def sample_indices(n: int, max_n: int, seed: int = 0) -> np.ndarray:
    """All of range(n) when n <= max_n, else a seeded sorted subset of max_n (maps stay readable)."""
    if n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def encode_array(model, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Codes (N, K) of x (N, D) (the VAE's mean μ), in batches without gradients; float32 numpy."""
    return _run_batched(model, "encode", x, batch)


def reconstruct_array(model, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Reconstructions (N, D) of x (N, D) (from μ for the VAE, uncorrupted input); float32 numpy."""
    return _run_batched(model, "reconstruct", x, batch)
