"""Fetch files into the cache with pooch: checksummed, atomic, mirror by mirror.

pooch downloads into a temporary file in the destination folder, checks the sha256 and only
then renames it into place; on any failure the temporary file is deleted. So the cache holds
whole, verified files or nothing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import DataError

__all__ = ["RemoteFile", "fetch", "sweep_stale", "TIMEOUT_S"]

TIMEOUT_S = 30  # seconds to connect / between bytes; a stalled mirror fails, the next is tried
STALE_S = 600  # a download temp file untouched this long belongs to a process that was killed


@dataclass(frozen=True)
class RemoteFile:
    fname: str  # original file name, also the name in the cache
    sha256: str  # of the file as published (the compressed .gz)
    size: int  # bytes as published; used for the progress total


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _ProgressBar:
    """pooch's progress-bar protocol (total, update, reset, close) -> progress(done, total).

    Reports bytes over all files of one fetch: ``offset`` is what earlier files added.
    pooch calls ``update(chunk_size)`` per chunk, so the count is clamped to the file size.
    """

    def __init__(self, callback: Callable[[int, int], None], offset: int, size: int, grand_total: int):
        self.callback, self.offset, self.size, self.grand_total = callback, offset, size, grand_total
        self.total = size  # pooch overwrites with Content-Length (0 if the server sends none)
        self.n = 0

    def update(self, n: int) -> None:
        self.n += n
        self.callback(self.offset + min(self.n, self.size), self.grand_total)

    def reset(self) -> None:
        self.n = 0

    def close(self) -> None:
        pass


class _HashingDownloader:
    """Wraps pooch's HTTPDownloader and remembers the sha256 of what arrived (for messages)."""

    def __init__(self, progressbar):
        import pooch  # lazy: keeps `import aecore.data` light

        self.inner = pooch.HTTPDownloader(progressbar=progressbar or False, timeout=TIMEOUT_S)
        self.got_sha256: str | None = None

    def __call__(self, url, output_file, pooch_obj, check_only=False):
        result = self.inner(url, output_file, pooch_obj, check_only=check_only)
        if not check_only and isinstance(output_file, (str, Path)):
            self.got_sha256 = _sha256(output_file)
        return result


def sweep_stale(dest: Path, max_age: float = STALE_S) -> list[Path]:
    """Remove pooch's temporary files (``tmpXXXXXXXX``) that a killed process left in ``dest``.

    A live download writes its temp file at least every ``TIMEOUT_S`` seconds (or fails), so
    one untouched for ``max_age`` seconds is an orphan; the cache keeps only whole files.
    """
    import time

    removed = []
    now = time.time()
    for p in Path(dest).glob("tmp*"):
        try:
            if len(p.name) == 11 and p.is_file() and now - p.stat().st_mtime > max_age:
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def fetch(
    files: Sequence[RemoteFile],
    dest: Path,
    base_urls: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
    hint: str = "",
) -> dict[str, Path]:
    """Download each file into ``dest``, trying ``base_urls`` in order; return fname -> path.

    A file is accepted only when its sha256 matches. When every URL fails for a file,
    raise DataError listing each URL and why it failed (checksum: expected and got), plus
    ``hint`` (where to place the files by hand).
    """
    import pooch
    import requests

    if not base_urls:
        raise DataError(f"no download URL configured for {dest.name}. {hint}".strip())
    sweep_stale(dest)
    grand_total = sum(f.size for f in files)
    offset = 0
    out: dict[str, Path] = {}
    for f in files:
        failures: list[str] = []
        for base in base_urls:
            url = base.rstrip("/") + "/" + f.fname
            bar = _ProgressBar(progress, offset, f.size, grand_total) if progress else None
            downloader = _HashingDownloader(bar)
            try:
                path = pooch.retrieve(
                    url, known_hash=f"sha256:{f.sha256}", fname=f.fname, path=dest,
                    downloader=downloader,
                )
            except ValueError as exc:  # pooch: hash mismatch (the temp file is already deleted)
                if downloader.got_sha256 is None:
                    failures.append(f"{url}: {_reason(exc)}")
                else:
                    failures.append(
                        f"{url}: checksum mismatch: expected sha256 {f.sha256}, got {downloader.got_sha256}"
                    )
            except requests.exceptions.RequestException as exc:  # refused, 404, died mid-body...
                failures.append(f"{url}: {_reason(exc)}")
            except PermissionError as exc:
                raise DataError(
                    f"cannot write to the cache folder '{dest}' ({exc.strerror or exc}); "
                    "set AECORE_CACHE to a writable folder"
                ) from None
            else:
                out[f.fname] = Path(path)
                break
        else:
            tried = "\n  ".join(failures)
            raise DataError(
                f"could not download '{f.fname}' into '{dest}'; tried:\n  {tried}\n{hint}".rstrip()
            )
        offset += f.size
    if progress and files:
        progress(grand_total, grand_total)
    return out
