"""Documents as bags of words: a deep autoencoder against LSA, judged by retrieval.

Hinton & Salakhutdinov (2006, Science 313:504, Fig. 4) turned each document into counts of
the 2,000 most frequent words, trained a 2000-500-250-125-10 autoencoder on them, and used
the 10-number codes to retrieve documents: every test document is a query, the other test
documents are ranked by the cosine similarity of their codes to the query's, and the
precision (fraction of retrieved documents in the query's class) is read off at several
recall levels. The autoencoder beat LSA (latent semantic analysis: a truncated SVD) at the
same code size. This module does the same on 20 Newsgroups or on any labelled text.

    corpus = load_corpus(dataset="20newsgroups")              # or text_dir=..., csv=...
    result = run_documents(corpus, code_size=10)               # DocumentsResult
    result.precision["ae"][0.1], result.precision["lsa"][0.1]  # precision at recall 0.1

Pieces, each usable alone: the loaders (``load_20newsgroups``, ``load_text_dir``,
``load_text_csv``), ``BagOfWords`` (vectorizer + input scaling), ``DocumentAE`` (the deep
autoencoder with the word-count loss), ``fit_lsa``, ``precision_at_recall`` (the metric),
``nearest``, ``unit_top_words``.

Input scaling and loss (the choice the issue asks us to state)
-----------------------------------------------------------------
Word counts are non-negative, very sparse (a post uses ~50 of the 2,000 words), heavy-tailed
(one word may occur 30 times) and their totals vary 100-fold between a one-line reply and a
FAQ. We treat a document as *a distribution over words* and use the multinomial ("softmax")
likelihood of its words, the output model of Salakhutdinov & Hinton's constrained Poisson /
replicated softmax models:

  * encoder input  x = log(1 + c) / ||log(1 + c)||_2: the log damps the heavy tail (a word
    said 30 times is not 30 times as informative), the length normalisation makes a short
    and a long post on the same topic look alike, and every x lies in [0, 1];
  * decoder output q = softmax(logits): a distribution over the 2,000 words;
  * loss  -sum_w p_w log q_w  with p = c / sum_w c_w the document's observed word
    distribution (cross-entropy between distributions, in nats per word).

Why not squared error on counts: it is dominated by the few frequent words and long posts.
Why not independent Bernoullis per word (sigmoid + binary cross-entropy): 1,950 of the 2,000
targets of a document are 0, so that loss is mostly spent predicting absences and largely
ignores which of the frequent words a document uses; the softmax spends its whole
probability budget on the words that occur, and weighs each by how often it occurs.
Empty documents (no vocabulary word) have no distribution; they are kept, with zero weight
in the loss (their x is all zeros).
"""
from __future__ import annotations

import csv
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .data.errors import DataError

__all__ = [
    "Corpus", "NEWSGROUPS", "newsgroups_dir", "newsgroups_hint", "load_20newsgroups", "load_text_dir",
    "load_text_csv", "load_text_zip", "load_corpus", "BagOfWords", "DocumentAE", "DocTrainConfig", "train_document_ae", "encode_docs",
    "fit_lsa", "LSA", "RECALL_LEVELS", "REPORT_LEVELS", "precision_at_recall", "nearest", "unit_top_words",
    "DocumentsResult", "run_documents", "doc_title",
]

NEWSGROUPS = "20newsgroups"
SPLIT_DIRS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
# the recall levels of the curves (log-spaced like Hinton & Salakhutdinov's Fig. 4) and of the CLI line
RECALL_LEVELS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
REPORT_LEVELS = (0.01, 0.1, 0.5)
MAX_FILE_BYTES = 10 << 20  # one text file; larger ones are not posts


# =========================================================================== corpora
@dataclass(frozen=True, eq=False)
class Corpus:
    """Labelled texts split into train and test. ``y_*`` index ``label_names``."""

    name: str
    texts_train: tuple[str, ...]
    y_train: np.ndarray  # (N_train,) int64
    texts_test: tuple[str, ...]
    y_test: np.ndarray  # (N_test,) int64
    label_names: tuple[str, ...]
    source: str = ""  # where it was read from (shown to users)

    def __post_init__(self):
        for t, y, split in ((self.texts_train, self.y_train, "train"), (self.texts_test, self.y_test, "test")):
            if len(t) != len(y):
                raise DataError(f"corpus {self.name!r}: {len(t)} {split} texts but {len(y)} labels")
        if not self.texts_train or not self.texts_test:
            raise DataError(f"corpus {self.name!r}: needs train and test documents, got "
                            f"{len(self.texts_train)} train and {len(self.texts_test)} test")

    @property
    def n_train(self) -> int:
        return len(self.texts_train)

    @property
    def n_test(self) -> int:
        return len(self.texts_test)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Corpus":
        """A seeded random subset (order kept), for quick runs."""
        rng = np.random.default_rng(seed)

        def take(texts, y, n):
            if n is None or n >= len(texts):
                return texts, y
            idx = np.sort(rng.choice(len(texts), size=int(n), replace=False))
            return tuple(texts[i] for i in idx), y[idx]

        tr, ytr = take(self.texts_train, self.y_train, n_train)
        te, yte = take(self.texts_test, self.y_test, n_test)
        return Corpus(self.name, tr, ytr, te, yte, self.label_names, self.source)


def _read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"text file '{path}' is {size} bytes, over {MAX_FILE_BYTES}; is it really a document?")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # every byte is a latin-1 character: never fails


def _label_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                  key=lambda p: (len(p.name), p.name))  # numeric ids in numeric order


def newsgroups_dir(root: str | os.PathLike | None = None) -> Path | None:
    """The folder holding ``20news-bydate-train/`` and ``-test/``: ``<root>/20newsgroups`` (root
    argument, else ``$AECORE_DATA``), then the cache ``$AECORE_CACHE/20newsgroups``; None if absent."""
    from .data.registry import cache_dir, data_root

    base = Path(root).expanduser() if root is not None else data_root()
    for d in ([base / NEWSGROUPS] if base is not None else []) + [cache_dir() / NEWSGROUPS]:
        if all((d / s).is_dir() for s in SPLIT_DIRS.values()):
            return d
    return None


def newsgroups_hint(root: str | os.PathLike | None = None) -> str:
    """Where to put 20 Newsgroups so that it is found offline (for messages and pages)."""
    from .data.registry import cache_dir, data_root

    base = Path(root).expanduser() if root is not None else data_root()
    where = (f"'{base / NEWSGROUPS}'" if base is not None
             else f"'<folder>/{NEWSGROUPS}/' and set AECORE_DATA=<folder>")
    return (f"Put the two folders of the publisher's 20news-bydate.tar.gz ({SPLIT_DIRS['train']}/<group>/<id> and "
            f"{SPLIT_DIRS['test']}/...) into {where}, or into the cache folder '{cache_dir() / NEWSGROUPS}'. "
            "Get it from http://qwone.com/~jason/20Newsgroups/ (20news-bydate.tar.gz).")


def _read_tree(folder: Path, label_names: Sequence[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    groups = [p.name for p in _label_folders(folder)]
    names = list(label_names) if label_names is not None else groups
    index = {g: i for i, g in enumerate(names)}
    texts, ys = [], []
    for g in groups:
        if g not in index:
            raise DataError(f"'{folder / g}': label folder not in the training labels {names}")
        for f in _files_in(folder / g):
            texts.append(_read_text(f))
            ys.append(index[g])
    return texts, ys, names


def load_20newsgroups(root: str | os.PathLike | None = None, download: bool = False) -> Corpus:
    """20 Newsgroups "bydate" (11,314 train / 7,532 test posts, 20 groups), raw text with headers.

    Read as latin-1 from the publisher's tree under the data root (see ``newsgroups_dir``);
    else, when ``download``, through scikit-learn's ``fetch_20newsgroups`` (which downloads
    14 MB into the cache). Otherwise DataError says where to put the files.
    """
    d = newsgroups_dir(root)
    if d is not None:
        tr, ytr, names = _read_tree(d / SPLIT_DIRS["train"])
        te, yte, _ = _read_tree(d / SPLIT_DIRS["test"], names)
        # latin-1, as scikit-learn reads it (a few posts have 8-bit bytes that are not UTF-8)
        return Corpus(NEWSGROUPS, tuple(tr), np.asarray(ytr, np.int64), tuple(te), np.asarray(yte, np.int64),
                      tuple(names), str(d))
    if not download:
        raise DataError(f"20 Newsgroups is not available offline. {newsgroups_hint(root)}")
    from sklearn.datasets import fetch_20newsgroups

    from .data.registry import cache_dir

    home = cache_dir() / "scikit_learn_data"
    try:
        parts = {s: fetch_20newsgroups(data_home=str(home), subset=s, download_if_missing=True) for s in SPLIT_DIRS}
    except Exception as exc:  # network errors come in many types
        raise DataError(f"could not download 20 Newsgroups through scikit-learn ({exc}). "
                        f"{newsgroups_hint(root)}") from None
    names = tuple(parts["train"].target_names)
    return Corpus(NEWSGROUPS, tuple(parts["train"].data), parts["train"].target.astype(np.int64),
                  tuple(parts["test"].data), parts["test"].target.astype(np.int64), names, str(home))


def _split_stratified(n: int, y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < test_size < 1:
        raise DataError(f"test_size={test_size!r} must be between 0 and 1 (exclusive)")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(test_size * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)  # each label on both sides when it can be
        test.append(idx[:k])
    te = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    tr = np.setdiff1d(np.arange(n), te)
    return tr, te


def _corpus_from(name: str, texts: list[str], labels: list[str], test_size: float, seed: int, source: str) -> Corpus:
    names = tuple(sorted(set(labels)))
    if len(names) < 2:
        raise DataError(f"{source}: needs at least 2 labels, found {list(names)}")
    y = np.asarray([names.index(l) for l in labels], np.int64)
    tr, te = _split_stratified(len(texts), y, test_size, seed)
    if len(tr) == 0 or len(te) == 0:
        raise DataError(f"{source}: {len(texts)} documents are too few to split into train and test")
    return Corpus(name, tuple(texts[i] for i in tr), y[tr], tuple(texts[i] for i in te), y[te], names, source)


def load_text_dir(path: str | os.PathLike, test_size: float = 0.3, seed: int = 0) -> Corpus:
    """Any folder with one sub-folder of text files per label (the folder name is the label),
    split into train and test per label with ``seed``. Files are read as UTF-8, else latin-1.
    A folder that already holds ``train/`` and ``test/`` (each with label sub-folders) keeps that split."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"text folder '{folder}' does not exist or is not a folder")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        tr, ytr, names = _read_tree(folder / "train")
        te, yte, _ = _read_tree(folder / "test", names)
        return Corpus(folder.name, tuple(tr), np.asarray(ytr, np.int64), tuple(te), np.asarray(yte, np.int64),
                      tuple(names), str(folder))
    groups = _label_folders(folder)
    if not groups:
        raise DataError(f"text folder '{folder}' has no sub-folders; put the files of each label into "
                        f"their own sub-folder ('{folder}/<label>/<file>')")
    texts, labels = [], []
    for g in groups:
        files = _files_in(g)
        texts += [_read_text(f) for f in files]
        labels += [g.name] * len(files)
    if not texts:
        raise DataError(f"text folder '{folder}': the label sub-folders hold no files")
    return _corpus_from(folder.name, texts, labels, test_size, seed, f"text folder '{folder}'")


MAX_ZIP_BYTES = 256 << 20  # uncompressed text in one zip of documents
MAX_ZIP_FILES = 50_000
MAX_ZIP_RATIO = 200  # uncompressed / compressed size of an entry; beyond it a zip bomb is likelier than text


def load_text_zip(path: str | os.PathLike, test_size: float = 0.3, seed: int = 0,
                  max_bytes: int = MAX_ZIP_BYTES) -> Corpus:
    """A zip of text files, one folder per label (``<label>/<file>``, optionally under one top
    folder), read in memory: nothing is extracted. Entries with absolute or ``..`` names, and
    archives over ``max_bytes`` uncompressed or with an implausible compression ratio, are refused."""
    import zipfile

    p = Path(path).expanduser()
    what = f"zip file '{p}'"
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{what} cannot be opened as a zip archive: {exc}") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for i in infos:
            name = i.filename.replace("\\", "/")
            if name.startswith("/") or ".." in name.split("/") or ":" in name.split("/")[0]:
                raise DataError(f"{what}: entry '{i.filename}' has an absolute or '..' path; refused")
        if len(infos) > MAX_ZIP_FILES:
            raise DataError(f"{what} holds {len(infos)} files, over the limit of {MAX_ZIP_FILES}")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise DataError(f"{what} unpacks to {total / 1e6:.0f} MB, over the limit of {max_bytes / 1e6:.0f} MB")
        for i in infos:
            if i.file_size > MAX_FILE_BYTES:
                raise DataError(f"{what}: '{i.filename}' is {i.file_size} bytes, over {MAX_FILE_BYTES}")
            if i.file_size > (1 << 20) and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1):
                raise DataError(f"{what}: '{i.filename}' expands {i.file_size / max(i.compress_size, 1):.0f}x "
                                "(a zip bomb?); refused")
        parts = [[s for s in i.filename.replace("\\", "/").split("/") if s] for i in infos]
        keep = [(i, pp) for i, pp in zip(infos, parts) if not any(s.startswith(".") or s == "__MACOSX" for s in pp)]
        tops = {pp[0] for _, pp in keep if len(pp) > 1}
        depth = 1 if len(tops) == 1 and any(len(pp) > 2 for _, pp in keep) else 0  # one wrapping folder
        texts, labels, skipped = [], [], 0
        for i, pp in keep:
            if len(pp) < depth + 2:
                skipped += 1  # a file outside any label folder
                continue
            try:
                raw = zf.read(i)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                raise DataError(f"{what}: '{i.filename}' cannot be read: {exc}") from None
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("latin-1"))
            labels.append(pp[depth])
    if not texts:
        raise DataError(f"{what} has no text files in label folders; put each label's files into their own "
                        f"folder ('<label>/<file>.txt')" + (f" ({skipped} files were outside any folder)" if skipped else ""))
    return _corpus_from(p.stem, texts, labels, test_size, seed, what)


TEXT_COLUMNS = ("text", "document", "doc", "body", "content")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y", "group")


def load_text_csv(path: str | os.PathLike, test_size: float = 0.3, seed: int = 0) -> Corpus:
    """A CSV of (text, label) rows. With a header, the columns named like ``text`` and ``label``
    are used (any order); without one, the first column is the text and the second the label."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"CSV file '{p}' does not exist")
    try:
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise DataError(f"CSV file '{p}' cannot be parsed: {exc}") from None
    if not rows:
        raise DataError(f"CSV file '{p}' is empty")
    head = [c.strip().lower() for c in rows[0][1]]
    ti = next((head.index(c) for c in TEXT_COLUMNS if c in head), None)
    li = next((head.index(c) for c in LABEL_COLUMNS if c in head), None)
    if ti is not None and li is not None:
        rows = rows[1:]
    else:
        ti, li = 0, 1
    texts, labels = [], []
    for n, r in rows:
        if len(r) <= max(ti, li):
            raise DataError(f"CSV file '{p}': row {n} has {len(r)} column(s); expected a text and a label")
        texts.append(r[ti])
        labels.append(r[li].strip())
    return _corpus_from(p.stem, texts, labels, test_size, seed, f"CSV file '{p}'")


def load_corpus(dataset: str | None = None, text_dir: str | os.PathLike | None = None,
                csv_path: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                download: bool = False, test_size: float = 0.3, seed: int = 0) -> Corpus:
    """One of: ``dataset='20newsgroups'``, ``text_dir=`` a folder of label sub-folders, ``csv_path=``."""
    given = [a for a in (dataset, text_dir, csv_path) if a is not None]
    if len(given) != 1:
        raise DataError("give exactly one of dataset, text_dir or csv_path")
    if dataset is not None:
        key = str(dataset).strip().lower().replace("_", "").replace("-", "")
        if key != NEWSGROUPS:
            raise DataError(f"unknown document dataset {dataset!r}; known: {NEWSGROUPS} "
                            "(or use a folder of text files / a CSV)")
        return load_20newsgroups(root, download)
    if text_dir is not None:
        p = Path(text_dir).expanduser()
        if p.is_file() and p.suffix.lower() == ".csv":
            return load_text_csv(p, test_size, seed)
        if p.is_file() and p.suffix.lower() == ".zip":
            return load_text_zip(p, test_size, seed)
        return load_text_dir(p, test_size, seed)
    return load_text_csv(csv_path, test_size, seed)


def doc_title(text: str, width: int = 90) -> str:
    """A one-line title for a document: its Subject: header if it has one, else its first line."""
    for line in text.splitlines()[:40]:
        if line.lower().startswith("subject:"):
            t = line[8:].strip()
            if t:
                return t[:width]
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:width]
    return "(empty)"


# =========================================================================== bag of words
class BagOfWords:
    """Counts of the ``max_features`` most frequent words (English stop words removed), and
    the scaled inputs / target distributions of the documents' autoencoder (see module doc).

    scikit-learn-shaped: ``fit(texts)`` returns self; ``vocabulary_`` (the words, column order)."""

    def __init__(self, max_features: int = 2000, stop_words: str | None = "english", min_df: int = 1):
        if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
            raise ValueError(f"max_features={max_features!r} must be an integer >= 1")
        self.max_features = max_features
        self.stop_words = stop_words
        self.min_df = min_df

    def fit(self, texts: Iterable[str]) -> "BagOfWords":
        from sklearn.feature_extraction.text import CountVectorizer

        self.vectorizer_ = CountVectorizer(stop_words=self.stop_words, max_features=self.max_features,
                                           min_df=self.min_df, dtype=np.float32)
        try:
            self.vectorizer_.fit(texts)
        except ValueError as exc:  # "empty vocabulary; perhaps the documents only contain stop words"
            raise DataError(f"cannot build a vocabulary: {exc}") from None
        self.vocabulary_ = tuple(self.vectorizer_.get_feature_names_out())
        return self

    def counts(self, texts: Iterable[str]):
        """(N, V) sparse float32 word counts."""
        return self.vectorizer_.transform(list(texts))

    @staticmethod
    def inputs(counts) -> np.ndarray:
        """Encoder input x = log(1 + c) / ||log(1 + c)||_2 (zeros for an empty document), dense (N, V) float32."""
        x = np.log1p(_dense(counts))
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0).astype(np.float32)

    @staticmethod
    def targets(counts) -> np.ndarray:
        """Target distribution p = c / sum(c) per document (zeros for an empty one), dense (N, V) float32."""
        c = _dense(counts)
        total = c.sum(axis=1, keepdims=True)
        return np.divide(c, total, out=np.zeros_like(c), where=total > 0).astype(np.float32)


def _dense(a) -> np.ndarray:
    return np.asarray(a.toarray() if hasattr(a, "toarray") else a, dtype=np.float32)


# =========================================================================== the autoencoder
def _torch():
    import torch
    return torch


def _make_document_ae():
    torch = _torch()
    from torch import nn
    import torch.nn.functional as F

    from .kernels import linear
    from .models.autoencoder import glorot_

    class _DocumentAE(nn.Module):
        """D -> hidden... -> K (linear code) -> ...hidden -> D softmax, as Hinton & Salakhutdinov's
        2000-500-250-125-10 (logistic hidden units there; ``activation`` picks them here).

        ``loss_terms(x, p)`` = {"recon": -sum_w p_w log softmax(logits)_w}, mean over the documents
        that have words (nats per word)."""

        def __init__(self, input_dim: int, hidden: Sequence[int], code_size: int, activation: str = "sigmoid",
                     generator=None):
            super().__init__()
            from .models.autoencoder import ACT

            if activation not in ACT:
                raise ValueError(f"activation={activation!r} must be one of {', '.join(ACT)}")
            self.dims = [int(input_dim), *map(int, hidden), int(code_size)]
            self.activation = activation
            self.act = ACT[activation]
            d = self.dims
            self.enc = nn.ModuleList(nn.Linear(i, o) for i, o in zip(d[:-1], d[1:]))
            self.dec = nn.ModuleList(nn.Linear(o, i) for i, o in reversed(list(zip(d[:-1], d[1:]))))
            for lin in [*self.enc, *self.dec]:
                glorot_(lin.weight, generator)
                nn.init.zeros_(lin.bias)

        def encode(self, x):  # (B, D) -> (B, K), linear code layer
            h = x
            for i, lin in enumerate(self.enc):
                h = linear(h, lin.weight, lin.bias)
                if i < len(self.enc) - 1:
                    h = self.act(h)
            return h

        def decode_logits(self, h):  # (B, K) -> (B, D)
            for j, lin in enumerate(self.dec):
                h = linear(h, lin.weight, lin.bias)
                if j < len(self.dec) - 1:
                    h = self.act(h)
            return h

        def decode(self, h):
            return torch.softmax(self.decode_logits(h), dim=1)  # (B, D) word distribution

        def forward(self, x):
            return self.decode_logits(self.encode(x))

        def loss_terms(self, x, p):
            logq = F.log_softmax(self(x), dim=1)  # (B, D)
            per_doc = -(p * logq).sum(dim=1)  # (B,) cross-entropy H(p, q) in nats per word
            has_words = (p.sum(dim=1) > 0).to(per_doc.dtype)
            return {"recon": (per_doc * has_words).sum() / has_words.sum().clamp_min(1)}

        @property
        def W(self):
            """First encoder layer (hidden[0], D): each row weighs the words."""
            return self.enc[0].weight

    return _DocumentAE


_DOC_AE_CLS = None


def DocumentAE(input_dim: int, hidden: Sequence[int] = (500, 250, 125), code_size: int = 10,
               activation: str = "sigmoid", generator=None):
    """Build the documents' deep autoencoder (a torch ``nn.Module``; torch is imported lazily)."""
    global _DOC_AE_CLS
    if _DOC_AE_CLS is None:
        _DOC_AE_CLS = _make_document_ae()
    return _DOC_AE_CLS(input_dim, hidden, code_size, activation, generator)


@dataclass(frozen=True)
class DocTrainConfig:
    """How the documents' autoencoder is built and trained (validated like ``aecore.config``)."""

    code_size: int = 10
    hidden: tuple[int, ...] = (500, 250, 125)
    # Hinton & Salakhutdinov's logistic units needed their RBM pre-training: trained from a
    # random start with Adam, a logistic stack sits at the unigram solution for many epochs
    # (20 Newsgroups: loss 6.87, precision at recall 0.1 below 0.1 after 10 epochs). tanh, the
    # zero-centred logistic, learns from the first epoch (0.30 after one, 0.41 after ten);
    # ReLU gets there more slowly (0.40 after 15 epochs) and dies at lr=1e-2.
    activation: str = "tanh"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 3e-3
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        from .config import ConfigError, check_choice, check_number
        from .models.autoencoder import ACT

        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        check_number("code_size", self.code_size, 1, 10_000, integer=True)
        if not isinstance(self.hidden, tuple):
            raise ConfigError(f"hidden={self.hidden!r} must be a list of layer sizes")
        for i, h in enumerate(self.hidden):
            check_number(f"hidden[{i}]", h, 1, 100_000, integer=True)
        check_choice("activation", self.activation, tuple(ACT))
        check_number("epochs", self.epochs, 1, 100_000, integer=True)
        check_number("batch_size", self.batch_size, 1, 1_000_000, integer=True)
        check_number("lr", self.lr, 0.0, 10.0, lo_open=True)
        check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        check_choice("device", self.device, ("auto", "cpu", "cuda", "mps"))

    def to_dict(self) -> dict:
        return {**self.__dict__, "hidden": list(self.hidden)}


def train_document_ae(x: np.ndarray, p: np.ndarray, cfg: DocTrainConfig,
                      on_epoch: Callable[[dict], None] | None = None,
                      stop: threading.Event | None = None):
    """Train ``DocumentAE`` on inputs ``x`` and target distributions ``p`` (both (N, D)) with Adam
    and a cosine learning-rate decay. ``on_epoch({"epoch", "loss", "elapsed"})`` after each epoch;
    ``stop`` ends training after the current step. Returns (model in eval mode, history rows).

    A small loop of its own (not ``aecore.training.Trainer``): the loss needs a target that is
    not the input (p, the word distribution, vs x, the scaled log counts)."""
    torch = _torch()
    from .training import TrainingFailed, optimizer_and_step, resolve_device

    torch.set_flush_denormal(True)
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = DocumentAE(x.shape[1], cfg.hidden, cfg.code_size, cfg.activation, generator=gen).to(device)
    xt = torch.as_tensor(np.ascontiguousarray(x, np.float32), device=device)  # (N, D)
    pt = torch.as_tensor(np.ascontiguousarray(p, np.float32), device=device)  # (N, D)
    n = xt.shape[0]
    B = min(cfg.batch_size, n)
    steps = math.ceil(n / B) * cfg.epochs
    opt, opt_step = optimizer_and_step(torch.optim.Adam, model.parameters(), lr=cfg.lr)  # fused on the CPU
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    with torch.no_grad():  # fail fast on data that makes the loss non-finite
        first = model.loss_terms(xt[:B], pt[:B])["recon"]
    if not torch.isfinite(first):
        raise TrainingFailed(f"loss term 'recon' is not finite on the first batch ({float(first)}): check the data")
    history: list[dict] = []
    t0 = time.perf_counter()
    model.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        seen = 0
        for i in range(0, n, B):
            idx = perm[i:i + B]
            loss = model.loss_terms(xt[idx], pt[idx])["recon"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt_step()
            sched.step()
            total += loss.detach() * len(idx)
            seen += len(idx)
            if stop is not None and stop.is_set():
                break
        value = float(total) / seen  # a stopped epoch's mean over the documents it saw
        if not math.isfinite(value):
            raise TrainingFailed(f"diverged in epoch {epoch + 1} (loss {value}); try a lower lr than {cfg.lr:g}")
        row = {"epoch": epoch + 1, "loss": value, "recon": value, "elapsed": time.perf_counter() - t0}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if stop is not None and stop.is_set():
            break
    model.eval()
    return model, history


def encode_docs(model, x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """Codes (N, K) float32 of scaled inputs x (N, D)."""
    torch = _torch()
    param = next(model.parameters())
    with torch.no_grad():
        out = [model.encode(torch.as_tensor(np.ascontiguousarray(x[i:i + batch]), device=param.device,
                                            dtype=param.dtype)).cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.dims[-1]), np.float32)


# =========================================================================== LSA
@dataclass(frozen=True)
class LSA:
    """Latent semantic analysis: tf-idf of the counts, then a rank-K truncated SVD."""

    tfidf: object
    svd: object

    def transform(self, counts) -> np.ndarray:
        return np.asarray(self.svd.transform(self.tfidf.transform(counts)), dtype=np.float32)

    @property
    def components_(self) -> np.ndarray:  # (K, V)
        return self.svd.components_


def fit_lsa(counts_train, code_size: int, seed: int = 0) -> LSA:
    """tf-idf (smooth idf, l2 rows, as scikit-learn's default) + TruncatedSVD(code_size) on the
    training counts: the LSA of Deerwester et al. (1990) in its common modern form."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    tfidf = TfidfTransformer().fit(counts_train)
    k = int(code_size)
    max_k = min(counts_train.shape) - 1
    if k > max_k:
        raise ValueError(f"code_size={k} is too large for LSA on {counts_train.shape[0]} documents x "
                         f"{counts_train.shape[1]} words; must be <= {max_k}")
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
    svd.fit(tfidf.transform(counts_train))
    return LSA(tfidf, svd)


# =========================================================================== retrieval
def _unit_rows(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    n = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, n, out=np.zeros_like(z), where=n > 0)  # a zero code has cosine 0 with everything


def precision_at_recall(codes: np.ndarray, labels: np.ndarray, levels: Sequence[float] = RECALL_LEVELS,
                        db_codes: np.ndarray | None = None, db_labels: np.ndarray | None = None,
                        block: int = 512) -> dict[float, float]:
    """Mean precision at each recall level when every query retrieves by cosine similarity.

    Without ``db_codes`` each row of ``codes`` is a query against all *other* rows (leave one
    out, as Hinton & Salakhutdinov's test-set queries); with it, queries retrieve from the
    database. For a query whose class has R relevant documents in the database, recall r
    is reached when the first k = ceil(r R) relevant documents have been retrieved; if the
    k-th of them sits at rank m (1-based, documents sorted by decreasing cosine, ties in
    database order), precision at recall r is k / m. Averaged over queries with R > 0.
    """
    codes, labels = np.asarray(codes), np.asarray(labels)
    if codes.ndim != 2 or labels.shape != (len(codes),):
        raise ValueError(f"codes must be (N, K) and labels (N,); got {codes.shape} and {labels.shape}")
    levels = tuple(float(r) for r in levels)
    if any(not 0 < r <= 1 for r in levels):
        raise ValueError(f"recall levels must be in (0, 1], got {levels}")
    self_query = db_codes is None
    if self_query:
        db_codes, db_labels = codes, labels
    db_codes, db_labels = np.asarray(db_codes), np.asarray(db_labels)
    if db_codes.ndim != 2 or db_codes.shape[1] != codes.shape[1] or db_labels.shape != (len(db_codes),):
        raise ValueError(f"db_codes must be (M, {codes.shape[1]}) and db_labels (M,); "
                         f"got {db_codes.shape} and {db_labels.shape}")
    q_all, d = _unit_rows(codes), _unit_rows(db_codes)
    classes, db_y = np.unique(db_labels, return_inverse=True)
    per_class = np.bincount(db_y, minlength=len(classes))
    sums = np.zeros(len(levels))
    count = 0
    r_arr = np.asarray(levels)
    for s in range(0, len(q_all), block):
        q = q_all[s:s + block]  # (b, K)
        sims = q @ d.T  # (b, M) cosine similarities
        rows = np.arange(len(q))
        if self_query:
            sims[rows, s + rows] = -np.inf  # a query never retrieves itself
        order = np.argsort(-sims, axis=1, kind="stable")  # (b, M) ranking
        ql = labels[s:s + block]
        rel = db_labels[order] == ql[:, None]  # (b, M) relevant at each rank
        if self_query:
            rel[order == (s + rows)[:, None]] = False  # the query itself, ranked last
        cum = np.cumsum(rel, axis=1)  # (b, M) relevant retrieved within the top m
        pos = np.searchsorted(classes, ql)
        known = (pos < len(classes)) & (classes[np.clip(pos, 0, len(classes) - 1)] == ql)
        R = np.where(known, per_class[np.clip(pos, 0, len(classes) - 1)], 0) - (1 if self_query else 0)
        for i in np.flatnonzero(R > 0):
            k = np.maximum(np.ceil(r_arr * R[i] - 1e-9).astype(np.int64), 1)  # relevant needed per level
            m = np.searchsorted(cum[i], k) + 1  # rank (1-based) where the k-th relevant appears
            sums += k / m
            count += 1
    if count == 0:
        raise ValueError("no query has a relevant document in the database (every class appears once?)")
    return {r: float(v) for r, v in zip(levels, sums / count)}


def nearest(query_codes: np.ndarray, db_codes: np.ndarray, k: int = 10,
            exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) of the k database rows closest to each query by cosine, and the cosines (Q, k).
    ``exclude`` (Q,) gives, per query, one database index to skip (the query itself), or -1."""
    q = _unit_rows(np.atleast_2d(query_codes))
    sims = q @ _unit_rows(db_codes).T  # (Q, M)
    if exclude is not None:
        ex = np.asarray(exclude).reshape(-1)
        rows = np.flatnonzero(ex >= 0)
        sims[rows, ex[rows]] = -np.inf
    k = min(int(k), sims.shape[1])
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


def unit_top_words(codes: np.ndarray, x: np.ndarray, vocabulary: Sequence[str], n: int = 8) -> list[dict]:
    """For each code unit, the words whose (scaled) presence correlates most with the unit's value
    across documents: ``[{"unit": k, "positive": [(word, r), ...], "negative": [...]}, ...]``.

    Pearson correlation of h_k with each input column; model-agnostic, so the autoencoder and
    LSA units read the same way."""
    h = np.asarray(codes, dtype=np.float64)
    xs = np.asarray(x, dtype=np.float64)
    if len(h) != len(xs) or xs.shape[1] != len(vocabulary):
        raise ValueError(f"codes {h.shape}, inputs {xs.shape} and vocabulary ({len(vocabulary)}) do not match")
    hz = h - h.mean(axis=0)
    xz = xs - xs.mean(axis=0)
    denom = np.outer(np.linalg.norm(hz, axis=0), np.linalg.norm(xz, axis=0))  # (K, V)
    corr = np.divide(hz.T @ xz, denom, out=np.zeros_like(denom), where=denom > 0)  # (K, V)
    out = []
    for k, row in enumerate(corr):
        top = np.argsort(-row, kind="stable")[:n]
        bottom = np.argsort(row, kind="stable")[:n]
        out.append({"unit": k,
                    "positive": [(vocabulary[j], float(row[j])) for j in top if row[j] > 0],
                    "negative": [(vocabulary[j], float(row[j])) for j in bottom if row[j] < 0]})
    return out


# =========================================================================== the whole experiment
@dataclass(eq=False)
class DocumentsResult:
    """What ``run_documents`` computed; every array is numpy, the model is on the CPU."""

    corpus: Corpus
    config: DocTrainConfig
    bow: BagOfWords
    model: object  # DocumentAE
    lsa: LSA
    codes_train: dict[str, np.ndarray]  # "ae" / "lsa" -> (N_train, K)
    codes_test: dict[str, np.ndarray]  # "ae" / "lsa" -> (N_test, K)
    x_train: np.ndarray  # (N_train, V) scaled inputs
    x_test: np.ndarray  # (N_test, V)
    precision: dict[str, dict[float, float]]  # method -> recall level -> precision
    history: list[dict]
    seconds: float
    vocabulary: tuple[str, ...] = field(default=())

    def summary(self) -> dict:
        """The CLI's last JSON line: precision at the report levels for both methods."""
        return {m: {f"{r:g}": self.precision[m][r] for r in REPORT_LEVELS}
                for m in ("ae", "lsa")} | {"code_size": self.config.code_size, "seconds": self.seconds}

    def encode_text(self, texts: Sequence[str], method: str = "ae") -> np.ndarray:
        """Codes of new texts (e.g. a typed query)."""
        counts = self.bow.counts(texts)
        if method == "lsa":
            return self.lsa.transform(counts)
        return encode_docs(self.model, self.bow.inputs(counts))


def run_documents(corpus: Corpus, cfg: DocTrainConfig | None = None, max_features: int = 2000,
                  levels: Sequence[float] = RECALL_LEVELS, on_epoch: Callable[[dict], None] | None = None,
                  on_stage: Callable[[str], None] | None = None, stop: threading.Event | None = None
                  ) -> DocumentsResult:
    """Vectorize, train the autoencoder, fit LSA at the same K, and compute both precision-recall
    curves with test documents as queries against the other test documents."""
    cfg = cfg or DocTrainConfig()
    stage = on_stage or (lambda s: None)
    levels = tuple(sorted(set(float(r) for r in levels) | set(REPORT_LEVELS)))
    t0 = time.perf_counter()
    stage("counting words")
    bow = BagOfWords(max_features).fit(corpus.texts_train)
    c_tr, c_te = bow.counts(corpus.texts_train), bow.counts(corpus.texts_test)
    x_tr, x_te = bow.inputs(c_tr), bow.inputs(c_te)
    if cfg.code_size > len(bow.vocabulary_):
        from .config import ConfigError
        raise ConfigError(f"code_size={cfg.code_size} must be <= the vocabulary size {len(bow.vocabulary_)}")
    stage("training the autoencoder")
    model, history = train_document_ae(x_tr, bow.targets(c_tr), cfg, on_epoch=on_epoch, stop=stop)
    model = model.cpu()
    stage("fitting LSA")
    lsa = fit_lsa(c_tr, cfg.code_size, cfg.seed)
    codes_train = {"ae": encode_docs(model, x_tr), "lsa": lsa.transform(c_tr)}
    codes_test = {"ae": encode_docs(model, x_te), "lsa": lsa.transform(c_te)}
    stage("evaluating retrieval")
    precision = {m: precision_at_recall(codes_test[m], corpus.y_test, levels) for m in ("ae", "lsa")}
    return DocumentsResult(corpus, cfg, bow, model, lsa, codes_train, codes_test, x_tr, x_te, precision, history,
                           time.perf_counter() - t0, bow.vocabulary_)
