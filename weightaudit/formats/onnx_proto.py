"""The pieces of onnx.proto the ONNX loader needs: a wire-format field reader that keeps absolute offsets,
the TensorProto data types, and a vectorised decoder for packed varint fields (int32_data, int64_data,
uint64_data) that streams in bounded chunks.

Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
SparseTensorProto, FunctionProto, TrainingInfoProto, OperatorSetIdProto, StringStringEntryProto).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


class WireError(Exception):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """One base-128 varint at ``pos`` (at most 10 bytes, not past ``end``); returns (value, next position)."""
    result = shift = 0
    for index in range(pos, min(pos + 10, end)):
        byte = buf[index]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, index + 1
        shift += 7
    raise WireError(f"bad varint at byte {pos:,}")


class FieldBudgetExceeded(Exception):
    """More protobuf fields than the walk's budget allows (limits.graph_protobuf_fields)."""


def fields(buf: Any, begin: int, end: int, budget: list[int] | None = None) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field number, wire type, a, b)`` for the message in ``buf[begin:end]``.

    LEN fields give the absolute payload range ``[a, b)``; VARINT, FIXED32 and FIXED64 give the value in ``a``
    and the position after it in ``b``. Groups and unknown wire types raise WireError. ``budget`` (a one-item
    list shared by a whole walk) is decremented per field; FieldBudgetExceeded when it goes negative. One-byte
    keys, lengths and varints (nearly all of them) are decoded inline: this loop runs once per field."""
    pos = begin
    while pos < end:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise FieldBudgetExceeded()
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos:,}")
        if wire == LEN:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {number} at byte {pos:,} declares {length:,} bytes, past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == VARINT:
            value = buf[pos] if pos < end else 0x80
            if value < 0x80:
                after = pos + 1
            else:
                value, after = read_varint(buf, pos, end)
            yield number, wire, value, after
            pos = after
        elif wire in (FIXED32, FIXED64):
            width = 4 if wire == FIXED32 else 8
            if pos + width > end:
                raise WireError(f"field {number} at byte {pos:,} is cut off")
            yield number, wire, int.from_bytes(buf[pos:pos + width], "little"), pos + width
            pos += width
        else:
            raise WireError(f"unsupported wire type {wire} (field {number}) at byte {pos:,}")


def as_int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def text(buf: Any, begin: int, end: int, keep: int = 4096) -> str:
    return bytes(buf[begin:min(end, begin + keep * 4)]).decode("utf-8", errors="replace")[:keep]


@dataclass(frozen=True)
class OnnxType:
    """A TensorProto.DataType: our dtype code, bits per element, and the typed field that may hold its values
    (field number, and the little-endian numpy type each value of that field becomes; None = not decodable)."""

    code: str
    bits: int            # 0 for STRING
    field: int           # 4 float_data, 5 int32_data, 6 string_data, 7 int64_data, 10 double_data, 11 uint64_data
    element: str | None  # numpy dtype of one decoded value of ``field`` (sub-byte types: one packed byte)


FLOAT_DATA, INT32_DATA, STRING_DATA, INT64_DATA, DOUBLE_DATA, UINT64_DATA = 4, 5, 6, 7, 10, 11
ONNX_TYPES: Mapping[int, OnnxType] = {
    1: OnnxType("F32", 32, FLOAT_DATA, "<f4"), 2: OnnxType("U8", 8, INT32_DATA, "<u1"),
    3: OnnxType("I8", 8, INT32_DATA, "<u1"), 4: OnnxType("U16", 16, INT32_DATA, "<u2"),
    5: OnnxType("I16", 16, INT32_DATA, "<u2"), 6: OnnxType("I32", 32, INT32_DATA, "<u4"),
    7: OnnxType("I64", 64, INT64_DATA, "<u8"), 8: OnnxType("STRING", 0, STRING_DATA, None),
    9: OnnxType("BOOL", 8, INT32_DATA, "<u1"), 10: OnnxType("F16", 16, INT32_DATA, "<u2"),
    11: OnnxType("F64", 64, DOUBLE_DATA, "<f8"), 12: OnnxType("U32", 32, UINT64_DATA, "<u4"),
    13: OnnxType("U64", 64, UINT64_DATA, "<u8"), 14: OnnxType("C64", 64, FLOAT_DATA, "<f4"),
    15: OnnxType("C128", 128, DOUBLE_DATA, "<f8"), 16: OnnxType("BF16", 16, INT32_DATA, "<u2"),
    17: OnnxType("F8_E4M3", 8, INT32_DATA, "<u1"), 18: OnnxType("F8_E4M3FNUZ", 8, INT32_DATA, "<u1"),
    19: OnnxType("F8_E5M2", 8, INT32_DATA, "<u1"), 20: OnnxType("F8_E5M2FNUZ", 8, INT32_DATA, "<u1"),
    21: OnnxType("U4", 4, INT32_DATA, "<u1"), 22: OnnxType("I4", 4, INT32_DATA, "<u1"),
    23: OnnxType("F4", 4, INT32_DATA, "<u1"), 24: OnnxType("F8_E8M0", 8, INT32_DATA, "<u1"),
    25: OnnxType("U2", 2, INT32_DATA, "<u1"), 26: OnnxType("I2", 2, INT32_DATA, "<u1"),
    27: OnnxType("F6_E2M3", 6, INT32_DATA, None), 28: OnnxType("F6_E3M2", 6, INT32_DATA, None),
}
# Values per typed-field entry: complex numbers take two floats; packed sub-byte types fill whole bytes.
FIXED_FIELDS = {FLOAT_DATA: 4, DOUBLE_DATA: 8}


def raw_nbytes(onnx_type: OnnxType, count: int) -> int | None:
    """Bytes of ``count`` elements in raw_data (sub-byte types packed, rounded up); None when unknown."""
    if onnx_type.bits == 0 or onnx_type.bits == 6:
        return None
    return (count * onnx_type.bits + 7) // 8


def field_values(onnx_type: OnnxType, count: int) -> int | None:
    """How many typed-field values hold ``count`` elements (packed bytes for sub-byte types)."""
    if onnx_type.bits == 0:
        return count
    if onnx_type.bits == 6:
        return count          # onnx.helper stores one FLOAT6 element per int32_data value
    if onnx_type.bits < 8:
        return (count * onnx_type.bits + 7) // 8
    return count * 2 if onnx_type.code in ("C64", "C128") else count


# ------------------------------------------------------------------ packed varints, vectorised and bounded

VARINT_CHUNK = 1024 * 1024      # payload bytes decoded at once (~40 bytes of numpy temporaries each)


def count_varints(buf: Any, begin: int, end: int, chunk: int = VARINT_CHUNK) -> int:
    """Values in a packed varint payload (bytes without the continuation bit), touching it chunk by chunk."""
    total = 0
    for start in range(begin, end, chunk):
        data = np.frombuffer(buf[start:min(start + chunk, end)], dtype=np.uint8)
        total += int(np.count_nonzero(data < 0x80))
    return total


def decode_varints(data: np.ndarray) -> np.ndarray:
    """uint64 values of a run of *complete* varints (``data`` ends on a byte without the continuation bit)."""
    if data.size == 0:
        return np.zeros(0, np.uint64)
    last = data < 0x80
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(starts.size), ends - starts + 1)
    position = np.arange(data.size) - starts[group]
    if position.max() > 9:
        raise WireError("a varint longer than 10 bytes")
    shifted = (data & 0x7F).astype(np.uint64) << (np.uint64(7) * position.astype(np.uint64))
    return np.bitwise_or.reduceat(shifted, starts)


def iter_varint_values(buf: Any, begin: int, end: int, chunk: int = VARINT_CHUNK) -> Iterator[np.ndarray]:
    """Decode a packed varint payload in bounded chunks, each cut after a complete varint."""
    pos = begin
    while pos < end:
        stop = min(pos + chunk, end)
        data = np.frombuffer(buf[pos:stop], dtype=np.uint8)
        if stop < end:
            complete = np.flatnonzero(data < 0x80)
            if complete.size == 0:
                raise WireError(f"no complete varint in {len(data):,} bytes at byte {pos:,}")
            data = data[:complete[-1] + 1]
        elif data.size and data[-1] >= 0x80:
            raise WireError("packed varint field ends inside a value")
        yield decode_varints(data)
        pos += data.size
