"""Uploads (dashboard.uploads): where files go, what is refused, how errors name the file; the
sidebar's "Upload a file…" choice under AppTest (the uploader itself is driven in Chromium, see
test_browser_upload.py)."""
from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest

from aecore.data import DataError, cache_dir
from dashboard import uploads


@pytest.fixture
def key():
    return uploads.new_session_key()


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _png(w: int, h: int, value: int = 128, level: int = 6) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), value, np.uint8)).save(buf, "PNG", compress_level=level)
    return buf.getvalue()


def _zip(entries: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, blob in entries.items():
            z.writestr(name, blob)
    return buf.getvalue()


# --------------------------------------------------------------------------- storing
@pytest.mark.parametrize("name", ["../../../etc/passwd.npy", "/abs/path/x.npy", "C:\\Users\\me\\x.npy",
                                  "..\\..\\x.npy", "a/b/c.npy", "<script>alert(1)</script>.npy", "x.npy"])
def test_the_users_file_name_is_never_a_path(key, name):
    up = uploads.save_upload(_npy_bytes(np.zeros((3, 2))), name, key)
    folder = cache_dir() / "uploads" / key
    assert up.path.parent == folder and up.path.is_file()
    assert re.fullmatch(r"[0-9a-f]{12}\.npy", up.path.name)  # server-chosen
    assert _files(folder) == [up.path.name]  # nothing else written, nothing outside
    assert "/" not in up.display and "\\" not in up.display and "<" not in up.display
    assert up.display.endswith(".npy") and uploads.is_upload_name(up.dataset_name)


def test_display_name_keeps_only_safe_characters():
    assert uploads.display_name("../../my data (1).npy") == "my data _1_.npy"
    assert uploads.display_name("C:\\x\\**bold**.csv") == "_bold_.csv"
    assert uploads.display_name("") == "upload"
    assert len(uploads.display_name("a" * 500 + ".npz")) <= 80 and uploads.display_name("a" * 500 + ".npz").endswith(".npz")


@pytest.mark.parametrize("bad", ["", "../x", "0123456789abcdef/..", "ZZZZZZZZZZZZZZZZ", None])
def test_session_dir_refuses_anything_but_its_own_keys(bad):
    with pytest.raises(ValueError, match="session_key"):
        uploads.session_dir(bad)


def test_refused_uploads_leave_nothing_behind(key):
    folder = uploads.session_dir(key)
    with pytest.raises(DataError, match=r"upload 'evil\.exe': unsupported type '\.exe'; expected \.npy"):
        uploads.save_upload(b"MZ...", "evil.exe", key)
    with pytest.raises(DataError, match=r"upload 'empty\.csv': empty file \(0 bytes\)"):
        uploads.save_upload(b"", "empty.csv", key)
    with pytest.raises(DataError, match=r"upload 'big\.npy': over the upload limit of 0\.0 MB"):
        uploads.save_upload(io.BytesIO(b"x" * 5000), "big.npy", key, max_bytes=4096)
    assert _files(folder) == []  # no file and no half-written part file


def test_upload_limit_from_the_environment(key, monkeypatch):
    monkeypatch.setenv("AECORE_MAX_UPLOAD_MB", "1")
    assert uploads.max_upload_bytes() == 1 << 20
    with pytest.raises(DataError, match="over the upload limit of 1.0 MB"):
        uploads.save_upload(b"1," * (600 << 10), "a.csv", key)
    monkeypatch.setenv("AECORE_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ValueError, match="AECORE_MAX_UPLOAD_MB='lots'"):
        uploads.max_upload_bytes()


def test_only_the_last_uploads_of_a_session_stay(key):
    ups = [uploads.save_upload(_npy_bytes(np.full((2, 2), i)), f"f{i}.npy", key) for i in range(uploads.KEEP + 3)]
    kept = _files(uploads.session_dir(key))
    assert kept == sorted(u.path.name for u in ups[-uploads.KEEP:])
    with pytest.raises(DataError, match=r"upload 'f0\.npy': no longer on the server"):
        uploads.load_upload(ups[0])


def test_a_session_folder_goes_a_day_after_its_last_upload(monkeypatch):
    """Every upload removes the folders of sessions whose last upload is older than
    AECORE_UPLOAD_HOURS (default 24): a class server keeps a day of uploads, not a term's."""
    import os
    import time

    old, recent, mine = (uploads.new_session_key() for _ in range(3))
    u_old = uploads.save_upload(_npy_bytes(np.eye(2)), "old.npy", old)
    u_recent = uploads.save_upload(_npy_bytes(np.eye(2)), "recent.npy", recent)
    day_ago = time.time() - 25 * 3600
    for p in (u_old.path, u_old.path.parent):
        os.utime(p, (day_ago, day_ago))
    hours_ago = time.time() - 23 * 3600
    for p in (u_recent.path, u_recent.path.parent):
        os.utime(p, (hours_ago, hours_ago))
    stray = cache_dir() / "uploads" / "not-a-session"  # only folders the server named are touched
    stray.mkdir()
    os.utime(stray, (day_ago, day_ago))
    uploads.save_upload(_npy_bytes(np.eye(2)), "new.npy", mine)
    assert not uploads.session_dir(old).exists()
    assert uploads.session_dir(recent).exists() and stray.exists()
    with pytest.raises(DataError, match=r"upload 'old\.npy': no longer on the server \(a session keeps its last "
                                        r"3 uploads, for 24 hours after its last upload\); upload it again"):
        uploads.load_upload(u_old)
    # the session uploading is never removed, however old its earlier files; 0 hours keeps everything
    for p in (u_recent.path, u_recent.path.parent):
        os.utime(p, (day_ago, day_ago))
    uploads.save_upload(_npy_bytes(np.eye(2)), "again.npy", recent)
    assert u_recent.path.exists()
    monkeypatch.setenv("AECORE_UPLOAD_HOURS", "0")
    assert uploads.prune_stale_sessions(now=time.time() + 1e9) == []
    monkeypatch.setenv("AECORE_UPLOAD_HOURS", "1")
    assert sorted(uploads.prune_stale_sessions(now=time.time() + 2 * 3600)) == sorted([recent, mine])
    monkeypatch.setenv("AECORE_UPLOAD_HOURS", "a day")
    with pytest.raises(ValueError, match="AECORE_UPLOAD_HOURS='a day' must be a whole number >= 0"):
        uploads.max_age_hours()


def test_sessions_do_not_share_a_folder():
    a, b = uploads.new_session_key(), uploads.new_session_key()
    ua = uploads.save_upload(_npy_bytes(np.eye(3)), "same.npy", a)
    ub = uploads.save_upload(_npy_bytes(np.eye(3)), "same.npy", b)
    assert a != b and ua.path.parent != ub.path.parent and ua.dataset_name != ub.dataset_name


# --------------------------------------------------------------------------- loading
def test_good_npy_loads_named_as_the_upload(key):
    x = (np.arange(40 * 12) % 7).reshape(40, 12).astype(np.float64)
    up = uploads.save_upload(_npy_bytes(x), "my arr.npy", key)
    ds = uploads.load_upload(up)
    assert ds.name == up.dataset_name and ds.name.endswith(":my arr.npy")
    assert ds.n_train + ds.n_test == 40 and ds.shape == (12,)
    got = np.sort(np.concatenate([ds.x_train, ds.x_test]), axis=0)
    np.testing.assert_allclose(got, np.sort(x / 255.0, axis=0).astype(np.float32), rtol=1e-6)  # 0..255 ints -> /255


@pytest.mark.parametrize("name, blob, message", [
    ("ragged.csv", b"1,2,3\n4,5\n", r"data file 'ragged\.csv': row 2 has 2 values, expected 3"),
    ("text.csv", b"1,2\n3,abc\n", r"data file 'text\.csv': row 2, column 2: 'abc' is not a number"),
    ("nan.csv", b"1,2\nnan,4\n5,inf\n", r"data file 'nan\.csv': 2 NaN/Inf values in the data \(first at row 2"),
    ("obj.npy", None, r"data file 'obj\.npy': it holds Python objects \(pickled\)"),
    ("cut.npy", "truncated", r"data file 'cut\.npy': header says shape \(50, 8\) of float64 \(3200 bytes\) but only"),
    ("rand.npz", b"PK\x03\x04 not really a zip", r"data file 'rand\.npz': cannot be read as \.npz"),
    ("huge.npy", "huge", r"data file 'huge\.npy': the data has 200000 values per example, over the limit of 100000"),
    ("strings.npy", "strings", r"data file 'strings\.npy': the data has non-numeric dtype <U1"),
])
def test_bad_files_name_the_upload_not_the_server_path(key, name, blob, message):
    if blob is None:
        blob = _npy_bytes(np.array([None, 1], dtype=object))  # np.save pickles object arrays
    elif blob == "truncated":
        blob = _npy_bytes(np.zeros((50, 8)))[:300]
    elif blob == "huge":
        blob = _npy_bytes(np.zeros((2, 200_000), np.uint8))
    elif blob == "strings":
        blob = _npy_bytes(np.array([["a", "b"], ["c", "d"]]))
    up = uploads.save_upload(blob, name, key)
    with pytest.raises(DataError, match=message) as info:
        uploads.load_upload(up)
    assert str(up.path) not in str(info.value) and str(cache_dir()) not in str(info.value)


def test_zip_of_images_in_class_folders(key):
    entries = {f"shapes/{c}/{i}.png": _png(5, 4, 10 * i + (0 if c == "dark" else 200))
               for c in ("dark", "light") for i in range(4)}
    entries["__MACOSX/shapes/._0.png"] = b"resource fork"
    ds = uploads.load_upload(uploads.save_upload(_zip(entries), "shapes.zip", key))
    assert ds.shape == (4, 5) and ds.kind == "image" and ds.label_names == ("dark", "light")
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert sorted(np.bincount(y)) == [4, 4]
    # the "light" images are brighter than the "dark" ones of the same index: labels stay with pixels
    assert x[y == 1].mean() > x[y == 0].mean() + 0.5


def _png_claiming(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("entries, message", [
    ({"../../evil.png": _png(3, 3), "a.png": _png(3, 3)}, r"entry '\.\./\.\./evil\.png' points outside the archive"),
    ({"/etc/x.png": _png(3, 3)}, r"entry '/etc/x\.png' points outside the archive"),
    ({"a.png": _png(3, 3), "notes.txt": b"hi", "run.sh": b"rm -rf /"},
     r"2 of 3 files are not PNG/JPEG images \('notes\.txt', 'run\.sh'\); zip only the images"),
    ({"bomb.png": b"\0" * (8 << 20)}, r"entry 'bomb\.png' expands \d+ bytes to 8388608 \(over 100x\); refused as a possible zip bomb"),
    ({"pixels.png": _png_claiming(100_000, 100_000)}, r"image 'pixels\.png': cannot be read as an image \(Image size"),
    ({"wide.png": _png_claiming(5000, 5000)}, r"image 'wide\.png': 5000x5000 = 25000000 pixels per image, over the limit"),
    ({"a.png": _png(3, 3), "b.png": _png(4, 3)}, r"'b\.png' is 4x3 pixels but the first image 'a\.png' is 3x3"),
    ({"a.png": b"GIF89a not a png"}, r"image 'a\.png': cannot be read as an image \(not a PNG or JPEG image\)"),
    ({"docs/": b""}, r"no images found"),
])
def test_bad_zips_are_refused_with_the_reason(key, entries, message):
    up = uploads.save_upload(_zip(entries), "imgs.zip", key)
    with pytest.raises(DataError, match=r"zip file 'imgs\.zip': .*" + message):
        uploads.load_upload(up)


def test_zip_over_the_uncompressed_and_decoded_caps(key, monkeypatch):
    # 10 uncompressed PNGs of 10 KB each, deflated by the zip to a few hundred bytes
    blob = _zip({f"{i}.png": _png(100, 100, i, level=0) for i in range(10)})
    up = uploads.save_upload(blob, "many.zip", key)
    assert len(blob) < 5000
    with pytest.raises(DataError, match=r"zip file 'many\.zip' \(uncompressed\) is 0\.1 MB \(\d+ bytes\), over max_bytes=50000"):
        uploads.load_upload(up, max_bytes=50_000)
    # 3 small PNGs that decode to 300x300 pixels each: the decoded pixels are capped too
    up = uploads.save_upload(_zip({f"{i}.png": _png(300, 300, i) for i in range(3)}), "wide.zip", key)
    with pytest.raises(DataError, match=r"zip file 'wide\.zip': 3 images of 300x300 pixels are 270000 bytes decoded, "
                                        r"over max_bytes=100000"):
        uploads.load_upload(up, max_bytes=100_000)
    monkeypatch.setenv("AECORE_MAX_UPLOAD_DATA_MB", "1")
    assert uploads.max_data_bytes() == 1 << 20
    assert uploads.load_upload(up).shape == (300, 300)  # 270 KB decoded: within the 1 MB setting


def test_encrypted_zip_entry_is_refused(key):
    blob = bytearray(_zip({"a.png": _png(3, 3)}, method=zipfile.ZIP_STORED))
    # set the "encrypted" flag bit in the local header and in the central directory
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = blob.find(sig)
        off = at + (6 if sig == b"PK\x03\x04" else 8)
        blob[off] |= 0x1
    up = uploads.save_upload(bytes(blob), "locked.zip", key)
    with pytest.raises(DataError, match=r"zip file 'locked\.zip': entry 'a\.png' is encrypted"):
        uploads.load_upload(up)


# --------------------------------------------------------------------------- ratings uploads
def test_ratings_upload_counts_bad_rows(key):
    rows = ["user,item,rating"] + [f"{u},{i},{(u + i) % 5 + 1}" for u in range(1, 8) for i in range(1, 6)]
    rows += ["1,2,abc", "3,4", "", "5,1,nan", ",2,3", "1,1,4"]  # bad rating, short row, blank, NaN, no id, duplicate
    up = uploads.save_upload("\n".join(rows).encode(), "my ratings.csv", key, allowed=uploads.RATINGS_SUFFIXES)
    data = uploads.load_ratings_upload(up)
    assert data.name == "my ratings.csv" and data.source == "my ratings.csv"
    assert len(data.train) + len(data.test) == 35
    assert data.skipped == {"bad_rating": 2, "duplicate": 1, "empty_id": 1, "wrong_field_count": 1}


@pytest.mark.parametrize("text, message", [
    ("user,item,rating\n", r"ratings file 'r\.csv': no usable rows \(no data rows\)"),
    ("a,b,x\n1,2,y\n3,4,z\n", r"ratings file 'r\.csv': no usable rows \(2 bad_rating\)"),
    ("1,2,5\n", r"ratings file 'r\.csv': cannot hold out 0\.1 of 1 rating"),
])
def test_ratings_upload_without_usable_rows_is_refused(key, text, message):
    up = uploads.save_upload(text.encode(), "r.csv", key, allowed=uploads.RATINGS_SUFFIXES)
    with pytest.raises(DataError, match=message) as info:
        uploads.load_ratings_upload(up)
    assert str(up.path) not in str(info.value)


# --------------------------------------------------------------------------- the sidebar (AppTest)
def test_sidebar_upload_choice_keeps_the_earlier_data_set(at):
    at.run()
    at.selectbox(key="sb_dataset").set_value("digits").run()
    at.selectbox(key="sb_dataset").set_value("Upload a file…").run()
    assert not at.exception and not at.error
    assert at.session_state["train_cfg"].dataset == "digits"  # still trains on the last real choice
    assert any("Until a file loads, the settings use **digits**" in c.value for c in at.sidebar.caption)
    assert at.query_params["dataset"] == "digits"  # the URL never holds the upload choice


def test_url_cannot_name_an_upload(at):
    """A link that names some session's upload is ignored (uploads resolve only in their own session)."""
    at.query_params["dataset"] = "upload:0123456789ab:their.npy"
    at.run()
    assert not at.exception
    assert at.session_state["train_cfg"].dataset == "digits"
    assert any("dataset='upload:0123456789ab:their.npy' ignored" in w.value for w in at.warning)


# --------------------------------------------------------------------------- the Recommend page (AppTest)
def _recommend(at):
    at.run()
    at.switch_page("../pages/recommend.py").run()
    at.radio(key="rec_source").set_value("Upload a ratings file…").run()
    assert not at.exception, at.exception
    return at


def test_recommend_upload_choice_without_a_file_waits_for_one(at, monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "no-movielens"))  # the upload needs no MovieLens
    _recommend(at)
    assert any("Upload a ratings file to train on it." in i.value for i in at.info)
    assert not any(b.label == "Train" for b in at.button)
    assert not any("MovieLens 100K is not on this machine" in i.value for i in at.info)


def test_recommend_trains_on_an_uploaded_file_and_reports_bad_rows(at, monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_DATA", str(tmp_path / "no-movielens"))
    rng = np.random.default_rng(1)
    rows = ["user;item;rating"] + [f"u{u};m{i};{rng.integers(1, 6)}" for u in range(25) for i in range(12)
                                   if rng.random() < 0.6]
    rows += ["u1;m1;seven", "u2;m2", "u3;m3;inf"]
    up = uploads.save_upload("\n".join(rows).encode(), "class ratings.csv", uploads.new_session_key(),
                             allowed=uploads.RATINGS_SUFFIXES)
    data = uploads.load_ratings_upload(up)
    n = len(data.train) + len(data.test)
    at.session_state["rec_upload_data"] = (up, data.n_users, data.n_items, n, dict(data.skipped))
    _recommend(at)
    warning = " ".join(w.value for w in at.warning)
    assert f"**class ratings.csv**: {n:,} ratings by 25 users of 12 items." in warning
    assert "Skipped 3 bad row(s): 2 bad rating, 1 wrong field count." in warning
    assert not any(s.label == "Split" for s in at.selectbox)  # a file is split at random
    at.selectbox(key="rec_model").set_value("autorec-item").run()
    at.number_input(key="rec_autorec-item_hidden").set_value(8)
    at.number_input(key="rec_autorec-item_epochs").set_value(3)
    at.checkbox(key="rec_baselines").uncheck()
    at.run()
    at.button(key="rec_train").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert "I-AutoRec" in at.success[0].value and "class ratings.csv (random 10 % held out)" in at.success[0].value
    frames = [df.value for df in at.dataframe]  # the user tab names items by the file's ids
    assert any("title" in f.columns and len(f) and f["title"].astype(str).str.fullmatch(r"m\d+").all() for f in frames)


def test_an_unreadable_upload_is_discarded(key):
    up = uploads.save_upload(b"1,2\n3\n", "bad.csv", key)
    with pytest.raises(DataError):
        uploads.load_upload(up)
    uploads.discard(up)
    assert _files(uploads.session_dir(key)) == []  # it takes none of the session's KEEP slots
