"""A tensor's content hash, independent of the container it came in.

``sha256(header || data)`` where ``header`` is ``b"weightaudit-tensor-v1\\0" + DTYPE + b"\\0" + "d0,d1,..." +
b"\\0"`` (dtype code as every loader names it: ``F32``, ``BF16``, ``I64``...; the shape in decimal, empty for a
scalar) and ``data`` is the tensor's elements in C order, little-endian. So the safetensors file and the
``torch.save`` copy of the same weights hash the same, and so does a big-endian storage of the same values.

Streamed: the loader hands out the bytes chunk by chunk (``formats.iter_tensor_chunks``; strided torch views are
gathered in C order in bounded chunks there), big-endian chunks are byte-swapped per element on the way.

A tensor is *unhashable* (``None``) when its bytes cannot be streamed as C-order elements: a strided view whose
loader streams raw storage (Fortran-ordered ``.npy``), a dtype without a whole byte per element (``F4``, strings,
objects), a repeat-bomb view the loader refuses to stream, or a read error. Callers report those as not checked,
never as equal.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Iterator

from weightaudit.model import DTYPE_BITS, TensorInfo, element_count

__all__ = ["HEADER_TAG", "HASH_CHUNK", "canonical_dtype", "canonical_header", "tensor_digest", "digest_chunks"]

HEADER_TAG = b"weightaudit-tensor-v1\0"
HASH_CHUNK = 4 * 1024 * 1024
# Codes some loaders spell differently for the same element type (kept tiny: loaders already share safetensors' names).
_DTYPE_ALIASES = {"F8_E4M3FN": "F8_E4M3", "UNTYPED": "U8"}


def canonical_dtype(dtype: str) -> str:
    code = dtype.strip().upper()
    return _DTYPE_ALIASES.get(code, code)


def canonical_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    return HEADER_TAG + canonical_dtype(dtype).encode("ascii") + b"\0" + ",".join(map(str, shape)).encode() + b"\0"


def _itemsize(dtype: str) -> int | None:
    bits = DTYPE_BITS.get(canonical_dtype(dtype))
    if not bits or bits % 8:
        return None
    return bits // 8


def _c_contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None) -> bool:
    if strides is None:
        return True
    expected, step = [], 1
    for dim in reversed(shape):
        expected.append(step)
        step *= max(dim, 1)
    return all(dim <= 1 or have == want for dim, have, want in zip(shape, strides, reversed(expected)))


def _streams_c_order(path: Path, tensor: TensorInfo) -> bool:
    """A non-contiguous view streams in C order only when the loader gathers it from a registered layout."""
    if _c_contiguous(tensor.shape, tensor.strides):
        return True
    from weightaudit.formats.torch_tensors import TENSOR_LAYOUTS

    return TENSOR_LAYOUTS.get((str(Path(path).resolve()), tensor.name)) is not None


def _swap_unit(dtype: str, itemsize: int) -> int:
    """Bytes of one byte-ordered number: a complex element is two floats."""
    return itemsize // 2 if canonical_dtype(dtype).startswith("C") else itemsize


def _little_endian(chunks: Iterable[memoryview], unit: int) -> Iterator[memoryview]:
    """Byte-swap each ``unit``-byte number of a big-endian stream (chunk boundaries may split a number)."""
    import numpy as np

    stored = np.dtype(f">u{unit}")
    carry = b""
    for chunk in chunks:
        data = carry + bytes(chunk) if carry else memoryview(chunk).cast("B")
        whole = len(data) - len(data) % unit
        carry = bytes(data[whole:])
        if whole:
            yield memoryview(np.frombuffer(data[:whole], dtype=stored).astype(stored.newbyteorder("<")).tobytes())
    if carry:
        raise ValueError("tensor bytes end inside an element")


def digest_chunks(dtype: str, shape: tuple[int, ...], chunks: Iterable[memoryview | bytes],
                  expected_bytes: int | None = None) -> str:
    """The hash of a tensor given its C-order little-endian bytes; ValueError when the byte count is wrong."""
    hasher = hashlib.sha256(canonical_header(dtype, shape))
    total = 0
    for chunk in chunks:
        hasher.update(chunk)
        total += len(memoryview(chunk).cast("B"))
    if expected_bytes is not None and total != expected_bytes:
        raise ValueError(f"expected {expected_bytes} bytes of tensor data, streamed {total}")
    return hasher.hexdigest()


def tensor_digest(path: Path, fmt: str, tensor: TensorInfo, chunk_bytes: int = HASH_CHUNK) -> str | None:
    """sha256 hex digest of the tensor's canonical header and C-order little-endian bytes; None when unhashable."""
    from weightaudit.formats import iter_tensor_chunks

    itemsize = _itemsize(tensor.dtype)
    if itemsize is None or not _streams_c_order(path, tensor):
        return None
    expected = element_count(tensor.shape) * itemsize
    try:
        chunks: Iterable[memoryview] = iter_tensor_chunks(Path(path), fmt, tensor, chunk_bytes)
        unit = _swap_unit(tensor.dtype, itemsize)
        if tensor.byte_order == "big" and unit > 1:
            chunks = _little_endian(chunks, unit)
        return digest_chunks(tensor.dtype, tensor.shape, chunks, expected)
    except (OSError, ValueError, KeyError, MemoryError):
        return None
