"""Named datasets: a registry of specs, where their files are looked for, and ``load``.

Lookup order for an IDX set ``<name>`` and each of its files:
  1. ``<root>/<name>/`` where root is the ``root`` argument, else ``$AECORE_DATA``;
  2. ``cache_dir()/<name>/`` (``$AECORE_CACHE``, else ``~/.cache/aecore``);
  3. the spec's system folders (Debian's ``/usr/share/datasets/fashion-mnist/``);
  4. if ``download``: fetched from ``BASE_URLS[name]`` (in order) into the cache, checksummed.
In every folder a file may also be uncompressed (``train-images-idx3-ubyte``) or use the
dotted spelling of some copies (``train-images.idx3-ubyte``).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import Dataset, make_dataset
from .download import RemoteFile, fetch
from .errors import DataError
from .idx import read_idx

__all__ = [
    "DATASETS", "BASE_URLS", "IdxSpec", "BundledSpec", "register",
    "load", "list_datasets", "cache_dir", "data_root", "clear_memory_cache",
]

ProgressFn = Callable[[int, int], None]
IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def cache_dir() -> Path:
    """Where downloads go: ``$AECORE_CACHE``, else ``~/.cache/aecore`` (read on each call)."""
    env = os.environ.get("AECORE_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aecore"


def data_root() -> Path | None:
    """The shared data root ``$AECORE_DATA`` (``<root>/<name>/<files>``), or None when unset."""
    env = os.environ.get("AECORE_DATA", "").strip()
    return Path(env).expanduser() if env else None


# ---------------------------------------------------------------------------------------
# where each IDX set can be downloaded from; tests point these at 127.0.0.1
BASE_URLS: dict[str, list[str]] = {
    "mnist": [
        "http://yann.lecun.com/exdb/mnist/",  # the publisher
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando Research
    ],
}


@dataclass(frozen=True)
class IdxSpec:
    """A dataset shipped as four IDX files (train/test images and labels), uint8 pixels."""

    name: str
    description: str
    n_train: int
    n_test: int
    shape: tuple[int, ...]
    files: tuple[RemoteFile, RemoteFile, RemoteFile, RemoteFile]  # in IDX_ROLES order
    label_names: tuple[str, ...] | None = None
    system_dirs: tuple[str, ...] = ()
    homepage: str = ""

    def search_dirs(self, root: str | os.PathLike | None) -> list[tuple[Path, str]]:
        """(folder, what it is) in lookup order."""
        dirs = []
        base = Path(root).expanduser() if root is not None else data_root()
        if base is not None:
            dirs.append((base / self.name, "root argument" if root is not None else "AECORE_DATA"))
        dirs.append((cache_dir() / self.name, "cache"))
        dirs.extend((Path(d), "system copy") for d in self.system_dirs)
        return dirs

    def locate(self, root) -> dict[str, Path | None]:
        """fname -> first existing file in lookup order (or None)."""
        dirs = [d for d, _ in self.search_dirs(root)]
        return {f.fname: _first_existing(dirs, f.fname) for f in self.files}

    def info(self, root) -> dict:
        found = self.locate(root)
        ok = all(p is not None for p in found.values())
        folders = sorted({str(p.parent) for p in found.values() if p is not None})
        return self._info(available=ok, location="; ".join(folders) if ok else None)

    def _info(self, available: bool, location: str | None) -> dict:
        return {
            "name": self.name, "description": self.description, "n_train": self.n_train,
            "n_test": self.n_test, "shape": self.shape, "available_offline": available,
            "location": location,
        }

    def load(self, root, download: bool, progress: ProgressFn | None, memory_cache: bool = True) -> Dataset:
        found = self.locate(root)
        missing = [f for f in self.files if found[f.fname] is None]
        if missing:
            hint = self._placement_hint(missing, root)
            if not download:
                raise DataError(f"dataset {self.name!r} is not available offline (download=False). {hint}")
            got = fetch(missing, cache_dir() / self.name, BASE_URLS.get(self.name, []), progress, hint)
            found.update(got)
        # key on path + mtime + size so a replaced file is re-read, an unchanged one is not
        key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in found.values())
        return (_load_idx_cached if memory_cache else _load_idx_cached.__wrapped__)(self, key)

    def _placement_hint(self, missing: list[RemoteFile], root) -> str:
        names = ", ".join(f.fname for f in missing)
        base = Path(root).expanduser() if root is not None else data_root()
        if base is not None:
            source = "root argument" if root is not None else "AECORE_DATA variable"
            where = f"'{base / self.name}' (the data root, from the {source})"
        else:
            where = f"'<folder>/{self.name}/' and set AECORE_DATA=<folder>"
        urls = " or ".join(BASE_URLS.get(self.name, [])) or self.homepage or "the publisher"
        return (
            f"Missing {names}: put them into {where}, or into the cache folder "
            f"'{cache_dir() / self.name}' (AECORE_CACHE moves it). Get them from {urls}."
        )


def _candidates(fname: str) -> list[str]:
    raw = fname[:-3] if fname.endswith(".gz") else fname
    dotted = raw.replace("-idx", ".idx", 1)
    names = [fname, raw, dotted, dotted + ".gz"]
    return list(dict.fromkeys(names))  # unique, in order


def _first_existing(dirs: list[Path], fname: str) -> Path | None:
    for d in dirs:
        for cand in _candidates(fname):
            p = d / cand
            if p.is_file():
                return p
    return None


@functools.lru_cache(maxsize=2)  # one MNIST-sized set is ~220 MB of float32
def _load_idx_cached(spec: IdxSpec, key: tuple) -> Dataset:
    paths = [Path(k[0]) for k in key]
    arrays = dict(zip(IDX_ROLES, (read_idx(p) for p in paths)))
    path_of = dict(zip(IDX_ROLES, paths))
    n_classes = len(spec.label_names) if spec.label_names else None
    xs, ys = [], []
    for split, n in (("train", spec.n_train), ("test", spec.n_test)):
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        ip, lp = path_of[f"{split}_images"], path_of[f"{split}_labels"]
        if img.dtype != np.uint8 or img.shape != (n, *spec.shape):
            raise DataError(
                f"IDX file '{ip}': header says {img.dtype} {img.shape}, expected uint8 "
                f"{(n, *spec.shape)} for {spec.name} {split} images; delete or replace the file"
            )
        if lab.dtype != np.uint8 or lab.shape != (n,):
            raise DataError(
                f"IDX file '{lp}': header says {lab.dtype} {lab.shape}, expected uint8 ({n},) "
                f"for {spec.name} {split} labels; delete or replace the file"
            )
        if n_classes is not None and n and int(lab.max()) >= n_classes:
            raise DataError(f"IDX file '{lp}': label {int(lab.max())} out of range 0..{n_classes - 1}")
        # (N, H, W) uint8 -> (N, H*W) float32 in [0, 1], in one pass
        xs.append(np.divide(img.reshape(n, -1), np.float32(255.0), dtype=np.float32))
        ys.append(lab.astype(np.int64))
    return make_dataset(
        spec.name, xs[0], ys[0], xs[1], ys[1], shape=spec.shape, kind="image",
        label_names=spec.label_names,
    )


@dataclass(frozen=True)
class BundledSpec:
    """A dataset that ships inside a dependency (no files to find or fetch)."""

    name: str
    description: str
    n_train: int
    n_test: int
    shape: tuple[int, ...]
    loader: Callable[[], Dataset]
    location: str

    def info(self, root) -> dict:
        return {
            "name": self.name, "description": self.description, "n_train": self.n_train,
            "n_test": self.n_test, "shape": self.shape, "available_offline": True,
            "location": self.location,
        }

    def load(self, root, download: bool, progress: ProgressFn | None, memory_cache: bool = True) -> Dataset:
        return self.loader()  # (small: always kept)


@functools.lru_cache(maxsize=1)
def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / np.float32(16.0)  # (1797, 64), pixels 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return make_dataset(
        "digits", x_tr, y_tr, x_te, y_te, shape=(8, 8), kind="image",
        label_names=tuple(str(i) for i in range(10)),
    )


# ---------------------------------------------------------------------------------------
DATASETS: dict[str, IdxSpec | BundledSpec] = {}


def register(spec: IdxSpec | BundledSpec) -> IdxSpec | BundledSpec:
    """Add a dataset to the registry under ``spec.name`` (replacing one of the same name)."""
    DATASETS[spec.name] = spec
    return spec


register(BundledSpec(
    name="digits",
    description="8x8 handwritten digits (UCI, bundled with scikit-learn); stratified 80/20 split",
    n_train=1437, n_test=360, shape=(8, 8), loader=_load_digits,
    location="bundled with scikit-learn",
))

# sha256 and size of the original .gz files, as in ../shared/data/mnist/SOURCE.md
# (decompressed payload sha256 there too). The MD5s match torchvision's.
register(IdxSpec(
    name="mnist",
    description="MNIST handwritten digits, 28x28 grayscale (LeCun, Cortes, Burges)",
    n_train=60000, n_test=10000, shape=(28, 28),
    files=(
        RemoteFile("train-images-idx3-ubyte.gz",
                   "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    ),
    label_names=tuple(str(i) for i in range(10)),
    homepage="http://yann.lecun.com/exdb/mnist/",
))

# sha256 and size of the .gz files as published by Zalando Research (their README gives the
# MD5s 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...; the sha256 are the widely
# published sums of those same files). Debian's dataset-fashion-mnist re-gzips them without
# the stored file name, so its .gz files are 23-24 bytes shorter and hash differently, but
# their decompressed payloads are the published ones (sha256 c59f468a..., bad3541b...,
# 5b4141f0..., 0402a96d...). Local files are therefore only header-checked, never hashed.
register(IdxSpec(
    name="fashion-mnist",
    description="Fashion-MNIST: Zalando article images, 28x28 grayscale, 10 classes",
    n_train=60000, n_test=10000, shape=(28, 28),
    files=(
        RemoteFile("train-images-idx3-ubyte.gz",
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    ),
    label_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
))


def _spec(name: str) -> IdxSpec | BundledSpec:
    if not isinstance(name, str):
        raise DataError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


def load(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
    memory_cache: bool = True,
) -> Dataset:
    """Load a registered dataset by name (see ``list_datasets``).

    ``root`` overrides ``$AECORE_DATA``; ``download=False`` never touches the network and
    raises DataError naming the missing files and where to put them. ``progress(done, total)``
    is called with byte counts (over all files) while downloading. Parsed arrays are cached in
    memory, so a second load of unchanged files is instant; the arrays are read-only.
    ``memory_cache=False`` parses the files without keeping the arrays here (for a caller that
    keeps its own copy, such as the dashboard).
    """
    return _spec(name).load(root=root, download=download, progress=progress, memory_cache=memory_cache)


def list_datasets(root: str | os.PathLike | None = None) -> list[dict]:
    """One dict per registered dataset: name, description, n_train, n_test, shape,
    available_offline, location (the folder(s) its files were found in, or None)."""
    return [spec.info(root) for spec in DATASETS.values()]


def clear_memory_cache() -> None:
    """Forget parsed arrays kept in memory (files on disk are untouched)."""
    _load_idx_cached.cache_clear()
    _load_digits.cache_clear()
