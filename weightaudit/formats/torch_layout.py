"""Where a PyTorch tensor's bytes are and how to stream them: :class:`TensorLayout` (kept by
``torch_tensors.build_tensors`` for every tensor that has no raw ``data_offsets``: strided, compressed or
big-endian), the contiguity helpers, and :func:`iter_layout_chunks`, which streams a layout in C order."""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from weightaudit.formats.base import iter_contiguous_chunks
from weightaudit.formats.mapped_file import close_map, open_map
from weightaudit.formats.zipread import iter_member_range, member_data

if TYPE_CHECKING:
    from weightaudit.formats.torch_tensors import Storage

__all__ = ["TensorLayout", "TENSOR_LAYOUTS", "contiguous_strides", "is_contiguous", "iter_layout_chunks"]


@dataclass(frozen=True)
class TensorLayout:
    """Where a tensor's bytes are, for iter_chunks."""

    storage: Storage
    byte_offset: int           # from the start of the storage record
    size: tuple[int, ...]
    stride_bytes: tuple[int, ...]
    itemsize: int
    nbytes: int


# None: the tensor was read and is deliberately not streamed (out of bounds, repeated view), so iter_chunks does not
# parse the file again for it
TENSOR_LAYOUTS: dict[tuple[str, str], TensorLayout | None] = {}


def contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for dim in reversed(size):
        strides.append(acc)
        acc *= max(dim, 1)
    return tuple(reversed(strides))


def is_contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """C order: every dimension longer than 1 has the stride of the dimensions after it (one pass, no lists)."""
    if len(size) != len(stride):
        expected = contiguous_strides(size)
        return all(d <= 1 or s == e for d, s, e in zip(size, stride, expected))
    acc = 1
    for dim, step in zip(reversed(size), reversed(stride)):
        if dim > 1 and step != acc:
            return False
        acc *= max(dim, 1)
    return True


# ==============================================================================================================
# Streaming a tensor's bytes from its layout
# ==============================================================================================================


def iter_layout_chunks(path: Path, layout: TensorLayout, chunk_bytes: int) -> Iterator[memoryview]:
    """Stream a tensor's bytes in C order from its storage (strided views gathered chunk by chunk)."""
    storage = layout.storage
    if storage.data_offset is None:
        yield from _iter_compressed(path, layout, chunk_bytes)
        return
    base = storage.data_offset + layout.byte_offset
    if is_contiguous(layout.size, tuple(s // layout.itemsize for s in layout.stride_bytes)):
        yield from iter_contiguous_chunks(path, base, base + layout.nbytes, chunk_bytes)
        return
    import numpy as np
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        span = np.frombuffer(mm, dtype=np.uint8)
        view = np.lib.stride_tricks.as_strided(span[base:], shape=layout.size + (layout.itemsize,),
                                               strides=layout.stride_bytes + (1,), writeable=False)
        rows = view.reshape((-1,) + view.shape[-1:]) if view.ndim > 1 else view.reshape(1, -1)
        per_chunk = max(1, chunk_bytes // layout.itemsize)
        for start in range(0, rows.shape[0], per_chunk):
            yield memoryview(np.ascontiguousarray(rows[start:start + per_chunk]).reshape(-1).tobytes())
        del rows, view, span


def _iter_compressed(path: Path, layout: TensorLayout, chunk_bytes: int) -> Iterator[memoryview]:
    entry = layout.storage.entry
    if entry is None:
        raise ValueError(f"{path}: storage {layout.storage.key} has no readable bytes")
    if is_contiguous(layout.size, tuple(s // layout.itemsize for s in layout.stride_bytes)):
        # the common case streams with flat memory; a strided view needs the (bounded) record in memory
        yield from iter_member_range(path, entry, layout.byte_offset, layout.byte_offset + layout.nbytes,
                                     chunk_bytes)
        return
    owner, view = open_map(path)
    try:
        record = bytes(member_data(view, entry))
    finally:
        close_map(owner, view)
    import numpy as np
    span = np.frombuffer(record, dtype=np.uint8)
    strided = np.lib.stride_tricks.as_strided(span[layout.byte_offset:], shape=layout.size + (layout.itemsize,),
                                              strides=layout.stride_bytes + (1,), writeable=False)
    data = np.ascontiguousarray(strided).reshape(-1).tobytes()
    for start in range(0, len(data), chunk_bytes):
        yield memoryview(data)[start:start + chunk_bytes]
