"""Property-based fuzzing of every parser a user's input reaches, and bad settings through every path.

The property, for each parser: a valid result, or the library's own error (DataError for data,
ConfigError for settings) whose message names the file or the field; never another exception,
never a hang (each call runs under an alarm). Every input tried is counted; the totals are
written to ``<pytest tmp>/fuzz_counts.json`` and checked at the end of the module.

``AECORE_FUZZ_EXAMPLES`` sets the examples per parser (default 200).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import struct
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aecore.config import ConfigError, ModelConfig, TrainConfig


def _flushing() -> bool:
    tiny = np.finfo(np.float64).tiny
    return np.float64(tiny) / np.float64(4.0) == 0.0  # a subnormal result read as zero: FTZ/DAZ are on


@pytest.fixture(autouse=True)
def _subnormals_on():
    """Training earlier in this process turns flush-to-zero on (the Trainer calls
    ``torch.set_flush_denormal(True)`` for speed) and hypothesis then refuses to draw subnormal
    floats. The parsers must cope with subnormals, so FTZ is off while fuzzing, and put back."""
    import torch

    was = _flushing()
    torch.set_flush_denormal(False)
    yield
    if was:
        torch.set_flush_denormal(True)
from aecore.data import DataError, load_file
from aecore.data.files import MAX_DIM
from aecore.recsys import load_ratings_csv

EXAMPLES = int(os.environ.get("AECORE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
TIMEOUT_S = 20  # one parse of one small input; far above the slowest seen
COUNTS: Counter = Counter()  # inputs tried per parser, and how many were refused with our error


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    yield folder
    out = tmp_path_factory.getbasetemp() / "fuzz_counts.json"
    tried = {k: v for k, v in COUNTS.items() if not k.endswith(":refused")}
    out.write_text(json.dumps({"total_tried": sum(tried.values()), **dict(sorted(COUNTS.items()))}, indent=1))


@contextmanager
def alarm(seconds: int = TIMEOUT_S):
    def hang(*_):
        raise AssertionError(f"parser still running after {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_n = Counter()


def _path(work, suffix: str):
    _n["file"] += 1
    return work / f"in{_n['file']}{suffix}"


def check_load_file(path, parser: str):
    """load_file on ``path``: a sound Dataset, or a DataError naming the file."""
    COUNTS[parser] += 1
    try:
        with alarm():
            ds = load_file(path)
    except DataError as exc:
        COUNTS[parser + ":refused"] += 1
        assert path.name in str(exc), f"message does not name the file: {exc}"
        assert "\n" not in str(exc).strip()
        return None
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float32 and x.ndim == 2 and len(x) >= 1
        assert np.isfinite(x).all()
    assert 1 <= ds.dim <= MAX_DIM and ds.x_train.shape[1] == ds.x_test.shape[1] == ds.dim
    if ds.y_train is not None:
        assert ds.y_train.dtype == np.int64 and len(ds.y_train) == len(ds.x_train)
    return ds


# --------------------------------------------------------------------------- array files
SUFFIXES = (".npy", ".npz", ".csv", ".zip", ".tsv", ".txt")


@FUZZ
@given(blob=st.binary(max_size=3000), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_in_any_data_file(work, blob, suffix):
    path = _path(work, suffix)
    path.write_bytes(blob)
    check_load_file(path, "array file: random bytes")


DESCRS = ["<f4", "<f8", ">f8", "<f2", "|u1", "<i2", "<i8", "|b1", "<c8", "|O", "<U3", "|S2", "|V4", "<M8[s]",
          [("a", "<f4"), ("b", "<i2")], ("<f4", (2,)), "|V0", "|S0"]


@st.composite
def npy_files(draw) -> bytes:
    """An .npy header (any dtype, any shape, either version) and a payload that may or may not fit."""
    shape = tuple(draw(st.lists(st.integers(-2, 7), max_size=4)))
    if draw(st.booleans()):
        shape = tuple(max(s, 0) for s in shape)
    header = {"descr": draw(st.sampled_from(DESCRS)), "fortran_order": draw(st.booleans()), "shape": shape}
    buf = io.BytesIO()
    write = np.lib.format.write_array_header_2_0 if draw(st.booleans()) else np.lib.format.write_array_header_1_0
    write(buf, header)
    try:
        need = math.prod(max(s, 0) for s in shape) * np.dtype(header["descr"]).itemsize
    except TypeError:
        need = 0
    size = draw(st.one_of(st.just(need), st.integers(0, need + 16)))
    payload = draw(st.binary(min_size=min(size, 800), max_size=min(size, 800)))
    blob = buf.getvalue() + payload
    if draw(st.booleans()):  # truncated anywhere, header included
        blob = blob[:draw(st.integers(0, len(blob)))]
    return blob


@FUZZ
@given(blob=npy_files())
def test_npy_with_random_headers(work, blob):
    path = _path(work, ".npy")
    path.write_bytes(blob)
    check_load_file(path, "array file: .npy header")


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def arrays(draw) -> np.ndarray:
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=4)))
    n = math.prod(shape)
    kind = draw(st.sampled_from(["float", "int", "uint8", "bool", "object", "str", "complex"]))
    if kind == "float":
        vals = draw(st.lists(finite_or_not, min_size=n, max_size=n))
        return np.array(vals, dtype=np.float32).reshape(shape)
    if kind in ("int", "uint8", "bool"):
        vals = draw(st.lists(st.integers(0 if kind != "int" else -1000, 1 if kind == "bool" else 255),
                             min_size=n, max_size=n))
        return np.array(vals, dtype={"int": np.int64, "uint8": np.uint8, "bool": bool}[kind]).reshape(shape)
    if kind == "object":
        arr = np.empty(n, dtype=object)
        arr[:] = [None] * n
        return arr.reshape(shape)
    if kind == "complex":
        return (np.arange(n) + 1j).reshape(shape)
    return np.array(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)), dtype=str).reshape(shape)


@FUZZ
@given(arr=arrays(), truncate=st.one_of(st.none(), st.integers(0, 400)))
def test_npy_of_random_arrays(work, arr, truncate):
    path = _path(work, ".npy")
    np.save(path, arr, allow_pickle=True)  # object arrays are pickled: the loader must refuse them
    if truncate is not None:
        path.write_bytes(path.read_bytes()[:truncate])
    check_load_file(path, "array file: .npy array")


NPZ_KEYS = ("x", "X", "data", "y", "labels", "x_train", "x_test", "y_train", "y_test", "other")


@FUZZ
@given(members=st.dictionaries(st.sampled_from(NPZ_KEYS), arrays(), max_size=4), compressed=st.booleans(),
       junk=st.one_of(st.none(), st.binary(max_size=50)))
def test_npz_with_random_members(work, members, compressed, junk):
    path = _path(work, ".npz")
    (np.savez_compressed if compressed else np.savez)(path, **members)
    if junk is not None:  # a member that is not an .npy array
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("junk", junk)
    check_load_file(path, "array file: .npz")


CELLS = st.one_of(
    st.integers(-300, 300).map(str), finite_or_not.map(repr), st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999"]),
    st.sampled_from(["", " ", "abc", "1,5", '"2"', '"', "1_0", "0x1F", "#", "label", "\x00", "é", "1e", "--1"]),
)


@st.composite
def csv_texts(draw) -> str:
    delim = draw(st.sampled_from([",", ";", "\t", " "]))
    width = draw(st.integers(1, 6))
    rows = []
    if draw(st.booleans()):
        rows.append(delim.join(draw(st.lists(st.sampled_from(["a", "b", "label", "class", "y", "1", ""]),
                                             min_size=width, max_size=width))))
    for _ in range(draw(st.integers(0, 12))):
        w = width if draw(st.integers(0, 9)) else draw(st.integers(0, 8))  # mostly rectangular, sometimes ragged
        rows.append(delim.join(draw(st.lists(CELLS, min_size=w, max_size=w))))
    if draw(st.booleans()):
        rows.insert(draw(st.integers(0, len(rows))), draw(st.sampled_from(["", "# comment", "   "])))
    return "\n".join(rows)


@FUZZ
@given(text=st.one_of(csv_texts(), st.text(max_size=300)), suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
       encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_csv_text(work, text, suffix, encoding):
    path = _path(work, suffix)
    path.write_bytes(text.encode(encoding, errors="replace"))
    check_load_file(path, "array file: CSV")


# --------------------------------------------------------------------------- image zips
def _png(w: int, h: int, seed: int, mode: str = "L") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=None).save(buf, "PNG")
    return buf.getvalue()


def _png_claiming(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a pixel bomb, or a lie)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


NAME_PARTS = st.sampled_from(["a", "b", "cat", "dog", "..", ".", "", "__MACOSX", ".hidden", "x y", "ü", "C:"])
SUFFIX = st.sampled_from([".png", ".PNG", ".jpg", ".jpeg", ".txt", "", ".npy", "/"])


@st.composite
def entry_names(draw) -> str:
    parts = draw(st.lists(NAME_PARTS, min_size=1, max_size=3))
    name = "/".join(parts) + draw(SUFFIX)
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(["/", "\\", "C:\\", "../", "a\\..\\"])) + name
    return name or "a"  # zipfile itself cannot write an empty name


class _Blob(bytes):
    """Bytes with a short repr (hypothesis prints failing inputs)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes {bytes(self[:8])!r}...>"


ENTRY_BYTES = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(0, 3)).map(lambda t: _png(*t)),
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(0, 3)).map(lambda t: _png(*t, mode="RGB")),
    st.sampled_from([(5, 5), (400, 400), (100_000, 100_000), (0, 3), (2**31 - 1, 1)]).map(lambda t: _png_claiming(*t)),
    st.just(_Blob(b"\0" * 300_000)),  # compresses ~1000x: a small zip bomb
)


@FUZZ
@given(entries=st.lists(st.tuples(entry_names(), ENTRY_BYTES), max_size=6),
       method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
       cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_image_zip(work, entries, method, cut):
    import warnings

    path = _path(work, ".zip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are part of the fuzz
        with zipfile.ZipFile(path, "w", compression=method) as z:
            for name, blob in entries:
                z.writestr(name, blob)
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    check_load_file(path, "image zip")


@FUZZ
@given(n_classes=st.integers(0, 3), n=st.integers(1, 6), size=st.integers(1, 6), wrap=st.booleans())
def test_well_formed_image_zip_loads_with_labels(work, n_classes, n, size, wrap):
    """The valid half of the property: a tidy zip loads, with one label per class folder."""
    path = _path(work, ".zip")
    top = "set/" if wrap else ""
    with zipfile.ZipFile(path, "w") as z:
        for c in range(max(n_classes, 1)):
            for i in range(n + 1):
                folder = f"c{c}/" if n_classes else ""
                z.writestr(f"{top}{folder}{i}.png", _png(size, size, c * 10 + i))
    COUNTS["image zip (well formed)"] += 1
    ds = load_file(path)
    assert ds.shape == (size, size) and ds.kind == "image"
    if n_classes >= 2:  # (a single class folder reads as one enclosing folder: no labels)
        assert ds.label_names == tuple(f"c{c}" for c in range(n_classes))
        assert set(np.concatenate([ds.y_train, ds.y_test])) == set(range(n_classes))
    else:
        assert ds.y_train is None


# --------------------------------------------------------------------------- ratings CSV
RATING_CELLS = st.one_of(st.integers(-2, 6).map(str), st.sampled_from(["4.5", "nan", "inf", "", "abc", "3,5", "1e9"]))
ID_CELLS = st.one_of(st.integers(0, 20).map(str), st.sampled_from(["", "u1", " ", "é", '"q"', "-3"]))


@st.composite
def ratings_texts(draw) -> str:
    delim = draw(st.sampled_from([",", "\t", ";", "|", " ", "::"]))
    rows = []
    if draw(st.booleans()):
        rows.append(delim.join(draw(st.permutations(["user", "item", "rating", "timestamp"]))[:draw(st.integers(1, 4))]))
    for _ in range(draw(st.integers(0, 15))):
        row = [draw(ID_CELLS), draw(ID_CELLS), draw(RATING_CELLS)]
        if draw(st.booleans()):
            row.append(draw(st.sampled_from(["881250949", "", "x", "1.5"])))
        if draw(st.integers(0, 6)) == 0:
            row = row[:draw(st.integers(0, 5))]
        rows.append(delim.join(row))
    return "\n".join(rows)


@FUZZ
@given(text=st.one_of(ratings_texts(), st.text(max_size=200)), encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_ratings_csv(work, text, encoding):
    path = _path(work, ".csv")
    path.write_bytes(text.encode(encoding, errors="replace"))
    COUNTS["ratings CSV"] += 1
    try:
        with alarm():
            data = load_ratings_csv(path)
    except DataError as exc:
        COUNTS["ratings CSV:refused"] += 1
        assert path.name in str(exc), f"message does not name the file: {exc}"
        return
    n = len(data.train) + len(data.test)
    assert len(data.train) >= 1 and len(data.test) >= 1
    assert np.isfinite(data.train.rating).all() and np.isfinite(data.test.rating).all()
    assert all(isinstance(v, int) and v > 0 for v in data.skipped.values())
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert n + sum(data.skipped.values()) <= len(lines)  # every row is used, counted, or the header


# --------------------------------------------------------------------------- config dicts
NUMBERS = st.one_of(st.integers(-10, 10), st.integers(-10**30, 10**30), st.sampled_from([0, 10**6, 10**400]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e6, -1e-3, 1e-300]))
VALUES = st.one_of(NUMBERS, st.none(), st.booleans(), st.text(max_size=8), st.lists(st.integers(-2, 300), max_size=3),
                   st.lists(st.text(max_size=2), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                   st.sampled_from(["sigmoid", "linear", "relu", "tied", "sparse", "contractive", "deep", "vae",
                                    "denoising", "squared", "cross-entropy", "gaussian", "masking", "adam", "sgd",
                                    "cosine", "cpu", "auto", "digits", "256,128"]))


def _config_dicts(cls):
    names = [f.name for f in fields(cls)]
    keys = st.one_of(st.sampled_from(names), st.sampled_from(names), st.text(max_size=6))
    return st.dictionaries(keys, VALUES, max_size=6)


def _check_config(cls, d: dict, parser: str):
    COUNTS[parser] += 1
    try:
        with alarm(5):
            cfg = cls.from_dict(d)
    except ConfigError as exc:
        COUNTS[parser + ":refused"] += 1
        msg = str(exc)
        named = [k for k in list(d) + [f.name for f in fields(cls)] if k and k in msg]
        assert named, f"message names no field: {msg}"
        return
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # a valid config round-trips through JSON


@FUZZ
@given(d=_config_dicts(ModelConfig))
def test_model_config_from_random_dicts(d):
    _check_config(ModelConfig, d, "ModelConfig dict")


@FUZZ
@given(d=_config_dicts(TrainConfig))
def test_train_config_from_random_dicts(d):
    _check_config(TrainConfig, d, "TrainConfig dict")


# --------------------------------------------------------------------------- bad settings, every path
BAD_SETTINGS = [  # (field, constructor kwargs, CLI arguments, URL parameter, what the message says)
    ("code_size", {"code_size": 0}, ["-k", "0"], {"K": "0"}, "code_size=0 must be >= 1"),
    ("reg", {"variant": "sparse", "reg": -1.0}, ["--reg", "-1"], {"reg": "-1"}, "reg=-1.0 must be >= 0"),
    ("epochs", {"epochs": 5_000_000}, ["--epochs", "5000000"], {"epochs": "5000000"}, "epochs=5000000 must be <= "),
    ("lr", {"lr": 1e6}, ["--lr", "1e6"], {"lr": "1e6"}, "lr=1000000.0 must be <= 10"),
    ("lr", {"lr": math.nan}, ["--lr", "nan"], {"lr": "nan"}, "lr=nan must be finite"),
    ("lr", {"lr": -math.inf}, ["--lr=-inf"], {"lr": "-inf"}, "lr=-inf must be finite"),
    ("batch_size", {"batch_size": "64"}, ["--batch-size", "many"], {"batch": "many"}, "must be an integer"),
]


def _build(kwargs: dict):
    model_keys = {f.name for f in fields(ModelConfig)}
    return (ModelConfig(**{k: v for k, v in kwargs.items() if k in model_keys}),
            TrainConfig(**{k: v for k, v in kwargs.items() if k not in model_keys}))


@pytest.mark.parametrize("field, kwargs, argv, query, message", BAD_SETTINGS, ids=[c[-1][:24] for c in BAD_SETTINGS])
def test_bad_setting_python_api_raises_config_error_naming_it(field, kwargs, argv, query, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        _build(kwargs)
    assert str(info.value).startswith(field + "=")


@pytest.mark.parametrize("field, kwargs, argv, query, message", BAD_SETTINGS, ids=[c[-1][:24] for c in BAD_SETTINGS])
def test_bad_setting_cli_prints_one_line_naming_it(capsys, field, kwargs, argv, query, message):
    from aecore.cli import main

    variant = kwargs.get("variant", "tied")
    code = main(["train", "--variant", variant, "--dataset", "digits", "-k", "2", "--epochs", "1", "--no-save",
                 *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if field == "batch_size":  # argparse's own check of the type
        assert "argument --batch-size: invalid int value: 'many'" in err, err
    else:
        assert f"aecore: error: {message}" in err, err


@pytest.mark.parametrize("name, make, message", [
    ("ragged.csv", lambda p: p.write_text("1,2,3\n4,5\n"), "data file '{p}': row 2 has 2 values, expected 3"),
    ("objects.npy", lambda p: np.save(p, np.array([None], dtype=object)), "holds Python objects (pickled)"),
    ("escape.zip", lambda p: zipfile.ZipFile(p, "w").writestr("../x.png", b"x"),
     "zip file '{p}': entry '../x.png' points outside the archive"),
    ("empty.npz", lambda p: p.write_bytes(b""), "data file '{p}': empty file (0 bytes)"),
])
def test_bad_data_file_cli_prints_one_line_naming_it(capsys, tmp_path, name, make, message):
    from aecore.cli import main

    path = tmp_path / name
    make(path)
    code = main(["train", "--variant", "tied", "--data-file", str(path), "-k", "2", "--epochs", "1", "--no-save"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert name in err and message.format(p=path) in err, err


def test_bad_settings_in_the_url_warn_and_fall_back(at):
    """?K=0&lr=1e6&...: each bad parameter gets a warning naming it; the settings fall back and stay valid."""
    at.query_params.update({"variant": "sparse", "K": "0", "lr": "1e6", "reg": "-1", "level": "nan",
                            "batch": "many", "seed": "-3", "epochs": "5000000"})
    at.run()
    assert not at.exception and not at.error
    warnings = " ".join(w.value for w in at.warning)
    for name in ("K='0'", "lr='1e6'", "reg='-1'", "batch='many'", "seed='-3'", "epochs"):
        assert name in warnings, (name, warnings)
    mc, tc = at.session_state["model_cfg"], at.session_state["train_cfg"]
    assert mc is not None and tc is not None
    assert mc.code_size >= 1 and 0 < tc.lr <= 10 and mc.reg >= 0 and tc.batch_size >= 1
    assert tc.epochs < 5_000_000
    assert at.query_params["K"] != "0" and at.query_params["lr"] != "1e6"  # the URL shows what is used
    at.button(key="train_start")  # the page is there and usable


def test_zz_counts_written(work, tmp_path_factory):
    """Runs last in this module: every parser was fuzzed and nothing but our own errors came out."""
    parsers = ["array file: random bytes", "array file: .npy header", "array file: .npy array", "array file: .npz",
               "array file: CSV", "image zip", "ratings CSV", "ModelConfig dict", "TrainConfig dict"]
    missing = [p for p in parsers if COUNTS[p] == 0]
    if len(missing) == len(parsers):
        pytest.skip("run with the fuzz tests above (this test only checks their counts)")
    assert not missing, f"not fuzzed: {missing}"
    for p in parsers:  # both halves of the property were reached: some inputs refused, some accepted
        assert COUNTS[p + ":refused"] >= 1, p
    assert any(COUNTS[p] > COUNTS[p + ":refused"] for p in parsers)
