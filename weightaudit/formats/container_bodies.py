"""Which loader body reads a buffer, by its first bytes: used for content found inside another container
(an inflated gzip/bz2/xz/zlib stream, see :mod:`~weightaudit.formats.compressed`).

Each body has the :func:`~weightaudit.formats.pickle_scan.safe_load` signature ``body(scan, view, options,
path_key)``. A compressed stream inside a compressed stream is :mod:`compressed`'s own business (bounded there).
Everything is imported eagerly: no module is imported while an audited file is being read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from weightaudit.formats import numpy_npy, raw_pickle, tar_legacy, torch_pickle
from weightaudit.formats.base import Probe

__all__ = ["body_for"]

Body = Callable[..., None]


def body_for(head: bytes) -> Body | None:
    """The body that reads content starting with ``head``; None when it is no format of ours."""
    if head.startswith(torch_pickle.ZIP_MAGIC):
        return torch_pickle.load_zip_body
    if tar_legacy.is_tar_header(head):
        return tar_legacy.load_tar
    if head.startswith(numpy_npy.NPY_MAGIC):
        return numpy_npy.load_npy_body
    if torch_pickle.is_legacy_head(head):
        return torch_pickle.load_legacy_body
    probe = Probe(path=Path("inflated"), size=len(head) + 1, head=head, tail=b"")
    if raw_pickle.looks_like_pickle(head) or raw_pickle.LOADER.sniff(probe):
        return raw_pickle.load_raw_body
    return None
