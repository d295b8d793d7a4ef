"""The HDF5 object scan and dataset inventory read straight from the file's bytes, for the layouts h5py writes by
default; libhdf5 (through h5py) stays the reader of everything else.

h5py costs ~25 us per object to visit and ~80 us per dataset to open, and libhdf5 caches every object header it
saw (100,000 datasets: ~9 s and ~500 MB). This reader walks the same structures itself, once, over a read-only map:
superblock v0/v1, version 1 object headers (with continuation blocks), groups stored as a symbol table (v1 B-tree
of group nodes + local heap), and per dataset its datatype, dataspace, fill value, filter pipeline and layout
(version 3: compact, contiguous, or chunked with its chunk B-tree summed; hdf5_datasets.py). It visits objects in ``H5Ovisit``'s order (pre-order, names increasing as the B-tree holds them, an
object with several hard links once).

It never guesses. Anything it does not fully understand in the STRUCTURE (another superblock or object header
version, a shared, flagged or unknown message, a group stored as link messages, a soft/external link, a named
datatype, an address outside the file, a node reached twice, B-tree keys that libhdf5's binary search would not
find a name by, a bad local heap free list) raises :class:`Unsupported`, and the caller reads the whole file with
h5py as before. A dataset whose DESCRIPTION is unusual (external, attributes, unlimited dimensions, a non-IEEE or
non-numeric type, a size that does not match its shape) gets no record here (``None``): the inventory opens that
one dataset through h5py, exactly as the h5py path would, and hdf5_read asks libhdf5 for the object info of those
datasets, of chunked ones and of every group (what ``H5Ovisit`` would have read of them). Differential tests use h5py as the oracle
(tests/formats/test_hdf5_native.py, including single-byte mutations of a file).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from weightaudit.formats.hdf5_bytes import (UNDEFINED, Record, Unsupported, _first_sight, _Header, _Reader,
                                             btree_v1_node)
from weightaudit.formats.hdf5_datasets import dataset_record
from weightaudit.formats.hdf5_userblock import HDF5_SIGNATURE

_ENTRY = struct.Struct("<QQI")        # symbol table entry: name offset, object header address, cache type

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
        level, used, keys_at = btree_v1_node(reader, address, 0, level_expected, reader.fanout, step, reader.lsize)
        keys = [_heap_name(reader, names, reader.length(keys_at + i * step)) for i in range(used + 1)]
        if any(left >= right for left, right in zip(keys, keys[1:])):
            raise Unsupported(f"B-tree node {address:#x} keys out of order")
        bounds = [(max(low, keys[i]), keys[i + 1] if high is None else min(high, keys[i + 1])) for i in range(used)]
        children = [reader.offset(keys_at + reader.lsize + i * step) for i in range(used)]
        if level == 0:
            yield from ((child, *bound) for child, bound in zip(children, bounds))
        else:
            stack.extend((child, level - 1, *bound) for child, bound in zip(reversed(children), reversed(bounds)))


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
    chunk_k = struct.unpack_from("<H", data, start + 24)[0] if version == 1 else 32   # v0: libhdf5's default
    reader.fanout, reader.leaf_fanout, reader.chunk_fanout = 2 * internal_k, 2 * leaf_k, 2 * chunk_k
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


__all__ = ["NativeScan", "Record", "Unsupported", "scan_descriptor", "visit", "_Reader"]
