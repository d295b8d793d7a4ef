"""Low-level file access shared by the pickle-family readers: map a file's bytes read-only, zero-copy.

:class:`FileProblem` is what these readers raise when the bytes are not the format they expect; the loaders turn
it into a one-line ``LoadedFile.reason`` (see :func:`weightaudit.formats.pickle_scan.safe_load`).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

__all__ = ["FileProblem", "FileLimit", "open_map", "close_map"]


class FileProblem(Exception):
    """The file cannot be read as this format; the message is the one-line reason."""


class FileLimit(FileProblem):
    """A named limit (weightaudit/limits.py) stopped the read: finding WA132 and an unverified file."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


def open_map(path: Path) -> tuple[Any, memoryview]:
    """Map ``path`` read-only: (the object to pass to :func:`close_map`, a view of all its bytes)."""
    handle = open(path, "rb")
    try:
        if os.fstat(handle.fileno()).st_size == 0:
            return handle, memoryview(b"")
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        handle.close()
        raise
    handle.close()
    return mm, memoryview(mm)


def close_map(owner: Any, view: memoryview) -> None:
    """Release ``view`` and close its map (quietly, if another view still holds it)."""
    view.release()
    try:
        owner.close()
    except (BufferError, OSError):
        pass
