"""Bounds-checked reading of HDF5 structures from a file's bytes: the pieces shared by the native scan
(hdf5_native.py) and the dataset descriptions (hdf5_datasets.py). See hdf5_native.py for what is read and why.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

UNDEFINED = (1 << 64) - 1
MAX_RANK = 32
COMPACT, CONTIGUOUS, CHUNKED = 0, 1, 2          # h5py.h5d layout classes
_PREFIX, _MESSAGE = struct.Struct("<BBHII"), struct.Struct("<HHB")     # object header prefix, message header
_U64 = struct.Struct("<Q")
_IGNORED = frozenset({0x0000, 0x000A, 0x000D, 0x000E, 0x0012})   # NIL, group info, comment, modification times
# external file list, old fill value, attributes, attribute info: h5py opens that dataset
_DATASET_ASIDE = frozenset({0x0004, 0x0007, 0x000C, 0x0015})
_SINGLE = frozenset({0x0001, 0x0003, 0x0005, 0x0008, 0x000B, 0x0011})   # read here: a second copy is ambiguous
_KNOWN = _IGNORED | _DATASET_ASIDE | {0x0001, 0x0002, 0x0003, 0x0005, 0x0006, 0x0008, 0x000B, 0x0010, 0x0011}

class Unsupported(ValueError):
    """The file uses HDF5 structure this reader does not handle: read it with h5py."""


class Record(NamedTuple):
    """What the inventory needs of one dataset (the fields of hdf5_read's h5py-read record)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    layout: int
    stored: int
    offset: int | None
    filters: tuple[int, ...] = ()


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
        self.chunk_fanout = 0                  # most children of a chunk B-tree node
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


def _first_sight(reader: _Reader, address: int) -> None:
    """Each node is read once per file, so a crafted file cannot make the walk quadratic by sharing nodes."""
    if address in reader.nodes:
        raise Unsupported(f"B-tree or symbol node {address:#x} reached twice")
    reader.nodes.add(address)


def btree_v1_node(reader: _Reader, address: int, kind: int, expected_level: int | None, max_entries: int,
                  step: int, tail: int) -> tuple[int, int, int]:
    """(level, entries, where the keys start) of a version-1 B-tree node of ``kind`` (0: group, 1: chunks), read
    once per file and charged to the metadata budget; ``step`` is one key plus one child address, ``tail`` the
    size of the last key. A node of another kind, an unexpected level or too many entries is left to libhdf5."""
    _first_sight(reader, address)
    position = reader.signature(address, b"TREE")
    node_kind, level, used = struct.unpack_from("<BBH", reader.data, position + 4)
    if node_kind != kind or level != (level if expected_level is None else expected_level) or used > max_entries:
        raise Unsupported(f"B-tree node {address:#x} of type {node_kind}, level {level}, {used} entries")
    keys_at = position + 8 + 2 * reader.osize
    reader.at(address, keys_at - position + used * step + tail)
    reader.spend(used * step)
    return level, used, keys_at
