"""``load_file``: a user's own data (.npy, .npz, .csv, a folder or a .zip of images) as a Dataset.

Every problem is a DataError that names the file (and the row / column / key) and what is
wrong with it. Values are scaled like this, on train and test together:
  * already within [0, 1]                      -> kept (binary data stays binary);
  * integers within [0, 255] (8-bit pixels)    -> divided by 255;
  * anything else                              -> kept; ``value_range`` tells the model that
                                                  a sigmoid output cannot fit it.
Image folders and zips are always 8-bit grayscale and always divided by 255.

Files may come from strangers (the dashboard's upload): nothing is unpickled, an .npy header
is checked against the file's size before numpy allocates anything, a zip is read in memory
(never extracted) with its uncompressed size, compression ratio and entry names checked first,
and only PNG/JPEG decoders see image bytes, after their pixel count is checked.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .dataset import Dataset, make_dataset
from .errors import DataError

__all__ = ["load_file", "MAX_DIM", "DEFAULT_MAX_BYTES", "IMAGE_SUFFIXES", "SUFFIXES"]

MAX_DIM = 100_000  # values per example; beyond this a dense autoencoder is not sensible
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB on disk (or uncompressed, for .npz)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_PIL_FORMATS = ("PNG", "JPEG")  # the only decoders that ever see a user's bytes
MAX_ZIP_ENTRIES = 100_000
MAX_ZIP_RATIO = 100  # uncompressed / compressed size of one zip entry; PNG and JPEG barely compress
# what a parser may raise on malformed bytes; turned into a DataError naming the file
_PARSE_ERRORS = (ValueError, TypeError, SyntaxError, OSError, EOFError, OverflowError, RecursionError,
                 struct.error, zlib.error, zipfile.BadZipFile, NotImplementedError, RuntimeError, IndexError, KeyError)
LABEL_COLUMNS = ("label", "labels", "y", "class", "target")  # CSV header names (any case)
_X_KEYS = ("x", "X", "data")
_Y_KEYS = ("y", "Y", "labels", "label")


@dataclass
class _Raw:
    """What a reader found, before validation, scaling and splitting."""

    x: np.ndarray  # (N, D) or (N, H, W), any numeric dtype
    y: np.ndarray | None = None  # (N,), ints or strings
    x_test: np.ndarray | None = None  # set when the file is already split
    y_test: np.ndarray | None = None
    image_files: bool = False  # 8-bit pixels from image files: always / 255
    label_names: tuple[str, ...] | None = None
    where: Sequence[str] | None = None  # per data row: how to name it ("row 7" in a CSV)


def _size_text(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _too_big(what: str, nbytes: int, max_bytes: int) -> DataError:
    return DataError(
        f"{what} is {_size_text(nbytes)} ({nbytes} bytes), over max_bytes={max_bytes}; "
        "pass a larger max_bytes to load it anyway"
    )


# --------------------------------------------------------------------------- readers
def _check_npy_header(fp, nbytes: int, path: Path, what: str = "") -> None:
    """Read an .npy header from ``fp`` (at its start; ``nbytes`` long) and refuse what numpy should
    not be asked to load: object arrays, and shapes that need more bytes than the file holds."""
    from numpy.lib import format as npf

    part = f" {what}" if what else ""
    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = npf.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = npf.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except _PARSE_ERRORS as exc:
        raise DataError(f"data file '{path}':{part} is not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise DataError(
            f"data file '{path}':{part or ' it'} holds Python objects (pickled), which are not loaded for "
            "safety; save numeric arrays instead"
        )
    if any(d < 0 for d in shape):
        raise DataError(f"data file '{path}':{part} has a negative dimension in its shape {shape}")
    need = math.prod(shape) * dtype.itemsize
    have = nbytes - fp.tell()
    if need > have:
        raise DataError(
            f"data file '{path}':{part} header says shape {shape} of {dtype} ({need} bytes) but only {have} "
            "bytes follow; the file is truncated or not an .npy array"
        )


def _read_npy(path: Path, max_bytes: int) -> _Raw:
    with open(path, "rb") as fp:
        _check_npy_header(fp, path.stat().st_size, path)
    return _Raw(x=_np_load(path, lambda: np.load(path, allow_pickle=False)))


def _np_load(path: Path, read, what: str = ""):
    """Run ``read()`` and turn numpy's errors into a DataError naming the file (and ``what`` in it)."""
    part = f" {what}" if what else ""
    try:
        return read()
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"data file '{path}':{part or ' it'} holds Python objects (pickled), which are not loaded for "
                "safety; save numeric arrays instead"
            ) from None
        raise DataError(f"data file '{path}':{part} cannot be read{'' if what else ' as ' + path.suffix} ({exc})") from None
    except _PARSE_ERRORS as exc:
        raise DataError(f"data file '{path}':{part} cannot be read{'' if what else ' as ' + path.suffix} ({exc})") from None


def _read_npz(path: Path, max_bytes: int) -> _Raw:
    try:
        z = np.load(path, allow_pickle=False)
    except _PARSE_ERRORS as exc:
        raise DataError(f"data file '{path}': cannot be read as .npz ({exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"data file '{path}': is a single array, not an .npz archive; name it .npy")
    with z:
        keys = list(z.files)
        unpacked = sum(info.file_size for info in z.zip.infolist())
        if unpacked > max_bytes:
            raise _too_big(f"data file '{path}' (uncompressed)", unpacked, max_bytes)

        def get(key):
            return _get_npz(path, z, key)

        if "x_train" in keys or "x_test" in keys:
            if not {"x_train", "x_test"} <= set(keys):
                raise DataError(f"data file '{path}': has only one of 'x_train' / 'x_test' (keys: {keys})")
            has_y = ("y_train" in keys, "y_test" in keys)
            if has_y[0] != has_y[1]:
                raise DataError(f"data file '{path}': has only one of 'y_train' / 'y_test' (keys: {keys})")
            return _Raw(
                x=get("x_train"), x_test=get("x_test"),
                y=get("y_train") if has_y[0] else None, y_test=get("y_test") if has_y[1] else None,
            )
        xkey = next((k for k in _X_KEYS if k in keys), None)
        if xkey is None:
            raise DataError(
                f"data file '{path}': no data array; keys are {keys}, expected 'x' (or 'X', 'data') "
                "with optional 'y' (or 'labels'), or 'x_train' and 'x_test' with optional "
                "'y_train' and 'y_test'"
            )
        ykey = next((k for k in _Y_KEYS if k in keys), None)
        return _Raw(x=get(xkey), y=get(ykey) if ykey else None)


def _get_npz(path: Path, z, key: str) -> np.ndarray:
    what = f"array {key!r}"
    member = key if key in z.zip.namelist() else key + ".npy"
    try:
        info = z.zip.getinfo(member)
        with z.zip.open(info) as fp:
            head = fp.read(6)
        if head == b"\x93NUMPY":
            with z.zip.open(info) as fp:
                _check_npy_header(fp, info.file_size, path, what)
    except _PARSE_ERRORS as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"data file '{path}': {what} cannot be read ({exc})") from None
    return _np_load(path, lambda: z[key], what)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, max_bytes: int) -> _Raw:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"data file '{path}': not a UTF-8 text file") from None
    # (file line number, text) of every line that holds data; blank and '#' lines are skipped
    rows = [(i, ln) for i, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise DataError(f"data file '{path}': empty file (no rows of numbers)")
    first = rows[0][1]
    delim = next((d for d in (",", ";", "\t") if d in first), None)  # None: whitespace

    def split(line: str) -> list[str]:
        if delim is None:
            return line.split()
        return [c.strip() for c in next(csv.reader([line], delimiter=delim))]

    head = split(first)
    header = None
    if not all(_is_number(c) for c in head):
        header, rows = head, rows[1:]
        if not rows:
            raise DataError(f"data file '{path}': has a header row but no rows of numbers")
    ncols = len(header) if header else len(head)
    label_col = None
    if header:
        label_col = next((j for j, c in enumerate(header) if c.strip().lower() in LABEL_COLUMNS), None)
    lines = [ln for _, ln in rows]
    linenos = [i for i, _ in rows]

    # column counts first (cheap, per row): the clearest message for ragged files
    simple = delim is not None and '"' not in text
    for lineno, line in rows:
        n = line.count(delim) + 1 if simple else len(split(line))
        if n != ncols:
            expected = f"{ncols} (like the header)" if header else f"{ncols} (like row {linenos[0]})"
            raise DataError(f"data file '{path}': row {lineno} has {n} values, expected {expected}")
    usecols = [j for j in range(ncols) if j != label_col]
    if not usecols:
        raise DataError(f"data file '{path}': has only a label column, no data columns")
    body = "\n".join(lines)

    def parse(cols, dtype):
        return np.loadtxt(io.StringIO(body), delimiter=delim, usecols=cols, dtype=dtype,
                          ndmin=2, quotechar='"', comments=None)

    try:  # numpy's C parser; on failure find the exact cell in Python
        x = parse(usecols, np.float64)
    except ValueError as exc:
        for lineno, line in rows:
            cells = split(line)
            for j in usecols:
                if cells[j] == "":
                    raise DataError(f"data file '{path}': row {lineno}, column {j + 1} is empty") from None
                if not _is_number(cells[j]):
                    name = f" ({header[j]!r})" if header else ""
                    raise DataError(
                        f"data file '{path}': row {lineno}, column {j + 1}{name}: {cells[j]!r} "
                        "is not a number"
                    ) from None
        raise DataError(f"data file '{path}': cannot be parsed as numbers ({exc})") from None
    y = None
    if label_col is not None:  # numbers, else class names
        try:
            y = parse([label_col], np.float64)[:, 0]
        except ValueError:
            y = np.char.strip(parse([label_col], str)[:, 0])
    return _Raw(x=x, y=y, where=[f"row {i}" for i in linenos])


def _read_image_folder(folder: Path, max_bytes: int) -> _Raw:

    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)

    top = images_in(folder)
    class_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    classes = [(d, images_in(d)) for d in class_dirs]
    classes = [(d, imgs) for d, imgs in classes if imgs]
    if top and classes:
        raise DataError(
            f"image folder '{folder}': has images both at the top level ({top[0].name}, ...) and in "
            f"class sub-folders ({classes[0][0].name}/, ...); put every image in a class sub-folder, "
            "or none"
        )
    if classes:
        files = [(p, ci) for ci, (_, imgs) in enumerate(classes) for p in imgs]
        label_names = tuple(d.name for d, _ in classes)
    elif top:
        files, label_names = [(p, -1) for p in top], None
    else:
        raise DataError(
            f"image folder '{folder}': no images found (looked for {', '.join(IMAGE_SUFFIXES)} files in "
            "the folder and in its sub-folders)"
        )
    total = sum(p.stat().st_size for p, _ in files)
    if total > max_bytes:
        raise _too_big(f"image folder '{folder}'", total, max_bytes)

    def open_gray(p: Path):
        return _decode_gray(p, f"image file '{p}'")

    first = open_gray(files[0][0])
    w, h = first.size
    _check_pixel_budget(f"image folder '{folder}'", len(files), w, h, max_bytes)
    x = np.empty((len(files), h, w), dtype=np.uint8)  # (N, H, W)
    for i, (p, _) in enumerate(files):
        im = first if i == 0 else open_gray(p)
        if im.size != (w, h):
            raise DataError(
                f"image folder '{folder}': '{p.relative_to(folder)}' is {im.size[0]}x{im.size[1]} "
                f"pixels but the first image '{files[0][0].relative_to(folder)}' is {w}x{h}; all "
                "images must have the same size"
            )
        x[i] = np.asarray(im, dtype=np.uint8)
    y = None if label_names is None else np.array([ci for _, ci in files], dtype=np.int64)
    return _Raw(x=x, y=y, image_files=True, label_names=label_names,
                where=[f"image '{p.relative_to(folder)}'" for p, _ in files])


def _decode_gray(src, label: str):
    """A PNG/JPEG (path or binary file object) as an 8-bit grayscale PIL image; ``label`` names it
    in messages. The pixel count is checked from the header, before any pixel is decoded (PIL's
    own DecompressionBombError guards far larger images than MAX_DIM allows)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src, formats=_PIL_FORMATS) as im:
            w, h = im.size
            if w * h > MAX_DIM:
                raise DataError(
                    f"{label}: {w}x{h} = {w * h} pixels per image, over the limit of "
                    f"{MAX_DIM}; resize the images first"
                )
            if w * h == 0:
                raise DataError(f"{label}: {w}x{h} pixels, an empty image")
            return im.convert("L")
    except DataError:
        raise
    except (*_PARSE_ERRORS, Image.DecompressionBombError) as exc:
        why = "not a PNG or JPEG image" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise DataError(f"{label}: cannot be read as an image ({why})") from None


def _check_pixel_budget(what: str, n: int, w: int, h: int, max_bytes: int) -> None:
    if n * w * h > max_bytes:
        raise DataError(
            f"{what}: {n} images of {w}x{h} pixels are {n * w * h} bytes decoded, over max_bytes={max_bytes}; "
            "use fewer or smaller images"
        )


_ABSOLUTE = re.compile(r"^([/\\]|[A-Za-z]:)")


def _zip_entries(path: Path, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """(entry, path parts) of every image in the archive; refuses unsafe names, encrypted entries
    and non-image files (OS metadata such as __MACOSX/ and .DS_Store is skipped)."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise DataError(f"zip file '{path}': {len(infos)} entries, over the limit of {MAX_ZIP_ENTRIES}")
    images, others = [], []
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if _ABSOLUTE.match(name) or ".." in parts:
            raise DataError(f"zip file '{path}': entry {name!r} points outside the archive (an absolute name "
                            "or '..'); such archives are refused")
        parts = [p for p in parts if p not in ("", ".")]
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            continue
        if info.flag_bits & 0x1:
            raise DataError(f"zip file '{path}': entry {name!r} is encrypted; zip the images without a password")
        if Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
            images.append((info, parts))
        else:
            others.append(name)
    if others:
        shown = ", ".join(repr(n) for n in others[:3]) + (", ..." if len(others) > 3 else "")
        raise DataError(
            f"zip file '{path}': {len(others)} of {len(others) + len(images)} files are not PNG/JPEG images "
            f"({shown}); zip only the images"
        )
    if not images:
        raise DataError(f"zip file '{path}': no images found (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    while all(len(p) > 1 for _, p in images) and len({p[0] for _, p in images}) == 1:
        images = [(i, p[1:]) for i, p in images]  # one folder around everything: not a class
    return sorted(images, key=lambda e: e[1])


def _read_image_zip(path: Path, max_bytes: int) -> _Raw:
    """A .zip of PNG/JPEG images of one size: at its top level (no labels) or in class folders."""
    try:
        zf = zipfile.ZipFile(path)
    except _PARSE_ERRORS as exc:
        raise DataError(f"zip file '{path}': cannot be read as a zip archive ({exc})") from None
    with zf:
        entries = _zip_entries(path, zf)
        total = sum(info.file_size for info, _ in entries)
        if total > max_bytes:
            raise _too_big(f"zip file '{path}' (uncompressed)", total, max_bytes)
        for info, _ in entries:
            if info.file_size > 1 << 16 and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
                raise DataError(
                    f"zip file '{path}': entry {info.filename!r} expands {info.compress_size} bytes to "
                    f"{info.file_size} (over {MAX_ZIP_RATIO}x); refused as a possible zip bomb"
                )
        top = [(i, p) for i, p in entries if len(p) == 1]
        nested = [(i, p) for i, p in entries if len(p) > 1]
        if top and nested:
            raise DataError(
                f"zip file '{path}': has images both at the top level ({top[0][1][0]}, ...) and in class "
                f"folders ({'/'.join(nested[0][1][:-1])}/, ...); put every image in a class folder, or none"
            )
        label_names = tuple(sorted({"/".join(p[:-1]) for _, p in nested})) or None
        where = [f"image '{info.filename}'" for info, _ in entries]

        def read(k: int):
            info = entries[k][0]
            label = f"zip file '{path}': image '{info.filename}'"
            try:
                with zf.open(info) as fp:
                    blob = fp.read(info.file_size + 1)  # zipfile stops at the declared size
            except _PARSE_ERRORS as exc:
                raise DataError(f"{label}: cannot be extracted ({exc})") from None
            return _decode_gray(io.BytesIO(blob), label)

        first = read(0)
        w, h = first.size
        _check_pixel_budget(f"zip file '{path}'", len(entries), w, h, max_bytes)
        x = np.empty((len(entries), h, w), dtype=np.uint8)  # (N, H, W)
        for k in range(len(entries)):
            im = first if k == 0 else read(k)
            if im.size != (w, h):
                raise DataError(
                    f"zip file '{path}': '{entries[k][0].filename}' is {im.size[0]}x{im.size[1]} pixels but "
                    f"the first image '{entries[0][0].filename}' is {w}x{h}; all images must have the same size"
                )
            x[k] = np.asarray(im, dtype=np.uint8)
    y = None
    if label_names is not None:
        index = {n: c for c, n in enumerate(label_names)}
        y = np.array([index["/".join(p[:-1])] for _, p in entries], dtype=np.int64)
    return _Raw(x=x, y=y, image_files=True, label_names=label_names, where=where)


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv, ".txt": _read_csv, ".tsv": _read_csv,
            ".zip": _read_image_zip}
SUFFIXES = tuple(_READERS)


# --------------------------------------------------------------------------- checks
def _check_x(x: np.ndarray, path: Path, what: str, where) -> tuple[np.ndarray, tuple[int, ...], str]:
    """(N, D) float array, shape of one example, kind."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        dt = getattr(x, "dtype", type(x).__name__)
        raise DataError(f"data file '{path}': {what} has non-numeric dtype {dt}; expected numbers")
    if x.ndim == 2:
        shape, kind = (x.shape[1],), "array"
    elif x.ndim == 3:
        shape, kind = x.shape[1:], "image"
    else:
        raise DataError(
            f"data file '{path}': {what} is {x.ndim}-D with shape {x.shape}; expected 2-D (N, D) "
            "examples by features, or 3-D (N, H, W) grayscale images"
        )
    n, d = x.shape[0], int(np.prod(shape))
    if d > MAX_DIM:
        raise DataError(f"data file '{path}': {what} has {d} values per example, over the limit of {MAX_DIM}")
    if d == 0:
        raise DataError(f"data file '{path}': {what} has 0 values per example (shape {x.shape})")
    x = x.reshape(n, d)
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        count = int(bad.sum())
        if count:
            r, c = np.argwhere(bad)[0]
            at = where[r] if where is not None else f"example {r + 1}"
            raise DataError(
                f"data file '{path}': {count} NaN/Inf value{'s' if count > 1 else ''} in {what} "
                f"(first at {at}, value {c + 1} of {d}); remove or fill them"
            )
    return x, tuple(int(s) for s in shape), kind


def _encode_labels(
    path: Path, ys: list[np.ndarray], n: list[int]
) -> tuple[list[np.ndarray], tuple[str, ...] | None]:
    """Validate label arrays (train[, test]) -> int64 arrays and label names for text labels."""
    for y, count in zip(ys, n):
        if y.ndim != 1 or len(y) != count:
            raise DataError(
                f"labels for '{path}': shape {y.shape} does not match {count} examples; expected ({count},)"
            )
    allv = np.concatenate(ys)
    if allv.dtype.kind in "US":
        text = allv.astype(str)
        if all(_is_number(t) for t in np.unique(text)):
            allv = text.astype(np.float64)
        else:
            names, codes = np.unique(text, return_inverse=True)
            out, start = [], 0
            for count in n:
                out.append(codes[start:start + count].astype(np.int64))
                start += count
            return out, tuple(str(s) for s in names)
    if allv.dtype.kind not in "biuf":
        raise DataError(f"labels for '{path}': dtype {allv.dtype} is not integer or text")
    if allv.dtype.kind == "f":
        bad = ~np.isfinite(allv) | (allv != np.round(allv))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"labels for '{path}': label {allv[i].item()!r} (number {i + 1}) is not an integer"
            )
    return np.split(allv.astype(np.int64), np.cumsum(n)[:-1]), None


def _labels_from_arg(labels, path: Path) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        lp = Path(labels).expanduser()
        if not lp.is_file():
            raise DataError(f"labels file '{lp}': not found")
        if lp.suffix.lower() == ".npy":
            return _np_load(lp, lambda: np.load(lp, allow_pickle=False))
        lines = [ln.strip() for ln in lp.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        if not lines:
            raise DataError(f"labels file '{lp}': empty file")
        return np.array(lines)
    return np.asarray(labels)


def _scale(xs: list[np.ndarray], image_files: bool) -> list[np.ndarray]:
    """Apply the module's scaling rule to train (and test) together; returns float32 arrays."""
    if image_files:
        return [np.divide(x, np.float32(255.0), dtype=np.float32) for x in xs]
    lo = min(float(x.min()) for x in xs)
    hi = max(float(x.max()) for x in xs)
    if lo >= 0.0 and hi <= 1.0:
        return [x.astype(np.float32) for x in xs]
    integer = all(x.dtype.kind in "biu" or bool(np.all(np.mod(x, 1) == 0)) for x in xs)
    if lo >= 0.0 and hi <= 255.0 and integer:
        return [np.divide(x, np.float32(255.0), dtype=np.float32) for x in xs]
    return [x.astype(np.float32) for x in xs]


def _split(n: int, y: np.ndarray | None, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    if y is not None:
        from sklearn.model_selection import train_test_split

        try:  # stratified when every class can give at least one example to each side
            tr, te = train_test_split(np.arange(n), test_size=n_test, stratify=y, random_state=seed)
            return np.sort(tr), np.sort(te)
        except ValueError:
            pass
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# --------------------------------------------------------------------------- entry point
def load_file(
    path: str | os.PathLike,
    labels: Sequence[int] | np.ndarray | str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Dataset:
    """Load a user's data: ``.npy``, ``.npz``, ``.csv`` (also ``.tsv``/``.txt``) or a folder of images.

    * ``.npy``: a 2-D (N, D) array (kind "array"), or 3-D (N, H, W) (kind "image", flattened).
    * ``.npz``: ``x`` (or ``X``, ``data``) with optional ``y`` (or ``labels``); or
      ``x_train``, ``x_test`` with optional ``y_train``, ``y_test`` (then no split is made).
    * ``.csv``: numbers; a first row with any non-number is a header; a header column named
      label / labels / y / class / target holds the labels (integers or class names).
    * a folder of PNG/JPEG images of one size, read as 8-bit grayscale; images in
      sub-folders get the sub-folder's index as label and its name in ``label_names``.
    * a ``.zip`` of such images, laid out like the folder (one enclosing folder is ignored);
      refused when an entry is not an image, names a path outside the archive (``../``,
      absolute) or is encrypted, or when it would expand past ``max_bytes`` (a zip bomb).

    ``labels``: integer (or text) labels, one per example, as an array or a path to a
    ``.npy`` / text file with one per line; it replaces labels found in the file.
    ``test_fraction`` of the examples (at least one) go to the test split, chosen with
    ``seed`` (stratified by label when possible). ``max_bytes`` caps the file size, the
    uncompressed size of an .npz or .zip, and the decoded pixels of an image folder or zip.
    """
    path = Path(path).expanduser()
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0 < test_fraction < 1:
        raise DataError(f"test_fraction={test_fraction!r} must be a number strictly between 0 and 1")
    if not path.exists():
        raise DataError(f"data file '{path}': not found")
    if path.is_dir():
        raw = _read_image_folder(path, max_bytes)
    else:
        size = path.stat().st_size
        if size == 0:
            raise DataError(f"data file '{path}': empty file (0 bytes)")
        if size > max_bytes:
            raise _too_big(f"data file '{path}'", size, max_bytes)
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise DataError(
                f"data file '{path}': unsupported type '{path.suffix}'; expected .npy, .npz, .csv "
                "(or .tsv, .txt), a .zip of PNG/JPEG images or a folder of them"
            )
        try:
            raw = reader(path, max_bytes)
        except csv.Error as exc:
            raise DataError(f"data file '{path}': cannot be parsed as CSV ({exc})") from None

    presplit = raw.x_test is not None
    x, shape, kind = _check_x(raw.x, path, "x_train" if presplit else "the data", raw.where)
    xs = [x]
    if presplit:
        x_te, shape_te, _ = _check_x(raw.x_test, path, "x_test", None)
        if shape_te != shape:
            raise DataError(f"data file '{path}': x_test examples have shape {shape_te}, x_train {shape}")
        xs.append(x_te)
    n = [len(a) for a in xs]
    if presplit and min(n) < 1:
        raise DataError(
            f"data file '{path}': x_train has {n[0]} and x_test {n[1]} examples; need at least 1 each"
        )
    if not presplit and n[0] < 2:
        raise DataError(
            f"data file '{path}': has {n[0]} example{'s' if n[0] != 1 else ''}; need at least 2 "
            "(one to train on, one to test)"
        )

    label_names = raw.label_names
    ys = None
    if labels is not None:
        if presplit:
            raise DataError(
                f"labels= cannot be combined with the pre-split file '{path}' (it has y_train/y_test)"
            )
        ys, label_names = _encode_labels(path, [_labels_from_arg(labels, path)], n)
    elif raw.y is not None:
        given = [raw.y] + ([raw.y_test] if presplit else [])
        if raw.label_names is not None:  # image folder: already class indices
            ys = [np.asarray(raw.y, dtype=np.int64)]
        else:
            ys, label_names = _encode_labels(path, given, n)

    xs = _scale(xs, raw.image_files)
    name = path.name if path.is_dir() else path.stem
    if presplit:
        y_tr, y_te = (ys if ys else (None, None))
        return make_dataset(name, xs[0], y_tr, xs[1], y_te, shape=shape, kind=kind, label_names=label_names)
    y = ys[0] if ys else None
    tr, te = _split(n[0], y, float(test_fraction), seed)
    return make_dataset(
        name, xs[0][tr], None if y is None else y[tr], xs[0][te], None if y is None else y[te],
        shape=shape, kind=kind, label_names=label_names,
    )
