"""Metrics shared by the trainer, the CLI, the benchmarks and the pages."""
from __future__ import annotations

import numpy as np
from scipy.linalg import subspace_angles

__all__ = ["recon_errors", "principal_angles_deg", "psnr", "linear_probe_accuracy", "knn_accuracy",
           "knn_correct", "paired_sign_test", "component_abs_cosines"]


CHUNK_ROWS = 4096  # rows in float64 at a time: a few MB, not three float64 copies of a whole test set


def recon_errors(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """``mse``: mean squared error per pixel; ``sse``: squared error summed over the pixels of
    one image, averaged over images (the unit of Hinton & Salakhutdinov 2006). Summed in float64."""
    x, x_hat = np.asarray(x), np.asarray(x_hat)
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: x {x.shape} vs reconstruction {x_hat.shape}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x {x.shape} must be a non-empty (examples, features) array")
    total = 0.0
    for i in range(0, x.shape[0], CHUNK_ROWS):
        d = np.asarray(x[i:i + CHUNK_ROWS], np.float64) - np.asarray(x_hat[i:i + CHUNK_ROWS], np.float64)
        total += float(np.square(d, out=d).sum())
    return {"mse": total / x.size, "sse": total / x.shape[0]}


def principal_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, descending) between the column spaces of a (D, K1) and b (D, K2)."""
    return np.degrees(subspace_angles(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def psnr(x: np.ndarray, x_hat: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(range² / MSE); inf for a perfect copy."""
    mse = float(np.mean(np.square(np.asarray(x, np.float64) - np.asarray(x_hat, np.float64))))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def linear_probe_accuracy(z_train, y_train, z_test, y_test, n_labels: int | None = None, seed: int = 0) -> float:
    """Test accuracy of a logistic regression trained on (a seeded subset of n_labels) codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    z_train, y_train = np.asarray(z_train), np.asarray(y_train)
    if n_labels is not None and n_labels < len(y_train):
        idx = np.random.default_rng(seed).choice(len(y_train), size=n_labels, replace=False)
        z_train, y_train = z_train[idx], y_train[idx]
    scaler = StandardScaler().fit(z_train)
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(z_train), y_train)
    return float(clf.score(scaler.transform(np.asarray(z_test)), np.asarray(y_test)))


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour label accuracy of a 2-D (or any) map: the fraction of
    ``knn_correct``."""
    return float(knn_correct(points, labels, k).mean())


# Up to this many dimensions a k-d tree finds neighbours fastest (the Latent page's 2-D maps: 2.7 ms
# for 2,000 points, against 8.4 ms for sklearn's search and 1.35 s for importing sklearn.neighbors on
# a first draw); above it the tree degrades towards a slow brute force (10,000 points in 16-D:
# 1.5 s against sklearn's 0.18 s; in 64-D 5.7 s against 0.23 s), so sklearn searches there.
KDTREE_MAX_DIM = 8


def _neighbours(points: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Indices of each point's ``n_neighbors`` nearest points (itself among them), nearest first."""
    if points.shape[1] <= KDTREE_MAX_DIM:
        from scipy.spatial import cKDTree

        return cKDTree(points).query(points, k=n_neighbors)[1].reshape(len(points), n_neighbors)
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=n_neighbors).fit(points).kneighbors(points, return_distance=False)


def knn_correct(points: np.ndarray, labels: np.ndarray, k: int = 5) -> np.ndarray:
    """Whether each point's leave-one-out k-nearest-neighbour vote gives its own label, (N,) bool.

    Each point is classified by the majority label of its k nearest other points (ties go to
    the smallest label). Vectorized: one neighbour query, one vote count, no Python loop over points.
    """
    points, labels = np.asarray(points, dtype=np.float64), np.asarray(labels)
    n = len(points)
    if points.ndim != 2 or labels.shape != (n,):
        raise ValueError(f"points must be (N, d) and labels (N,); got {points.shape} and {labels.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be an integer >= 1")
    if n < 2:
        raise ValueError(f"knn_accuracy needs at least 2 points, got {n}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points contain NaN or inf: no neighbours can be found (has the model diverged?)")
    k = min(int(k), n - 1)
    idx = _neighbours(points, k + 1)  # (N, k+1), nearest first
    # drop the point itself; with duplicate points it may not come first, so drop it wherever
    # it is (or the farthest neighbour when the query returned k+1 others)
    not_self = idx != np.arange(n)[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]  # non-self columns first, in distance order
    neigh = np.take_along_axis(idx, order, axis=1)  # (N, k)
    classes, y = np.unique(labels, return_inverse=True)  # y: labels as 0..C-1, order kept (tie -> smallest)
    votes = y[neigh]  # (N, k)
    counts = np.zeros((n, len(classes)), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), votes.ravel()), 1)  # (N, C) votes per class
    pred = counts.argmax(axis=1)  # first maximum: the smallest label wins a tie, as np.bincount().argmax()
    return pred == y


def paired_sign_test(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """Two classifiers judged on the same examples: (examples only a gets right, examples only b gets
    right, two-sided p-value of the exact sign test (McNemar's exact test) that neither is better).
    Examples both get right or both get wrong say nothing about which is better."""
    from scipy.stats import binomtest

    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a_correct and b_correct must be (N,) over the same examples; got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return only_a, only_b, p


def component_abs_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|cos| between matching rows of a (K, D) and b (K, D): 1 means the same direction up to sign."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    num = np.abs(np.einsum("kd,kd->k", a, b))
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
