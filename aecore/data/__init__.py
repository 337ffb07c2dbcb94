"""Data for the autoencoder lab: named datasets, IDX files and a user's own files.

    >>> from aecore.data import load
    >>> ds = load("digits")            # bundled with scikit-learn, always offline
    >>> ds.x_train.shape, ds.shape     # ((1437, 64), (8, 8))

Nothing happens at import: no downloads, no environment reads (those happen per call).
"""
from .dataset import Dataset
from .errors import DataError
from .files import load_file
from .idx import read_idx
from .registry import (
    BASE_URLS,
    DATASETS,
    BundledSpec,
    IdxSpec,
    cache_dir,
    clear_memory_cache,
    data_root,
    list_datasets,
    load,
    register,
)
from .download import RemoteFile

__all__ = [
    "DataError", "Dataset", "load", "load_file", "read_idx", "list_datasets", "cache_dir",
    "data_root", "clear_memory_cache", "BASE_URLS", "DATASETS", "IdxSpec", "BundledSpec",
    "RemoteFile", "register",
]
