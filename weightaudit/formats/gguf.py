"""GGUF (llama.cpp / ggml): our own bounded header parser (research/formats.md §5.1).

Reads the header field by field as ggml's reader does (``gguf_init_from_reader`` in ggml/src/gguf.cpp):
little-endian; versions 2 and 3 (0, 1, later versions and byte-swapped "big-endian" versions are refused);
u64 tensor and key/value counts; every metadata value type, strings with u64 lengths, arrays (also nested
arrays, which the gguf Python package reads and llama.cpp refuses); tensor infos; ``general.alignment``
(a u32 power of two, default 32); the data section starting at the next multiple of the alignment.

Bounded: the file is memory-mapped and only the header is touched; every declared count or length is checked
against the bytes left in the file (and against the caps below) before anything is read or allocated. Fixed-size
array elements are skipped arithmetically; only short samples of arrays and non-template strings are kept.

Shapes: GGUF stores dimensions innermost-first (``ne[0]`` is the row length). ``TensorInfo.shape`` is the
reverse, outermost-first as PyTorch and numpy print it: a ggml tensor with ne = [4096, 32000] has shape
(32000, 4096). ``data_offsets`` are absolute file offsets ``[data_start + offset, + nbytes)``.

dtype codes: our codes for plain types (F32, F16, BF16, F64, I8, I16, I32, I64); ggml's names for quantized
types (Q4_0, Q8_0, Q4_K, IQ2_XXS, TQ1_0, MXFP4 ...). Sizes are exact: ``nbytes = ne/block_elements *
block_bytes`` with ``ne[0]`` a multiple of ``block_elements`` (``GGML_TYPES``).

Facts (present when the file has them):
- ``metadata``: str -> str map of the scalar ``general.*`` keys (the report's files[].metadata);
- ``gguf_version``, ``tensor_count``, ``kv_count`` (as declared), ``alignment``, ``data_start``;
- ``architecture`` (general.architecture), ``model_name`` (general.name), ``license`` (general.license),
  ``file_type`` (general.file_type as llama.cpp's name, e.g. ``MOSTLY_Q8_0``, or the number),
  ``quantization_version``, ``context_length`` (``<architecture>.context_length``), ``tokenizer_model``
  (tokenizer.ggml.model); ``base_models``: one ``{name, organization, version, repo_url ...}`` dict per
  ``general.base_model.{i}.*`` (up to ``general.base_model.count``, at most 64; empty when absent);
- ``chat_template_keys``: the metadata keys holding chat templates (analysed with chat_templates.analyse,
  reported as WA460-WA462 with ``where`` = the key);
- ``metadata_keys``: every metadata key, in file order.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from weightaudit.chat_templates import Template
from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.formats.gguf_cursor import KEPT_STRING_CHARS, Cursor, HeaderError
from weightaudit.formats.gguf_facts import facts, is_template_key
from weightaudit.formats.gguf_layout import check_layout, pad, show
from weightaudit.formats.gguf_types import (  # GGML_TYPES is also imported from here by tests and fixtures
    ARRAY, BOOL, GGML_TYPES, REMOVED_GGML_TYPES, SCALAR_TYPES, STRING, U32, VALUE_TYPE_NAMES, GGMLType,
)
from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import FileStatus, Finding, LoadedFile, TensorInfo
from weightaudit.rules import gguf_rules as G
from weightaudit.rules import integrity as R
from weightaudit.rules.template_rules import template_findings

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = frozenset({2, 3})
FIXED_HEADER_BYTES = 24           # magic, version, tensor_count, kv_count
DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64                # names must be shorter than this (ggml's GGML_MAX_NAME)
MAX_KV_COUNT = 1_000_000         # defaults of limits.gguf_kv_pairs / limits.gguf_tensors (weightaudit/limits.py)
MAX_TENSOR_COUNT = 1_000_000
MAX_ARRAY_DEPTH = 4
ARRAY_SAMPLE = 8                  # elements kept from each array
INT64_MAX = 2**63 - 1
_U32, _U64, _TYPE_OFFSET = struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<IQ")
_DIMS = tuple(struct.Struct(f"<{n}Q") for n in range(5))   # 0..GGML_MAX_DIMS dimensions
SIZE_MAX = 2**64 - 1
MIN_KV_BYTES = 8 + 1 + 4 + 1      # key length, a 1-byte key, value type, a 1-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset

@dataclass(frozen=True)
class GGUFArray:
    """An array value: element type, declared length, and the first few elements."""

    element_type: int
    count: int
    sample: tuple[Any, ...]


@dataclass(frozen=True)
class KeyValue:
    """One metadata entry as stored (duplicates included, in file order)."""

    key: str
    value_type: int
    value: Any
    offset: int


@dataclass
class _Tensor:
    name: str
    ne: tuple[int, ...]            # ggml order, innermost first
    ggml_type: int
    offset: int                    # relative to the data section
    nbytes: int | None = None      # None when the type or shape is unusable
    dtype: str = ""


@dataclass
class _Parse:
    """Everything read so far; kept when a later field turns out to be unreadable."""

    rel: str
    findings: list[Finding] = field(default_factory=list)
    kvs: list[KeyValue] = field(default_factory=list)
    tensors: list[_Tensor] = field(default_factory=list)
    version: int | None = None
    tensor_count: int | None = None
    kv_count: int | None = None
    alignment: int = DEFAULT_ALIGNMENT
    data_start: int | None = None

    def add(self, rule: Any, message: str, tensor: str | None = None, where: str | None = None,
            severity: Any = None) -> None:
        self.findings.append(rule.finding(self.rel, message, tensor=tensor, where=where, severity=severity))


class _Parser:
    """Walks the header in ggml's order, recording findings on the shared ``_Parse``."""

    def __init__(self, cursor: Cursor, state: _Parse, limits: Limits = DEFAULT_LIMITS) -> None:
        self.cur, self.state, self.limits = cursor, state, limits

    def run(self) -> None:
        self._fixed_header()
        self._metadata()
        self._alignment()
        self._tensor_infos()
        self._data_start()

    def _fixed_header(self) -> None:
        cur, state = self.cur, self.state
        if bytes(cur.buf[:4]) != GGUF_MAGIC:
            raise HeaderError(R.NOT_A_MODEL, "does not start with the GGUF magic")
        cur.pos = 4
        version = cur.u32("the version field")
        state.version = version
        if version == 0 or (version & 0xFFFF) == 0 or version not in SUPPORTED_VERSIONS:
            raise HeaderError(G.BAD_VERSION, _version_problem(version))
        state.tensor_count = cur.u64("the tensor count")
        state.kv_count = cur.u64("the metadata count")
        limits = self.limits
        self._count(state.tensor_count, (limits.gguf_tensors, "gguf_tensors"), MIN_TENSOR_INFO_BYTES, "tensor count")
        self._count(state.kv_count, (limits.gguf_kv_pairs, "gguf_kv_pairs"), MIN_KV_BYTES, "metadata key/value count")

    def _count(self, count: int, cap: tuple[int, str], min_bytes: int, what: str) -> None:
        if count * min_bytes > self.cur.remaining():   # malformed first: a count the file cannot hold
            raise HeaderError(G.LENGTH_OUT_OF_BOUNDS, f"{what} {count:,} cannot fit in the {self.cur.size:,}-byte "
                              f"file (each entry takes at least {min_bytes} bytes)")
        if count > cap[0]:
            raise HeaderError(R.LIMIT_REACHED, f"{what} {count:,} exceeds limits.{cap[1]} = {cap[0]:,}; the file "
                              "was not read (raise the limit in your policy to read it)")

    def _metadata(self) -> None:
        seen: set[bytes] = set()
        for index in range(self.state.kv_count or 0):
            offset = self.cur.pos
            start, length = self.cur.raw_string(f"metadata key {index}")
            raw = bytes(self.cur.buf[start:start + length])
            key = raw.decode("utf-8", errors="replace")
            if raw in seen:
                self.state.add(G.DUPLICATE_NAME, f"metadata key {show(key)} appears more than once (llama.cpp "
                               "refuses the file; other readers keep the first or the last value)", where=key)
            seen.add(raw)
            value_type = self.cur.u32(f"the value type of {show(key)}")
            keep = None if is_template_key(key) else KEPT_STRING_CHARS
            value = self._value(value_type, key, keep, depth=0)
            self.state.kvs.append(KeyValue(key, value_type, value, offset))

    def _value(self, value_type: int, key: str, keep: int | None, depth: int) -> Any:
        if value_type in SCALAR_TYPES:
            fmt, width = SCALAR_TYPES[value_type]
            value = self.cur.fixed(fmt, width, f"the value of {show(key)}")
            return bool(value) if value_type == BOOL else value
        if value_type == STRING:
            start, length = self.cur.raw_string(f"the string value of {show(key)}")
            return self.cur.text(start, length, keep)
        if value_type == ARRAY:
            return self._array(key, depth)
        raise HeaderError(G.UNKNOWN_TYPE, f"metadata key {show(key)} has unknown value type {value_type} "
                          "(the rest of the header cannot be read)", where=key)

    def _array(self, key: str, depth: int) -> GGUFArray:
        cur = self.cur
        element_type = cur.u32(f"the array element type of {show(key)}")
        count = cur.u64(f"the array length of {show(key)}")
        if element_type == ARRAY:
            if depth == 0:
                self.state.add(G.UNKNOWN_TYPE, f"metadata key {show(key)} is an array of arrays (llama.cpp "
                               "refuses it; the gguf Python package reads it)", where=key)
            if depth + 1 >= MAX_ARRAY_DEPTH:
                raise HeaderError(G.LENGTH_OUT_OF_BOUNDS, f"metadata key {show(key)} nests arrays more than "
                                  f"{MAX_ARRAY_DEPTH} deep", where=key)
        minimum = {STRING: 8, ARRAY: 12}.get(element_type) or SCALAR_TYPES.get(element_type, (None, 0))[1]
        if not minimum:
            raise HeaderError(G.UNKNOWN_TYPE, f"metadata key {show(key)} is an array of unknown type "
                              f"{element_type} (the rest of the header cannot be read)", where=key)
        if count * minimum > cur.remaining():
            raise HeaderError(G.LENGTH_OUT_OF_BOUNDS, f"array {show(key)} declares {count:,} elements, more than "
                              f"the {cur.remaining():,} bytes left in the file can hold", where=key)
        if element_type in SCALAR_TYPES:
            return self._scalar_array(element_type, count, key)
        if element_type == STRING:
            return self._string_array(count, key)
        sample = []
        for index in range(count):
            item = self._value(element_type, key, 256, depth + 1)
            if index < ARRAY_SAMPLE:
                sample.append(item)
        return GGUFArray(element_type, count, tuple(sample))

    def _scalar_array(self, element_type: int, count: int, key: str) -> GGUFArray:
        fmt, width = SCALAR_TYPES[element_type]
        kept = min(count, ARRAY_SAMPLE)
        start = self.cur.pos
        self.cur.skip(count * width, f"the elements of {show(key)}")
        sample = struct.unpack_from(f"<{kept}{fmt[1]}", self.cur.buf, start) if kept else ()
        return GGUFArray(element_type, count, tuple(bool(v) for v in sample) if element_type == BOOL else sample)

    def _string_array(self, count: int, key: str) -> GGUFArray:
        """A tight loop over u64-prefixed strings (tokenizer vocabularies hold 100k+ of them)."""
        cur = self.cur
        buf, pos, end = cur.buf, cur.pos, min(cur.size, cur.limit)
        unpack = struct.Struct("<Q").unpack_from
        sample = []
        for index in range(count):
            if pos + 8 > end:
                cur.pos = pos
                cur.u64(f"a string length in {show(key)}")      # raises the precise error
            (length,) = unpack(buf, pos)
            pos += 8
            if length > end - pos:
                cur.pos = pos
                cur.declared(length, f"a string in {show(key)}")  # raises the precise error
            if index < ARRAY_SAMPLE:
                sample.append(cur.text(pos, length, 256))
            pos += length
        cur.pos = pos
        return GGUFArray(STRING, count, tuple(sample))

    def _alignment(self) -> None:
        entries = [kv for kv in self.state.kvs if kv.key == "general.alignment"]
        if not entries:
            return
        entry = entries[0]
        if entry.value_type != U32:
            raise HeaderError(G.BAD_ALIGNMENT, f"general.alignment is of type "
                              f"{VALUE_TYPE_NAMES.get(entry.value_type, entry.value_type)}, not u32", where=entry.key)
        if entry.value == 0 or entry.value & (entry.value - 1):
            raise HeaderError(G.BAD_ALIGNMENT, f"general.alignment {entry.value} is not a power of two",
                              where=entry.key)
        self.state.alignment = entry.value

    def _tensor_infos(self) -> None:
        seen: set[bytes | str] = set()
        for index in range(self.state.tensor_count or 0):
            if self._fast_tensor_info(seen):
                continue
            start, length = self.cur.raw_string(f"tensor name {index}")
            raw = bytes(self.cur.buf[start:start + length])
            name = raw.decode("utf-8", errors="replace")
            problems = []
            if length >= GGML_MAX_NAME:
                problems.append(f"name is {length} bytes, ggml allows at most {GGML_MAX_NAME - 1}")
            ne = self._dims(name, problems)
            ggml_type = self.cur.u32(f"the type of tensor {show(name)}")
            offset = self.cur.u64(f"the offset of tensor {show(name)}")
            tensor = _Tensor(name, ne, ggml_type, offset)
            self._size(tensor, problems)
            self.state.tensors.append(tensor)
            ggml_name = raw.split(b"\0", 1)[0]   # what llama.cpp compares (a C string)
            if ggml_name in seen or name in seen:
                self.state.add(G.DUPLICATE_NAME, f"tensor name {show(name)} appears more than once (llama.cpp "
                               "and the gguf Python package refuse the file)", tensor=name)
                tensor.dtype = ""          # only the first one is in the inventory
            seen.update((ggml_name, name))

    def _fast_tensor_info(self, seen: set[bytes | str]) -> bool:
        """The common case in one pass of struct reads, with no message built: a well-formed entry (name shorter
        than GGML_MAX_NAME, at most 4 dimensions whose product fits, a known type, whole blocks) that lies within
        the file and the header limit and is not a duplicate. Anything else returns False *without moving*, and
        the careful path reads the entry again and says what is wrong (1 M tensors: 30 s -> a few s)."""
        cur = self.cur
        buf, pos, end = cur.buf, cur.pos, min(cur.size, cur.limit)
        if pos + 8 > end:
            return False
        (length,) = _U64.unpack_from(buf, pos)
        dims_at = pos + 8 + length
        if length >= GGML_MAX_NAME or dims_at + 4 > end:
            return False
        (n_dims,) = _U32.unpack_from(buf, dims_at)
        after = dims_at + 4 + 8 * n_dims + 12
        if n_dims > GGML_MAX_DIMS or after > end:
            return False
        ne = _DIMS[n_dims].unpack_from(buf, dims_at + 4)
        ggml_type, offset = _TYPE_OFFSET.unpack_from(buf, after - 12)
        gtype = GGML_TYPES.get(ggml_type)
        count = _product(ne)
        if gtype is None or count > INT64_MAX or (ne and ne[0] % gtype.block_elements):
            return False
        raw = bytes(buf[pos + 8:dims_at])
        if not raw.isascii() or b"\0" in raw or raw in seen:
            return False
        # ASCII without NUL: the C-string name is the whole name and equals its text, so the bytes alone
        # identify it in ``seen`` (a later non-ASCII or NUL-bearing name can only match through its bytes).
        nbytes = count // gtype.block_elements * gtype.block_bytes
        self.state.tensors.append(_Tensor(raw.decode("ascii"), ne, ggml_type, offset, nbytes, gtype.code))
        seen.add(raw)
        cur.pos = after
        return True

    def _dims(self, name: str, problems: list[str]) -> tuple[int, ...]:
        n_dims = self.cur.u32(f"the dimension count of tensor {show(name)}")
        if n_dims > GGML_MAX_DIMS:
            self.cur.skip(8 * n_dims, f"the dimensions of tensor {show(name)}")
            problems.append(f"has {n_dims} dimensions, ggml allows at most {GGML_MAX_DIMS}")
            return ()
        ne = tuple(self.cur.u64(f"dimension {i} of tensor {show(name)}") for i in range(n_dims))
        if any(d > INT64_MAX for d in ne):
            problems.append(f"has a negative dimension (ne = {list(ne)} read as signed 64-bit)")
        elif _product(ne) and any(_product(ne[:i + 1]) > INT64_MAX for i in range(len(ne))):
            problems.append(f"element count of ne = {list(ne)} overflows 64 bits")
        return ne

    def _size(self, tensor: _Tensor, problems: list[str]) -> None:
        gtype = GGML_TYPES.get(tensor.ggml_type)
        if gtype is None:
            removed = REMOVED_GGML_TYPES.get(tensor.ggml_type)
            what = f"ggml type {tensor.ggml_type}" + (f" (removed type {removed})" if removed else " (unknown)")
            self.state.add(G.UNKNOWN_TYPE, f"tensor {show(tensor.name)} has {what}; its size cannot be known",
                           tensor=tensor.name)
        else:
            self._whole_blocks(tensor, gtype, problems)
        if problems:
            self.state.add(G.INVALID_TENSOR_INFO, f"tensor {show(tensor.name)} " + "; ".join(problems),
                           tensor=tensor.name)

    def _whole_blocks(self, tensor: _Tensor, gtype: GGMLType, problems: list[str]) -> None:
        """Size from shape and type: the row must be whole blocks; then nbytes = blocks x block bytes."""
        row = tensor.ne[0] if tensor.ne else 1
        if not problems and row % gtype.block_elements:
            problems.append(f"is {gtype.code} with {row} elements per row (ne[0]), not a multiple of its "
                            f"{gtype.block_elements}-element block, so its size is not a whole number of blocks")
        if not problems:
            nbytes = _product(tensor.ne) // gtype.block_elements * gtype.block_bytes
            if nbytes > SIZE_MAX:
                problems.append(f"needs {nbytes:,} bytes, more than 64 bits can address")
            else:
                tensor.nbytes, tensor.dtype = nbytes, gtype.code

    def _data_start(self) -> None:
        pos, alignment = self.cur.pos, self.state.alignment
        self.state.data_start = pad(pos, alignment) if self.state.tensor_count else pos


def _version_problem(version: int) -> str:
    if version == 0:
        return "GGUF version 0 is invalid"
    if version & 0xFFFF == 0:
        return (f"GGUF version field reads {version:#010x}: the file looks big-endian (byte-swapped version "
                f"{int.from_bytes(version.to_bytes(4, 'little'), 'big')}), which llama.cpp does not read")
    if version == 1:
        return "GGUF version 1 (32-bit lengths) is no longer supported by llama.cpp"
    return f"GGUF version {version} is not supported (llama.cpp reads versions 2 and 3)"


def _product(values: tuple[int, ...]) -> int:
    out = 1
    for value in values:
        out *= value
    return out


# ------------------------------------------------------------------------------------------ templates, facts

def _template_findings(state: _Parse, limits: Limits) -> Iterator[Finding]:
    for kv in state.kvs:
        if is_template_key(kv.key) and isinstance(kv.value, str):
            template = Template(state.rel, kv.key, kv.value)
            yield from template_findings(template, f"chat template in GGUF metadata {kv.key}", limits)


def _inventory(state: _Parse) -> tuple[TensorInfo, ...]:
    data_start = state.data_start or 0
    return tuple(
        TensorInfo(name=t.name, dtype=t.dtype, shape=tuple(reversed(t.ne)), file=state.rel,
                   data_offsets=(data_start + t.offset, data_start + t.offset + t.nbytes))
        for t in state.tensors if t.nbytes is not None and t.dtype
    )


# ------------------------------------------------------------------------------------------ entry points

def parse(path: Path, rel: str, options: LoadOptions | None = None) -> LoadedFile:
    """Parse one GGUF file's header into a LoadedFile (never raises on bad content)."""
    limit = (options or LoadOptions()).max_header_bytes
    state = _Parse(rel)
    fatal: str | None = None
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < FIXED_HEADER_BYTES:
            fatal = f"file is {size} bytes, shorter than the {FIXED_HEADER_BYTES}-byte GGUF header"
            state.add(G.HEADER_TRUNCATED, fatal)
        else:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                try:
                    _Parser(Cursor(mapped, size, limit), state, (options or LoadOptions()).limits).run()
                except HeaderError as exc:
                    fatal = str(exc)
                    state.add(exc.rule, fatal, where=exc.where)
    state.findings.extend(_template_findings(state, (options or LoadOptions()).limits))
    cut_off = 0 if fatal else check_layout(state, size)
    return _loaded(state, size, fatal, cut_off)


def _loaded(state: _Parse, size: int, fatal: str | None, cut_off: int) -> LoadedFile:
    tensors = () if fatal else _inventory(state)
    excluded = len(state.tensors) - len(tensors)
    reason = fatal
    if reason is None and excluded:
        reason = f"{excluded} tensor entr{'y' if excluded == 1 else 'ies'} could not be read"
    if reason is None and cut_off:
        reason = f"{cut_off} tensor(s) extend past the end of the file"
    if reason is None and state.tensors and (state.data_start or 0) > size:
        reason = "the file ends before its data section"
    return LoadedFile(
        state.rel, LOADER.name, size, tensors=tensors, findings=tuple(state.findings), facts=facts(state),
        status=FileStatus.OK if reason is None else FileStatus.ERROR, reason=reason, verified=reason is None,
    )


class GGUFLoader:
    """Claims files that start with the GGUF magic."""

    name = "gguf"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and probe.head.startswith(GGUF_MAGIC)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return parse(path, rel, options)


LOADER = GGUFLoader()
