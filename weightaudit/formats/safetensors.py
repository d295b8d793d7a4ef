"""safetensors: our own strict header parser (research/formats.md §1).

Reads only the 8-byte length and the JSON header; tensor bytes are handed out later as zero-copy views or
streamed chunks. Enforces every rule of the reference crate plus the ones it forgets (duplicate keys,
unknown fields). Facts: ``metadata`` (the ``__metadata__`` map), ``header_bytes`` (N), ``data_start`` (8+N).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightaudit.formats.base import LFS_MAGIC, LoadOptions, Probe
from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import DTYPE_BITS, FileStatus, Finding, LoadedFile, TensorInfo, element_count
from weightaudit.rules import integrity as R

MAX_HEADER = 100_000_000
JSON_WHITESPACE = b" \t\r\n"
SAFETENSORS_DTYPES = frozenset({
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
    "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64",
})
TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
KNOWN_FORMATS = frozenset({"pt", "tf", "flax", "mlx", "np", "numpy", "paddle", "jax"})
U64_MAX = 2**64 - 1


class HeaderError(Exception):
    """The header cannot be parsed at all; carries the rule it breaks."""

    def __init__(self, rule: Any, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass
class _Entry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int
    usable: bool = True   # False when dtype or shape is invalid (offsets still take part in the layout check)


@dataclass
class _Parse:
    rel: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, rule: Any, message: str, tensor: str | None = None) -> None:
        self.findings.append(rule.finding(self.rel, message, tensor=tensor))


def _reject_duplicates(state: _Parse):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        fast = dict(pairs)                 # C speed; the loop below only runs when a key repeats
        if len(fast) == len(pairs):
            return fast
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                state.add(R.DUPLICATE_KEY, f"key {key!r} appears more than once in the header "
                          "(JSON parsers keep the last one silently)", tensor=key)
            seen[key] = value
        return seen
    return hook


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    # int() refuses integers over 4,300 digits (ValueError); the reference loader refuses any beyond u64.
    return f"an integer too long to read ({str(exc).splitlines()[0]})"


def read_header(handle: Any, size: int, state: _Parse) -> tuple[dict[str, Any], int]:
    """Read and decode the header; returns (header object, N). Raises HeaderError when unusable."""
    if size < 8:
        raise HeaderError(R.FILE_TOO_SMALL, f"file is {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", handle.read(8))
    if n > MAX_HEADER:
        raise HeaderError(R.HEADER_TOO_LARGE, f"declared header length {n:,} bytes exceeds the 100 MB limit")
    if 8 + n > size:
        raise HeaderError(R.HEADER_OUT_OF_BOUNDS,
                          f"declared header length {n:,} bytes runs past the end of the {size:,}-byte file")
    raw = handle.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderError(R.HEADER_NOT_UTF8, f"header is not valid UTF-8 (byte {exc.start + 8})") from None
    if raw[:1] in (b" ", b"\t", b"\r", b"\n"):
        state.add(R.NON_CANONICAL, "header starts with whitespace (accepted by safetensors >= 0.5, not by older loaders)")
    try:
        header = json.loads(text, object_pairs_hook=_reject_duplicates(state))
    except (ValueError, RecursionError) as exc:
        raise HeaderError(R.HEADER_INVALID_JSON, f"header is not valid JSON: {_json_problem(exc)}") from None
    if not isinstance(header, dict):
        raise HeaderError(R.HEADER_INVALID_JSON, f"header is a JSON {type(header).__name__}, not an object")
    return header, n


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_INT_ONLY = {int}


def _fast_entry(name: str, spec: Any) -> _Entry | None:
    """The common case without building a message: exactly dtype/shape/data_offsets, a known dtype, a shape of
    non-negative ints, two ordered non-negative int offsets. None sends the entry down the careful path."""
    if type(spec) is not dict or len(spec) != 3:
        return None
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if (type(dtype) is not str or dtype not in SAFETENSORS_DTYPES or type(shape) is not list
            or type(offsets) is not list or len(offsets) != 2):
        return None
    if shape and (set(map(type, shape)) != _INT_ONLY or min(shape) < 0):
        return None
    begin, end = offsets
    if type(begin) is not int or type(end) is not int or not 0 <= begin <= end:
        return None
    return _Entry(name, dtype, tuple(shape), begin, end)


def _parse_entry(name: str, spec: Any, state: _Parse) -> _Entry | None:
    fast = _fast_entry(name, spec)
    if fast is not None:
        _check_size(fast, state)
        return fast
    if not isinstance(spec, dict):
        state.add(R.HEADER_INVALID_JSON, f"entry for tensor {name!r} is not an object", tensor=name)
        return None
    for extra in sorted(set(spec) - TENSOR_FIELDS):
        state.add(R.UNKNOWN_FIELD, f"tensor {name!r} has an unknown field {extra!r}", tensor=name)
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    usable = True
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        state.add(R.UNKNOWN_DTYPE, f"tensor {name!r} has unknown dtype {dtype!r}", tensor=name)
        usable = False
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        state.add(R.INVALID_SHAPE, f"tensor {name!r} has invalid shape {json.dumps(shape)}", tensor=name)
        usable = False
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets)
            or offsets[1] < offsets[0]):
        state.add(R.INVALID_OFFSETS, f"tensor {name!r} has invalid data_offsets {json.dumps(offsets)}", tensor=name)
        return None
    entry = _Entry(name, str(dtype), tuple(shape) if usable else (), offsets[0], offsets[1], usable)
    if usable:
        _check_size(entry, state)
    return entry


def _check_size(entry: _Entry, state: _Parse) -> None:
    count = element_count(entry.shape)
    bits = count * DTYPE_BITS[entry.dtype]
    actual = entry.end - entry.begin
    if bits > U64_MAX:
        state.add(R.SIZE_MISMATCH, f"tensor {entry.name!r}: shape {list(entry.shape)} overflows a 64-bit size",
                  tensor=entry.name)
    elif bits % 8:
        state.add(R.SIZE_MISMATCH, f"tensor {entry.name!r}: {count} x {entry.dtype} is not a whole number of "
                  "bytes", tensor=entry.name)
    elif bits // 8 != actual:
        state.add(R.SIZE_MISMATCH, f"tensor {entry.name!r}: {entry.dtype} {list(entry.shape)} needs "
                  f"{bits // 8:,} bytes but data_offsets span {actual:,}", tensor=entry.name)


def _check_metadata(meta: Any, state: _Parse) -> dict[str, str]:
    if meta is None:
        state.add(R.METADATA_FORMAT, "no __metadata__ (older transformers loaders expect format 'pt')")
        return {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        state.add(R.METADATA_NOT_STRINGS, "__metadata__ must map strings to strings")
        return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
    if meta.get("format") not in KNOWN_FORMATS:
        state.add(R.METADATA_FORMAT, f"__metadata__ format is {meta.get('format')!r}, not one of pt/tf/flax/mlx")
    return dict(meta)


def _check_layout(entries: list[_Entry], data_size: int, state: _Parse) -> None:
    """Sorted by offsets, tensors must tile [0, data_size) exactly."""
    expected = 0
    for entry in sorted(entries, key=lambda e: (e.begin, e.end, e.name)):
        if entry.begin > expected:
            state.add(R.OFFSET_HOLE, f"{entry.begin - expected:,} unused bytes before tensor {entry.name!r} "
                      f"(data bytes {expected:,}..{entry.begin:,})", tensor=entry.name)
        elif entry.begin < expected:
            state.add(R.OFFSET_OVERLAP, f"tensor {entry.name!r} starts at data byte {entry.begin:,}, inside "
                      f"the previous tensor (which ends at {expected:,})", tensor=entry.name)
        expected = max(expected, entry.end)
    if expected > data_size:
        state.add(R.DATA_TRUNCATED, f"tensors need {expected:,} data bytes but the file has {data_size:,}")
    elif expected < data_size:
        state.add(R.TRAILING_BYTES, f"{data_size - expected:,} bytes follow the last tensor's data")


def _check_alignment(entries: list[_Entry], data_start: int, state: _Parse) -> None:
    for entry in entries:
        item = DTYPE_BITS[entry.dtype] // 8
        if item > 1 and (data_start + entry.begin) % item:
            state.add(R.MISALIGNED, f"tensor {entry.name!r} starts at file byte {data_start + entry.begin:,}, "
                      f"not a multiple of its {item}-byte element size", tensor=entry.name)


def _well_formed(header: dict[str, Any], rel: str, data_start: int, data_size: int) -> tuple[TensorInfo, ...] | None:
    """The tensors of a header that the checks below would find nothing wrong with, in name order, read in one
    pass (a few µs per entry: 1,000,000-tensor headers); None as soon as any entry, size, alignment or the tiling
    of the data section is off, and the caller then runs every check (which names the problem)."""
    names = sorted(header)
    tensors = []
    spans = []
    bits_of, known, int_only = DTYPE_BITS, SAFETENSORS_DTYPES, _INT_ONLY
    for name in names:
        spec = header[name]
        if type(spec) is not dict or len(spec) != 3:
            return None
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if type(dtype) is not str or dtype not in known or type(shape) is not list or type(offsets) is not list:
            return None
        if len(offsets) != 2 or (shape and (set(map(type, shape)) != int_only or min(shape) < 0)):
            return None
        begin, end = offsets
        bits = bits_of[dtype]
        if (type(begin) is not int or type(end) is not int or not 0 <= begin <= end
                or (math.prod(shape) if shape else 1) * bits != 8 * (end - begin)
                or (bits > 8 and (data_start + begin) % (bits // 8))):
            return None
        spans.append((begin, end))
        tensors.append(_tensor_info(name, dtype, tuple(shape), rel, (data_start + begin, data_start + end)))
    spans.sort()
    flat = [offset for span in spans for offset in span]   # tiles [0, data_size): each end is the next begin
    if flat and (flat[0] != 0 or flat[-1] != data_size or flat[1:-1:2] != flat[2::2]):
        return None
    if not flat and data_size:
        return None
    return tuple(tensors)


_TENSOR_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TensorInfo) if f.default is not dataclasses.MISSING}
# Filled in field order (then the instance dict keeps sharing the class's keys: 278 bytes a record instead of 390);
# if TensorInfo's fields ever change, records are built by its own constructor instead.
_FILLED = tuple(f.name for f in dataclasses.fields(TensorInfo)) == (
    "name", "dtype", "shape", "file", "data_offsets", "role", "storage", "strides", "byte_order")


def _tensor_info(name: str, dtype: str, shape: tuple[int, ...], rel: str, offsets: tuple[int, int],
                 _new=object.__new__, _defaults=_TENSOR_DEFAULTS) -> TensorInfo:
    """``TensorInfo(name, dtype, shape, rel, offsets)`` built by filling the instance dict: the generated
    ``__init__`` of a frozen dataclass pays an ``object.__setattr__`` per field, 3x this over 10^5..10^6 tensors."""
    if not _FILLED:
        return TensorInfo(name, dtype, shape, rel, offsets)
    tensor = _new(TensorInfo)
    fields = tensor.__dict__
    fields["name"], fields["dtype"], fields["shape"], fields["file"], fields["data_offsets"] = \
        name, dtype, shape, rel, offsets
    fields["role"], fields["storage"], fields["strides"], fields["byte_order"] = \
        _defaults["role"], _defaults["storage"], _defaults["strides"], _defaults["byte_order"]
    return tensor


def parse(path: Path, rel: str, limits: Limits = DEFAULT_LIMITS) -> LoadedFile:
    """Parse one safetensors file's header into a LoadedFile (never raises on bad content)."""
    state = _Parse(rel)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            header, n = read_header(handle, size, state)
        except HeaderError as exc:
            state.add(exc.rule, str(exc))
            return LoadedFile(rel, LOADER.name, size, findings=tuple(state.findings), status=FileStatus.ERROR,
                              reason=str(exc), verified=False)
    if len(header) > limits.tensors_per_file:
        message = (f"header declares {len(header):,} entries, more than limits.tensors_per_file = "
                   f"{limits.tensors_per_file:,}; tensors not inventoried")
        return LoadedFile(rel, LOADER.name, size, findings=(R.LIMIT_REACHED.finding(rel, message),),
                          status=FileStatus.ERROR, reason=message, verified=False)
    metadata = _check_metadata(header.pop("__metadata__", None), state)
    data_start = 8 + n
    tensors = _well_formed(header, rel, data_start, size - data_start)
    unreadable = 0
    if tensors is None:   # something is off: every entry through the checks that name it
        located = [e for name, spec in header.items() if (e := _parse_entry(name, spec, state)) is not None]
        entries = [e for e in located if e.usable]
        _check_layout(located, size - data_start, state)
        _check_alignment(entries, data_start, state)
        tensors = tuple(_tensor_info(e.name, e.dtype, e.shape, rel, (data_start + e.begin, data_start + e.end))
                        for e in sorted(entries, key=lambda e: e.name))
        unreadable = len(header) - len(entries)
    return LoadedFile(
        rel, LOADER.name, size, tensors=tensors, findings=tuple(state.findings),
        facts={"metadata": metadata, "header_bytes": n, "data_start": data_start},
        status=FileStatus.OK if not unreadable else FileStatus.ERROR,
        reason=None if not unreadable else f"{unreadable} tensor entr{'y' if unreadable == 1 else 'ies'} could not be read",
        verified=not unreadable,
    )


class SafetensorsLoader:
    """Claims files whose first 8 bytes are a plausible header length followed by a JSON object."""

    name = "safetensors"

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir:
            return False
        if probe.suffix == ".safetensors" and not probe.head.startswith(LFS_MAGIC):
            return True  # claim it even when malformed, so the exact header rule is reported
        if probe.size < 10 or len(probe.head) < 9:
            return False
        (n,) = struct.unpack("<Q", probe.head[:8])
        if n > MAX_HEADER or n + 8 > probe.size or n < 2:
            return False
        first = probe.head[8:].lstrip(JSON_WHITESPACE)[:1]
        return first == b"{"

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return parse(path, rel, options.limits)


LOADER = SafetensorsLoader()
