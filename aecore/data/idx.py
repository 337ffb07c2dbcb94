"""Reader for the IDX format of MNIST-style files (gzip-compressed or raw).

Layout (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): two zero bytes, a dtype
code, the number of dimensions n, then n big-endian uint32 sizes, then the data in C order,
big-endian.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["read_idx", "IDX_DTYPES"]

# dtype code (byte 3 of the magic number) -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file '{path}': not found") from None
    except OSError as exc:
        raise DataError(f"IDX file '{path}': cannot be read ({exc.strerror or exc})") from None
    # decide by content, not by name: some copies are gunzipped but keep ".gz", or vice versa
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"IDX file '{path}': broken gzip data ({exc}); delete the file and fetch it again"
            ) from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array of its declared shape.

    Integer and float types come back in native byte order; uint8 data is a zero-copy view of
    the decompressed bytes (read-only). Raises DataError naming the file when the magic
    number, dtype code or size does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"IDX file '{path}': only {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"IDX file '{path}': bad magic number {raw[:4].hex()} (an IDX file starts with two "
            "zero bytes); not an IDX file"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"IDX file '{path}': unknown data type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"IDX file '{path}': header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"IDX file '{path}': truncated header ({len(raw)} bytes, {header} needed for {ndim} dims)"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        problem = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"IDX file '{path}': {problem}: header says shape {tuple(dims)} = {expected} data bytes, "
            f"file has {got}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.byteorder == ">":  # convert multi-byte types to native order (a copy)
        arr = arr.astype(dtype.newbyteorder("="))
    return arr
