"""Zip archives read the way torch's miniz reader sees them, straight from a mapped file.

Names come from the central directory, data offsets from each member's *local* header (the two can disagree:
:attr:`ZipEntry.local_name` keeps the local copy), ZIP64 sizes and offsets are honoured, and when a name appears
twice the *last* copy wins (:func:`entries_by_name`). :func:`member_data` gives a member's bytes: a zero-copy slice
when stored, a bounded inflate when deflated. Problems raise :class:`~weightaudit.formats.mapped_file.FileProblem`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from weightaudit.formats.mapped_file import FileLimit, FileProblem
from weightaudit.limits import DEFAULT_LIMITS

__all__ = ["ZIP_MAGIC", "MAX_MEMBER_SCAN", "ZipEntry", "read_zip_entries", "read_zip_names", "member_data",
           "entries_by_name",
           "iter_member_range"]

ZIP_MAGIC = b"PK\x03\x04"
MAX_ZIP_ENTRIES = DEFAULT_LIMITS.zip_members      # the user's policy sets limits.zip_members
MAX_MEMBER_SCAN = DEFAULT_LIMITS.zip_member_bytes   # the user's policy sets limits.zip_member_bytes


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One central-directory entry joined to its local header."""

    name: str
    local_name: str
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int


_CD_ENTRY = struct.Struct("<4s4xHH4xIIIHHH8xI")     # signature, flags, method, crc, sizes, name/extra/comment, offset
_LOCAL_HEADER = struct.Struct("<4s2xH18xHH")          # signature, flags, name and extra lengths


def read_zip_entries(mm: memoryview | bytes, max_members: int = MAX_ZIP_ENTRIES) -> list[ZipEntry]:
    """All entries in central-directory order (duplicates kept). Raises FileProblem when unreadable.

    One pass over the central directory with precompiled structs, one local-header read per entry: linear in
    the member count, a few hundred bytes of Python objects per entry. More than ``max_members`` entries
    (``limits.zip_members``) raise FileLimit."""
    size = len(mm)
    count, cd_offset = _central_directory(mm, max_members)
    entries, pos = [], cd_offset
    unpack = _CD_ENTRY.unpack_from
    for _ in range(count):
        if pos + 46 > size:
            raise FileProblem(f"bad central directory entry at byte {pos}")
        sig, flags, method, crc, csize, usize, nlen, elen, clen, offset = unpack(mm, pos)
        if sig != b"PK\x01\x02":
            raise FileProblem(f"bad central directory entry at byte {pos}")
        name = bytes(mm[pos + 46:pos + 46 + nlen]).decode("utf-8", "replace")
        if elen and (usize == 0xFFFFFFFF or csize == 0xFFFFFFFF or offset == 0xFFFFFFFF):
            extra = bytes(mm[pos + 46 + nlen:pos + 46 + nlen + elen])
            usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        entries.append(_join_local_header(mm, name, flags, method, crc, csize, usize, offset))
        pos += 46 + nlen + elen + clen
    return entries


def _central_directory(mm: memoryview | bytes, max_members: int = MAX_ZIP_ENTRIES) -> tuple[int, int]:
    """(entry count, offset) of the central directory, from the (ZIP64) end-of-central-directory record."""
    size = len(mm)
    tail_start = max(0, size - 65_557)
    eocd = bytes(mm[tail_start:]).rfind(b"PK\x05\x06")
    if eocd < 0:
        raise FileProblem("zip end-of-central-directory record not found")
    eocd += tail_start
    count, cd_size, cd_offset = struct.unpack_from("<HII", mm, eocd + 10)
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        count, cd_size, cd_offset = _zip64_directory(mm, eocd)
    if cd_offset + cd_size > size:
        raise FileProblem("zip central directory lies outside the file or is too large")
    if count > max_members:
        raise FileLimit("zip_members", f"zip archive declares {count:,} members, more than "
                                       f"limits.zip_members = {max_members:,}: not read")
    return count, cd_offset


def read_zip_names(mm: memoryview | bytes, limit: int = MAX_ZIP_ENTRIES) -> list[str]:
    """Member names from the central directory only (no local headers): what sniffing needs, at a third of
    :func:`read_zip_entries`' cost. Raises FileProblem when the directory is unreadable."""
    size = len(mm)
    count, cd_offset = _central_directory(mm)
    names, pos = [], cd_offset
    for _ in range(min(count, limit)):
        if pos + 46 > size or bytes(mm[pos:pos + 4]) != b"PK\x01\x02":
            raise FileProblem(f"bad central directory entry at byte {pos}")
        nlen, elen, clen = struct.unpack_from("<HHH", mm, pos + 28)
        names.append(bytes(mm[pos + 46:pos + 46 + nlen]).decode("utf-8", "replace"))
        pos += 46 + nlen + elen + clen
    return names


def _zip64_directory(mm: memoryview | bytes, eocd: int) -> tuple[int, int, int]:
    locator = eocd - 20
    if locator < 0 or bytes(mm[locator:locator + 4]) != b"PK\x06\x07":
        raise FileProblem("zip64 locator missing")
    record = struct.unpack_from("<Q", mm, locator + 8)[0]
    if record + 56 > len(mm) or bytes(mm[record:record + 4]) != b"PK\x06\x06":
        raise FileProblem("zip64 end-of-central-directory record missing")
    count, cd_size, cd_offset = struct.unpack_from("<QQQ", mm, record + 32)
    return count, cd_size, cd_offset


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body, i = extra[pos + 4:pos + 4 + length], 0
            if usize == 0xFFFFFFFF and i + 8 <= len(body):
                usize, i = struct.unpack_from("<Q", body, i)[0], i + 8
            if csize == 0xFFFFFFFF and i + 8 <= len(body):
                csize, i = struct.unpack_from("<Q", body, i)[0], i + 8
            if offset == 0xFFFFFFFF and i + 8 <= len(body):
                offset = struct.unpack_from("<Q", body, i)[0]
        pos += 4 + length
    return usize, csize, offset


def _join_local_header(mm: memoryview | bytes, name: str, flags: int, method: int, crc: int, csize: int,
                       usize: int, offset: int) -> ZipEntry:
    if offset + 30 > len(mm):
        raise FileProblem(f"member {name!r}: local header missing at byte {offset}")
    sig, local_flags, nlen, elen = _LOCAL_HEADER.unpack_from(mm, offset)
    if sig != ZIP_MAGIC:
        raise FileProblem(f"member {name!r}: local header missing at byte {offset}")
    flags |= local_flags                      # either copy of the flags can make zipfile refuse
    local_name = bytes(mm[offset + 30:offset + 30 + nlen]).decode("utf-8", "replace")
    local_name = name if local_name == name else local_name     # one string object when they agree
    data_offset = offset + 30 + nlen + elen
    if data_offset + csize > len(mm):
        raise FileProblem(f"member {name!r}: data extends past the end of the file")
    return ZipEntry(name, local_name, flags, method, crc, csize, usize, offset, data_offset)


def member_data(mm: memoryview, entry: ZipEntry, cap: int = MAX_MEMBER_SCAN, limit: str | None = None) -> memoryview:
    """A member's (decompressed) bytes: a zero-copy slice when stored; bounded inflate when deflated. Past ``cap``:
    FileProblem, or FileLimit naming ``limit`` when the cap is that policy limit (``limits.<limit>``)."""
    raw = mm[entry.data_offset:entry.data_offset + entry.compressed_size]
    if entry.method == 0:
        return raw
    if entry.method != 8:
        raise FileProblem(f"member {entry.name!r}: unsupported compression method {entry.method}")
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(raw, cap + 1)
    except zlib.error as exc:
        raise FileProblem(f"member {entry.name!r}: corrupt deflate data ({exc})") from None
    if len(out) > cap and limit is not None:
        raise FileLimit(limit, f"member {entry.name!r} decompresses to more than limits.{limit} = {cap:,} bytes: "
                               "not scanned")
    if len(out) > cap:
        raise FileProblem(f"member {entry.name!r}: decompresses to more than {cap} bytes")
    return memoryview(out)


def entries_by_name(entries: list[ZipEntry]) -> tuple[dict[str, ZipEntry], list[str]]:
    """Index entries by name, the last of duplicate names winning (as torch reads them); the duplicated names."""
    table: dict[str, ZipEntry] = {}
    duplicates: list[str] = []
    for entry in entries:
        if entry.name in table:
            duplicates.append(entry.name)
        table[entry.name] = entry
    return table, sorted(set(duplicates))


INFLATE_INPUT = 1024 * 1024


def iter_member_range(path: Path, entry: ZipEntry, begin: int, end: int, chunk_bytes: int) -> Iterator[memoryview]:
    """Bytes ``[begin, end)`` of a member's uncompressed data, inflated step by step: memory stays at about
    ``chunk_bytes`` + 1 MiB whatever the member's size (stored members are read straight from the file)."""
    if entry.method not in (0, 8):
        raise FileProblem(f"member {entry.name!r}: unsupported compression method {entry.method}")
    inflater = zlib.decompressobj(-15) if entry.method == 8 else None
    position, remaining_input = 0, entry.compressed_size
    with open(path, "rb") as handle:
        handle.seek(entry.data_offset)
        pending = b""
        while position < end:
            if not pending:
                if remaining_input <= 0:
                    raise FileProblem(f"member {entry.name!r}: data ends at byte {position}, before {end}")
                pending = handle.read(min(INFLATE_INPUT, remaining_input))
                if not pending:
                    raise FileProblem(f"member {entry.name!r}: file ends inside the member")
                remaining_input -= len(pending)
            if inflater is None:
                out, pending = pending, b""
            else:
                skipping = min(begin - position, INFLATE_INPUT) if position < begin else 0
                try:
                    out = inflater.decompress(pending, max(chunk_bytes, skipping))
                except zlib.error as exc:
                    raise FileProblem(f"member {entry.name!r}: corrupt deflate data ({exc})") from None
                pending = inflater.unconsumed_tail
            lo, hi = max(begin - position, 0), min(end - position, len(out))
            if lo < hi:
                yield memoryview(out)[lo:hi]
            position += len(out)
