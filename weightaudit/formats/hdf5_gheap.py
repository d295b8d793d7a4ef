"""Global heap collections behind variable-length string attributes, checked before h5py reads them.

libhdf5 reads a collection ("GCOL") object by object, each advancing by its stored size; a crafted size can make
the next "object" a free-space entry of size 0, and libhdf5 then loops forever inside one call (a hang no Python
timeout can interrupt). Found by mutating a Keras-written ``.h5`` (one size byte of a ``layer_names`` string). So
before a variable-length string attribute is read, its object header is parsed from the bytes (hdf5_bytes.py), the
attribute's stored references (length, collection address, object index) are taken from its raw data, and each
collection is walked as libhdf5 walks it: one that would not end, or runs past itself, makes the attribute
refused (hdf5_read.AttributeRefused, WA171). Structures this module does not parse are left to libhdf5 as before.
"""

from __future__ import annotations

import mmap
import struct

from weightaudit.formats.hdf5_bytes import UNDEFINED, Unsupported, _Reader

_MESSAGE = struct.Struct("<HHB")
_OBJECT = struct.Struct("<HHIQ")                 # heap object index, references, reserved, size
_REFERENCE = struct.Struct("<IQI")               # a variable-length string: length, collection, object index
MIN_COLLECTION = 4096                            # H5HG_MINSIZE


class HeapRefused(ValueError):
    """A variable-length string attribute whose global heap references cannot be proven safe to follow."""


def check_vlen_attribute(source: tuple[int, int, int], superblock_at: int, header: int, name: str) -> None:
    """Raise HeapRefused when a global heap collection that attribute ``name`` of the object header at ``header``
    refers to is one libhdf5 would never finish reading (or would read past). A structure this module does not
    parse (newer object headers, shared types ...) is left to libhdf5 as before: this is a guard, not a reader.
    ``source`` is (descriptor, start, size) of the bytes h5py reads."""
    fd, start, size = source
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)[start:start + size]
            try:
                _check(_reader(view, superblock_at), header, name.encode("utf-8"))
            finally:
                view.release()
    except HeapRefused:
        raise
    except (Unsupported, struct.error, ValueError, OSError, IndexError):
        return


def _reader(view: memoryview, start: int) -> _Reader:
    if bytes(view[start + 8:start + 9]) not in (b"\0", b"\1") or view[start + 13] != 8 or view[start + 14] != 8:
        raise Unsupported("not a version 0/1 superblock with 8-byte offsets")
    return _Reader(view, start, len(view), 8, 8)


def _check(reader: _Reader, header: int, name: bytes) -> None:
    body = _attribute(reader, header, name)
    references = _references(reader, *body)
    checked: set[int] = set()
    for _length, collection, _index in references:
        if collection not in checked and collection not in (0, UNDEFINED):
            checked.add(collection)
            _walk_collection(reader, collection)


def _attribute(reader: _Reader, header: int, name: bytes) -> tuple[int, int]:
    """(start, size) of the attribute message named ``name`` in a version 1 object header (continuations read)."""
    position = reader.at(header, 16)
    version, _, count, _refs, size = struct.unpack_from("<BBHII", reader.data, position)
    if version != 1:
        raise Unsupported(f"object header version {version}")
    blocks, seen, found = [(header + 16, size)], {header}, 0
    while blocks and found <= count:
        start, size = blocks.pop(0)
        position, stop = reader.at(start, size), reader.at(start, size) + size
        while position + 8 <= stop and found <= count:
            mtype, msize, _flags = _MESSAGE.unpack_from(reader.data, position)
            body, found = position + 8, found + 1
            if body + msize > stop:
                raise Unsupported("message past its block")
            if mtype == 0x000C and _attribute_name(reader, body, msize) == name:
                return body, msize
            if mtype == 0x0010 and reader.offset(body) not in seen:
                seen.add(reader.offset(body))
                blocks.append((reader.offset(body), reader.length(body + 8)))
            position = body + msize
    raise Unsupported(f"attribute {name!r} not found in its object header")


def _attribute_name(reader: _Reader, body: int, size: int) -> bytes | None:
    version, _flags, name_size = struct.unpack_from("<BBH", reader.data, body)
    name_at = body + {1: 8, 2: 8, 3: 9}.get(version, size)
    if name_at + name_size > body + size or name_size == 0:
        return None
    return bytes(reader.data[name_at:name_at + name_size - 1])


def _references(reader: _Reader, body: int, size: int) -> list[tuple[int, int, int]]:
    """The (length, collection, index) of each string of a variable-length string attribute message."""
    version, flags, name_size, type_size, space_size = struct.unpack_from("<BBHHH", reader.data, body)
    if version not in (1, 2, 3) or flags:
        raise Unsupported(f"attribute message version {version}, flags {flags}")
    pad = (lambda n: (n + 7) // 8 * 8) if version == 1 else (lambda n: n)
    type_at = body + (8 if version < 3 else 9) + pad(name_size)
    space_at = type_at + pad(type_size)
    data_at = space_at + pad(space_size)
    if type_size < 8 or reader.data[type_at] & 0x0F != 9 or reader.data[type_at + 1] & 0x0F != 1:
        raise Unsupported("not a variable-length string")
    count = _element_count(reader, space_at, space_size)
    if data_at + 16 * count > body + size:
        raise Unsupported("attribute data past its message")
    return [_REFERENCE.unpack_from(reader.data, data_at + 16 * i) for i in range(count)]


def _element_count(reader: _Reader, start: int, size: int) -> int:
    version, rank, flags = struct.unpack_from("<BBB", reader.data, start)
    dims_at = start + (8 if version == 1 else 4)
    if version not in (1, 2) or rank > 32 or dims_at + 8 * rank > start + size:
        raise Unsupported("attribute dataspace")
    if version == 2 and reader.data[start + 3] == 2:
        return 0                                                  # a null dataspace holds nothing
    count = 1
    for dim in struct.unpack_from(f"<{rank}Q", reader.data, dims_at):
        count *= dim
    return count


def _walk_collection(reader: _Reader, address: int) -> None:
    """Walk a collection's objects as libhdf5 does when it loads it; refuse one that would not end."""
    position = reader.signature(address, b"GCOL")
    size = reader.length(position + 8)
    if reader.data[position + 4] != 1 or size < MIN_COLLECTION:
        raise HeapRefused(f"global heap collection at {address:#x} has version {reader.data[position + 4]}, "
                          f"size {size}")
    reader.at(address, size)
    end, cursor = position + size, position + 16
    while cursor < end:
        if cursor + 16 > end:
            break                                                 # a tail too short for an object: free space
        index, _refs, _reserved, object_size = _OBJECT.unpack_from(reader.data, cursor)
        need = 16 + (object_size + 7) // 8 * 8 if index else object_size
        if need <= 0 or cursor + need > end:
            raise HeapRefused(f"global heap collection at {address:#x}: object {index} at {cursor - position} "
                              f"of {object_size} bytes {'never ends the walk' if need <= 0 else 'runs past it'}")
        cursor += need


__all__ = ["HeapRefused", "check_vlen_attribute"]
