"""Tests for aecore.data: IDX reader, named datasets, downloads (local server), user files."""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aecore.data as data
from localhttp import no_proxies, serving
from aecore.data import (
    BASE_URLS, DATASETS, DataError, Dataset, IdxSpec, RemoteFile, load, load_file, read_idx,
)

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------- helpers
def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialize an array as IDX (big-endian), the format MNIST ships in."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}
    code = codes[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean world: private cache, no data root, no proxies, no arrays cached in memory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AECORE_CACHE", str(cache))
    monkeypatch.delenv("AECORE_DATA", raising=False)
    no_proxies(monkeypatch)
    data.clear_memory_cache()
    yield cache
    data.clear_memory_cache()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ----------------------------------------------------------------------------- IDX reader
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    for name, arr in (("img", images), ("lab", labels)):
        raw = idx_bytes(arr)
        p = tmp_path / (name + (".gz" if compress else ""))
        p.write_bytes(gz(raw) if compress else raw)
        got = read_idx(p)
        assert got.dtype == np.uint8 and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_read_idx_other_types_are_big_endian(tmp_path, dtype):
    scale = 1 if dtype == "i1" else 300  # values that need more than one byte, and negatives
    arr = (np.arange(-6, 6).reshape(3, 4) * scale).astype(dtype)
    p = tmp_path / "a.idx"
    p.write_bytes(idx_bytes(arr))
    got = read_idx(p)
    assert got.dtype == np.dtype(dtype)  # native order
    np.testing.assert_array_equal(got, arr)


def test_read_idx_bad_magic(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(gz(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc"))
    with pytest.raises(DataError, match=r"bad\.gz.*bad magic number"):
        read_idx(p)


def test_read_idx_truncated(tmp_path):
    raw = idx_bytes(np.zeros((10, 4, 4), np.uint8))
    p = tmp_path / "short-idx3-ubyte"
    p.write_bytes(raw[:-5])
    expected = r"short-idx3-ubyte.*truncated.*\(10, 4, 4\) = 160 data bytes, file has 155"
    with pytest.raises(DataError, match=expected):
        read_idx(p)
    p.write_bytes(raw[:10])  # cut inside the dims
    with pytest.raises(DataError, match="truncated header"):
        read_idx(p)


def test_read_idx_unknown_type_and_broken_gzip(tmp_path):
    p = tmp_path / "t.idx"
    p.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"x")
    with pytest.raises(DataError, match="unknown data type code 0x07"):
        read_idx(p)
    good = gz(idx_bytes(np.zeros(100, np.uint8)))
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="broken gzip"):
        read_idx(p)


# ----------------------------------------------------------------------------- digits
def test_digits_split_is_stratified_and_complete(env):
    from sklearn.datasets import load_digits

    ds = load("digits")
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.x_train.dtype == np.float32 and ds.x_train.flags.c_contiguous
    assert ds.y_train.dtype == np.int64
    assert ds.shape == (8, 8) and ds.dim == 64 and ds.kind == "image"
    assert ds.value_range == (0.0, 1.0)
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    full = load_digits()
    counts = np.bincount(full.target)
    # stratified: each class gives ~20% of its examples to test
    assert np.all(np.abs(np.bincount(ds.y_test, minlength=10) - 0.2 * counts) <= 1)
    # the two splits are exactly the original 1797 examples, /16, with their labels
    both = np.vstack([ds.x_train, ds.x_test]) * 16
    y = np.concatenate([ds.y_train, ds.y_test])
    key = lambda x, t: np.lexsort(np.column_stack([x, t]).T)  # noqa: E731
    a, b = key(both, y), key(full.data, full.target)
    np.testing.assert_allclose(both[a], full.data[b], atol=1e-5)
    np.testing.assert_array_equal(y[a], full.target[b])
    assert load("DIGITS") is ds  # cached, name case-insensitive


def test_dataset_is_read_only_and_subset(env):
    ds = load("digits")
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 5.0
    small = ds.subset(n_train=100, n_test=30, seed=3)
    assert small.x_train.shape == (100, 64) and small.y_test.shape == (30,)
    again = ds.subset(n_train=100, n_test=30, seed=3)
    np.testing.assert_array_equal(small.x_train, again.x_train)
    assert not np.array_equal(small.x_train, ds.subset(n_train=100, n_test=30, seed=4).x_train)
    # every subset row is a row of the parent with the same label
    lookup = {row.tobytes(): lab for row, lab in zip(ds.x_train, ds.y_train)}
    assert all(lookup[row.tobytes()] == lab for row, lab in zip(small.x_train, small.y_train))
    assert ds.subset(n_train=10).x_test.shape == (360, 64)  # None keeps a split whole
    assert small.shape == (8, 8) and small.label_names == ds.label_names
    with pytest.raises(DataError, match=r"n_train=5000 must be an integer between 1 and 1437"):
        ds.subset(n_train=5000)
    with pytest.raises(DataError, match="n_test=0"):
        ds.subset(n_test=0)


def test_unknown_name_lists_known(env):
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known datasets: digits, fashion-mnist, mnist"):
        load("cifar")


def test_import_has_no_side_effects_and_env_is_read_per_call(monkeypatch, tmp_path):
    code = ("import sys, aecore; before = set(sys.modules); import aecore.data; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new & {'pooch', 'requests', 'sklearn', 'PIL'}) or False)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "b"))
    assert data.cache_dir() == tmp_path / "a" and data.data_root() == tmp_path / "b"
    monkeypatch.delenv("AECORE_CACHE")
    monkeypatch.delenv("AECORE_DATA")
    assert data.cache_dir() == Path.home() / ".cache" / "aecore" and data.data_root() is None


# ----------------------------------------------------------------------------- real IDX sets
def _shared_mnist() -> Path:
    root = os.environ.get("AECORE_DATA")
    if not root:
        pytest.skip("AECORE_DATA not set: point it at the shared data folder (../shared/data) to test MNIST")
    folder = Path(root) / "mnist"
    missing = [n for n in IDX_NAMES if not (folder / n).is_file()]
    if missing:
        pytest.skip(f"AECORE_DATA={root} lacks {', '.join(missing)} in {folder}")
    return folder


def test_mnist_from_data_root(monkeypatch, tmp_path):
    folder = _shared_mnist()
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))  # must not be needed
    data.clear_memory_cache()
    ds = load("mnist", download=False)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == np.float32 and ds.x_train.flags.c_contiguous
    assert ds.shape == (28, 28) and ds.kind == "image" and ds.value_range == (0.0, 1.0)
    assert ds.y_train[0] == 5 and ds.y_test[0] == 7
    # label counts and pixel mean as stated in shared/data/mnist/SOURCE.md
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(float(ds.x_train.mean(dtype=np.float64)) * 255 - 33.3184) < 1e-3
    assert load("mnist", download=False) is ds  # in-memory cache
    # a caller with its own cache (the dashboard) parses the files without a second copy kept here
    data.clear_memory_cache()
    fresh = load("mnist", download=False, memory_cache=False)
    assert fresh is not ds and np.array_equal(fresh.x_train, ds.x_train) and np.array_equal(fresh.y_test, ds.y_test)
    assert data.registry._load_idx_cached.cache_info().currsize == 0
    assert load("mnist", download=False) is not fresh
    info = {d["name"]: d for d in data.list_datasets()}["mnist"]
    assert info["available_offline"] and info["location"] == str(folder)


def test_fashion_mnist_from_system_copy(env):
    if not all((SYSTEM_FASHION / n).is_file() for n in IDX_NAMES):
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed in {SYSTEM_FASHION}")
    ds = load("fashion-mnist", download=False)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.value_range == (0.0, 1.0) and ds.shape == (28, 28)
    assert ds.label_names[0] == "T-shirt/top" and ds.label_names[9] == "Ankle boot"
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    info = {d["name"]: d for d in data.list_datasets()}["fashion-mnist"]
    assert info["available_offline"] and info["location"] == str(SYSTEM_FASHION)


def test_list_datasets(env):
    rows = data.list_datasets()
    assert {r["name"] for r in rows} >= {"digits", "mnist", "fashion-mnist"}
    keys = {"name", "description", "n_train", "n_test", "shape", "available_offline", "location"}
    assert all(set(r) == keys for r in rows)
    by = {r["name"]: r for r in rows}
    assert by["digits"]["available_offline"] and by["digits"]["location"] == "bundled with scikit-learn"
    assert (by["digits"]["n_train"], by["digits"]["n_test"], by["digits"]["shape"]) == (1437, 360, (8, 8))
    assert by["mnist"]["available_offline"] is False and by["mnist"]["location"] is None


def test_offline_error_names_files_and_folders(env, tmp_path, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setenv("AECORE_DATA", str(root))
    with pytest.raises(DataError) as info:
        load("mnist", download=False)
    msg = str(info.value)
    assert "not available offline" in msg
    for name in IDX_NAMES:
        assert name in msg
    assert str(root / "mnist") in msg and "AECORE_DATA" in msg
    assert str(env / "mnist") in msg and "AECORE_CACHE" in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg
    assert files_under(env) == []  # nothing was fetched or created


# ----------------------------------------------------------------------------- a tiny IDX set
def tiny_files(seed=0, n_train=48, n_test=12, hw=(16, 16)):
    """Random (incompressible, so several download chunks) images and labels as IDX .gz."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 3, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 3, n_test, dtype=np.uint8),
    }
    blobs = {name: gz(idx_bytes(a)) for name, a in arrays.items()}
    return arrays, blobs


def tiny_spec(blobs, n_train=48, n_test=12, hw=(16, 16)):
    files = tuple(RemoteFile(n, sha256(blobs[n]), len(blobs[n])) for n in IDX_NAMES)
    return IdxSpec(name="tiny", description="test set", n_train=n_train, n_test=n_test, shape=hw,
                   files=files, label_names=("a", "b", "c"))


def test_lookup_order_and_file_name_variants(env, tmp_path, monkeypatch):
    arrays, blobs = tiny_files(seed=1)
    _, other = tiny_files(seed=2)
    monkeypatch.setitem(DATASETS, "tiny", tiny_spec(blobs))
    root = tmp_path / "root"
    (root / "tiny").mkdir(parents=True)
    (env / "tiny").mkdir(parents=True)
    for n in IDX_NAMES:
        (env / "tiny" / n).write_bytes(other[n])  # cache: a different set
        # root: uncompressed and with the dotted spelling some copies use
        (root / "tiny" / n[:-3].replace("-idx", ".idx")).write_bytes(gzip.decompress(blobs[n]))
    ds = load("tiny", root=root, download=False)
    np.testing.assert_array_equal(ds.x_train, arrays[IDX_NAMES[0]].reshape(48, -1) / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, arrays[IDX_NAMES[3]])
    assert ds.label_names == ("a", "b", "c")
    # without the root argument the cache copy is used
    other_ds = load("tiny", download=False)
    assert not np.array_equal(other_ds.x_train, ds.x_train)
    # a file whose header disagrees with the spec is refused, naming it
    bad = root / "tiny" / "train-labels.idx1-ubyte"
    bad.write_bytes(idx_bytes(np.zeros(47, np.uint8)))
    with pytest.raises(DataError, match=r"train-labels\.idx1-ubyte.*\(47,\), expected uint8 \(48,\)"):
        load("tiny", root=root, download=False)


@pytest.fixture
def server(monkeypatch):
    with serving(monkeypatch) as httpd:
        yield httpd


def serve_tiny(monkeypatch, server, blobs, mode="ok"):
    monkeypatch.setitem(DATASETS, "tiny", tiny_spec(blobs))
    url = server.url("/tiny/")
    monkeypatch.setitem(BASE_URLS, "tiny", [url])
    server.routes.update({"/tiny/" + n: (mode, b) for n, b in blobs.items()})
    return url


def test_download_lands_in_cache_with_progress(env, server, monkeypatch):
    arrays, blobs = tiny_files()
    serve_tiny(monkeypatch, server, blobs)
    calls = []
    ds = load("tiny", progress=lambda done, total: calls.append((done, total)))
    total = sum(len(b) for b in blobs.values())
    assert len(calls) > 10 and all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] > 0 and done[-1] == total
    # the cache holds exactly the four verified files, under their original names
    assert [p.name for p in files_under(env)] == sorted(IDX_NAMES)
    for n in IDX_NAMES:
        assert (env / "tiny" / n).read_bytes() == blobs[n]
    np.testing.assert_array_equal(ds.x_train * 255, arrays[IDX_NAMES[0]].reshape(48, -1).astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, arrays[IDX_NAMES[1]])
    server.routes.clear()  # now offline: served from the cache
    data.clear_memory_cache()
    assert load("tiny", download=False).x_test.shape == (12, 256)


def test_download_checksum_mismatch_leaves_nothing(env, server, monkeypatch):
    _, blobs = tiny_files()
    url = serve_tiny(monkeypatch, server, blobs)
    wrong = gz(b"not what was published" * 100)
    server.routes["/tiny/" + IDX_NAMES[0]] = ("ok", wrong)
    with pytest.raises(DataError) as info:
        load("tiny")
    msg = str(info.value)
    assert f"could not download '{IDX_NAMES[0]}'" in msg and url + IDX_NAMES[0] in msg
    assert "checksum mismatch" in msg
    assert f"expected sha256 {sha256(blobs[IDX_NAMES[0]])}, got {sha256(wrong)}" in msg
    assert files_under(env) == []


def test_download_dropped_connection_then_retry(env, server, monkeypatch):
    arrays, blobs = tiny_files()
    serve_tiny(monkeypatch, server, blobs, mode="drop")
    dropped = rf"could not download '{IDX_NAMES[0]}'(.|\n)*(IncompleteRead|Connection broken)"
    with pytest.raises(DataError, match=dropped):
        load("tiny")
    assert files_under(env) == []  # no partial file, no temp file
    server.routes.update({"/tiny/" + n: ("ok", b) for n, b in blobs.items()})
    ds = load("tiny")
    np.testing.assert_array_equal(ds.y_test, arrays[IDX_NAMES[3]])
    assert [p.name for p in files_under(env)] == sorted(IDX_NAMES)


def test_download_falls_back_to_mirror(env, server, monkeypatch):
    _, blobs = tiny_files()
    url = serve_tiny(monkeypatch, server, blobs)
    gone = url.replace("/tiny/", "/gone/")  # answers 404
    monkeypatch.setitem(BASE_URLS, "tiny", [gone, url])
    ds = load("tiny")
    assert ds.x_train.shape == (48, 256)
    assert server.requests[:2] == ["/gone/" + IDX_NAMES[0], "/tiny/" + IDX_NAMES[0]]


# ----------------------------------------------------------------------------- user files
def test_load_npy_2d_and_3d(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 7))
    np.save(tmp_path / "feat.npy", x)
    ds = load_file(tmp_path / "feat.npy", seed=1)
    assert (ds.name, ds.kind, ds.shape, ds.dim) == ("feat", "array", (7,), 7)
    assert ds.x_train.shape == (40, 7) and ds.x_test.shape == (10, 7) and ds.y_train is None
    both = np.vstack([ds.x_train, ds.x_test])
    np.testing.assert_allclose(np.sort(both, axis=0), np.sort(x, axis=0).astype(np.float32))  # kept, not /255
    assert ds.value_range == (float(ds.x_train.min()), float(ds.x_train.max()))

    img = rng.integers(0, 256, (20, 4, 6), dtype=np.uint8)
    img[0, 0, 0], img[1, 0, 0] = 0, 255
    np.save(tmp_path / "img.npy", img)
    ds = load_file(tmp_path / "img.npy", test_fraction=0.25)
    assert (ds.kind, ds.shape, ds.x_train.shape, ds.x_test.shape) == ("image", (4, 6), (15, 24), (5, 24))
    both = np.vstack([ds.x_train, ds.x_test]) * 255
    np.testing.assert_allclose(np.sort(both.ravel()), np.sort(img.ravel()).astype(np.float32), atol=1e-4)


def test_scaling_rule(tmp_path):
    binary = np.random.default_rng(0).integers(0, 2, (10, 3))
    np.save(tmp_path / "b.npy", binary)
    assert load_file(tmp_path / "b.npy").value_range == (0.0, 1.0)  # 0/1 stays 0/1
    wide = np.linspace(-3, 7.5, 30).reshape(10, 3)
    np.save(tmp_path / "w.npy", wide)
    ds = load_file(tmp_path / "w.npy")
    assert ds.x_train.min() >= -3 and ds.x_test.max() <= 7.5
    assert max(ds.x_train.max(), ds.x_test.max()) == pytest.approx(7.5)  # kept as-is
    pixels = np.array([[0, 255, 128]] * 5, dtype=np.float64)  # integer-valued floats in 0..255
    np.save(tmp_path / "p.npy", pixels)
    np.testing.assert_allclose(load_file(tmp_path / "p.npy").x_train[0], [0, 1, 128 / 255], rtol=1e-6)


def test_load_npz_variants(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 5)), np.repeat([0, 1], 20)
    np.savez(tmp_path / "a.npz", X=x, labels=y)
    ds = load_file(tmp_path / "a.npz")
    assert ds.x_train.shape == (32, 5) and np.bincount(ds.y_test).tolist() == [4, 4]  # stratified
    lookup = {row.astype(np.float32).tobytes(): lab for row, lab in zip(x, y)}
    assert all(lookup[r.tobytes()] == lab for r, lab in zip(ds.x_train, ds.y_train))

    parts = dict(x_train=rng.random((6, 2, 3)), x_test=rng.random((3, 2, 3)),
                 y_train=np.arange(6), y_test=np.array([2, 1, 0]))
    np.savez_compressed(tmp_path / "split.npz", **parts)
    ds = load_file(tmp_path / "split.npz")
    assert ds.kind == "image" and ds.shape == (2, 3)
    np.testing.assert_allclose(ds.x_test, parts["x_test"].reshape(3, 6).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, [2, 1, 0])


def test_load_csv_with_and_without_header(tmp_path):
    rows = np.arange(24).reshape(6, 4) * 10  # integers 0..230 -> /255
    (tmp_path / "plain.csv").write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    ds = load_file(tmp_path / "plain.csv", test_fraction=0.5)
    assert ds.x_train.shape == (3, 4) and ds.y_train is None and ds.kind == "array"
    both = np.vstack([ds.x_train, ds.x_test])
    np.testing.assert_allclose(np.sort(both.ravel()), np.sort(rows.ravel()) / 255, rtol=1e-6)

    lines = ["a,b,c,label"] + [f"{i / 10},{i / 20},{1 - i / 10},{i % 2}" for i in range(10)]
    (tmp_path / "lab.csv").write_text("\n".join(lines))
    ds = load_file(tmp_path / "lab.csv")
    assert ds.dim == 3 and ds.x_train.shape == (8, 3)
    assert sorted(np.concatenate([ds.y_train, ds.y_test])) == [0] * 5 + [1] * 5
    for row, lab in zip(ds.x_train, ds.y_train):  # labels stay with their rows
        assert int(round(row[0] * 10)) % 2 == lab

    # Kaggle style: label first, class names as text, semicolons
    lines = ["y;p1;p2"] + [f"{'cat' if i % 2 else 'dog'};{i};{i + 1}" for i in range(8)]
    (tmp_path / "named.csv").write_text("\n".join(lines))
    ds = load_file(tmp_path / "named.csv", test_fraction=0.25)
    assert ds.label_names == ("cat", "dog") and ds.dim == 2
    for row, lab in zip(ds.x_train, ds.y_train):
        assert ds.label_names[lab] == ("cat" if round(row[0] * 255) % 2 else "dog")


def test_load_image_folder_with_classes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    for cls in ("cat", "dog"):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, (5, 6), dtype=np.uint8)  # H=5, W=6
            Image.fromarray(a, mode="L").save(tmp_path / "pets" / cls / f"{i}.png")
            written[a.tobytes()] = cls
    (tmp_path / "pets" / "notes.txt").write_text("ignored")
    ds = load_file(tmp_path / "pets", test_fraction=1 / 3)
    assert (ds.name, ds.kind, ds.shape, ds.label_names) == ("pets", "image", (5, 6), ("cat", "dog"))
    assert ds.x_train.shape == (4, 30) and ds.x_test.shape == (2, 30)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for row, lab in zip(x, y):
            key = np.round(row * 255).astype(np.uint8).tobytes()
            assert written[key] == ds.label_names[lab]

    # RGB images are converted to grayscale
    (tmp_path / "rgb").mkdir()
    for i in range(2):
        Image.new("RGB", (3, 2), (255, 255, 255)).save(tmp_path / "rgb" / f"{i}.jpg")
    ds = load_file(tmp_path / "rgb")
    assert ds.shape == (2, 3) and ds.label_names is None and ds.value_range == (1.0, 1.0)


def _write(path: Path, content) -> Path:
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_text(content)
    return path


BAD_INPUTS = [
    ("nan.npy", np.array([[0.0, np.nan], [np.inf, 1.0], [0.5, np.nan]]),
     r"nan\.npy': 3 NaN/Inf values .*first at example 1, value 2"),
    ("nan.csv", "1,2\n3,4\n5,nan\n", r"nan\.csv': 1 NaN/Inf value .*row 3"),
    ("ragged.csv", "1,2,3,4\n5,6,7,8\n1,2,3,4,5\n", r"ragged\.csv': row 3 has 5 values, expected 4"),
    ("text.csv", "a,b,c\n1,2,3\n4,5,abc\n", r"text\.csv': row 3, column 3 \('c'\): 'abc' is not a number"),
    ("hole.csv", "1,2,3\n4,,6\n", r"hole\.csv': row 2, column 2 is empty"),
    ("empty.csv", "", r"empty\.csv': empty file"),
    ("blank.csv", "\n\n  \n", r"blank\.csv': empty file"),
    ("header_only.csv", "a,b\n", "header row but no rows"),
    ("flat.npy", np.arange(10.0), r"flat\.npy': the data is 1-D .* expected 2-D"),
    ("four.npy", np.zeros((2, 2, 2, 2)), "4-D"),
    ("words.npy", np.array([["a", "b"], ["c", "d"]]), "non-numeric dtype <U1"),
    ("objects.npy", np.array([[1, None]], dtype=object), "Python objects"),
    ("one.npy", np.zeros((1, 4)), "has 1 example; need at least 2"),
    ("wide.npy", np.zeros((2, 100_001), np.uint8), "100001 values per example, over the limit of 100000"),
    ("data.txt2", "1,2\n", r"unsupported type '\.txt2'"),
]


@pytest.mark.parametrize("name,content,match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_load_file_bad_inputs(tmp_path, name, content, match):
    p = tmp_path / name
    if isinstance(content, np.ndarray) and content.dtype == object:
        np.save(p, content, allow_pickle=True)
    else:
        _write(p, content)
    with pytest.raises(DataError, match=match):
        load_file(p)


def test_load_file_more_bad_inputs(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "imgs" / "a.png")
    Image.new("L", (7, 5)).save(tmp_path / "imgs" / "b.png")
    with pytest.raises(DataError, match=r"'b\.png' is 7x5 pixels but the first image 'a\.png' is 8x8"):
        load_file(tmp_path / "imgs")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_file(tmp_path / "none")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"x\.png': cannot be read as an image"):
        load_file(tmp_path / "broken")
    (tmp_path / "huge").mkdir()
    Image.new("L", (400, 300)).save(tmp_path / "huge" / "a.png")
    with pytest.raises(DataError, match=r"a\.png': 400x300 = 120000 pixels per image, over the limit"):
        load_file(tmp_path / "huge")
    np.save(tmp_path / "big.npy", np.zeros((100, 100)))
    with pytest.raises(DataError, match=r"big\.npy' is .* over max_bytes=1000"):
        load_file(tmp_path / "big.npy", max_bytes=1000)
    np.savez(tmp_path / "keys.npz", features=np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"no data array; keys are \['features'\]"):
        load_file(tmp_path / "keys.npz")
    np.save(tmp_path / "ok.npy", np.zeros((4, 3)))
    with pytest.raises(DataError, match=r"shape \(3,\) does not match 4 examples"):
        load_file(tmp_path / "ok.npy", labels=[0, 1, 0])
    with pytest.raises(DataError, match=r"label 0\.5 .* is not an integer"):
        load_file(tmp_path / "ok.npy", labels=[0, 1, 0.5, 1])
    with pytest.raises(DataError, match="test_fraction=1.5"):
        load_file(tmp_path / "ok.npy", test_fraction=1.5)
    with pytest.raises(DataError, match=r"missing\.npy': not found"):
        load_file(tmp_path / "missing.npy")
    ds = load_file(tmp_path / "ok.npy", labels=np.array([0, 1, 0, 1]))
    assert ds.y_train.dtype == np.int64 and sorted(np.concatenate([ds.y_train, ds.y_test])) == [0, 0, 1, 1]
