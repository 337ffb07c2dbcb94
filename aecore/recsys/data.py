"""Ratings data: MovieLens 100K / 1M and any ratings CSV, stored sparse, with splits.

    >>> from aecore.recsys.data import load_movielens, load_ratings_csv
    >>> data = load_movielens("movielens-100k", split="u1")   # $AECORE_DATA, cache, or GroupLens
    >>> data.train.n_users, data.train.n_items, len(data.train), len(data.test)
    (943, 1682, 80000, 20000)
    >>> data = load_ratings_csv("my.csv")                      # seeded random 90/10 split
    >>> data.skipped                                           # bad rows, counted by reason

Storage is sparse everywhere: ratings are COO triplets (``Ratings``) with CSR views built on
demand; nothing here makes a dense users x items matrix. Models densify a batch of rows at a time.

Where MovieLens is looked for (``<name>`` = ``movielens-100k`` or ``movielens-1m``):
  1. ``<root>/<name>/`` (root = the ``root`` argument, else ``$AECORE_DATA``), the original
     files directly in it (as in ``../shared/data/movielens-100k/``) or in the zip's folder
     (``ml-100k/`` / ``ml-1m/``) below it;
  2. the cache ``cache_dir()/<name>/ml-100k/`` (``$AECORE_CACHE``, else ``~/.cache/aecore``);
  3. if ``download``: the publisher's zip, fetched with ``aecore.data.download.fetch``
     (pooch: checksummed, written atomically) into the cache and extracted atomically
     (into a temporary folder next to the target, then renamed into place).
"""
from __future__ import annotations

import csv
import functools
import math
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import sparse

from ..data.download import RemoteFile, fetch
from ..data.errors import DataError
from ..data.registry import cache_dir, data_root

__all__ = [
    "Ratings", "RatingsData", "MOVIELENS", "MOVIELENS_URLS", "SPLITS", "load_movielens",
    "load_ratings_csv", "load", "random_split", "movielens_info", "clear_memory_cache",
]

ProgressFn = Callable[[int, int], None]
RANDOM = "random"  # a seeded random split (test_fraction of the ratings held out)


# ------------------------------------------------------------------------------ containers
@dataclass(frozen=True, eq=False)
class Ratings:
    """Observed ratings as COO triplets in a fixed ``(n_users, n_items)`` index space.

    ``user``/``item`` are 0-based indices (int64), ``rating`` float32. Views are built on first
    use and kept: ``csr()`` users x items, ``item_csr()`` items x users (both float32), and the
    matching 0/1 ``mask_csr`` / ``item_mask_csr`` (so a rating of 0 is still "observed").
    """

    user: np.ndarray  # (R,) int64
    item: np.ndarray  # (R,) int64
    rating: np.ndarray  # (R,) float32
    n_users: int
    n_items: int

    def __post_init__(self):
        n = len(self.user)
        if len(self.item) != n or len(self.rating) != n:
            raise DataError(f"Ratings: user/item/rating lengths differ ({n}, {len(self.item)}, {len(self.rating)})")
        if n and (self.user.min() < 0 or self.user.max() >= self.n_users
                  or self.item.min() < 0 or self.item.max() >= self.n_items):
            raise DataError(f"Ratings: an index is outside ({self.n_users} users, {self.n_items} items)")

    def __len__(self) -> int:
        return len(self.rating)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    @functools.cached_property
    def _csr(self) -> sparse.csr_matrix:
        m = sparse.csr_matrix((self.rating.astype(np.float32), (self.user, self.item)), shape=self.shape)
        m.sum_duplicates()
        return m

    def csr(self) -> sparse.csr_matrix:
        """Users x items ratings (float32 CSR)."""
        return self._csr

    @functools.cached_property
    def _item_csr(self) -> sparse.csr_matrix:
        return self._csr.T.tocsr()

    def item_csr(self) -> sparse.csr_matrix:
        """Items x users ratings (float32 CSR): row i is item i's vector of user ratings."""
        return self._item_csr

    @functools.cached_property
    def _mask(self) -> sparse.csr_matrix:
        m = self._csr.copy()
        m.data = np.ones_like(m.data)
        return m

    def mask_csr(self) -> sparse.csr_matrix:
        """Users x items, 1 where a rating is observed (float32 CSR)."""
        return self._mask

    @functools.cached_property
    def _item_mask(self) -> sparse.csr_matrix:
        return self._mask.T.tocsr()

    def item_mask_csr(self) -> sparse.csr_matrix:
        return self._item_mask

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    def subset(self, keep: np.ndarray) -> "Ratings":
        """The ratings where the boolean ``keep`` is true (same index space)."""
        return Ratings(self.user[keep], self.item[keep], self.rating[keep], self.n_users, self.n_items)

    @classmethod
    def concat(cls, a: "Ratings", b: "Ratings") -> "Ratings":
        return cls(np.concatenate([a.user, b.user]), np.concatenate([a.item, b.item]),
                   np.concatenate([a.rating, b.rating]), a.n_users, a.n_items)


@dataclass(frozen=True, eq=False)
class RatingsData:
    """A train/test split of one ratings set plus what the pages and mDA-CF need to know.

    ``user_ids`` / ``item_ids`` map an index back to the id in the files. ``item_genres`` is
    (M, G) 0/1; ``user_features`` (N, F) float32 one-hot demographics (MovieLens only).
    ``skipped`` counts bad rows by reason (empty for the official MovieLens files, which are
    read strictly). ``rating_range`` is (min, max) over all ratings: predictions are clipped to it.
    """

    name: str
    split: str
    train: Ratings
    test: Ratings
    user_ids: np.ndarray
    item_ids: np.ndarray
    rating_range: tuple[float, float]
    item_titles: tuple[str, ...] | None = None
    item_genres: np.ndarray | None = None
    genre_names: tuple[str, ...] | None = None
    user_features: np.ndarray | None = None
    user_feature_names: tuple[str, ...] | None = None
    skipped: dict = field(default_factory=dict)
    source: str = ""

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def title(self, item: int) -> str:
        return self.item_titles[item] if self.item_titles else str(self.item_ids[item])

    def genres_of(self, item: int) -> list[str]:
        if self.item_genres is None or self.genre_names is None:
            return []
        return [g for g, on in zip(self.genre_names, self.item_genres[item]) if on]

    def summary(self) -> dict:
        return {"dataset": self.name, "split": self.split, "n_users": self.n_users, "n_items": self.n_items,
                "n_train": len(self.train), "n_test": len(self.test), "rating_range": list(self.rating_range),
                "skipped": dict(self.skipped)}


# ------------------------------------------------------------------------------ splits
def random_split(ratings: Ratings, test_fraction: float = 0.1, seed: int = 0) -> tuple[Ratings, Ratings]:
    """Seeded random split of the ratings: (train, held-out) with round(fraction * R) held out."""
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction={test_fraction!r} must be between 0 and 1 (exclusive)")
    n = len(ratings)
    n_test = int(round(test_fraction * n))
    if n < 2 or n_test < 1 or n_test >= n:
        raise DataError(f"cannot hold out {test_fraction:g} of {n} rating(s): need at least one on each side")
    perm = np.random.default_rng(seed).permutation(n)
    held = np.zeros(n, dtype=bool)
    held[perm[:n_test]] = True
    return ratings.subset(~held), ratings.subset(held)


# ------------------------------------------------------------------------------ MovieLens specs
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
GENRES_1M = GENRES_100K[1:]  # ML-1M has no "unknown" genre
OCCUPATIONS_100K = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
                    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
                    "retired", "salesman", "scientist", "student", "technician", "writer")
# ML-1M codes 0..20 (its README)
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                  "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
# ML-1M's age groups; 100K ages are put into the same groups so both have the same features
AGE_GROUPS = ((0, 18, "age<18"), (18, 25, "age 18-24"), (25, 35, "age 25-34"), (35, 45, "age 35-44"),
              (45, 50, "age 45-49"), (50, 56, "age 50-55"), (56, 200, "age 56+"))


@dataclass(frozen=True)
class MovieLensSpec:
    name: str
    folder: str  # the folder inside the publisher's zip
    archive: RemoteFile
    required: tuple[str, ...]  # files that must all be present
    n_users: int
    n_items: int
    n_ratings: int
    splits: tuple[str, ...]
    description: str
    homepage: str


# sha256 of the zips as published by GroupLens. They could not be checked here (no network on
# the development machine): they are the values that many independent projects pin for these
# archives (ml-100k.zip: 4,924,029 bytes, md5 0e33842e24a9c977be4e0107933c0723 as GroupLens
# publishes it; ml-1m.zip: md5 c4d9eecfca2ab87c1945afe126590906). If GroupLens ever re-packs a zip,
# the download fails with "checksum mismatch: expected ..., got ...": verify, then update here.
MOVIELENS: dict[str, MovieLensSpec] = {
    "movielens-100k": MovieLensSpec(
        name="movielens-100k", folder="ml-100k",
        archive=RemoteFile("ml-100k.zip", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                           4924029),
        required=("u.data", "u.item", "u.user"),
        n_users=943, n_items=1682, n_ratings=100000,
        splits=("u1", "u2", "u3", "u4", "u5", "ua", "ub", RANDOM),
        description="MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users (GroupLens)",
        homepage="https://grouplens.org/datasets/movielens/100k/",
    ),
    "movielens-1m": MovieLensSpec(
        name="movielens-1m", folder="ml-1m",
        archive=RemoteFile("ml-1m.zip", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                           5917549),
        required=("ratings.dat", "movies.dat", "users.dat"),
        n_users=6040, n_items=3952, n_ratings=1000209,
        splits=(RANDOM,),
        description="MovieLens 1M: 1,000,209 ratings (1-5) of 3,706 movies by 6,040 users (GroupLens)",
        homepage="https://grouplens.org/datasets/movielens/1m/",
    ),
}
SPLITS = {name: spec.splits for name, spec in MOVIELENS.items()}
# where each zip is downloaded from, in order; tests point these at 127.0.0.1
MOVIELENS_URLS: dict[str, list[str]] = {
    "movielens-100k": ["https://files.grouplens.org/datasets/movielens/"],
    "movielens-1m": ["https://files.grouplens.org/datasets/movielens/"],
}


def _spec(name: str) -> MovieLensSpec:
    key = str(name).strip().lower().replace("_", "-")
    key = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m", "ml100k": "movielens-100k",
           "ml1m": "movielens-1m"}.get(key, key)
    if key not in MOVIELENS:
        raise DataError(f"unknown ratings dataset {name!r}; known: {', '.join(MOVIELENS)} "
                        "(or pass a ratings CSV file)")
    return MOVIELENS[key]


def _search_dirs(spec: MovieLensSpec, root) -> list[tuple[Path, str]]:
    dirs = []
    base = Path(root).expanduser() if root is not None else data_root()
    if base is not None:
        what = "root argument" if root is not None else "AECORE_DATA"
        dirs += [(base / spec.name, what), (base / spec.name / spec.folder, what)]
    dirs += [(cache_dir() / spec.name / spec.folder, "cache"), (cache_dir() / spec.name, "cache")]
    return dirs


def _find_folder(spec: MovieLensSpec, root) -> Path | None:
    for d, _ in _search_dirs(spec, root):
        if all((d / f).is_file() for f in spec.required):
            return d
    return None


def _placement_hint(spec: MovieLensSpec, root) -> str:
    base = Path(root).expanduser() if root is not None else data_root()
    where = (f"'{base / spec.name}'" if base is not None
             else f"'<folder>/{spec.name}/' and set AECORE_DATA=<folder>")
    urls = " or ".join(u + spec.archive.fname for u in MOVIELENS_URLS.get(spec.name, [])) or spec.homepage
    return (f"Put the files of {spec.archive.fname} ({', '.join(spec.required)}, ...) into {where}, or into the "
            f"cache folder '{cache_dir() / spec.name / spec.folder}'. Get them from {urls}.")


def movielens_info(name: str = "movielens-100k", root=None) -> dict:
    """Where a MovieLens set is (or would be put), without downloading anything."""
    spec = _spec(name)
    folder = _find_folder(spec, root)
    return {"name": spec.name, "description": spec.description, "available_offline": folder is not None,
            "location": str(folder) if folder else None, "splits": list(spec.splits),
            "hint": None if folder else _placement_hint(spec, root)}


def _safe_members(zf: zipfile.ZipFile, folder: str, archive: Path) -> list[zipfile.ZipInfo]:
    members = []
    for info in zf.infolist():
        name = info.filename
        parts = Path(name).parts
        if name.startswith("/") or ".." in parts or (parts and parts[0] != folder):
            raise DataError(f"zip '{archive}': unexpected member {name!r} (outside '{folder}/'); not extracted")
        members.append(info)
    return members


def _extract_atomically(archive: Path, dest_parent: Path, folder: str) -> Path:
    """Extract ``archive`` (whose members all sit in ``folder/``) to ``dest_parent/folder``.

    Extracts into a temporary folder next to the target and renames it into place, so the
    target holds the whole archive or nothing; a failed extraction leaves no partial folder.
    """
    target = dest_parent / folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=dest_parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp, members=_safe_members(zf, folder, archive))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"zip '{archive}': cannot be extracted ({exc}); delete it to download again") from None
        if target.exists():  # another process won the race, or a broken earlier copy: replace it
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp / folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _locate_or_download(spec: MovieLensSpec, root, download: bool, progress: ProgressFn | None) -> Path:
    folder = _find_folder(spec, root)
    if folder is not None:
        return folder
    hint = _placement_hint(spec, root)
    if not download:
        raise DataError(f"dataset {spec.name!r} is not available offline (download=False). {hint}")
    dest = cache_dir() / spec.name
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder '{dest}' ({exc}); set AECORE_CACHE to a writable folder")
    got = fetch([spec.archive], dest, MOVIELENS_URLS.get(spec.name, []), progress, hint)
    target = _extract_atomically(got[spec.archive.fname], dest, spec.folder)
    missing = [f for f in spec.required if not (target / f).is_file()]
    if missing:
        raise DataError(f"zip '{got[spec.archive.fname]}' has no {', '.join(missing)} in '{spec.folder}/'")
    return target


# ------------------------------------------------------------------------------ parsing
def _read_lines(path: Path) -> list[str]:
    try:
        # MovieLens titles are latin-1 (e.g. "Belle de jour"), which also reads any byte
        return path.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise DataError(f"ratings file '{path}': cannot be read ({exc.strerror or exc})") from None


def _parse_strict(path: Path, sep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An official MovieLens ratings file: every line is user sep item sep rating sep time."""
    lines = [ln for ln in _read_lines(path) if ln.strip()]
    users = np.empty(len(lines), np.int64)
    items = np.empty(len(lines), np.int64)
    ratings = np.empty(len(lines), np.float32)
    for k, line in enumerate(lines):
        parts = line.split(sep) if sep != "\t" else line.split()
        try:
            users[k], items[k], ratings[k] = int(parts[0]), int(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            raise DataError(f"ratings file '{path}': line {k + 1} is not 'user{sep}item{sep}rating{sep}time': "
                            f"{line[:80]!r}") from None
    return users, items, ratings


def _to_index(ids: np.ndarray, n: int, path: Path, what: str) -> np.ndarray:
    if len(ids) and (ids.min() < 1 or ids.max() > n):
        raise DataError(f"ratings file '{path}': {what} id {ids.min() if ids.min() < 1 else ids.max()} "
                        f"outside 1..{n}")
    return ids - 1


def _one_hot(codes: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(codes), n), np.float32)
    out[np.arange(len(codes)), codes] = 1
    return out


def _age_group(age: int) -> int:
    for k, (lo, hi, _) in enumerate(AGE_GROUPS):
        if lo <= age < hi:
            return k
    return len(AGE_GROUPS) - 1


def _user_features(ages, genders, occ_codes, occ_names) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, 7 + 2 + len(occ_names)) one-hot: age group, gender (F, M), occupation."""
    age = _one_hot(np.array([_age_group(a) for a in ages]), len(AGE_GROUPS))
    gender = _one_hot(np.array([0 if g.upper() == "F" else 1 for g in genders]), 2)
    occ = _one_hot(np.asarray(occ_codes), len(occ_names))
    names = tuple(n for _, _, n in AGE_GROUPS) + ("female", "male") + tuple(f"occupation: {o}" for o in occ_names)
    return np.hstack([age, gender, occ]), names


def _read_100k_meta(folder: Path, spec: MovieLensSpec):
    item_lines = [ln for ln in _read_lines(folder / "u.item") if ln.strip()]
    if len(item_lines) != spec.n_items:
        raise DataError(f"file '{folder / 'u.item'}': {len(item_lines)} lines, expected {spec.n_items}")
    titles, genres = [], np.zeros((spec.n_items, len(GENRES_100K)), np.uint8)
    for k, line in enumerate(item_lines):
        parts = line.split("|")
        if len(parts) != 5 + len(GENRES_100K) or int(parts[0]) != k + 1:
            raise DataError(f"file '{folder / 'u.item'}': line {k + 1} is not 'id|title|...|19 genre flags'")
        titles.append(parts[1])
        genres[k] = [int(f) for f in parts[5:]]
    user_lines = [ln for ln in _read_lines(folder / "u.user") if ln.strip()]
    if len(user_lines) != spec.n_users:
        raise DataError(f"file '{folder / 'u.user'}': {len(user_lines)} lines, expected {spec.n_users}")
    ages, genders, occs = [], [], []
    occ_index = {o: k for k, o in enumerate(OCCUPATIONS_100K)}
    for k, line in enumerate(user_lines):
        parts = line.split("|")
        if len(parts) != 5 or int(parts[0]) != k + 1 or parts[3] not in occ_index:
            raise DataError(f"file '{folder / 'u.user'}': line {k + 1} is not 'id|age|gender|occupation|zip'")
        ages.append(int(parts[1]))
        genders.append(parts[2])
        occs.append(occ_index[parts[3]])
    feats, names = _user_features(ages, genders, occs, OCCUPATIONS_100K)
    return tuple(titles), genres, GENRES_100K, feats, names


def _read_1m_meta(folder: Path, spec: MovieLensSpec):
    titles = [""] * spec.n_items
    genres = np.zeros((spec.n_items, len(GENRES_1M)), np.uint8)
    g_index = {g: k for k, g in enumerate(GENRES_1M)}
    for k, line in enumerate(ln for ln in _read_lines(folder / "movies.dat") if ln.strip()):
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(f"file '{folder / 'movies.dat'}': line {k + 1} is not 'id::title::genres'")
        i = int(parts[0]) - 1
        if not 0 <= i < spec.n_items:
            raise DataError(f"file '{folder / 'movies.dat'}': movie id {i + 1} outside 1..{spec.n_items}")
        titles[i] = parts[1]
        for g in parts[2].split("|"):
            if g in g_index:
                genres[i, g_index[g]] = 1
    ages, genders, occs = [], [], []
    for k, line in enumerate(ln for ln in _read_lines(folder / "users.dat") if ln.strip()):
        parts = line.split("::")
        if len(parts) != 5 or int(parts[0]) != k + 1:
            raise DataError(f"file '{folder / 'users.dat'}': line {k + 1} is not 'id::gender::age::occupation::zip'")
        genders.append(parts[1])
        ages.append(int(parts[2]))
        occs.append(int(parts[3]))
    if len(ages) != spec.n_users:
        raise DataError(f"file '{folder / 'users.dat'}': {len(ages)} users, expected {spec.n_users}")
    feats, names = _user_features(ages, genders, occs, OCCUPATIONS_1M)
    return tuple(t or f"movie {i + 1}" for i, t in enumerate(titles)), genres, GENRES_1M, feats, names


@functools.lru_cache(maxsize=4)
def _load_movielens_cached(name: str, folder: str, split: str, seed: int, test_fraction: float,
                           key: tuple) -> RatingsData:
    spec, folder = MOVIELENS[name], Path(folder)
    n_u, n_i = spec.n_users, spec.n_items
    if name == "movielens-100k":
        titles, genres, genre_names, feats, feat_names = _read_100k_meta(folder, spec)
        sep, all_file = "\t", "u.data"
    else:
        titles, genres, genre_names, feats, feat_names = _read_1m_meta(folder, spec)
        sep, all_file = "::", "ratings.dat"

    def read(fname: str) -> Ratings:
        p = folder / fname
        if not p.is_file():
            raise DataError(f"split file '{p}' is missing; the official splits come with {spec.archive.fname}")
        u, i, r = _parse_strict(p, sep)
        return Ratings(_to_index(u, n_u, p, "user"), _to_index(i, n_i, p, "item"), r, n_u, n_i)

    if split == RANDOM:
        everything = read(all_file)
        if len(everything) != spec.n_ratings:
            raise DataError(f"ratings file '{folder / all_file}': {len(everything)} ratings, "
                            f"expected {spec.n_ratings}; the file may be truncated")
        train, test = random_split(everything, test_fraction, seed)
    else:
        train, test = read(f"{split}.base"), read(f"{split}.test")
    return RatingsData(
        name=name, split=split, train=train, test=test,
        user_ids=np.arange(1, n_u + 1), item_ids=np.arange(1, n_i + 1), rating_range=(1.0, 5.0),
        item_titles=titles, item_genres=genres, genre_names=genre_names,
        user_features=feats, user_feature_names=feat_names, skipped={}, source=str(folder),
    )


def load_movielens(name: str = "movielens-100k", split: str = "u1", root: str | os.PathLike | None = None,
                   download: bool = True, seed: int = 0, test_fraction: float = 0.1,
                   progress: ProgressFn | None = None) -> RatingsData:
    """MovieLens 100K (splits u1..u5, ua, ub, random) or 1M (random), from its original files.

    ``split="random"`` is a seeded random split holding out ``test_fraction`` (default 10%) of
    all ratings. Parsed data are cached in memory (keyed by the files' paths, sizes and times);
    treat the arrays as read-only.
    """
    spec = _spec(name)
    split = str(split).strip().lower()
    if split not in spec.splits:
        raise DataError(f"split={split!r} is not a split of {spec.name}; choose one of {', '.join(spec.splits)}")
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise DataError(f"test_fraction={test_fraction!r} must be between 0 and 1 (exclusive)")
    folder = _locate_or_download(spec, root, download, progress)
    files = list(spec.required) + ([f"{split}.base", f"{split}.test"] if split != RANDOM else [])
    key = tuple((f, (folder / f).stat().st_mtime_ns, (folder / f).stat().st_size)
                for f in files if (folder / f).is_file())
    return _load_movielens_cached(spec.name, str(folder.resolve()), split, int(seed), float(test_fraction), key)


# ------------------------------------------------------------------------------ any ratings CSV
_USER_NAMES = ("user", "userid", "user_id", "user id", "uid", "users", "customer", "customer_id")
_ITEM_NAMES = ("item", "itemid", "item_id", "item id", "movie", "movieid", "movie_id", "iid", "items", "product",
               "product_id", "isbn", "book", "track")
_RATING_NAMES = ("rating", "ratings", "score", "stars", "value", "r")
_TIME_NAMES = ("timestamp", "time", "ts", "date", "datetime", "unixtime")
MAX_CSV_BYTES = 4 << 30


def _sniff_delimiter(sample: str) -> str | None:
    first = next((ln for ln in sample.splitlines() if ln.strip()), "")
    for d in (",", "\t", ";", "|"):
        if d in first:
            return d
    return None  # whitespace


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _looks_like_header(row: Sequence[str]) -> bool:
    """A first row is a header when it names a known column, or when none of its fields is a
    number; a first data row with a bad rating (``7,42,abc``) stays a data row (and is counted)."""
    if len(row) < 3:
        return False
    known = set(_USER_NAMES + _ITEM_NAMES + _RATING_NAMES + _TIME_NAMES)
    return any(c.strip().lower() in known for c in row) or not any(_is_number(c) for c in row)


def _header_columns(row: Sequence[str], path: Path) -> tuple[int, int, int, int | None]:
    names = [c.strip().lower() for c in row]

    def find(cands):
        return next((k for k, n in enumerate(names) if n in cands), None)

    u, i, r, t = find(_USER_NAMES), find(_ITEM_NAMES), find(_RATING_NAMES), find(_TIME_NAMES)
    if u is None and i is None and r is None:
        return 0, 1, 2, 3 if len(row) > 3 else None  # unknown names: by position
    if None in (u, i, r):
        raise DataError(f"ratings file '{path}': header {row!r} names no "
                        f"{'user' if u is None else 'item' if i is None else 'rating'} column; use "
                        "user,item,rating[,timestamp]")
    return u, i, r, t


def _natural_order(ids: list[str]) -> tuple[list[str], np.ndarray]:
    """Unique ids sorted numerically when they are all integers, else as text."""
    uniq = sorted(set(ids))
    if all(s.lstrip("-").isdigit() for s in uniq):
        uniq.sort(key=int)
        return uniq, np.array([int(s) for s in uniq], dtype=np.int64)
    return uniq, np.array(uniq, dtype=object)


def load_ratings_csv(path: str | os.PathLike, split: str = RANDOM, test_fraction: float = 0.1, seed: int = 0,
                     test_path: str | os.PathLike | None = None) -> RatingsData:
    """A user's ratings file: ``user, item, rating[, timestamp]`` per row.

    Delimiter ``,`` ``\\t`` ``;`` ``|`` or whitespace; an optional header (recognised when the
    rating field of the first row is not a number; named columns may come in any order); ids
    are any text (kept as strings unless all are integers); ratings any finite number (half
    stars are fine). Bad rows are counted in ``skipped`` by reason, never silently dropped:
    ``wrong_field_count``, ``empty_id``, ``bad_rating`` (not a finite number), ``bad_timestamp``,
    ``duplicate`` (the same user and item again; the first is kept). A file with no usable
    rows raises DataError naming the file.

    The split: ``test_path`` (a second file in the same format, e.g. ``u1.test``), else a seeded
    random split holding out ``test_fraction`` of the ratings.
    """
    if split != RANDOM and test_path is None:
        raise DataError(f"split={split!r}: a ratings CSV is split at random (split='random') or by test_path")
    p = Path(path).expanduser()
    parts = [_parse_csv(p)]
    if test_path is not None:
        parts.append(_parse_csv(Path(test_path).expanduser()))
    all_u = [u for part in parts for u in part[0]]
    all_i = [i for part in parts for i in part[1]]
    user_keys, user_ids = _natural_order(all_u)
    item_keys, item_ids = _natural_order(all_i)
    u_index = {k: n for n, k in enumerate(user_keys)}
    i_index = {k: n for n, k in enumerate(item_keys)}
    skipped: Counter = Counter()
    rs = []
    for users, items, ratings, skip in parts:
        skipped.update(skip)
        rs.append(Ratings(np.fromiter((u_index[u] for u in users), np.int64, len(users)),
                          np.fromiter((i_index[i] for i in items), np.int64, len(items)),
                          np.asarray(ratings, np.float32), len(user_keys), len(item_keys)))
    if test_path is None:
        try:
            train, test = random_split(rs[0], test_fraction, seed)
        except DataError as exc:
            raise DataError(f"ratings file '{p}': {exc}") from None
        split_name = RANDOM
    else:
        train, test = rs
        split_name = Path(test_path).name
    values = np.concatenate([r.rating for r in rs])
    return RatingsData(
        name=p.name, split=split_name, train=train, test=test, user_ids=user_ids, item_ids=item_ids,
        rating_range=(float(values.min()), float(values.max())),
        skipped={k: int(v) for k, v in sorted(skipped.items())}, source=str(p),
    )


def _parse_csv(p: Path) -> tuple[list[str], list[str], list[float], Counter]:
    if not p.is_file():
        raise DataError(f"ratings file '{p}': no such file" if not p.exists() else f"ratings file '{p}': not a file")
    size = p.stat().st_size
    if size > MAX_CSV_BYTES:
        raise DataError(f"ratings file '{p}' is {size / 1e9:.1f} GB, over the {MAX_CSV_BYTES / 1e9:.0f} GB limit")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = p.read_bytes().decode("latin-1")
    except OSError as exc:
        raise DataError(f"ratings file '{p}': cannot be read ({exc.strerror or exc})") from None
    delim = _sniff_delimiter(text[:10000])
    lines = [ln for ln in text.splitlines() if ln.strip()]  # blank lines are not rows
    rows: Iterable[list[str]] = (csv.reader(lines, delimiter=delim) if delim is not None
                                 else (ln.split() for ln in lines))
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    skipped: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    cols = (0, 1, 2, None)
    n_cols = None
    for k, row in enumerate(rows):
        row = [c.strip() for c in row]
        if k == 0 and _looks_like_header(row):
            cols = _header_columns(row, p)
            n_cols = len(row)
            continue
        u_c, i_c, r_c, t_c = cols
        if n_cols is None:
            if len(row) not in (3, 4):
                skipped["wrong_field_count"] += 1
                continue
            t_c = 3 if len(row) == 4 else None
        elif len(row) != n_cols:
            skipped["wrong_field_count"] += 1
            continue
        u, i = row[u_c], row[i_c]
        if not u or not i:
            skipped["empty_id"] += 1
            continue
        try:
            r = float(row[r_c])
        except ValueError:
            r = math.nan
        if not math.isfinite(r):
            skipped["bad_rating"] += 1
            continue
        if t_c is not None and row[t_c] and not _is_number(row[t_c]):
            skipped["bad_timestamp"] += 1
            continue
        if (u, i) in seen:
            skipped["duplicate"] += 1
            continue
        seen.add((u, i))
        users.append(u)
        items.append(i)
        ratings.append(r)
    if not ratings:
        what = ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())) or "no data rows"
        raise DataError(f"ratings file '{p}': no usable rows ({what}); expected user,item,rating[,timestamp] "
                        "per row, optionally with a header")
    return users, items, ratings, skipped


# ------------------------------------------------------------------------------ one entry point
def load(dataset: str | None = None, ratings_csv: str | os.PathLike | None = None, split: str | None = None,
         root=None, download: bool = True, seed: int = 0, test_fraction: float = 0.1,
         progress: ProgressFn | None = None) -> RatingsData:
    """``dataset`` (a MovieLens name) or ``ratings_csv`` (a file); split defaults to u1 / random."""
    if (dataset is None) == (ratings_csv is None):
        raise DataError("give exactly one of dataset (movielens-100k, movielens-1m) and ratings_csv")
    if ratings_csv is not None:
        return load_ratings_csv(ratings_csv, split=split or RANDOM, test_fraction=test_fraction, seed=seed)
    spec = _spec(dataset)
    return load_movielens(spec.name, split=split or spec.splits[0], root=root, download=download, seed=seed,
                          test_fraction=test_fraction, progress=progress)


def clear_memory_cache() -> None:
    _load_movielens_cached.cache_clear()
