"""The ``Dataset`` record every loader returns, and the helpers that build one."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = ["Dataset", "KINDS"]

KINDS = ("image", "array")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of example matrices plus what a model needs to know about them.

    ``x_train`` / ``x_test`` are float32, C-contiguous, shape (N, D); row i is one example,
    flattened in C order from ``shape`` (so ``x[i].reshape(shape)`` is the image).
    ``value_range`` is the actual (min, max) of ``x_train``: (0, 1) or inside it means a
    sigmoid output layer fits. Arrays made by this package are read-only (they may be shared
    by an in-memory cache); copy before changing them in place.

    Equality and hashing are by identity (arrays have no useful ``==``).
    """

    name: str
    x_train: np.ndarray  # (N_train, D) float32
    y_train: np.ndarray | None  # (N_train,) int64
    x_test: np.ndarray  # (N_test, D) float32
    y_test: np.ndarray | None  # (N_test,) int64
    shape: tuple[int, ...]  # one example, e.g. (28, 28); (D,) for plain arrays
    kind: str  # "image" | "array"
    value_range: tuple[float, float]
    label_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for field_name in ("x_train", "x_test"):
            x = getattr(self, field_name)
            if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float32:
                raise DataError(
                    f"Dataset {self.name!r}: {field_name} must be a 2-D float32 array, got "
                    f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}"
                )
            if not x.flags.c_contiguous:
                raise DataError(f"Dataset {self.name!r}: {field_name} must be C-contiguous")
        d = self.x_train.shape[1]
        if self.x_test.shape[1] != d:
            raise DataError(
                f"Dataset {self.name!r}: x_test has {self.x_test.shape[1]} columns, x_train has {d}"
            )
        if int(np.prod(self.shape)) != d:
            raise DataError(f"Dataset {self.name!r}: shape={self.shape} does not hold D={d} values")
        if self.kind not in KINDS:
            raise DataError(f"Dataset {self.name!r}: kind={self.kind!r} must be one of {KINDS}")
        for y_name, x_name in (("y_train", "x_train"), ("y_test", "x_test")):
            y, x = getattr(self, y_name), getattr(self, x_name)
            if y is None:
                continue
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (len(x),):
                raise DataError(
                    f"Dataset {self.name!r}: {y_name} must be int64 of shape ({len(x)},), got "
                    f"{getattr(y, 'dtype', type(y).__name__)} {getattr(y, 'shape', '')}"
                )
        if (self.y_train is None) != (self.y_test is None):
            raise DataError(f"Dataset {self.name!r}: y_train and y_test must both be set or both None")

    @property
    def dim(self) -> int:
        """D, the number of values in one example."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """A seeded random subset (original order kept) for quick runs; None keeps a split whole."""
        rng = np.random.default_rng(seed)
        x_tr, y_tr = _take(self.x_train, self.y_train, n_train, "n_train", rng)
        x_te, y_te = _take(self.x_test, self.y_test, n_test, "n_test", rng)
        return make_dataset(
            self.name, x_tr, y_tr, x_te, y_te, shape=self.shape, kind=self.kind,
            label_names=self.label_names,
        )

    def __repr__(self) -> str:
        if self.y_train is None:
            labels = "unlabelled"
        elif self.label_names:
            labels = f"{len(self.label_names)} classes"
        else:
            labels = "labelled"
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"shape={self.shape}, kind={self.kind!r}, value_range={self.value_range}, {labels})"
        )


def _take(x, y, n, arg, rng):
    if n is None:
        return x, y
    total = len(x)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= total:
        raise DataError(f"{arg}={n!r} must be an integer between 1 and {total}")
    idx = np.sort(rng.choice(total, size=int(n), replace=False))
    return x[idx], (None if y is None else y[idx])


def readonly(a: np.ndarray | None) -> np.ndarray | None:
    """Mark an array this package owns as read-only (it may be shared through a cache)."""
    if a is not None:
        a.flags.writeable = False
    return a


def make_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    *,
    shape: tuple[int, ...],
    kind: str,
    label_names: tuple[str, ...] | None = None,
) -> Dataset:
    """Build a Dataset: float32 C-contiguous read-only copies as needed, value_range measured."""
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_test = np.ascontiguousarray(x_test, dtype=np.float32)
    if y_train is not None:
        y_train = np.ascontiguousarray(y_train, dtype=np.int64)
        y_test = np.ascontiguousarray(y_test, dtype=np.int64)
    if x_train.size:
        value_range = (float(x_train.min()), float(x_train.max()))
    else:
        value_range = (0.0, 0.0)
    return Dataset(
        name=name,
        x_train=readonly(x_train),
        y_train=readonly(y_train),
        x_test=readonly(x_test),
        y_test=readonly(y_test),
        shape=tuple(int(s) for s in shape),
        kind=kind,
        value_range=value_range,
        label_names=None if label_names is None else tuple(str(s) for s in label_names),
    )
