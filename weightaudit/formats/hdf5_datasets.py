"""What the inventory needs of one HDF5 dataset, decoded from its object header's messages (datatype, dataspace,
fill value, layout, filter pipeline) exactly as far as h5py's open would read them; anything unusual is None
(h5py opens that dataset). Part of the native reader, see hdf5_native.py.
"""

from __future__ import annotations

import struct

import numpy as np

from weightaudit.formats.hdf5_bytes import (
    _DATASET_ASIDE, CHUNKED, COMPACT, CONTIGUOUS, MAX_RANK, UNDEFINED, Record, _Header,
    _Reader, btree_v1_node,
)

MAX_FILTERS = 32                   # H5Z_MAX_NFILTERS

_UINT = frozenset({1, 2, 4, 8})    # integer sizes numpy has
# IEEE layouts h5py maps to numpy floats: size -> (exponent location, exponent size, mantissa size, bias)
_IEEE = {2: (10, 5, 10, 15), 4: (23, 8, 23, 127), 8: (52, 11, 52, 1023)}

_DTYPES: dict[tuple[str, int, str], np.dtype] = {}


def _numpy_dtype(kind: str, size: int, order: str) -> np.dtype:
    key = (kind, size, order)
    if key not in _DTYPES:
        _DTYPES[key] = np.dtype(f"{order}{kind}{size}")
    return _DTYPES[key]


def _datatype(reader: _Reader, start: int, size: int) -> np.dtype | None:
    """The numpy dtype h5py gives a standard integer or IEEE float type; None for anything else."""
    if size < 12:
        return None
    head, bits_low, bits_high, item = struct.unpack_from("<BHBI", reader.data, start)
    kind, version, bits = head & 0x0F, head >> 4, bits_low | bits_high << 16
    order = ">" if bits & 1 else "<"
    bit_offset, precision = struct.unpack_from("<HH", reader.data, start + 8)
    if version not in (1, 2, 3) or bit_offset != 0 or precision != 8 * item:
        return None
    if kind == 0 and item in _UINT and not bits & ~0x09:
        return _numpy_dtype("i" if bits & 0x08 else "u", item, order)
    if kind == 1 and item in _IEEE and size >= 20 and bits & ~0x01 == 0x20 | (8 * item - 1) << 8:
        exp_at, exp_size, mant_at, mant_size, bias = struct.unpack_from("<BBBBI", reader.data, start + 12)
        if mant_at == 0 and (exp_at, exp_size, mant_size, bias) == _IEEE[item]:
            return _numpy_dtype("f", item, order)
    return None


def _dataspace(reader: _Reader, start: int, size: int) -> tuple[int, ...] | None:
    """A simple or scalar dataspace whose maximum dimensions (when stored) equal its dimensions."""
    if size < 8:
        return None
    version, rank, flags = struct.unpack_from("<BBB", reader.data, start)
    if version == 1:
        dims_at = start + 8
    elif version == 2:
        if reader.data[start + 3] not in (0, 1):
            return None                               # a null dataspace
        dims_at = start + 4
    else:
        return None
    if rank > MAX_RANK or flags & ~0x01 or dims_at + (2 if flags else 1) * rank * reader.lsize > start + size:
        return None
    shape = struct.unpack_from(f"<{rank}Q", reader.data, dims_at)
    if flags and struct.unpack_from(f"<{rank}Q", reader.data, dims_at + rank * reader.lsize) != shape:
        return None
    return shape


def _layout(reader: _Reader, start: int, size: int, shape: tuple[int, ...], itemsize: int, declared: int,
            base: int) -> tuple[int, int, int | None] | None:
    """(layout class, stored bytes, absolute offset) of a compact, contiguous or chunked version 3 layout."""
    if size < 4:
        return None
    version, kind = struct.unpack_from("<BB", reader.data, start)
    if version != 3:
        return None
    if kind == COMPACT:
        stored = struct.unpack_from("<H", reader.data, start + 2)[0]
        return (COMPACT, stored, None) if stored == declared and 4 + stored <= size else None
    if kind == CHUNKED:
        return _chunked(reader, start, size, shape, itemsize)
    if kind != CONTIGUOUS or 2 + reader.osize + reader.lsize > size:
        return None
    address, stored = reader.offset(start + 2), reader.length(start + 2 + reader.osize)
    if address == UNDEFINED:   # never written; H5Dget_offset adds the user block to the undefined address
        return CONTIGUOUS, 0, (base + UNDEFINED) & UNDEFINED if base else None
    if stored != declared or base + address + stored > reader.end:
        return None
    return CONTIGUOUS, stored, base + address


def _fill_value_ok(reader: _Reader, start: int, size: int, itemsize: int) -> bool:
    """A fill value message (version 1-3) as libhdf5 decodes it when opening the dataset, of a sane size."""
    version = reader.data[start] if size >= 4 else 0
    if version in (1, 2):
        alloc, write, defined = reader.data[start + 1:start + 4]
        if alloc not in (1, 2, 3) or write > 2 or defined > 1:
            return False
        has_size, size_at = version == 1 or defined == 1, start + 4
    elif version == 3:
        flags = reader.data[start + 1]
        if flags & ~0x3F or flags & 0x30 == 0x30 or flags & 0x03 == 0 or flags & 0x0C == 0x0C:
            return False
        has_size, size_at = bool(flags & 0x20), start + 2
    else:
        return False
    if not has_size:
        return True
    if size_at + 4 > start + size:
        return False
    value = struct.unpack_from("<I", reader.data, size_at)[0]
    return value in (0, itemsize) and size_at + 4 + value <= start + size


def _description(reader: _Reader, header: _Header) -> tuple[np.dtype, tuple[int, ...], int] | None:
    """(dtype, shape, declared bytes) from the datatype, dataspace and fill value messages, or None. A pure
    function of those messages' bytes, so remembered by them: weight files repeat a few descriptions."""
    datatype, dataspace, fill = header.first.get(0x0003), header.first.get(0x0001), header.first.get(0x0005)
    if datatype is None or dataspace is None:
        return None
    data = reader.data
    key = (bytes(data[datatype[0]:datatype[0] + datatype[1]]), bytes(data[dataspace[0]:dataspace[0] + dataspace[1]]),
           bytes(data[fill[0]:fill[0] + fill[1]]) if fill is not None else None)
    memo = reader.descriptions
    if key in memo:
        return memo[key]
    if len(memo) > 4096:
        memo.clear()
    dtype, shape = _datatype(reader, *datatype), _dataspace(reader, *dataspace)
    found = None
    if dtype is not None and shape is not None and (fill is None or _fill_value_ok(reader, *fill, dtype.itemsize)):
        count = 1
        for dim in shape:
            count *= dim
        found = (dtype, shape, count * dtype.itemsize)
    memo[key] = found
    return found


def dataset_record(reader: _Reader, header: _Header, base: int) -> Record | None:
    """The inventory record of a dataset object header, or None (open this dataset with h5py).

    Only datasets without attributes, external files or the old fill value message are read here: h5py's open
    decodes all of those (and the ``dtype`` attribute check decodes every attribute); a filter pipeline only on a
    chunked layout."""
    layout = header.first.get(0x0008)
    if layout is None or not _DATASET_ASIDE.isdisjoint(header.first):
        return None
    description = _description(reader, header)
    if description is None:
        return None
    dtype, shape, declared = description
    where = _layout(reader, *layout, shape, dtype.itemsize, declared, base)
    if where is None:
        return None
    pipeline = header.first.get(0x000B)
    filters = _filters(reader, *pipeline) if pipeline is not None else ()
    if filters is None or (filters and where[0] != CHUNKED):
        return None
    return Record(dtype, shape, where[0], where[1], where[2], filters)


def _chunked(reader: _Reader, start: int, size: int, shape: tuple[int, ...], itemsize: int
             ) -> tuple[int, int, None] | None:
    """(CHUNKED, bytes of the allocated chunks, None): chunk dimensions within the shape, one more for the element
    size; the chunk B-tree (version 1) summed as H5Dget_storage_size sums it."""
    rank = reader.data[start + 2] if size >= 3 else 0
    if rank != len(shape) + 1 or 3 + reader.osize + 4 * rank > size:
        return None
    address = reader.offset(start + 3)
    dims = struct.unpack_from(f"<{rank}I", reader.data, start + 3 + reader.osize)
    chunk = 1
    for dim in dims:
        chunk *= dim
    if dims[-1] != itemsize or 0 in dims or chunk >= 1 << 32 or any(c > d for c, d in zip(dims, shape)):
        return None
    return CHUNKED, 0 if address == UNDEFINED else _chunk_bytes(reader, address, rank), None


def _chunk_bytes(reader: _Reader, root: int, rank: int) -> int:
    """Bytes of every chunk under a chunk B-tree: the sizes in the keys of its leaf nodes (each node once)."""
    key_size = 8 + 8 * rank                        # chunk size, filter mask, offsets (the element one included)
    step = key_size + reader.osize
    total = 0
    stack: list[tuple[int, int | None]] = [(root, None)]
    while stack:
        address, expected = stack.pop()
        level, used, keys_at = btree_v1_node(reader, address, 1, expected, reader.chunk_fanout, step, key_size)
        for index in range(used):
            at = keys_at + index * step
            if level == 0:
                total += struct.unpack_from("<I", reader.data, at)[0]
            else:
                stack.append((reader.offset(at + key_size), level - 1))
    return total


def _filters(reader: _Reader, start: int, size: int) -> tuple[int, ...] | None:
    """Filter ids of a filter pipeline message (version 1 or 2), in order; None when it does not parse."""
    stop, data = start + size, reader.data
    if size < 2:
        return None
    version, count = data[start], data[start + 1]
    if version not in (1, 2) or count > MAX_FILTERS:
        return None
    position, ids = start + (8 if version == 1 else 2), []
    for _ in range(count):
        if position + 8 > stop:
            return None
        if version == 1:
            ident, name_size, _flags, values = struct.unpack_from("<HHHH", data, position)
            if name_size % 8:
                return None
            position += 8 + name_size + 4 * (values + values % 2)
        else:
            ident = struct.unpack_from("<H", data, position)[0]
            name_size = struct.unpack_from("<H", data, position + 2)[0] if ident >= 256 else 0
            position += 2 + (2 if ident >= 256 else 0)
            _flags, values = struct.unpack_from("<HH", data, position)
            position += 4 + name_size + 4 * values
        if position > stop:
            return None
        ids.append(ident)
    return tuple(ids)
