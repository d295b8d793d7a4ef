"""ONNX TensorProto: parse one tensor's fields, check its data against dims and data_type, and say where its
values are (``Location``) — raw bytes in the model file, packed typed fields, or an external data file that
must stay inside the model's folder.

onnx.load / numpy_helper.to_array semantics followed here: raw_data wins over the typed fields; scalar fields
are last-wins, repeated fields concatenate (packed or not); external data is read from ``offset`` for
``length`` bytes, or to the end of the file when no length is given; segments are not supported.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from weightaudit.formats.onnx_proto import (
    FIXED_FIELDS, LEN, ONNX_TYPES, STRING_DATA, OnnxType, WireError, as_int64, count_varints, field_values,
    fields, raw_nbytes, read_varint, text,
)
from weightaudit.rules import onnx_rules as O

EXTERNAL = 1          # TensorProto.DataLocation.EXTERNAL
MAX_RANK = 64         # numpy's NPY_MAXDIMS: onnx.numpy_helper cannot build an array of higher rank
TYPED_FIELDS = (4, 5, 6, 7, 10, 11)


@dataclass(frozen=True)
class Location:
    """Where a tensor's values are. ``kind``: "bytes" (little-endian values in ``ranges`` of ``source``, or of
    the model file when ``source`` is None), "varint" (packed varints in ``ranges`` of the model file, each
    value becoming one ``element``), or "none" (no statistics: strings, unpacked or unreadable data)."""

    kind: str
    ranges: tuple[tuple[int, int], ...] = ()
    source: str | None = None
    element: str | None = None


NO_DATA = Location("none")


@dataclass
class TensorRecord:
    """The fields of one TensorProto as stored."""

    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    raw: tuple[int, int] | None = None
    typed: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)   # field -> (wire, a, b)
    external: dict[str, str] = field(default_factory=dict)
    data_location: int = 0
    segment: bool = False


@dataclass
class Resolved:
    """What the loader needs from one tensor: its dtype code, shape, location, byte range, problems."""

    dtype: str
    shape: tuple[int, ...]
    location: Location
    data_offsets: tuple[int, int] | None = None
    problems: list[tuple[Any, str]] = field(default_factory=list)   # (rule, message); any problem = unverified
    note: str | None = None                                        # why there are no statistics


def parse_tensor(buf: Any, begin: int, end: int, walk_fields: Any = fields) -> TensorRecord:
    record = TensorRecord()
    for number, wire, a, b in walk_fields(buf, begin, end):
        if number == 1:
            read_dims(buf, wire, a, b, record.dims)
        elif number == 2 and wire == 0:
            record.data_type = a
        elif number == 3 and wire == LEN:
            record.segment = True
        elif number in TYPED_FIELDS:
            record.typed.setdefault(number, []).append((wire, a, b))
        elif number == 8 and wire == LEN:
            record.name = text(buf, a, b, keep=1 << 20)
        elif number == 9 and wire == LEN:
            record.raw = (a, b)
        elif number == 13 and wire == LEN:
            key, value = _string_pair(buf, a, b)
            record.external[key] = value
        elif number == 14 and wire == 0:
            record.data_location = a
    return record


def read_dims(buf: Any, wire: int, a: int, b: int, out: list[int]) -> None:
    if wire == 0:
        out.append(as_int64(a))
    elif wire == LEN:
        pos = a
        while pos < b and len(out) <= MAX_RANK:
            value, pos = read_varint(buf, pos, b)
            out.append(as_int64(value))
    if len(out) > MAX_RANK:
        raise WireError(f"a tensor declares more than {MAX_RANK} dimensions (numpy, and so onnx.numpy_helper, "
                        "cannot hold it)")


def _string_pair(buf: Any, begin: int, end: int) -> tuple[str, str]:
    key = value = ""
    for number, wire, a, b in fields(buf, begin, end):
        if wire == LEN and number == 1:
            key = text(buf, a, b)
        elif wire == LEN and number == 2:
            value = text(buf, a, b)
    return key, value


def resolve(buf: Any, record: TensorRecord, folder: Path) -> Resolved | None:
    """Check a parsed tensor; None (with nothing to inventory) only when its data type is unknown."""
    shape = tuple(record.dims)
    onnx_type = ONNX_TYPES.get(record.data_type)
    if onnx_type is None:
        return None
    out = Resolved(onnx_type.code, shape, NO_DATA)
    if any(d < 0 for d in shape):
        out.problems.append((O.DATA_MISMATCH, f"has a negative dimension (dims = {list(shape)})"))
        return out
    count = math.prod(shape)
    if record.segment:
        out.problems.append((O.DATA_MISMATCH, "is stored in segments, which onnx.load does not read"))
    elif record.data_location == EXTERNAL:
        _external(record, onnx_type, count, folder, out)
    elif record.raw is not None:
        _raw(record, onnx_type, count, out)
    else:
        _typed(buf, record, onnx_type, count, out)
    return out


def _raw(record: TensorRecord, onnx_type: OnnxType, count: int, out: Resolved) -> None:
    begin, end = record.raw  # type: ignore[misc]
    if any(record.typed.values()):
        out.problems.append((O.DATA_MISMATCH, "holds its values twice, in raw_data and in a typed field "
                             "(onnx.load uses raw_data; other readers may not)"))
    expected = raw_nbytes(onnx_type, count)
    if expected is None:
        out.note = f"raw_data of {onnx_type.code} is not decoded"
        return
    if end - begin != expected:
        out.problems.append((O.DATA_MISMATCH, f"has {end - begin:,} bytes of raw_data but {onnx_type.code} "
                             f"{list(out.shape)} needs {expected:,}"))
        return
    out.location, out.data_offsets = Location("bytes", ((begin, end),)), (begin, end)


def _typed(buf: Any, record: TensorRecord, onnx_type: OnnxType, count: int, out: Resolved) -> None:
    present = [number for number, entries in record.typed.items() if entries]
    wrong = [number for number in present if number != onnx_type.field]
    if wrong:
        out.problems.append((O.DATA_MISMATCH, f"{onnx_type.code} values are in typed field(s) {wrong}, not in "
                             f"field {onnx_type.field} where onnx reads them"))
        return
    entries = record.typed.get(onnx_type.field, [])
    expected = field_values(onnx_type, count)
    found, packed = _count_values(buf, onnx_type.field, entries)
    if expected is not None and found != expected:
        out.problems.append((O.DATA_MISMATCH, f"holds {found:,} values in field {onnx_type.field} but "
                             f"{onnx_type.code} {list(out.shape)} needs {expected:,}"))
        return
    if onnx_type.field == STRING_DATA or onnx_type.element is None:
        out.note = "no statistics for this data type"
    elif not packed:
        out.note = "typed values are not packed; no statistics"
    elif onnx_type.field in FIXED_FIELDS:
        ranges = tuple((a, b) for _, a, b in entries)
        out.location = Location("bytes", ranges)
        out.data_offsets = ranges[0] if len(ranges) == 1 else None
    else:
        out.location = Location("varint", tuple((a, b) for _, a, b in entries), element=onnx_type.element)


def _count_values(buf: Any, number: int, entries: list[tuple[int, int, int]]) -> tuple[int, bool]:
    """(values held, all of them packed) of one typed field."""
    total, packed = 0, True
    for wire, a, b in entries:
        if number == STRING_DATA:
            total += 1
        elif wire != LEN:
            total, packed = total + 1, False
        elif number in FIXED_FIELDS:
            if (b - a) % FIXED_FIELDS[number]:
                raise WireError(f"packed field {number} of {b - a} bytes is not whole values")
            total += (b - a) // FIXED_FIELDS[number]
        else:
            if b > a and buf[b - 1] >= 0x80:
                raise WireError(f"packed field {number} ends inside a varint")
            total += count_varints(buf, a, b)
    return total, packed


# ------------------------------------------------------------------ external data

def _external(record: TensorRecord, onnx_type: OnnxType, count: int, folder: Path, out: Resolved) -> None:
    info = record.external
    location = info.get("location", "")
    if record.raw is not None or any(record.typed.values()):
        out.problems.append((O.DATA_MISMATCH, "is marked EXTERNAL but also holds data in the model file"))
    try:
        offset = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        out.problems.append((O.DATA_MISMATCH, f"external data offset/length are not integers "
                             f"({info.get('offset')!r}, {info.get('length')!r})"))
        return
    if not location:
        out.problems.append((O.EXTERNAL_MISSING, "is marked EXTERNAL but names no location"))
        return
    target, problem = resolve_location(folder, location)
    if target is None:
        out.problems.append(problem)  # type: ignore[arg-type]
        return
    _external_range(target, location, offset, length, raw_nbytes(onnx_type, count), out)


def _external_range(target: Path, location: str, offset: int, length: int | None, expected: int | None,
                    out: Resolved) -> None:
    size = target.stat().st_size
    end = size if length is None else offset + length
    if offset < 0 or (length is not None and length < 0) or end > size:
        out.problems.append((O.EXTERNAL_MISSING, f"external data {location!r} bytes {offset:,}..{end:,} lie "
                             f"outside the {size:,}-byte file"))
        return
    if expected is None:
        out.note = "external data of this data type is not decoded"
        return
    if end - offset != expected:
        out.problems.append((O.DATA_MISMATCH, f"external data {location!r} holds {end - offset:,} bytes "
                             f"(offset {offset:,}, length {length}) but {out.dtype} {list(out.shape)} needs "
                             f"{expected:,}"))
        return
    out.location = Location("bytes", ((offset, end),), source=str(target))


def resolve_location(folder: Path, location: str) -> tuple[Path | None, tuple[Any, str] | None]:
    """The external file a location names, if it stays inside ``folder`` and is a regular file."""
    shown = repr(location[:200])
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if "\0" in location or posix.is_absolute() or windows.is_absolute() or windows.drive or location.startswith("\\"):
        return None, (O.EXTERNAL_ESCAPES, f"external data location {shown} is an absolute path; not read")
    if ".." in posix.parts or ".." in windows.parts:
        return None, (O.EXTERNAL_ESCAPES, f"external data location {shown} climbs out with '..'; not read")
    candidate = folder / location
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(candidate)
    if os.path.commonpath([real_folder, real]) != real_folder:
        return None, (O.EXTERNAL_ESCAPES, f"external data location {shown} is a link that leads outside the "
                      "model's folder; not read")
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return None, (O.EXTERNAL_MISSING, f"external data file {shown} does not exist")
    if not stat.S_ISREG(mode):
        return None, (O.EXTERNAL_MISSING, f"external data {shown} is not a regular file; not opened")
    return Path(real), None
