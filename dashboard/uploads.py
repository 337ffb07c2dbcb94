"""Files a browser uploads: stored under a server-chosen name, then read through aecore.

No Streamlit here (the sidebar and the Recommend page are the glue), so every rule is unit-tested:

* the user's file name is never used as a path: a file is written as
  ``<cache>/uploads/<session key>/<random hex><suffix>``, where the session key is random hex
  too and the suffix one of an allowed list;
* the write is atomic (a hidden part file, then ``os.replace``) and stops as soon as the file
  passes ``max_bytes``; an empty or over-size file leaves nothing behind;
* only the last ``KEEP`` uploads of a session stay on disk, and a session's folder goes
  ``AECORE_UPLOAD_HOURS`` (24) after its last upload;
* error messages name the file as the user called it (sanitized), never the server path.

The dataset name a config carries for an upload is ``upload:<hex>:<display name>``; it resolves
only inside the session that uploaded it (see ``dashboard.state.load_dataset``).
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from aecore.config import env_int
from aecore.data import DataError, Dataset, cache_dir, load_file

__all__ = ["Upload", "new_session_key", "session_dir", "display_name", "save_upload", "load_upload",
           "load_ratings_upload", "is_upload_name", "max_upload_bytes", "max_data_bytes", "DATA_SUFFIXES",
           "RATINGS_SUFFIXES", "KEEP", "discard", "max_age_hours", "prune_stale_sessions"]

DATA_SUFFIXES = (".npy", ".npz", ".csv", ".zip")  # arrays, CSV, or a zip of PNG/JPEG images
RATINGS_SUFFIXES = (".csv", ".tsv", ".txt", ".data")
KEEP = 3  # uploads kept per session (on disk, and loaded in the session's memory)
_CHUNK = 1 << 20
_KEY = re.compile(r"^[0-9a-f]{16}$")
_NAME = re.compile(r"^upload:([0-9a-f]{12}):[A-Za-z0-9 ._-]{1,80}$")


def max_upload_bytes() -> int:
    """Largest uploaded file: ``$AECORE_MAX_UPLOAD_MB`` (default 50, Streamlit's maxUploadSize here)."""
    return env_int("AECORE_MAX_UPLOAD_MB", 50) << 20


def max_data_bytes() -> int:
    """Largest uncompressed content of an upload (.npz / .zip) and its decoded pixels:
    ``$AECORE_MAX_UPLOAD_DATA_MB`` (default 128; as float32 that is 512 MB of memory)."""
    return env_int("AECORE_MAX_UPLOAD_DATA_MB", 128) << 20


def new_session_key() -> str:
    """A random, unguessable folder name for one browser session's uploads."""
    return secrets.token_hex(8)


def session_dir(session_key: str) -> Path:
    if not isinstance(session_key, str) or not _KEY.match(session_key):
        raise ValueError(f"session_key={session_key!r} must be 16 hex digits (from new_session_key)")
    return cache_dir() / "uploads" / session_key


def display_name(name: object) -> str:
    """The user's file name, for messages only: its last path part, with only letters, digits,
    space, '.', '_' and '-' kept (nothing Markdown or HTML could act on), at most 80 characters."""
    base = re.split(r"[/\\]", str(name or ""))[-1]
    safe = re.sub(r"[^A-Za-z0-9 ._-]+", "_", base).strip(" .")
    if len(safe) > 80:
        stem, dot, suffix = safe.rpartition(".")
        safe = (stem[:70] + "." + suffix[:9]) if dot and len(suffix) <= 9 else safe[:80]
    return safe or "upload"


@dataclass(frozen=True)
class Upload:
    """One stored upload: ``path`` is server-chosen; ``display`` is how messages name it."""

    id: str  # 12 hex digits
    display: str
    path: Path
    size: int

    @property
    def dataset_name(self) -> str:
        return f"upload:{self.id}:{self.display}"


def is_upload_name(name: object) -> bool:
    """Whether a config's dataset name refers to an upload (``upload:<hex>:<name>``)."""
    return isinstance(name, str) and _NAME.match(name) is not None


def max_age_hours() -> int:
    """How long a session's uploads stay on disk after its last upload: ``$AECORE_UPLOAD_HOURS``
    (default 24; 0 keeps them until the server's cache is cleared)."""
    return env_int("AECORE_UPLOAD_HOURS", 24, lo=0)


def prune_stale_sessions(keep_key: str | None = None, now: float | None = None) -> list[str]:
    """Delete the upload folders of sessions whose last upload is older than ``max_age_hours()``
    (the browser session that made them has long gone: its uploads can no longer be named), except
    ``keep_key``'s. Returns the session keys removed. Called on every upload, so a class server's
    disk holds one day of uploads, not a term's."""
    import shutil
    import time

    hours = max_age_hours()
    root = cache_dir() / "uploads"
    if hours == 0 or not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - hours * 3600
    removed = []
    for folder in root.iterdir():
        if not folder.is_dir() or not _KEY.match(folder.name) or folder.name == keep_key:
            continue
        try:
            newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])
            if newest < cutoff:
                shutil.rmtree(folder)
                removed.append(folder.name)
        except OSError:  # another server process got there first, or a file went meanwhile
            continue
    return removed


def _prune(folder: Path, keep: int) -> None:
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime_ns)
    for p in files[:-keep] if keep > 0 else files:
        p.unlink(missing_ok=True)


def save_upload(data: BinaryIO | bytes, name: str, session_key: str, allowed=DATA_SUFFIXES,
                max_bytes: int | None = None) -> Upload:
    """Store an uploaded file (a binary file object or bytes) for ``session_key``; raises DataError
    naming the file when its type is not ``allowed``, it is empty, or it is over ``max_bytes``."""
    display = display_name(name)
    limit = max_upload_bytes() if max_bytes is None else max_bytes
    suffix = Path(display).suffix.lower()
    if suffix not in allowed:
        raise DataError(f"upload '{display}': unsupported type '{suffix or '(none)'}'; expected "
                        f"{', '.join(allowed)}")
    folder = session_dir(session_key)
    prune_stale_sessions(keep_key=session_key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"upload '{display}': cannot store it on the server ({exc.strerror or exc})") from None
    uid = secrets.token_hex(6)
    final = folder / f"{uid}{suffix}"
    part = folder / f".{uid}.part"
    src = data
    if isinstance(data, (bytes, bytearray, memoryview)):
        import io

        src = io.BytesIO(bytes(data))
    if hasattr(src, "seek"):
        src.seek(0)
    size = 0
    try:
        with open(part, "xb") as out:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise DataError(f"upload '{display}': over the upload limit of {limit / 1e6:.1f} MB")
                out.write(chunk)
        if size == 0:
            raise DataError(f"upload '{display}': empty file (0 bytes)")
        os.replace(part, final)
    except OSError as exc:
        raise DataError(f"upload '{display}': cannot store it on the server ({exc.strerror or exc})") from None
    finally:
        part.unlink(missing_ok=True)
    _prune(folder, KEEP)
    return Upload(uid, display, final, size)


def _named(exc: Exception, upload: Upload) -> DataError:
    """The same error with the server path replaced by the user's file name."""
    text = str(exc).replace(str(upload.path), upload.display)
    return DataError(text.replace(str(upload.path.parent), "uploads"))


def load_upload(upload: Upload, max_bytes: int | None = None, **kwargs) -> Dataset:
    """The upload as a Dataset (``aecore.data.load_file``) named ``upload.dataset_name``; a
    DataError names the file as the user called it."""
    if not upload.path.is_file():
        raise DataError(f"upload '{upload.display}': no longer on the server (a session keeps its last {KEEP} "
                        f"uploads, for {max_age_hours()} hours after its last upload); upload it again")
    try:
        ds = load_file(upload.path, max_bytes=max_data_bytes() if max_bytes is None else max_bytes, **kwargs)
    except DataError as exc:
        raise _named(exc, upload) from None
    return replace(ds, name=upload.dataset_name)


def load_ratings_upload(upload: Upload, **kwargs):
    """An uploaded ratings file as ``RatingsData`` (``aecore.recsys.load_ratings_csv``), named by
    the user's file name; bad rows are counted in ``skipped``; no usable rows is a DataError."""
    from aecore.recsys import load_ratings_csv

    try:
        data = load_ratings_csv(upload.path, **kwargs)
    except DataError as exc:
        raise _named(exc, upload) from None
    return replace(data, name=upload.display, source=upload.display)


def discard(upload: Upload) -> None:
    """Delete a stored upload (one that could not be read: it must not take a slot of the session's)."""
    upload.path.unlink(missing_ok=True)
