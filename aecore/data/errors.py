"""The one exception this package raises for a user-facing data problem."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file, folder or download is unusable; the message names it and says why.

    Examples: ``data file 'x.csv': row 3 has 5 values, expected 64``, or, offline, which files
    to place in which folder.
    """
