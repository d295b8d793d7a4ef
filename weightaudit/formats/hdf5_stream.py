"""Streaming HDF5 datasets in bounded blocks; tensors without a byte range reuse one open file and its
name->dataset map per process (:func:`open_cached`), so a statistics pass over 100,000 datasets never re-walks
the file per tensor. A forked child never reuses its parent's libhdf5 handles.
"""

from __future__ import annotations

import atexit
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from weightaudit.formats import hdf5_read
from weightaudit.formats.hdf5_read import _GroupIds, inventory_file
from weightaudit.formats.keras_names import name_datasets
from weightaudit.model import TensorInfo, element_count

MAX_OPEN_FILES = 4                       # open files kept per process for streaming (see open_cached)

def _blocks(shape: tuple[int, ...], itemsize: int, chunk_bytes: int) -> Iterator[tuple[Any, ...]]:
    """Index tuples covering an array in C order, each block at most ``chunk_bytes`` (or one element)."""
    if not shape:
        yield ()
        return
    inner = itemsize * element_count(shape[1:])
    if inner <= chunk_bytes or len(shape) == 1:
        rows = max(1, chunk_bytes // max(inner, 1))
        for start in range(0, shape[0], rows):
            yield (slice(start, min(start + rows, shape[0])),)
        return
    for index in range(shape[0]):
        for rest in _blocks(shape[1:], itemsize, chunk_bytes):
            yield (index, *rest)


def iter_dataset_blocks(dataset: h5py.Dataset, chunk_bytes: int) -> Iterator[memoryview]:
    """Raw bytes of a dataset (in its stored byte order), block by block with bounded memory."""
    shape = tuple(int(d) for d in (dataset.shape or ()))
    for index in _blocks(shape, dataset.dtype.itemsize, chunk_bytes):
        block = np.ascontiguousarray(dataset[index] if index else dataset[()], dtype=dataset.dtype)  # stored order
        yield memoryview(block.reshape(-1).view(np.uint8))


@dataclass
class OpenFile:
    """An HDF5 file kept open for streaming, with its tensor name -> dataset path map (built once)."""

    handle: h5py.File
    paths: dict[str, str]
    closers: tuple[Any, ...] = ()
    groups: _GroupIds = field(default_factory=lambda: _GroupIds())

    def close(self) -> None:
        self.handle.close()
        for closer in self.closers:
            closer.close()


_OPEN: OrderedDict[tuple, OpenFile] = OrderedDict()
_OWNER = [os.getpid()]


def close_cached() -> None:
    """Close every cached file of this process (at exit; a forked child forgets its parent's, unclosed)."""
    if _OWNER[0] != os.getpid():
        _OPEN.clear()
        _OWNER[0] = os.getpid()
    while _OPEN:
        _OPEN.popitem(last=False)[1].close()


atexit.register(close_cached)


def open_cached(key: tuple, opener: Callable[[], tuple[h5py.File, tuple[Any, ...]]], rel: str) -> OpenFile:
    """The open file for ``key`` (path, mtime, size, kind), opened and inventoried once per process."""
    if _OWNER[0] != os.getpid():      # forked: never share libhdf5 handles with the parent
        _OPEN.clear()
        _OWNER[0] = os.getpid()
    entry = _OPEN.get(key)
    if entry is not None:
        _OPEN.move_to_end(key)
        return entry
    handle, closers = opener()
    try:
        source = getattr(closers[0], "source", None) if closers else None   # a .keras window (keras_h5._Window)
        paths = inventory_file(handle, rel, None, name_datasets(handle, rel, hdf5_read.scan_file(handle, source))).paths
    except BaseException:
        OpenFile(handle, {}, closers).close()
        raise
    entry = _OPEN[key] = OpenFile(handle, paths, closers)
    while len(_OPEN) > MAX_OPEN_FILES:
        _OPEN.popitem(last=False)[1].close()
    return entry


def stream_tensor(entry: OpenFile, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
    """A tensor's raw bytes from the cached open file: small numeric datasets in one low-level read."""
    path = entry.paths.get(tensor.name)
    if path is None:
        raise ValueError(f"{tensor.file}: no dataset for tensor {tensor.name!r}")
    parent, _, leaf = path.rpartition("/")
    dsid = h5py.h5d.open(entry.groups.get(entry.handle, parent), leaf.encode("utf-8", "surrogateescape"))
    dtype = dsid.dtype
    shape = tuple(int(d) for d in (dsid.shape or ()))
    if dtype.kind in "fiu" and dtype.itemsize * element_count(shape) <= chunk_bytes:
        block = np.empty(shape, dtype)
        if block.size:
            dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, block)
        yield memoryview(block.reshape(-1).view(np.uint8))
        return
    yield from iter_dataset_blocks(h5py.Dataset(dsid), chunk_bytes)
