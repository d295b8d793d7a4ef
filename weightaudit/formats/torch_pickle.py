"""PyTorch checkpoints and other pickle-based weight files, read without executing them.

Loaders (registered in ``formats/__init__.py``; the raw pickle loader must stay last):

- ``pytorch-zip``   — ``torch.save`` zip archives (any top-level folder, ``data.pkl`` + ``data/<key>``;
  ``.pt/.pth/.bin/.ckpt/.pth.tar``). Entries are located like torch's miniz reader: names from the central
  directory, data offsets from the *local* headers, and the *last* of duplicate names wins.
- ``torchscript``   — a zip with ``constants.pkl`` (TorchScript); flagged, its ``data/`` records inventoried.
- ``pickle-archive`` — other zips with pickle or ``.npy`` members (``.npz``, picklescan-style zips).
- ``pytorch-legacy`` — the pre-1.6 stream: magic, protocol, sys_info, object, storage keys, raw storages.
- ``numpy``         — ``.npy`` arrays (object arrays carry a pickle, which is scanned).
- ``pickle``        — any other pickle stream (every stacked pickle is scanned), e.g. ``.pkl``, raw ``.bin``,
  ``training_args.bin``, distributed-checkpoint ``.metadata``.

Pickles run through :mod:`weightaudit.formats.pickle_vm` (symbolic; nothing imported or called). Tensors come
from torch's rebuild calls joined to their storage records; raw bytes are zero-copy ``mmap`` ranges
(``data_offsets``) or, for strided views, compressed records and big-endian files, :meth:`iter_chunks`.

``LoadedFile.facts`` keys:

- ``pickle_globals``: sorted ``module.name`` strings imported by any pickle of the file;
- ``pickle_calls``: rendered calls outside the weights allowlist (what ``weights_only=False`` would run);
- ``pickles``: list of ``{member, offset, protocol, opcodes, error}`` per pickle scanned;
- ``weights_only_accepts``: would ``torch.load with weights_only=True`` accept the file (bool);
- ``weights_only_reasons``: why not (list of strings);
- ``executes_code``: would ``torch.load with weights_only=False`` / the pickle module import or call anything beyond
  torch's tensor machinery (bool);
- ``torchscript``: the archive is TorchScript (bool); ``zip_members``: member count; ``byteorder``; ``version``;
- ``shared_storages``: storage key -> tensor names, for storages used by more than one tensor (tied weights);
- ``optimizer_parameter_count``: elements of optimizer-state tensors;
- ``storage_locations``: sorted devices the storages were saved from (``cpu``, ``cuda:0``...).
"""

from __future__ import annotations

import ast
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from weightaudit.formats.base import DEFAULT_CHUNK, LoadOptions, Probe, iter_contiguous_chunks
from weightaudit.formats.pickle_vm import (
    BytesRef, Call, Global, Limits, PersistentId, PickleResult, render, run_pickle, scan_pickle, scan_stream,
)
from weightaudit.model import DTYPE_BITS, FileStatus, Finding, LoadedFile, Role, TensorInfo, element_count
from weightaudit.rules import pickle_rules as R

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_HEAD = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".dat", ".data",
                             ".metadata", ".tar", ".npy", ".pck", ".model"})
_MAX_ZIP_ENTRIES = 1_000_000
_MAX_MEMBER_SCAN = 256 * 1024 * 1024

# storage class name -> dtype code
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
    "BoolStorage": "BOOL", "ComplexFloatStorage": "C64", "ComplexDoubleStorage": "C128",
    "QInt8Storage": "QI8", "QUInt8Storage": "QU8", "QInt32Storage": "QI32", "UntypedStorage": "U8",
}
# torch dtype global name -> dtype code
TORCH_DTYPES: dict[str, str] = {
    "float32": "F32", "float": "F32", "float64": "F64", "double": "F64", "float16": "F16", "half": "F16",
    "bfloat16": "BF16", "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16",
    "short": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "bool": "BOOL", "complex32": "C32", "chalf": "C32", "complex64": "C64", "cfloat": "C64",
    "complex128": "C128", "cdouble": "C128", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
    "qint8": "QI8", "quint8": "QU8", "qint32": "QI32",
}
_TENSOR_REBUILDERS = frozenset({"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                                "torch._utils._rebuild_tensor_v3"})
_PARAMETER_REBUILDERS = frozenset({"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
                                   "torch.nn.parameter.Parameter"})
_UNSUPPORTED_REBUILDERS = frozenset({"torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
                                     "torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_wrapper_subclass",
                                     "torch._utils._rebuild_device_tensor_from_numpy",
                                     "torch._utils._rebuild_device_tensor_from_cpu_tensor"})
_MODULE_SEGMENTS = frozenset({"_parameters", "_buffers", "_modules"})
_DICT_TYPES = frozenset({"collections.OrderedDict", "builtins.dict", "collections.defaultdict"})


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def itemsize(dtype: str) -> int:
    return max(DTYPE_BITS.get(dtype, 8) // 8, 1)


class FileProblem(Exception):
    """The file cannot be read as this format; the message is the one-line reason."""


# ==============================================================================================================
# Zip archives (torch's miniz view of them)
# ==============================================================================================================


@dataclass(frozen=True)
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


def read_zip_entries(mm: memoryview | bytes) -> list[ZipEntry]:
    """All entries in central-directory order (duplicates kept). Raises FileProblem when unreadable."""
    size = len(mm)
    tail_start = max(0, size - 65_557)
    eocd = bytes(mm[tail_start:]).rfind(b"PK\x05\x06")
    if eocd < 0:
        raise FileProblem("zip end-of-central-directory record not found")
    eocd += tail_start
    count, cd_size, cd_offset = struct.unpack_from("<HII", mm, eocd + 10)
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        count, cd_size, cd_offset = _zip64_directory(mm, eocd)
    if count > _MAX_ZIP_ENTRIES or cd_offset + cd_size > size:
        raise FileProblem("zip central directory lies outside the file or is too large")
    entries, pos = [], cd_offset
    for _ in range(count):
        if bytes(mm[pos:pos + 4]) != b"PK\x01\x02":
            raise FileProblem(f"bad central directory entry at byte {pos}")
        flags, method = struct.unpack_from("<HH", mm, pos + 8)
        crc, csize, usize = struct.unpack_from("<III", mm, pos + 16)
        nlen, elen, clen = struct.unpack_from("<HHH", mm, pos + 28)
        offset = struct.unpack_from("<I", mm, pos + 42)[0]
        name = bytes(mm[pos + 46:pos + 46 + nlen]).decode("utf-8", "replace")
        extra = bytes(mm[pos + 46 + nlen:pos + 46 + nlen + elen])
        usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        entries.append(_join_local_header(mm, name, flags, method, crc, csize, usize, offset))
        pos += 46 + nlen + elen + clen
    return entries


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
    if offset + 30 > len(mm) or bytes(mm[offset:offset + 4]) != ZIP_MAGIC:
        raise FileProblem(f"member {name!r}: local header missing at byte {offset}")
    nlen, elen = struct.unpack_from("<HH", mm, offset + 26)
    flags |= struct.unpack_from("<H", mm, offset + 6)[0]      # either copy of the flags can make zipfile refuse
    local_name = bytes(mm[offset + 30:offset + 30 + nlen]).decode("utf-8", "replace")
    data_offset = offset + 30 + nlen + elen
    if data_offset + csize > len(mm):
        raise FileProblem(f"member {name!r}: data extends past the end of the file")
    return ZipEntry(name, local_name, flags, method, crc, csize, usize, offset, data_offset)


def member_data(mm: memoryview, entry: ZipEntry, cap: int = _MAX_MEMBER_SCAN) -> memoryview:
    """A member's (decompressed) bytes: a zero-copy slice when stored; bounded inflate when deflated."""
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
    if len(out) > cap:
        raise FileProblem(f"member {entry.name!r}: decompresses to more than {cap} bytes")
    return memoryview(out)


def _last_wins(entries: list[ZipEntry]) -> tuple[dict[str, ZipEntry], list[str]]:
    table: dict[str, ZipEntry] = {}
    duplicates: list[str] = []
    for entry in entries:
        if entry.name in table:
            duplicates.append(entry.name)
        table[entry.name] = entry
    return table, sorted(set(duplicates))


def _looks_like_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and head[1] <= 5


_KIND_CACHE: dict[tuple[str, int, int], str | None] = {}


def _zip_kind(path: Path) -> str | None:
    """Which zip loader claims this file: torchscript, pytorch-zip, pickle-archive or None (cached per file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _KIND_CACHE:
        if len(_KIND_CACHE) > 4096:
            _KIND_CACHE.clear()
        _KIND_CACHE[key] = _zip_kind_uncached(path)
    return _KIND_CACHE[key]


def _zip_kind_uncached(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                entries = read_zip_entries(view)
                names = [e.name for e in entries]
                kind = _classify_zip_names(path, names)
                if kind is None:
                    kind = "pickle-archive" if any(_member_is_pickle(view, e) for e in entries[:1000]) else None
                return kind
            finally:
                view.release()
    except (OSError, ValueError, FileProblem, struct.error):
        return "pickle-archive" if path.suffix.lower() in PICKLE_SUFFIXES | {".zip", ".npz"} else None


def _classify_zip_names(path: Path, names: list[str]) -> str | None:
    base = {n.rsplit("/", 1)[-1] for n in names}
    if path.suffix.lower() == ".keras" or "model.weights.h5" in base:
        return None
    if "data.pkl" in base and "constants.pkl" in base:
        return "torchscript"
    if "data.pkl" in base:
        return "pytorch-zip"
    if any(n.lower().endswith((".pkl", ".pickle", ".npy", ".joblib")) for n in names):
        return "pickle-archive"
    if path.suffix.lower() in PICKLE_SUFFIXES | {".zip", ".npz"}:
        return "pickle-archive"
    return None


def _member_is_pickle(mm: memoryview, entry: ZipEntry) -> bool:
    if entry.method != 0:
        return False
    head = bytes(mm[entry.data_offset:entry.data_offset + 2])
    return _looks_like_pickle(head)


# ==============================================================================================================
# Storages and tensors from the symbolic graph
# ==============================================================================================================


@dataclass(frozen=True)
class Storage:
    """A storage record as the pickle declares it and as the file holds it."""

    key: str
    dtype: str                 # dtype of the storage's elements (U8 for untyped storages)
    numel: int                 # declared element count
    location: str
    data_offset: int | None    # absolute offset of the record's bytes (None: compressed / missing)
    available: int | None      # bytes present in the record (None: record missing)
    record: str                # member name (zip) or "storage <key>" (legacy)
    entry: ZipEntry | None = None
    view_offset: int = 0       # legacy view_metadata: element offset into the root storage


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as torch would rebuild it."""

    name: str
    storage: Storage
    dtype: str
    offset: int                # in elements of ``dtype``
    size: tuple[int, ...]
    stride: tuple[int, ...]
    role: Role


@dataclass
class Inventory:
    tensors: list[TensorSpec] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)   # (name, rebuild function)
    problems: list[str] = field(default_factory=list)
    truncated: bool = False


def _as_int_tuple(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, Call) and isinstance(value.func, Global) and value.func.qualname == "torch.Size" \
            and isinstance(value.args, tuple) and value.args:
        value = value.args[0]
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None


def _key_text(key: Any) -> str:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return str(key)
    return render(key, depth=1, width=60)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _is_optimizer_dict(value: dict) -> bool:
    return "state" in value and "param_groups" in value


class _TensorCollector:
    """Walks the object graph iteratively, naming tensors with dotted paths (bounded work, cycle-safe)."""

    def __init__(self, resolve: Any, max_visits: int = 20_000_000) -> None:
        self.resolve = resolve      # PersistentId -> Storage | str (problem)
        self.inventory = Inventory()
        self.visits_left = max_visits

    def collect(self, root: Any) -> Inventory:
        stack: list[tuple[str, Any, bool, Any]] = [("", root, False, None)]
        on_path: set[int] = set()
        while stack:
            name, value, optimizer, marker = stack.pop()
            if marker == "exit":
                on_path.discard(id(value))
                continue
            self.visits_left -= 1
            if self.visits_left < 0:
                self.inventory.truncated = True
                self.inventory.problems.append("object graph too large to walk completely")
                break
            if isinstance(value, (str, bytes, int, float, bool, type(None), BytesRef, Global)):
                continue
            if id(value) in on_path:
                continue
            if isinstance(value, Call) and self._tensor(name, value, optimizer):
                continue
            children = self._children(value, optimizer)
            if not children:
                continue
            on_path.add(id(value))
            stack.append((name, value, optimizer, "exit"))
            for key, child, child_opt in reversed(children):
                stack.append((_join(name, key) if key is not None else name, child, child_opt, None))
        return self.inventory

    def _children(self, value: Any, optimizer: bool) -> list[tuple[str | None, Any, bool]]:
        if isinstance(value, dict):
            opt = optimizer or _is_optimizer_dict(value)
            return [(_key_text(k), v, opt or "optim" in _key_text(k).lower()) for k, v in value.items()]
        if isinstance(value, (list, tuple)):
            return [(str(i), v, optimizer) for i, v in enumerate(value)]
        if isinstance(value, Call):
            setitems = list(value.setitems)
            if isinstance(value.func, Global) and value.func.qualname in _DICT_TYPES and isinstance(value.args, tuple) \
                    and value.args and isinstance(value.args[0], (list, tuple)):
                setitems = [tuple(p) for p in value.args[0] if isinstance(p, (list, tuple)) and len(p) == 2] + setitems
            pairs = dict((k, v) for k, v in setitems if _hashable(k))
            children: list[tuple[str | None, Any, bool]] = []
            opt = optimizer or _is_optimizer_dict(pairs)
            children += [(_key_text(k), v, opt or "optim" in _key_text(k).lower()) for k, v in setitems]
            children += [(str(i), v, optimizer) for i, v in enumerate(value.appends)]
            for state in value.state:
                parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
                for part in parts:
                    if isinstance(part, dict):
                        for k, v in part.items():
                            key = _key_text(k)
                            children.append((None if key in _MODULE_SEGMENTS else key, v,
                                             optimizer or "optim" in key.lower()))
            return children
        return []

    def _tensor(self, name: str, call: Call, optimizer: bool) -> bool:
        """Emit the tensor when ``call`` rebuilds one; True when the call was a tensor (handled)."""
        func = call.func.qualname if isinstance(call.func, Global) else ""
        args = call.args if isinstance(call.args, tuple) else ()
        if func == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[2], tuple):
            inner = Call(args[0], args[2], None, call.opcode, call.pos)
            return self._tensor(name, inner, optimizer)
        if func in _PARAMETER_REBUILDERS and args and isinstance(args[0], Call):
            return self._tensor(name, args[0], optimizer)
        if func in _UNSUPPORTED_REBUILDERS or func == "torch._utils._rebuild_meta_tensor_no_storage":
            self.inventory.unsupported.append((name, func))
            return True
        if func not in _TENSOR_REBUILDERS or len(args) < 4:
            return False
        storage_ref, offset = args[0], args[1]
        size, stride = _as_int_tuple(args[2]), _as_int_tuple(args[3])
        if not isinstance(storage_ref, PersistentId) or not isinstance(offset, int) or size is None or stride is None \
                or len(size) != len(stride):
            self.inventory.problems.append(f"{name}: malformed {func} arguments")
            return True
        storage = self.resolve(storage_ref)
        if isinstance(storage, str):
            self.inventory.problems.append(f"{name}: {storage}")
            return True
        dtype = storage.dtype
        if func.endswith("_v3") and len(args) >= 7:
            dtype_ref = args[6]
            if isinstance(dtype_ref, Global) and dtype_ref.module == "torch" and dtype_ref.name in TORCH_DTYPES:
                dtype = TORCH_DTYPES[dtype_ref.name]
            else:
                self.inventory.unsupported.append((name, f"dtype {render(dtype_ref)}"))
                return True
        role = Role.OPTIMIZER if optimizer else Role.PARAMETER
        self.inventory.tensors.append(TensorSpec(name, storage, dtype, offset, size, stride, role))
        return True


def _storage_from_pid(pid: Any, lookup: Any) -> Storage | str:
    """Turn a ``('storage', type, key, location, numel[, view])`` persistent id into a Storage, or a problem."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        return f"unexpected persistent id {render(pid, depth=2)}"
    storage_type, key, location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(storage_type, Global) or storage_type.name not in STORAGE_DTYPES \
            or storage_type.module not in ("torch", "torch.storage", "torch.cuda"):
        return f"unknown storage type {render(storage_type)}"
    if not isinstance(key, str) or not isinstance(numel, int):
        return "malformed storage reference"
    view = pid[5] if len(pid) == 6 else None
    base = lookup(key, STORAGE_DTYPES[storage_type.name], numel, str(location))
    if isinstance(base, str) or view is None:
        return base
    if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[1], int) and isinstance(view[2], int)):
        return f"malformed storage view {render(view)}"
    root = lookup(str(view[0]), base.dtype, numel, str(location))
    if isinstance(root, str):
        return root
    return Storage(root.key, root.dtype, view[2], root.location, root.data_offset, root.available, root.record,
                   root.entry, view_offset=view[1])


# ==============================================================================================================
# Turning specs into TensorInfo + checks
# ==============================================================================================================


@dataclass(frozen=True)
class _Layout:
    """Where a tensor's bytes are, for iter_chunks."""

    storage: Storage
    byte_offset: int           # from the start of the storage record
    size: tuple[int, ...]
    stride_bytes: tuple[int, ...]
    itemsize: int
    nbytes: int


_LAYOUTS: dict[tuple[str, str], _Layout] = {}


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for dim in reversed(size):
        strides.append(acc)
        acc *= max(dim, 1)
    return tuple(reversed(strides))


def _is_contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = _contiguous_strides(size)
    return all(d <= 1 or s == e for d, s, e in zip(size, stride, expected))


def build_tensors(specs: list[TensorSpec], path_key: str, rel: str, byte_order: str,
                  findings: list[Finding]) -> tuple[list[TensorInfo], dict[str, list[str]], bool]:
    """TensorInfo records plus shared-storage groups; appends WA145/WA146 findings. Returns verified flag."""
    verified = True
    users: dict[str, list[str]] = {}
    for spec in specs:
        users.setdefault(spec.storage.record, []).append(spec.name)
    checked_records: set[str] = set()
    infos = []
    for spec in specs:
        storage = spec.storage
        size_item = itemsize(spec.dtype)
        if storage.record not in checked_records:
            checked_records.add(storage.record)
            declared = storage.numel * itemsize(storage.dtype)
            if storage.available is not None and storage.available != declared and storage.view_offset == 0:
                findings.append(R.STORAGE_SIZE.finding(
                    rel, f"storage {storage.key} declares {storage.numel} elements ({declared} bytes) but its record "
                         f"holds {storage.available} bytes", where=storage.record))
        extent = _extent(spec.size, spec.stride)
        begin = (spec.offset + storage.view_offset) * size_item
        nbytes = element_count(spec.size) * size_item
        limit = storage.available if storage.available is not None else 0
        in_bounds = spec.offset >= 0 and all(s >= 0 for s in spec.stride) and \
            (nbytes == 0 or begin + (extent + 1) * size_item <= min(limit, (storage.view_offset + storage.numel)
                                                                     * itemsize(storage.dtype)))
        shared = storage.record if len(users[storage.record]) > 1 else None
        offsets = None
        if not in_bounds:
            verified = False
            findings.append(R.TENSOR_OUT_OF_BOUNDS.finding(
                rel, f"offset {spec.offset}, size {list(spec.size)}, stride {list(spec.stride)} reach byte "
                     f"{begin + (extent + 1) * size_item} of a {limit}-byte storage", tensor=spec.name,
                where=storage.record))
        else:
            _LAYOUTS[(path_key, spec.name)] = _Layout(storage, begin, spec.size,
                                                     tuple(s * size_item for s in spec.stride), size_item, nbytes)
            if storage.data_offset is not None and _is_contiguous(spec.size, spec.stride) and byte_order == "little":
                offsets = (storage.data_offset + begin, storage.data_offset + begin + nbytes)
        infos.append(TensorInfo(name=spec.name, dtype=spec.dtype, shape=spec.size, file=rel, data_offsets=offsets,
                                role=spec.role, storage=shared, strides=spec.stride, byte_order=byte_order))
    shared_groups = {k: v for k, v in users.items() if len(v) > 1}
    return infos, shared_groups, verified


def _extent(size: tuple[int, ...], stride: tuple[int, ...]) -> int:
    if any(d == 0 for d in size):
        return -1
    return sum((d - 1) * s for d, s in zip(size, stride))


# ==============================================================================================================
# Shared loader plumbing
# ==============================================================================================================


@dataclass
class _Scan:
    """Everything collected while reading one file."""

    rel: str
    size: int
    results: list[tuple[str, int, PickleResult]] = field(default_factory=list)   # (where, base offset, result)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    error: str | None = None
    verified: bool = True
    torch_refusals: list[str] = field(default_factory=list)

    def add_pickle(self, where: str, base: int, result: PickleResult, data: memoryview) -> None:
        self.results.append((where, base, result))
        self.findings.extend(R.pickle_findings(result, self.rel, where, base, data))
        if any(a.kind == "limit" for a in result.anomalies):
            self.verified = False

    def finish(self, fmt: str, path: Path) -> LoadedFile:
        pickles = [r for _, _, r in self.results]
        reasons = self.torch_refusals + R.weights_only_problems(pickles)
        if self.error:
            reasons.append(f"unreadable: {self.error}")
        calls = R.executing_calls(pickles)
        self.facts.update({
            "pickle_globals": sorted({u.ref.qualname for r in pickles for u in r.globals}),
            "pickle_calls": calls[:200],
            "pickles": [{"member": w, "offset": b + r.start, "protocol": r.protocol, "opcodes": sum(r.opcodes.values()),
                         "error": r.error} for w, b, r in self.results[:1000]],
            "weights_only_accepts": not reasons,
            "weights_only_reasons": reasons[:20],
            "executes_code": bool(calls),
        })
        if reasons and pickles:
            self.findings.append(R.WEIGHTS_ONLY_REFUSED.finding(self.rel, "torch.load with weights_only=True would refuse "
                                                                          f"this file: {reasons[0]}"))
        self.facts["optimizer_parameter_count"] = sum(t.parameter_count for t in self.tensors
                                                      if t.role is Role.OPTIMIZER)
        status = FileStatus.ERROR if self.error else FileStatus.OK
        return LoadedFile(path=self.rel, format=fmt, size_bytes=self.size, tensors=tuple(self.tensors),
                          findings=tuple(self.findings), facts=self.facts, status=status,
                          reason=f"{self.rel}: {self.error}" if self.error else None,
                          verified=self.verified and not self.error)


def _open_map(path: Path) -> tuple[Any, memoryview]:
    handle = open(path, "rb")
    try:
        if os.fstat(handle.fileno()).st_size == 0:
            return handle, memoryview(b"")
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        handle.close()
        raise
    handle.close()
    return mm, memoryview(mm)


def _close_map(owner: Any, view: memoryview) -> None:
    view.release()
    try:
        owner.close()
    except (BufferError, OSError):
        pass


def _limits(options: LoadOptions) -> Limits:
    return Limits(max_opcodes=options.max_pickle_opcodes)


def _safe_load(fmt: str, path: Path, rel: str, options: LoadOptions, body: Any) -> LoadedFile:
    """Run ``body(scan, view)`` over the mapped file; never raises on bad input."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return LoadedFile(rel, fmt, 0, status=FileStatus.ERROR, reason=f"{rel}: cannot read ({exc.strerror})",
                          verified=False)
    scan = _Scan(rel, size)
    try:
        owner, view = _open_map(path)
    except OSError as exc:
        return LoadedFile(rel, fmt, size, status=FileStatus.ERROR, reason=f"{rel}: cannot read ({exc.strerror})",
                          verified=False)
    try:
        body(scan, view, options, str(path.resolve()))
    except FileProblem as exc:
        scan.error = str(exc)
    except (struct.error, ValueError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
        scan.error = f"cannot parse ({type(exc).__name__}: {exc})"
    finally:
        _close_map(owner, view)
    return scan.finish(fmt, path)


def _iter_layout_chunks(path: Path, layout: _Layout, chunk_bytes: int) -> Iterator[memoryview]:
    """Stream a tensor's bytes in C order from its storage (strided views gathered chunk by chunk)."""
    storage = layout.storage
    if storage.data_offset is None:
        yield from _iter_compressed(path, layout, chunk_bytes)
        return
    base = storage.data_offset + layout.byte_offset
    if _is_contiguous(layout.size, tuple(s // layout.itemsize for s in layout.stride_bytes)):
        yield from iter_contiguous_chunks(path, base, base + layout.nbytes, chunk_bytes)
        return
    import numpy as np
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        span = np.frombuffer(mm, dtype=np.uint8)
        view = np.lib.stride_tricks.as_strided(span[base:], shape=layout.size + (layout.itemsize,),
                                               strides=layout.stride_bytes + (1,), writeable=False)
        rows = view.reshape((-1,) + view.shape[-1:]) if view.ndim > 1 else view.reshape(1, -1)
        per_chunk = max(1, chunk_bytes // layout.itemsize)
        for start in range(0, rows.shape[0], per_chunk):
            yield memoryview(np.ascontiguousarray(rows[start:start + per_chunk]).reshape(-1).tobytes())
        del rows, view, span


def _iter_compressed(path: Path, layout: _Layout, chunk_bytes: int) -> Iterator[memoryview]:
    entry = layout.storage.entry
    if entry is None:
        raise ValueError(f"{path}: storage {layout.storage.key} has no readable bytes")
    owner, view = _open_map(path)
    try:
        record = bytes(member_data(view, entry))
    finally:
        _close_map(owner, view)
    import numpy as np
    span = np.frombuffer(record, dtype=np.uint8)
    strided = np.lib.stride_tricks.as_strided(span[layout.byte_offset:], shape=layout.size + (layout.itemsize,),
                                              strides=layout.stride_bytes + (1,), writeable=False)
    data = np.ascontiguousarray(strided).reshape(-1).tobytes()
    for start in range(0, len(data), chunk_bytes):
        yield memoryview(data)[start:start + chunk_bytes]


class _PickleFamilyLoader:
    """Common ``iter_chunks`` for every loader here: strided, compressed or legacy tensors."""

    name = "pickle"

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int = DEFAULT_CHUNK) -> Iterator[memoryview]:
        key = (str(Path(path).resolve()), tensor.name)
        if key not in _LAYOUTS:
            self.load(Path(path), tensor.file, LoadOptions())     # type: ignore[attr-defined]
        layout = _LAYOUTS.get(key)
        if layout is None:
            raise ValueError(f"{tensor.file}: tensor {tensor.name!r} has no readable byte range")
        return _iter_layout_chunks(Path(path), layout, chunk_bytes)


# ==============================================================================================================
# Zip loaders
# ==============================================================================================================


def _load_zip(scan: _Scan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    try:
        entries = read_zip_entries(view)
    except FileProblem as exc:
        scan.findings.append(R.ZIP_MALFORMED.finding(scan.rel, str(exc)))
        raise
    table, duplicates = _last_wins(entries)
    scan.facts["zip_members"] = len(entries)
    _zip_member_checks(scan, entries, duplicates)
    pkl_name = _main_pickle_name(table)
    main_entry = table.get(pkl_name) if pkl_name else None
    main: PickleResult | None = None
    for entry in entries:
        scanned = _scan_zip_member(scan, view, entry, options, is_main=entry is main_entry)
        if entry is main_entry and scanned:
            main = scanned[0]
    if main_entry is None:
        return
    prefix = pkl_name[: -len("data.pkl")]
    _torch_layout_checks(scan, view, table, prefix)
    scan.facts["torchscript"] = (prefix + "constants.pkl") in table
    if scan.facts["torchscript"]:
        code = sorted(n for n in table if n.startswith(prefix + "code/"))
        scan.findings.append(R.TORCHSCRIPT_CODE.finding(scan.rel, f"TorchScript archive with {len(code)} code files "
                                                                  f"(e.g. {code[0] if code else 'none'})",
                                                        where=prefix + "constants.pkl"))
        scan.torch_refusals.append("TorchScript archive (torch.load hands it to torch.jit.load)")
    if main is None or not main.ok:
        scan.error = f"{main_entry.name}: {main.error if main else 'not scanned'}"
        return
    byte_order = scan.facts.get("byteorder", "little")
    referenced: set[str] = set()

    def lookup(key: str, dtype: str, numel: int, location: str) -> Storage | str:
        entry = table.get(f"{prefix}data/{key}")
        referenced.add(f"{prefix}data/{key}")
        if entry is None:
            return f"storage record {prefix}data/{key} is missing"
        offset = entry.data_offset if entry.method == 0 else None
        return Storage(key, dtype, numel, location, offset, entry.size, entry.name, entry)

    _inventory(scan, main, lookup, path_key, byte_order)
    orphans = sorted(n for n in table if n.startswith(prefix + "data/") and n not in referenced)
    if orphans and not scan.facts["torchscript"]:
        scan.findings.append(R.ORPHAN_RECORD.finding(scan.rel, f"{len(orphans)} unreferenced records, e.g. {orphans[0]}",
                                                     where=orphans[0]))
    compressed = [t.name for t in scan.tensors if (t.name, ) and _LAYOUTS.get((path_key, t.name))
                  and _LAYOUTS[(path_key, t.name)].storage.data_offset is None]
    if compressed:
        scan.findings.append(R.COMPRESSED_RECORD.finding(scan.rel, f"{len(compressed)} tensors are in compressed records",
                                                         tensor=compressed[0]))


def _main_pickle_name(table: dict[str, ZipEntry]) -> str | None:
    candidates = sorted(n for n in table if n == "data.pkl" or n.endswith("/data.pkl"))
    if not candidates:
        return None
    return min(candidates, key=lambda n: (n.count("/"), n))


def _zip_member_checks(scan: _Scan, entries: list[ZipEntry], duplicates: list[str]) -> None:
    for name in duplicates:
        scan.findings.append(R.ZIP_DUPLICATE.finding(scan.rel, f"member {name!r} appears more than once; torch reads "
                                                               "the last copy", where=name))
    for entry in entries:
        if entry.local_name != entry.name:
            scan.findings.append(R.ZIP_NAME_MISMATCH.finding(
                scan.rel, f"central directory says {entry.name!r}, local header says {entry.local_name!r}",
                where=entry.name))
        if entry.flags & 0x60:
            scan.findings.append(R.ZIP_FLAGS.finding(scan.rel, f"member {entry.name!r} has flags {entry.flags:#06x}",
                                                     where=entry.name))
        parts = entry.name.replace("\\", "/").split("/")
        if entry.name.startswith(("/", "\\")) or ".." in parts or (len(entry.name) > 1 and entry.name[1] == ":"):
            scan.findings.append(R.PATH_TRAVERSAL.finding(scan.rel, f"member name {entry.name!r} leaves the archive",
                                                          where=entry.name))


def _scan_zip_member(scan: _Scan, view: memoryview, entry: ZipEntry, options: LoadOptions,
                     is_main: bool) -> list[PickleResult]:
    """Scan a member that holds a pickle or an .npy array (check the CRC of what was read); its pickles."""
    base = entry.name.rsplit("/", 1)[-1]
    is_record = "/data/" in f"/{entry.name}" and not base.endswith(".pkl")
    if is_record and not is_main:
        return []
    encrypted = bool(entry.flags & 0x1)
    if entry.method not in (0, 8) or (encrypted and entry.method != 0):
        scan.findings.append(R.ENCRYPTED_MEMBER.finding(scan.rel, f"member {entry.name!r} cannot be read "
                                                                  f"(method {entry.method}, flags {entry.flags:#x})",
                                                        where=entry.name))
        scan.verified = False
        scan.error = scan.error or f"member {entry.name!r} is encrypted or compressed with an unsupported method"
        return []
    head = bytes(member_data(view, entry, cap=16)[:16]) if entry.method == 0 else None
    if head is None:
        data = member_data(view, entry)
        head = bytes(data[:16])
    else:
        data = None
    is_pickle = _looks_like_pickle(head) or base.endswith((".pkl", ".pickle"))
    is_npy = head.startswith(NPY_MAGIC)
    if encrypted and not (is_pickle and _looks_like_pickle(head)) and not is_npy:
        scan.findings.append(R.ENCRYPTED_MEMBER.finding(scan.rel, f"member {entry.name!r} is encrypted",
                                                        where=entry.name))
        scan.verified = False
        scan.error = scan.error or f"member {entry.name!r} is encrypted and cannot be checked"
        return []
    if not (is_pickle or is_npy):
        return []
    if encrypted:
        scan.findings.append(R.ZIP_FLAGS.finding(scan.rel, f"member {entry.name!r} is flagged encrypted but holds "
                                                           "plain data", where=entry.name))
    data = data if data is not None else member_data(view, entry)
    if entry.size <= _MAX_MEMBER_SCAN and zlib.crc32(data) != entry.crc:
        scan.findings.append(R.ZIP_CRC.finding(scan.rel, f"member {entry.name!r} fails its CRC-32 check",
                                               where=entry.name))
    if is_npy:
        _scan_npy(scan, data, entry.name, options, entry.data_offset if entry.method == 0 else None)
        return []
    if not is_main and not base.endswith((".pkl", ".pickle", ".debug_pkl")):
        scan.findings.append(R.HIDDEN_PICKLE.finding(scan.rel, f"member {entry.name!r} holds a pickle",
                                                     where=entry.name))
    results, stopped = scan_stream(data, limits=_limits(options))
    for result in results:
        scan.add_pickle(entry.name, 0, result, data)
    _trailing(scan, results, stopped, len(data), entry.name)
    return results


def _trailing(scan: _Scan, results: list[PickleResult], stopped: int, total: int, where: str) -> None:
    last = results[-1] if results else None
    if last is not None and not last.ok and len(results) > 1 and last.error_pos == last.start:
        scan.findings.append(R.TRAILING_PICKLE_DATA.finding(
            scan.rel, f"{total - last.start} bytes after the last pickle are not a pickle ({last.error})",
            where=f"{where} byte {last.start}"))


def _torch_layout_checks(scan: _Scan, view: memoryview, table: dict[str, ZipEntry], prefix: str) -> None:
    problems = []
    if not prefix:
        problems.append("members are not under a top-level folder (torch: 'file in archive is not in a subdirectory')")
    byteorder_entry = table.get(prefix + "byteorder")
    if byteorder_entry is not None:
        value = bytes(member_data(view, byteorder_entry, cap=64)).decode("ascii", "replace").strip()
        if value not in ("little", "big"):
            problems.append(f"unknown byteorder {value!r}")
        else:
            scan.facts["byteorder"] = value
    version_entry = table.get(prefix + ".data/version") or table.get(prefix + "version")
    if version_entry is not None:
        text = bytes(member_data(view, version_entry, cap=64)).decode("ascii", "replace").strip()
        scan.facts["version"] = text
        if not text.isdigit():
            problems.append(f"unreadable version record {text!r}")
    else:
        problems.append("no version record")
    for problem in problems:
        scan.findings.append(R.TORCH_LAYOUT.finding(scan.rel, problem, where=prefix or "/"))
        scan.torch_refusals.append(problem)


def _inventory(scan: _Scan, main: PickleResult, lookup: Any, path_key: str, byte_order: str) -> None:
    problems: list[str] = []

    def resolve(ref: PersistentId) -> Storage | str:
        result = _storage_from_pid(ref.pid, lookup)
        if isinstance(result, str) and result.startswith("unexpected persistent id"):
            problems.append(result)
        return result

    inventory = _TensorCollector(resolve).collect(main.value)
    specs = inventory.tensors
    scan.facts["storage_locations"] = sorted({s.storage.location for s in specs})
    infos, shared, ok = build_tensors(specs, path_key, scan.rel, byte_order, scan.findings)
    scan.tensors.extend(infos)
    scan.facts["shared_storages"] = shared
    scan.verified = scan.verified and ok and not inventory.truncated
    for problem in inventory.problems:
        rule = R.MISSING_RECORD if "missing" in problem else R.UNEXPECTED_PERSISTENT_ID
        scan.findings.append(rule.finding(scan.rel, problem))
        scan.verified = False
    for name, func in inventory.unsupported:
        scan.findings.append(R.UNSUPPORTED_TENSOR.finding(scan.rel, f"rebuilt by {func}", tensor=name))
        scan.verified = False
    for pid in main.persistent_ids:
        if not (isinstance(pid.pid, tuple) and pid.pid and pid.pid[0] in ("storage", "module")):
            scan.findings.append(R.UNEXPECTED_PERSISTENT_ID.finding(scan.rel, f"persistent id {render(pid.pid)}",
                                                                    where=f"byte {pid.pos} (BINPERSID)"))
            scan.torch_refusals.append("persistent id that is not a storage")


class ZipLoader(_PickleFamilyLoader):
    """``pytorch-zip``, ``torchscript`` and ``pickle-archive``: one reader, claimed by what the archive holds."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir:
            return False
        if probe.head.startswith(SEVENZIP_MAGIC):
            return self.name == "pickle-archive"
        if not probe.head.startswith(ZIP_MAGIC):
            return False
        return _zip_kind(probe.path) == self.name

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        try:
            with open(path, "rb") as handle:
                is_7z = handle.read(6) == SEVENZIP_MAGIC
        except OSError:
            is_7z = False
        return _safe_load(self.name, path, rel, options, _load_7z if is_7z else _load_zip)


def _load_7z(scan: _Scan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    """7z archives are not unpacked (no LZMA container reader): pickles stored uncompressed are found by their
    protocol-4/5 frame header and scanned; the file is always reported as not verified."""
    data = bytes(view[: 64 * 1024 * 1024])
    pos = data.find(b"\x80", 6)
    while pos >= 0:
        if data[pos + 1:pos + 3] in (b"\x04\x95", b"\x05\x95"):
            result = scan_pickle(view, pos, _limits(options))
            if result.ok:
                scan.add_pickle(f"embedded pickle at byte {pos}", 0, result, view)
        pos = data.find(b"\x80", pos + 1)
    scan.error = "7z archive: members are not unpacked, so the contents are not verified"


# ==============================================================================================================
# Legacy stream format
# ==============================================================================================================


def _is_legacy_head(head: bytes) -> bool:
    if head.startswith(LEGACY_HEAD):
        return True
    if not head[:1] or head[0] not in b"\x80IL":
        return False
    first = run_pickle(head, 0, Limits(max_opcodes=64))
    return first.ok and isinstance(first.value, int) and not isinstance(first.value, bool) \
        and first.value == LEGACY_MAGIC


def _load_legacy(scan: _Scan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    limits = _limits(options)
    budget = [limits.max_opcodes]
    labels = ("magic number", "protocol", "sys_info", "object", "storage keys")
    pickles: list[PickleResult] = []
    pos = 0
    for label in labels:
        result = scan_pickle(view, pos, limits, budget)
        scan.add_pickle(f"pickle #{len(pickles) + 1} ({label})", 0, result, view)
        pickles.append(result)
        if not result.ok:
            scan.error = f"legacy {label} pickle at byte {pos}: {result.error}"
            return
        pos = result.end
    magic, protocol, sys_info, main, keys = (p.value for p in pickles)
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        scan.findings.append(R.LEGACY_LAYOUT.finding(scan.rel, f"magic {render(magic)}, protocol {render(protocol)}, "
                                                               f"sys_info {render(sys_info, depth=1)}"))
    if isinstance(sys_info, dict):
        scan.facts["byteorder"] = "little" if sys_info.get("little_endian", True) is True else "big"
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        scan.error = f"legacy storage key list is not a list of strings: {render(keys, depth=1)}"
        return
    declared: dict[str, tuple[str, int]] = {}
    for ref in pickles[3].persistent_ids:
        pid = ref.pid
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], Global) \
                and isinstance(pid[4], int) and pid[1].name in STORAGE_DTYPES:
            declared.setdefault(str(pid[2]), (STORAGE_DTYPES[pid[1].name], pid[4]))
    storages, pos = _legacy_storages(scan, view, pos, keys, declared)
    if pos < len(view):
        _legacy_trailing(scan, view, pos, limits)

    def lookup(key: str, dtype: str, numel: int, location: str) -> Storage | str:
        found = storages.get(key)
        if found is None:
            return f"storage {key} is not in the file's storage list"
        offset, available = found
        return Storage(key, dtype, numel, location, offset, available, f"storage {key}")

    _inventory(scan, pickles[3], lookup, path_key, scan.facts.get("byteorder", "little"))
    scan.facts["legacy_storage_count"] = len(keys)


def _legacy_storages(scan: _Scan, view: memoryview, pos: int, keys: list[str],
                     declared: dict[str, tuple[str, int]]) -> tuple[dict[str, tuple[int, int]], int]:
    storages: dict[str, tuple[int, int]] = {}
    for key in keys:
        dtype, _ = declared.get(key, ("U8", 0))
        if pos + 8 > len(view):
            scan.error = f"file ends before storage {key}"
            return storages, pos
        count = struct.unpack_from("<q", view, pos)[0]
        nbytes = count * itemsize(dtype)
        if count < 0 or pos + 8 + nbytes > len(view):
            scan.error = f"storage {key} declares {count} elements, past the end of the file"
            return storages, pos
        storages[key] = (pos + 8, nbytes)
        pos += 8 + nbytes
    return storages, pos


def _legacy_trailing(scan: _Scan, view: memoryview, pos: int, limits: Limits) -> None:
    results, _ = scan_stream(view, pos, limits=limits)
    clean = [r for r in results if r.ok]
    for result in clean:
        scan.add_pickle("after the storages", 0, result, view)
    scan.findings.append(R.LEGACY_LAYOUT.finding(scan.rel, f"{len(view) - pos} bytes follow the last storage"
                                                           f"{f' ({len(clean)} more pickles)' if clean else ''}",
                                                 where=f"byte {pos}"))


class LegacyLoader(_PickleFamilyLoader):
    name = "pytorch-legacy"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and _is_legacy_head(probe.head)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return _safe_load(self.name, path, rel, options, _load_legacy)


# ==============================================================================================================
# NumPy .npy (numeric arrays are tensors; object arrays carry a pickle)
# ==============================================================================================================

_NPY_DTYPES = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32", "i8": "I64",
               "u1": "U8", "u2": "U16", "u4": "U32", "u8": "U64", "b1": "BOOL", "c8": "C64", "c16": "C128"}


def _npy_header(data: memoryview) -> tuple[dict, int]:
    if bytes(data[:6]) != NPY_MAGIC or len(data) < 10:
        raise FileProblem("not a .npy array")
    major = data[6]
    if major == 1:
        length, start = struct.unpack_from("<H", data, 8)[0], 10
    elif major in (2, 3):
        length, start = struct.unpack_from("<I", data, 8)[0], 12
    else:
        raise FileProblem(f"unsupported .npy version {major}")
    if length > 1 << 20 or start + length > len(data):
        raise FileProblem(".npy header is truncated or too large")
    text = bytes(data[start:start + length]).decode("utf-8" if major == 3 else "latin-1")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise FileProblem(".npy header is not a Python literal") from None
    if not isinstance(header, dict) or not {"descr", "shape"} <= header.keys():
        raise FileProblem(".npy header lacks descr/shape")
    return header, start + length


def _scan_npy(scan: _Scan, data: memoryview, where: str, options: LoadOptions, absolute: int | None) -> None:
    header, body = _npy_header(data)
    descr, shape = header["descr"], header["shape"]
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise FileProblem(f"{where}: bad .npy shape")
    if isinstance(descr, str) and descr[1:] in _NPY_DTYPES:
        dtype = _NPY_DTYPES[descr[1:]]
        nbytes = element_count(shape) * itemsize(dtype)
        if body + nbytes > len(data):
            raise FileProblem(f"{where}: array data is truncated")
        name = where.rsplit("/", 1)[-1].removesuffix(".npy") if where else "array"
        offsets = (absolute + body, absolute + body + nbytes) if absolute is not None and descr[0] != ">" else None
        scan.tensors.append(TensorInfo(name=name, dtype=dtype, shape=shape, file=scan.rel, data_offsets=offsets,
                                       byte_order="big" if descr[0] == ">" else "little"))
        if offsets is None:
            scan.verified = False
        return
    if "O" in str(descr):
        scan.findings.append(R.OBJECT_ARRAY.finding(scan.rel, f"{where or 'array'} has dtype object", where=where or None))
        results, stopped = scan_stream(data, body, limits=_limits(options))
        for result in results:
            scan.add_pickle(f"{where} pickle" if where else "pickle", 0, result, data)
        _trailing(scan, results, stopped, len(data), where)
        return
    scan.verified = False
    scan.facts["npy_unsupported_dtype"] = str(descr)


def _load_npy(scan: _Scan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    _scan_npy(scan, view, "", options, 0)


class NumpyLoader(_PickleFamilyLoader):
    name = "numpy"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and probe.head.startswith(NPY_MAGIC)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return _safe_load(self.name, path, rel, options, _load_npy)


# ==============================================================================================================
# Raw pickles (last resort)
# ==============================================================================================================

_OPCODE_BYTES = frozenset(b"(.012FIJKLMNPQRSTUVabcd}eghijl]opqrst)uGBC") | frozenset(range(0x80, 0x99))


def _pickle_prefix(head: bytes, size: int) -> tuple[bool, int]:
    """(the first bytes run as a pickle — to STOP, or to the end of a cut-short probe; bytes parsed before an error)."""
    result = run_pickle(head, 0, Limits(max_opcodes=2_000))
    if result.ok:
        return True, result.end
    parses = len(head) < size and result.error is not None and "truncated" in result.error
    return parses, result.error_pos or 0


def _load_raw(scan: _Scan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    results, stopped = scan_stream(view, limits=_limits(options))
    if not results:
        raise FileProblem("empty file")
    for result in results:
        scan.add_pickle("pickle" if len(results) == 1 else f"pickle #{len(scan.results) + 1}", 0, result, view)
    first = results[0]
    scan.torch_refusals.append("a raw pickle is not a torch checkpoint (torch.load fails on the magic number)")
    if not first.ok:
        scan.error = f"not a valid pickle: {first.error} at byte {first.error_pos}"
        return
    if len(results) > 1 and not results[-1].ok:
        last = results[-1]
        if last.error_pos == last.start:
            _trailing(scan, results, stopped, len(view), "file")
        else:
            scan.error = f"stacked pickle at byte {last.start} is broken: {last.error} at byte {last.error_pos}"
    scan.facts["pickle_count"] = sum(1 for r in results if r.ok)
    if _is_dcp_metadata(first):
        scan.facts["distributed_checkpoint"] = True
        _dcp_inventory(scan, first)


def _is_dcp_metadata(result: PickleResult) -> bool:
    return isinstance(result.value, Call) and isinstance(result.value.func, Global) and \
        result.value.func.qualname == "torch.distributed.checkpoint.metadata.Metadata"


def _dcp_inventory(scan: _Scan, result: PickleResult) -> None:
    """Tensor names, dtypes and shapes from a distributed checkpoint's ``.metadata`` (bytes live in .distcp files)."""
    meta = result.value
    state = {}
    for part in meta.state:
        if isinstance(part, dict):
            state.update(part)
    entries = state.get("state_dict_metadata")
    if not isinstance(entries, dict):
        return
    for name, entry in entries.items():
        if not (isinstance(entry, Call) and isinstance(entry.args, tuple) and len(entry.args) >= 2):
            continue
        props, size = entry.args[0], _as_int_tuple(entry.args[1])
        dtype = "U8"
        if isinstance(props, Call) and isinstance(props.args, tuple) and props.args \
                and isinstance(props.args[0], Global) and props.args[0].name in TORCH_DTYPES:
            dtype = TORCH_DTYPES[props.args[0].name]
        if size is not None and isinstance(name, str):
            scan.tensors.append(TensorInfo(name=name, dtype=dtype, shape=size, file=scan.rel))
    scan.verified = False
    scan.facts["dcp_note"] = "tensor bytes live in the .distcp files and were not checked"


class RawPickleLoader(_PickleFamilyLoader):
    """Any pickle stream. Claims protocol 2–5 headers, and protocol 0/1 content that parses as a pickle or
    sits in a file with a pickle-like extension (so broken pickles get a clear error, not silence)."""

    name = "pickle"

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir or not probe.head:
            return False
        if _looks_like_pickle(probe.head):
            return True
        if probe.head[0] not in _OPCODE_BYTES:
            return False
        parses, progress = _pickle_prefix(probe.head, probe.size)
        if parses:
            return True
        # Broken pickles under a pickle-like name still get a clear error here (binary content, or text that runs
        # as several opcodes before failing); plain text is left to discovery.
        return probe.suffix in PICKLE_SUFFIXES and (progress >= 8 or not _is_text(probe.head))

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return _safe_load(self.name, path, rel, options, _load_raw)


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


PYTORCH_ZIP = ZipLoader("pytorch-zip")
TORCHSCRIPT = ZipLoader("torchscript")
PICKLE_ARCHIVE = ZipLoader("pickle-archive")
LEGACY = LegacyLoader()
NUMPY = NumpyLoader()
LOADER = RawPickleLoader()

__all__ = ["PYTORCH_ZIP", "TORCHSCRIPT", "PICKLE_ARCHIVE", "LEGACY", "NUMPY", "LOADER", "read_zip_entries",
           "member_data", "ZipEntry", "Storage", "TensorSpec", "build_tensors", "itemsize"]
