"""A pure-Python reader for TensorFlow TensorBundle checkpoints (``*.index`` + ``*.data-NNNNN-of-MMMMM``).

No TensorFlow and no ``protobuf`` package: the index is a LevelDB-style SSTable (footer, index block, data
blocks with prefix-compressed keys and restart points), and each value is a small protobuf decoded by our own
wire-format reader (only the fields we need). See research/formats.md §4.

Reading the index never touches the data shards. ``verify_entry_crc`` streams one entry's bytes from its shard
and checks TensorFlow's masked CRC32C (``google-crc32c``'s C extension, a dependency; a pure-Python table only
when the extension is unavailable).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from weightaudit.formats.base import iter_contiguous_chunks
from weightaudit.limits import DEFAULT_LIMITS, Limits, describe

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5
CRC_MASK_DELTA = 0xA282EAD8
CHECKPOINT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


class BundleError(ValueError):
    """The index cannot be read; ``kind`` says which integrity rule it is (``table``, ``proto``...)."""

    def __init__(self, message: str, kind: str = "table") -> None:
        super().__init__(message)
        self.kind = kind


class BundleLimit(BundleError):
    """A named limit (``limits.bundle_*`` in the user's policy) stopped the read: WA132, never a corrupt file."""

    def __init__(self, limit: str, message: str, limits: Limits) -> None:
        super().__init__(f"{message}, over {describe(limit, limits)}", "limit")
        self.limit = limit


# ---------------------------------------------------------------- protobuf wire format

def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; returns (value, next position). At most 10 bytes."""
    result = 0
    shift = 0
    for index in range(pos, min(pos + 10, len(buf))):
        byte = buf[index]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, index + 1
        shift += 7
    raise BundleError(f"bad varint at byte {pos}", "proto")


def as_int64(value: int) -> int:
    """A varint read as a two's-complement int64 (negative numbers arrive as 10-byte varints)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)``; LEN values are bytes, the others ints. Unknown fields are
    yielded too (callers skip what they do not need); groups (wire types 3/4) are rejected. One-byte keys
    and lengths (nearly all of them) are decoded inline: this loop runs once per protobuf field."""
    pos = 0
    end = len(buf)
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise BundleError("protobuf field number 0", "proto")
        if wire == 2:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = read_varint(buf, pos)
            if pos + length > end:
                raise BundleError("length-delimited field runs past its message", "proto")
            value = buf[pos:pos + length]
            pos += length
        elif wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise BundleError("truncated fixed64 field", "proto")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise BundleError("truncated fixed32 field", "proto")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}", "proto")
        yield number, wire, value


# ---------------------------------------------------------------- CRC32C (Castagnoli)

def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def _crc32c_python(crc: int, data: bytes | memoryview) -> int:
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _google_crc32c_extend(crc: int, data: bytes | memoryview) -> int:
    return _GOOGLE.extend(crc, data if isinstance(data, bytes) else bytes(data))


def _fast_crc32c() -> tuple[Callable[[int, bytes | memoryview], int], str]:
    """``google-crc32c``'s C extension (a dependency, ~GB/s); else the ``crc32c`` package; else pure Python
    (~15 MB/s, a fallback for platforms without a wheel)."""
    global _GOOGLE
    try:
        import google_crc32c  # type: ignore[import-not-found]
        if google_crc32c.implementation == "c":
            _GOOGLE = google_crc32c
            return _google_crc32c_extend, "google_crc32c"
    except ImportError:
        pass
    try:
        import crc32c as fast  # type: ignore[import-not-found]
        return (lambda crc, data: fast.crc32c(bytes(data), crc)), "crc32c"
    except ImportError:
        return _crc32c_python, "python"


_GOOGLE: Any = None
crc32c_extend, CRC32C_BACKEND = _fast_crc32c()


def crc32c(data: bytes | memoryview) -> int:
    return crc32c_extend(0, data)


def mask_crc(crc: int) -> int:
    """TensorFlow/LevelDB's CRC mask: rotate right by 15 and add a constant."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------- SSTable

@dataclass(frozen=True)
class BlockHandle:
    offset: int
    size: int


def _decode_handle(buf: bytes, pos: int) -> tuple[BlockHandle, int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return BlockHandle(offset, size), pos


def has_table_magic(tail: bytes) -> bool:
    """True when the last 8 bytes of a file are the SSTable magic (a TensorBundle index)."""
    return len(tail) == 8 and int.from_bytes(tail, "little") == TABLE_MAGIC


def _read_block(handle, file_size: int, block: BlockHandle, what: str, limits: Limits) -> bytes:
    if block.offset + block.size + BLOCK_TRAILER_BYTES > file_size:
        raise BundleError(f"{what} block [{block.offset}, +{block.size}) lies outside the index file")
    if block.size > limits.bundle_block_bytes:
        raise BundleLimit("bundle_block_bytes", f"{what} block at byte {block.offset} is {block.size:,} bytes", limits)
    handle.seek(block.offset)
    raw = handle.read(block.size + BLOCK_TRAILER_BYTES)
    contents, kind, stored = raw[:block.size], raw[block.size], int.from_bytes(raw[-4:], "little")
    if mask_crc(crc32c_extend(0, raw[:block.size + 1])) != stored:
        raise BundleError(f"{what} block at byte {block.offset}: CRC32C mismatch")
    if kind == 1:
        raise BundleError(f"{what} block at byte {block.offset} is snappy-compressed (not supported)", "unsupported")
    if kind != 0:
        raise BundleError(f"{what} block at byte {block.offset}: unknown compression type {kind}")
    return contents


def iter_block(contents: bytes, what: str = "data", key_budget: list[int] | None = None,
               limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[bytes, bytes]]:
    """Entries of one block: prefix-compressed keys, stopping at the restart array. Keys are capped at
    ``limits.bundle_key_bytes`` and, through ``key_budget`` (bytes left, shared by a whole table), in total
    (``limits.bundle_keys_total_bytes``): rebuilding a long shared prefix for millions of empty entries would
    otherwise copy terabytes."""
    budget = key_budget if key_budget is not None else [limits.bundle_keys_total_bytes]
    if len(contents) < 4:
        raise BundleError(f"{what} block too short")
    restarts = int.from_bytes(contents[-4:], "little")
    limit = len(contents) - 4 - 4 * restarts
    if restarts == 0 and len(contents) > 4 or limit < 0:
        raise BundleError(f"{what} block has a bad restart count ({restarts})")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = read_varint(contents, pos)
        unshared, pos = read_varint(contents, pos)
        value_len, pos = read_varint(contents, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise BundleError(f"{what} block entry at byte {pos} runs past the block")
        if shared + unshared > limits.bundle_key_bytes:
            raise BundleLimit("bundle_key_bytes", f"{what} block key of {shared + unshared:,} bytes", limits)
        budget[0] -= shared + unshared
        if budget[0] < 0:
            raise BundleLimit("bundle_keys_total_bytes", "keys of the table add up to more bytes", limits)
        key = key[:shared] + contents[pos:pos + unshared]
        pos += unshared
        yield key, contents[pos:pos + value_len]
        pos += value_len


def iter_table(path: Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable in key order. Reads one block at a time; never the whole file."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < FOOTER_BYTES:
            raise BundleError(f"index is {size} bytes, shorter than the 48-byte table footer")
        if size > limits.bundle_index_bytes:
            raise BundleLimit("bundle_index_bytes", f"index is {size:,} bytes", limits)
        handle.seek(size - FOOTER_BYTES)
        footer = handle.read(FOOTER_BYTES)
        if not has_table_magic(footer[-8:]):
            raise BundleError("table footer magic 0xdb4775248b80fb57 missing")
        _meta, pos = _decode_handle(footer, 0)
        index_handle, _ = _decode_handle(footer, pos)
        index_block = _read_block(handle, size, index_handle, "index", limits)
        previous = b""
        next_free = 0
        key_budget = [limits.bundle_keys_total_bytes]
        for separator, value in iter_block(index_block, "index", key_budget, limits):
            if separator < previous:
                raise BundleError("index block keys are out of order")
            previous = separator
            data_handle, _ = _decode_handle(value, 0)
            if data_handle.offset < next_free:     # TensorFlow writes blocks in order: overlap = re-reading
                raise BundleError(f"data block at byte {data_handle.offset} overlaps or precedes the previous one")
            next_free = data_handle.offset + data_handle.size + BLOCK_TRAILER_BYTES
            yield from iter_block(_read_block(handle, size, data_handle, "data", limits), "data", key_budget, limits)


# ---------------------------------------------------------------- bundle protos

# TF DataType enum -> weightaudit dtype code (model.DTYPE_BITS keys). Unmapped types keep "TF_<NAME>".
_TF_DTYPES: dict[int, str] = {
    1: "F32", 2: "F64", 3: "I32", 4: "U8", 5: "I16", 6: "I8", 7: "STRING", 8: "C64", 9: "I64", 10: "BOOL",
    11: "QI8", 12: "QU8", 13: "QI32", 14: "BF16", 17: "U16", 18: "C128", 19: "F16", 21: "OBJECT",
    22: "U32", 23: "U64", 24: "F8_E5M2", 25: "F8_E4M3", 26: "F8_E4M3FNUZ", 28: "F8_E5M2FNUZ", 33: "F4",
}
_TF_DTYPE_NAMES: dict[int, str] = {
    15: "QINT16", 16: "QUINT16", 20: "RESOURCE", 27: "FLOAT8_E4M3B11FNUZ", 29: "INT4", 30: "UINT4",
    31: "INT2", 32: "UINT2",
}


def dtype_code(tf_dtype: int) -> str:
    """Our dtype code for a TF DataType enum value (``_REF`` variants, +100, map like their base type)."""
    base = tf_dtype - 100 if tf_dtype > 100 else tf_dtype
    if base in _TF_DTYPES:
        return _TF_DTYPES[base]
    return "TF_" + _TF_DTYPE_NAMES.get(base, f"DTYPE_{tf_dtype}")


@dataclass(frozen=True)
class BundleHeader:
    num_shards: int = 1
    endianness: str = "little"
    producer: int = 0
    min_consumer: int = 0


@dataclass(frozen=True)
class BundleEntry:
    """One ``BundleEntryProto``. ``crc32c`` is the stored *masked* CRC (None when absent)."""

    key: str
    tf_dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    unknown_rank: bool = False
    slice_count: int = 0

    @property
    def dtype(self) -> str:
        return dtype_code(self.tf_dtype)


@dataclass(frozen=True)
class Bundle:
    header: BundleHeader
    entries: tuple[BundleEntry, ...]
    slice_keys: int = 0          # entries of partitioned variables (binary keys), not listed individually


def _decode_header(value: bytes) -> BundleHeader:
    fields = {"num_shards": 1, "endianness": 0, "producer": 0, "min_consumer": 0}
    for number, wire, payload in iter_fields(value):
        if number == 1 and wire == 0:
            fields["num_shards"] = as_int64(payload)  # type: ignore[arg-type]
        elif number == 2 and wire == 0:
            fields["endianness"] = payload  # type: ignore[assignment]
        elif number == 3 and wire == 2:
            for sub, sub_wire, sub_value in iter_fields(payload):  # type: ignore[arg-type]
                if sub == 1 and sub_wire == 0:
                    fields["producer"] = as_int64(sub_value)  # type: ignore[arg-type]
                elif sub == 2 and sub_wire == 0:
                    fields["min_consumer"] = as_int64(sub_value)  # type: ignore[arg-type]
    return BundleHeader(
        num_shards=int(fields["num_shards"]),
        endianness="big" if fields["endianness"] == 1 else "little",
        producer=int(fields["producer"]),
        min_consumer=int(fields["min_consumer"]),
    )


def decode_shape(value: bytes) -> tuple[tuple[int, ...], bool]:
    """A ``TensorShapeProto``: (dims, unknown_rank)."""
    dims: list[int] = []
    unknown = False
    for number, wire, payload in iter_fields(value):
        if number == 2 and wire == 2:
            size = 0
            for sub, sub_wire, sub_value in iter_fields(payload):  # type: ignore[arg-type]
                if sub == 1 and sub_wire == 0:
                    size = as_int64(sub_value)  # type: ignore[arg-type]
            dims.append(size)
        elif number == 3 and wire == 0:
            unknown = bool(payload)
    return tuple(dims), unknown


def _decode_entry(key: str, value: bytes) -> BundleEntry:
    dtype = shard = offset = size = 0
    shape: tuple[int, ...] = ()
    unknown = False
    crc: int | None = None
    slices = 0
    for number, wire, payload in iter_fields(value):
        if number == 1 and wire == 0:
            dtype = int(payload)  # type: ignore[arg-type]
        elif number == 2 and wire == 2:
            shape, unknown = decode_shape(payload)  # type: ignore[arg-type]
        elif number == 3 and wire == 0:
            shard = as_int64(payload)  # type: ignore[arg-type]
        elif number == 4 and wire == 0:
            offset = as_int64(payload)  # type: ignore[arg-type]
        elif number == 5 and wire == 0:
            size = as_int64(payload)  # type: ignore[arg-type]
        elif number == 6 and wire == 5:
            crc = int(payload)  # type: ignore[arg-type]
        elif number == 7 and wire == 2:
            slices += 1
    return BundleEntry(key, dtype, shape, shard, offset, size, crc, unknown, slices)


def read_bundle(index_path: Path, limits: Limits = DEFAULT_LIMITS) -> Bundle:
    """Decode a TensorBundle index: header (key ``""``) and one entry per variable. Raises BundleError
    (BundleLimit when one of the user's ``limits.bundle_*`` stopped it)."""
    header: BundleHeader | None = None
    entries: list[BundleEntry] = []
    slice_keys = 0
    for raw_key, value in iter_table(index_path, limits):
        if len(value) > limits.bundle_entry_bytes:
            raise BundleLimit("bundle_entry_bytes", f"entry {raw_key[:40]!r} holds a {len(value):,}-byte record "
                              "(TensorFlow writes a few hundred bytes)", limits)
        if raw_key == b"":
            header = _decode_header(value)
            continue
        if raw_key[:1] == b"\x00":
            slice_keys += 1       # EncodeTensorNameSlice keys of partitioned variables
            continue
        try:
            key = raw_key.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"entry key {raw_key[:40]!r} is not UTF-8", "proto") from None
        entries.append(_decode_entry(key, value))
    if header is None:
        raise BundleError("no BundleHeaderProto (empty key) in the index", "proto")
    return Bundle(header, tuple(entries), slice_keys)


def data_file_name(prefix_name: str, shard: int, num_shards: int) -> str:
    """``prefix.data-%05d-of-%05d`` (tensor_bundle naming.cc)."""
    return f"{prefix_name}.data-{shard:05d}-of-{num_shards:05d}"


def string_entry_crc(path: Path, entry: BundleEntry, count: int, chunk_bytes: int) -> int:
    """Masked CRC of a DT_STRING entry: lengths re-encoded as uint32 (uint64 above 4 GiB), the stored length
    checksum, then the string bytes (tensor_bundle.cc WriteStringTensor)."""
    with open(path, "rb") as handle:
        handle.seek(entry.offset)
        head = handle.read(min(entry.size, 10 * count + 4))
    pos = 0
    lengths = []
    for _ in range(count):
        length, pos = read_varint(head, pos)
        lengths.append(length)
    crc = 0
    for length in lengths:
        crc = crc32c_extend(crc, struct.pack("<Q" if length > 0xFFFFFFFF else "<I", length))
    crc = crc32c_extend(crc, head[pos:pos + 4])
    for chunk in iter_contiguous_chunks(path, entry.offset + pos + 4, entry.offset + entry.size, chunk_bytes):
        crc = crc32c_extend(crc, chunk)
    return mask_crc(crc)


def entry_crc(path: Path, entry: BundleEntry, chunk_bytes: int = 16 * 1024 * 1024) -> int:
    """The masked CRC32C of an entry's bytes as TensorFlow computes it, streamed from its shard."""
    if entry.dtype == "STRING":
        count = 1
        for dim in entry.shape:
            count *= dim
        return string_entry_crc(path, entry, count, chunk_bytes)
    crc = 0
    for chunk in iter_contiguous_chunks(path, entry.offset, entry.offset + entry.size, chunk_bytes):
        crc = crc32c_extend(crc, chunk)
    return mask_crc(crc)
