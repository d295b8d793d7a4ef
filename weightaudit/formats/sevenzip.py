"""Member names of a 7z archive, read from its headers without a 7z library (bounded).

Layout (7-Zip's ``7zFormat.txt``): a 32-byte signature header points at the *next header*, either a plain
``Header`` (property 0x01) or an ``EncodedHeader`` (0x17) whose packed stream is the real header compressed with
LZMA or LZMA2 (the stdlib ``lzma`` module inflates both in raw mode, bounded by :data:`MAX_HEADER_BYTES`). The
header's ``FilesInfo`` holds the names (UTF-16LE). Members are not unpacked: :func:`list_7z_names` only tells the
loader which members exist (and which look like pickles), so its finding can name them.
"""

from __future__ import annotations

import codecs
import lzma
import struct
from typing import Any

from weightaudit.formats.mapped_file import FileProblem

__all__ = ["list_7z_names", "MAX_HEADER_BYTES", "MAX_7Z_FILES"]

MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_7Z_FILES = 1_000_000
MAX_FOLDERS = 100_000
K_END, K_HEADER, K_ARCHIVE_PROPS, K_ADDITIONAL, K_MAIN, K_FILES = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
K_PACK, K_UNPACK, K_SUBSTREAMS, K_SIZE, K_CRC, K_FOLDER, K_UNPACK_SIZE, K_NUM_UNPACK = 6, 7, 8, 9, 10, 11, 12, 13
K_NAME, K_DUMMY, K_ENCODED = 0x11, 0x19, 0x17
_UTF16 = codecs.lookup("utf-16-le")     # looked up at import: no codec import while a file is being read


class _Reader:
    """Cursor over header bytes with 7z's variable-length NUMBER."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise FileProblem("7z header ends early")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FileProblem("7z header ends early")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def number(self) -> int:
        first, mask, value = self.byte(), 0x80, 0
        for index in range(8):
            if not first & mask:
                return value | ((first & (mask - 1)) << (8 * index))
            value |= self.byte() << (8 * index)
            mask >>= 1
        return value

    def bits(self, count: int) -> list[bool]:
        out, current = [], 0
        for index in range(count):
            if index % 8 == 0:
                current = self.byte()
            out.append(bool(current & (0x80 >> (index % 8))))
        return out

    def bounded(self, value: int, cap: int, what: str) -> int:
        if value > cap:
            raise FileProblem(f"7z header declares {value} {what} (cap {cap})")
        return value


def list_7z_names(view: memoryview) -> list[str]:
    """The member names of a 7z archive; raises FileProblem when its headers cannot be read this way."""
    if len(view) < 32:
        raise FileProblem("7z signature header is truncated")
    offset, size = struct.unpack_from("<QQ", view, 12)
    start = 32 + offset
    if size > MAX_HEADER_BYTES or start + size > len(view) or start < 32:
        raise FileProblem("7z next header lies outside the file or is too large")
    header = bytes(view[start:start + size])
    for _ in range(4):                                # an encoded header may itself be encoded
        reader = _Reader(header)
        kind = reader.byte()
        if kind == K_HEADER:
            return _header_names(reader)
        if kind != K_ENCODED:
            raise FileProblem(f"7z next header has unknown type {kind:#x}")
        header = _decode_header(view, reader)
    raise FileProblem("7z headers are encoded too many times")


def _decode_header(view: memoryview, reader: _Reader) -> bytes:
    pack_pos, pack_sizes, folders = _streams_info(reader)
    if len(folders) != 1 or not pack_sizes:
        raise FileProblem("7z encoded header is not one packed stream")
    (coder_id, props), unpack_size = folders[0]
    begin = 32 + pack_pos
    if begin + pack_sizes[0] > len(view) or unpack_size > MAX_HEADER_BYTES:
        raise FileProblem("7z encoded header lies outside the file or is too large")
    packed = bytes(view[begin:begin + pack_sizes[0]])
    if coder_id == b"\x00":
        return packed[:unpack_size]
    try:
        decoder = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[_filter(coder_id, props)])
        out = decoder.decompress(packed, unpack_size)
    except lzma.LZMAError as exc:
        raise FileProblem(f"7z encoded header does not inflate ({exc})") from None
    return out


def _filter(coder_id: bytes, props: bytes) -> dict[str, Any]:
    if coder_id == b"\x03\x01\x01" and len(props) == 5:             # LZMA
        value, dict_size = props[0], struct.unpack("<I", props[1:5])[0]
        if value >= 9 * 5 * 5:
            raise FileProblem("7z LZMA properties are invalid")
        return {"id": lzma.FILTER_LZMA1, "dict_size": min(max(dict_size, 4096), MAX_HEADER_BYTES),
                "lc": value % 9, "lp": (value // 9) % 5, "pb": value // 45}
    if coder_id == b"\x21" and len(props) == 1 and props[0] <= 40:  # LZMA2
        bits = props[0]
        dict_size = 0xFFFFFFFF if bits == 40 else (2 | (bits & 1)) << (bits // 2 + 11)
        return {"id": lzma.FILTER_LZMA2, "dict_size": min(dict_size, MAX_HEADER_BYTES)}
    raise FileProblem(f"7z header coder {coder_id.hex()} is not LZMA/LZMA2 (encrypted or filtered header)")


def _streams_info(reader: _Reader) -> tuple[int, list[int], list[tuple[tuple[bytes, bytes], int]]]:
    """PackInfo, UnPackInfo and SubStreamsInfo: (pack position, pack sizes, [(first coder, unpack size)])."""
    pack_pos, pack_sizes, folders = 0, [], []
    while True:
        kind = reader.byte()
        if kind == K_END:
            return pack_pos, pack_sizes, folders
        if kind == K_PACK:
            pack_pos, pack_sizes = _pack_info(reader)
        elif kind == K_UNPACK:
            folders = _unpack_info(reader)
        elif kind == K_SUBSTREAMS:
            _skip_substreams(reader, len(folders))
        else:
            raise FileProblem(f"7z streams info has unknown property {kind:#x}")


def _pack_info(reader: _Reader) -> tuple[int, list[int]]:
    pack_pos = reader.number()
    count = reader.bounded(reader.number(), MAX_FOLDERS, "pack streams")
    sizes: list[int] = []
    while True:
        kind = reader.byte()
        if kind == K_END:
            return pack_pos, sizes
        if kind == K_SIZE:
            sizes = [reader.number() for _ in range(count)]
        elif kind == K_CRC:
            _skip_digests(reader, count)
        else:
            raise FileProblem(f"7z pack info has unknown property {kind:#x}")


def _unpack_info(reader: _Reader) -> list[tuple[tuple[bytes, bytes], int]]:
    if reader.byte() != K_FOLDER:
        raise FileProblem("7z unpack info lacks its folders")
    count = reader.bounded(reader.number(), MAX_FOLDERS, "folders")
    if reader.byte() != 0:
        raise FileProblem("7z folders stored outside the header are not supported")
    folders = [_folder(reader) for _ in range(count)]
    if reader.byte() != K_UNPACK_SIZE:
        raise FileProblem("7z unpack info lacks its sizes")
    result = []
    for first_coder, outputs in folders:
        sizes = [reader.number() for _ in range(outputs)]
        result.append((first_coder, sizes[-1] if sizes else 0))
    while True:
        kind = reader.byte()
        if kind == K_END:
            return result
        if kind == K_CRC:
            _skip_digests(reader, count)
        else:
            raise FileProblem(f"7z unpack info has unknown property {kind:#x}")


def _folder(reader: _Reader) -> tuple[tuple[bytes, bytes], int]:
    coders = reader.bounded(reader.number(), 64, "coders in a folder")
    first: tuple[bytes, bytes] | None = None
    total_in = total_out = 0
    for _ in range(coders):
        flags = reader.byte()
        coder_id = reader.take(flags & 0x0F)
        ins, outs = (reader.number(), reader.number()) if flags & 0x10 else (1, 1)
        props = reader.take(reader.number()) if flags & 0x20 else b""
        first = first or (coder_id, props)
        total_in, total_out = total_in + reader.bounded(ins, 64, "coder inputs"), total_out + reader.bounded(outs, 64, "coder outputs")
    for _ in range(max(total_out - 1, 0)):
        reader.number(), reader.number()                # bind pairs
    packed = total_in - max(total_out - 1, 0)
    if packed > 1:
        for _ in range(packed):
            reader.number()
    return first or (b"", b""), total_out


def _skip_substreams(reader: _Reader, folders: int) -> None:
    streams = [1] * folders
    while True:
        kind = reader.byte()
        if kind == K_END:
            return
        if kind == K_NUM_UNPACK:
            streams = [reader.bounded(reader.number(), MAX_7Z_FILES, "streams") for _ in range(folders)]
        elif kind == K_SIZE:
            for count in streams:
                for _ in range(max(count - 1, 0)):
                    reader.number()
        elif kind == K_CRC:
            _skip_digests(reader, sum(streams))
        else:
            raise FileProblem(f"7z substreams info has unknown property {kind:#x}")


def _skip_digests(reader: _Reader, count: int) -> None:
    defined = [True] * count if reader.byte() else reader.bits(count)
    reader.take(4 * sum(defined))


def _header_names(reader: _Reader) -> list[str]:
    while True:
        kind = reader.byte()
        if kind == K_END:
            return []
        if kind == K_ARCHIVE_PROPS:
            while reader.byte() != K_END:
                reader.take(reader.number())
        elif kind in (K_ADDITIONAL, K_MAIN):
            _streams_info(reader)
        elif kind == K_FILES:
            return _file_names(reader)
        else:
            raise FileProblem(f"7z header has unknown property {kind:#x}")


def _file_names(reader: _Reader) -> list[str]:
    count = reader.bounded(reader.number(), MAX_7Z_FILES, "files")
    while True:
        kind = reader.number()
        if kind == K_END:
            return [f"#{index}" for index in range(count)]
        body = reader.take(reader.number())
        if kind == K_NAME:
            if not body or body[0] != 0:
                raise FileProblem("7z names stored outside the header are not supported")
            names = _UTF16.decode(body[1:], "replace")[0].split("\x00")
            return names[:count]
