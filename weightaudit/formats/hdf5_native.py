"""The HDF5 object scan and dataset inventory read straight from the file's bytes, for the layouts h5py writes by
default; libhdf5 (through h5py) stays the reader of everything else.

h5py costs ~25 us per object to visit and ~80 us per dataset to open, and libhdf5 caches every object header it
saw (100,000 datasets: ~9 s and ~500 MB). This reader walks the same structures itself, once, over a read-only map:
superblock v0/v1, version 1 object headers (with continuation blocks), groups stored as a symbol table (v1 B-tree
of group nodes + local heap), and per dataset its datatype, dataspace, fill value and layout (version 3: compact
or contiguous). It visits objects in ``H5Ovisit``'s order (pre-order, names increasing as the B-tree holds them, an
object with several hard links once).

It never guesses. Anything it does not fully understand in the STRUCTURE (another superblock or object header
version, a shared, flagged or unknown message, a group stored as link messages, a soft/external link, a named
datatype, an address outside the file, a node reached twice, B-tree keys that libhdf5's binary search would not
find a name by, a bad local heap free list) raises :class:`Unsupported`, and the caller reads the whole file with
h5py as before. A dataset whose DESCRIPTION is unusual (chunked, filtered, external, attributes, a non-IEEE or
non-numeric type, a size that does not match its shape) gets no record here (``None``): the inventory opens that
one dataset through h5py, exactly as the h5py path would, and hdf5_read asks libhdf5 for the object info of those
datasets and of every group (what ``H5Ovisit`` would have read of them). Differential tests use h5py as the oracle
(tests/formats/test_hdf5_native.py, including single-byte mutations of a file).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from weightaudit.formats.hdf5_userblock import HDF5_SIGNATURE

UNDEFINED = (1 << 64) - 1
MAX_RANK = 32
CONTIGUOUS, COMPACT = 1, 0          # h5py.h5d layout classes
_UINT = frozenset({1, 2, 4, 8})    # integer sizes numpy has
# IEEE layouts h5py maps to numpy floats: size -> (exponent location, exponent size, mantissa size, bias)
_IEEE = {2: (10, 5, 10, 15), 4: (23, 8, 23, 127), 8: (52, 11, 52, 1023)}
_PREFIX, _MESSAGE = struct.Struct("<BBHII"), struct.Struct("<HHB")     # object header prefix, message header
_U64, _ENTRY = struct.Struct("<Q"), struct.Struct("<QQI")        # symbol table entry: name offset, header, cache
_IGNORED = frozenset({0x0000, 0x000A, 0x000D, 0x000E, 0x0012})   # NIL, group info, comment, modification times
# external file list, filter pipeline, old fill value, attributes, attribute info: h5py opens that dataset
_DATASET_ASIDE = frozenset({0x0004, 0x0007, 0x000B, 0x000C, 0x0015})
_SINGLE = frozenset({0x0001, 0x0003, 0x0005, 0x0008, 0x0011})   # read here: a second copy would be ambiguous
_KNOWN = _IGNORED | _DATASET_ASIDE | {0x0001, 0x0002, 0x0003, 0x0005, 0x0006, 0x0008, 0x0010, 0x0011}


class Unsupported(ValueError):
    """The file uses HDF5 structure this reader does not handle: read it with h5py."""


class Record(NamedTuple):
    """What the inventory needs of one dataset (the fields of hdf5_read's h5py-read record)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    layout: int
    stored: int
    offset: int | None


class _Header(NamedTuple):
    """One object header: its reference count and the first message of each type, (data offset, size)."""

    refcount: int
    first: dict[int, tuple[int, int]]


class _Reader:
    """Bounds-checked reads of addresses relative to the superblock."""

    def __init__(self, data: memoryview, base: int, end: int, offsets: int, lengths: int) -> None:
        self.data, self.base, self.end = data, base, end
        self.osize, self.lsize = offsets, lengths
        self.nodes: set[int] = set()       # B-tree and symbol nodes of the whole file: each belongs to one group
        self.descriptions: dict[tuple, tuple | None] = {}      # see _description
        self.fanout, self.leaf_fanout = 0, 0    # most children of a group B-tree node, entries of a symbol node
        self.budget = 4 * len(data) + (1 << 20)   # metadata bytes read: overlapping structures cannot multiply work

    def spend(self, size: int) -> None:
        """Count ``size`` metadata bytes read; a well-formed file reads each byte about once."""
        self.budget -= size
        if self.budget < 0:
            raise Unsupported("structures overlap: more metadata read than the file holds")

    def at(self, address: int, size: int) -> int:
        """Absolute position of ``size`` bytes at ``address``, refused when outside the file."""
        if address == UNDEFINED or address < 0 or size < 0 or self.base + address + size > self.end:
            raise Unsupported(f"address {address:#x}+{size} outside the file")
        return self.base + address

    def offset(self, position: int) -> int:
        return _U64.unpack_from(self.data, position)[0]      # 8-byte offsets only: all ones is UNDEFINED

    def length(self, position: int) -> int:
        return _U64.unpack_from(self.data, position)[0]

    def signature(self, address: int, magic: bytes) -> int:
        position = self.at(address, len(magic))
        if bytes(self.data[position:position + len(magic)]) != magic:
            raise Unsupported(f"no {magic!r} at {address:#x}")
        return position

    def header(self, address: int) -> _Header:
        """A version 1 object header: its messages, continuation blocks followed (each block once)."""
        position = self.at(address, 16)
        version, _, count, refcount, size = _PREFIX.unpack_from(self.data, position)
        if version != 1:
            raise Unsupported(f"object header version {version} at {address:#x}")
        first: dict[int, tuple[int, int]] = {}
        blocks, seen, found = [(address + 16, size)], {address}, 0
        while blocks:
            start, size = blocks.pop(0)
            self.spend(size)
            found += self._messages(self.at(start, size), size, first, blocks, seen)
            if found > count:
                break
        if found != count:
            raise Unsupported(f"object header at {address:#x} declares {count} messages, holds {found}")
        return _Header(refcount, first)

    def _messages(self, position: int, size: int, first: dict, blocks: list, seen: set) -> int:
        """Index one block's messages (the first of each type) and queue its continuations; returns the count."""
        stop, found, data = position + size, 0, self.data
        while position + 8 <= stop:
            mtype, msize, flags = _MESSAGE.unpack_from(data, position)
            body = position + 8
            if msize % 8 or body + msize > stop:
                raise Unsupported(f"object header message of {msize} bytes at {position:#x}")
            if mtype not in _KNOWN or flags & ~0x01:       # shared, unknown-marked ...: libhdf5's own rules
                raise Unsupported(f"object header message type {mtype:#x} (flags {flags:#x})")
            found += 1
            if mtype in first and mtype in _SINGLE:
                raise Unsupported(f"object header with two messages of type {mtype:#x}")
            if mtype not in first and mtype not in _IGNORED:
                first[mtype] = (body, msize)
            if mtype == 0x0010:
                self._continuation(body, msize, blocks, seen)
            position = body + msize
        if position != stop:
            raise Unsupported("object header block does not end on a message")
        return found

    def _continuation(self, body: int, size: int, blocks: list, seen: set) -> None:
        if size < self.osize + self.lsize:
            raise Unsupported("short continuation message")
        target, length = self.offset(body), self.length(body + self.osize)
        if target in seen:
            raise Unsupported(f"object header continuation {target:#x} seen twice")
        seen.add(target)
        blocks.append((target, length))


# ---------------------------------------------------------------- groups

def _symbol_table_links(reader: _Reader, body: int) -> Iterator[tuple[bytes, int]]:
    """(name, object header address) of an old-style group, in its B-tree's order (``H5_ITER_INC``)."""
    btree, heap = reader.offset(body), reader.offset(body + reader.osize)
    _first_sight(reader, heap)
    position = reader.signature(heap, b"HEAP")
    if reader.data[position + 4] != 0:
        raise Unsupported(f"local heap version {reader.data[position + 4]}")
    segment_size, free_list = reader.length(position + 8), reader.length(position + 8 + reader.lsize)
    segment = reader.at(reader.offset(position + 8 + 2 * reader.lsize), segment_size)
    reader.spend(segment_size)
    names = bytes(reader.data[segment:segment + segment_size])     # copied once: every heap serves one group
    _check_free_list(names, free_list, reader.lsize)
    for node, low, high in _group_nodes(reader, btree, names):
        yield from _node_entries(reader, node, names, low, high)


def _check_free_list(names: bytes, block: int, lsize: int) -> None:
    """The local heap's free list as libhdf5 checks it when a group is iterated ("bad heap free list")."""
    steps = 0
    while block != 1:                                  # H5HL_FREE_NULL
        steps += 1
        if block + 2 * lsize > len(names) or steps > len(names) // (2 * lsize) + 1:
            raise Unsupported("local heap free list outside the heap")
        following = int.from_bytes(names[block:block + lsize], "little")
        size = int.from_bytes(names[block + lsize:block + 2 * lsize], "little")
        if following == 0 or block + size > len(names):
            raise Unsupported("bad local heap free list")
        block = following


def _heap_name(reader: _Reader, names: bytes, offset: int) -> bytes:
    end = names.find(b"\0", offset) if offset < len(names) else -1
    if end < 0:
        raise Unsupported(f"name at heap offset {offset} outside the heap")
    reader.spend(end + 1 - offset)
    return names[offset:end]


def _group_nodes(reader: _Reader, root: int, names: bytes) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(symbol node address, low, high) under a v1 group B-tree, in key order; every node visited once.

    libhdf5 finds a name by binary search on the keys (names in the heap): the keys must increase and every child
    hold only names in (its left key, its right key] for each of its ancestors, or names the iteration lists
    could not be opened; such a tree is left to libhdf5."""
    stack: list[tuple[int, int | None, bytes, bytes | None]] = [(root, None, b"", None)]
    step = reader.osize + reader.lsize
    while stack:
        address, level_expected, low, high = stack.pop()
        _first_sight(reader, address)
        position = reader.signature(address, b"TREE")
        kind, level, used = struct.unpack_from("<BBH", reader.data, position + 4)
        if kind != 0 or level != (level if level_expected is None else level_expected) or used > reader.fanout:
            raise Unsupported(f"B-tree node {address:#x} of type {kind}, level {level}, {used} children")
        keys_at = position + 8 + 2 * reader.osize
        reader.at(address, keys_at - position + used * step + reader.lsize)
        reader.spend(used * step)
        keys = [_heap_name(reader, names, reader.length(keys_at + i * step)) for i in range(used + 1)]
        if any(left >= right for left, right in zip(keys, keys[1:])):
            raise Unsupported(f"B-tree node {address:#x} keys out of order")
        bounds = [(max(low, keys[i]), keys[i + 1] if high is None else min(high, keys[i + 1])) for i in range(used)]
        children = [reader.offset(keys_at + reader.lsize + i * step) for i in range(used)]
        if level == 0:
            yield from ((child, *bound) for child, bound in zip(children, bounds))
        else:
            stack.extend((child, level - 1, *bound) for child, bound in zip(reversed(children), reversed(bounds)))


def _first_sight(reader: _Reader, address: int) -> None:
    """Each node is read once per file, so a crafted file cannot make the walk quadratic by sharing nodes."""
    if address in reader.nodes:
        raise Unsupported(f"B-tree or symbol node {address:#x} reached twice")
    reader.nodes.add(address)


def _node_entries(reader: _Reader, node: int, names: bytes, low: bytes, high: bytes | None
                  ) -> Iterator[tuple[bytes, int]]:
    """The entries of a symbol node: names increasing within (low, high], each one a plain hard link."""
    _first_sight(reader, node)
    position = reader.signature(node, b"SNOD")
    version, _, count = struct.unpack_from("<BBH", reader.data, position + 4)
    entry_size = reader.lsize + reader.osize + 24       # name offset (a length), header address, cache, scratch
    if version != 1 or count > reader.leaf_fanout:
        raise Unsupported(f"symbol node version {version} with {count} entries")
    first = position + 8
    reader.at(node, 8 + count * entry_size)
    reader.spend(count * entry_size)
    previous = low
    for index in range(count):
        name_at, address, cache = _ENTRY.unpack_from(reader.data, first + index * entry_size)
        name = _heap_name(reader, names, name_at)
        if cache > 1:
            raise Unsupported(f"symbol table entry with cache type {cache}")   # 2: a soft link
        if not name > previous or (high is not None and name > high) or b"/" in name or name == b".":
            raise Unsupported(f"symbol table entry {name!r} out of order or not a plain name")
        previous = name
        yield name, address


# ---------------------------------------------------------------- datasets

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


def _layout(reader: _Reader, start: int, size: int, declared: int, base: int) -> tuple[int, int, int | None] | None:
    """(layout class, stored bytes, absolute offset) of a compact or contiguous version 3 layout."""
    if size < 4:
        return None
    version, kind = struct.unpack_from("<BB", reader.data, start)
    if version != 3:
        return None
    if kind == COMPACT:
        stored = struct.unpack_from("<H", reader.data, start + 2)[0]
        return (COMPACT, stored, None) if stored == declared and 4 + stored <= size else None
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

    Only datasets without attributes, filters, external files or the old fill value message are read here:
    h5py's open decodes all of those (and the ``dtype`` attribute check decodes every attribute)."""
    layout = header.first.get(0x0008)
    if layout is None or not _DATASET_ASIDE.isdisjoint(header.first):
        return None
    description = _description(reader, header)
    if description is None:
        return None
    dtype, shape, declared = description
    where = _layout(reader, *layout, declared, base)
    if where is None:
        return None
    return Record(dtype, shape, where[0], where[1], where[2])


# ---------------------------------------------------------------- superblock and the visit

def _superblock(data: memoryview, start: int) -> tuple[_Reader, int]:
    """A reader for the version 0/1 superblock at ``start`` (addresses are relative to it, as libhdf5 reads), and
    the root group's object header address."""
    if bytes(data[start:start + 8]) != HDF5_SIGNATURE or len(data) < start + 24:
        raise Unsupported("no superblock")
    version, offsets, lengths = data[start + 8], data[start + 13], data[start + 14]
    if version not in (0, 1) or offsets != 8 or lengths != 8:     # the sizes libhdf5 writes (and tests cover)
        raise Unsupported(f"superblock version {version}, offsets {offsets}, lengths {lengths}")
    reader = _Reader(data, start, len(data), offsets, lengths)
    leaf_k, internal_k = struct.unpack_from("<HH", data, start + 16)
    reader.fanout, reader.leaf_fanout = 2 * internal_k, 2 * leaf_k
    addresses = start + 24 + (4 if version == 1 else 0)
    base, end_of_file = reader.offset(addresses), reader.offset(addresses + 2 * offsets)
    if base != start or end_of_file == UNDEFINED or end_of_file > len(data):   # libhdf5 would move the base
        raise Unsupported(f"base address {base:#x} for a superblock at {start:#x}, end of file {end_of_file:#x}")
    reader.end = end_of_file              # stored as an absolute position (the user block included)
    return reader, reader.offset(addresses + 4 * offsets + lengths)     # root entry: name offset, header address


@dataclass
class NativeScan:
    """The objects of a file in ``H5Ovisit`` order: dataset paths with their records, group paths."""

    datasets: list[str]
    groups: set[str]
    records: dict[str, Record | None]


def _links(reader: _Reader, header: _Header) -> Iterator[tuple[bytes, int]]:
    """A group's links: only the symbol table groups h5py writes by default (new-style groups come with version 2
    object headers, which this reader leaves to libhdf5)."""
    table = header.first.get(0x0011)
    if table is None or 0x0002 in header.first or 0x0006 in header.first or table[1] < 2 * reader.osize:
        raise Unsupported("group stored as link messages")
    return _symbol_table_links(reader, table[0])


def _is_group(header: _Header) -> bool:
    return 0x0011 in header.first or 0x0002 in header.first


def _classify(reader: _Reader, header: _Header, path: str, scan: NativeScan) -> bool:
    """Record the object; True when it is a group to descend into."""
    if _is_group(header):
        scan.groups.add(path)
        return True
    if 0x0003 in header.first and 0x0001 in header.first:
        scan.datasets.append(path)
        scan.records[path] = dataset_record(reader, header, reader.base)
        return False
    raise Unsupported(f"object {path!r} is neither a group nor a dataset")


def visit(data: memoryview, superblock_at: int) -> NativeScan:
    """Every object reachable from the root group, as ``H5Ovisit`` reports them (pre-order, names increasing).

    libhdf5 remembers visited objects only when they have several hard links; an object with one link reached
    twice (a crafted cycle) is left to h5py."""
    reader, root_at = _superblock(data, superblock_at)
    scan = NativeScan([], set(), {})
    root = reader.header(root_at)
    if not _is_group(root):
        raise Unsupported("root object is not a group")
    visited: set[int] = set()                  # objects with several hard links, reported once
    once: set[int] = set()                     # objects with one hard link
    (visited if root.refcount > 1 else once).add(root_at)
    stack: list[tuple[str, Iterator[tuple[bytes, int]]]] = [("", iter(_links(reader, root)))]
    while stack:
        prefix, links = stack[-1]
        entry = next(links, None)
        if entry is None:
            stack.pop()
            continue
        name, address = entry
        if address in visited:
            continue                               # another hard link to an object already reported
        if address in once:
            raise Unsupported(f"object {address:#x} with one hard link is reached twice")
        header = reader.header(address)
        (visited if header.refcount > 1 else once).add(address)
        path = prefix + name.decode("utf-8", "surrogateescape")
        if _classify(reader, header, path, scan):
            stack.append((path + "/", iter(_links(reader, header))))
    return scan


def scan_descriptor(fd: int, start: int, size: int, superblock_at: int) -> NativeScan:
    """:func:`visit` over ``size`` bytes of ``fd`` from ``start`` (the file h5py opened), mapped read-only."""
    if size <= 0:
        raise Unsupported("empty file")
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        if start + size > len(mapped):
            raise Unsupported("file shorter than expected")
        view = memoryview(mapped)[start:start + size]
        try:
            return visit(view, superblock_at)
        finally:
            view.release()


__all__ = ["NativeScan", "Record", "Unsupported", "scan_descriptor", "visit"]
