"""HDF5 reading for the Keras/HDF5 loaders: one object scan, attributes, and the dataset inventory.

Cost is linear in objects: the file is scanned ONCE. First by hdf5_native.py straight from the file's bytes (the
structures h5py writes by default; ~10 us per dataset, no libhdf5 metadata cache), then, for whatever it does not
fully understand, with libhdf5's own visitors (``H5Ovisit`` for objects, each hard-linked object once; ``H5Lvisit``
for soft/external links) through h5py's low-level API. A dataset the native reader did not describe is opened once
relative to its parent group for its dtype, shape, layout, filters and byte offset (the creation property list
only when it has no contiguous offset). A corrupt object header stops ``H5Ovisit``; the scan then walks group by
group and reports just the unreadable objects. Attribute values are read only when their type is a string or a
number (libhdf5 crashes on some malformed types). Keras naming is in keras_names.py, streaming in hdf5_stream.py.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import h5py
import numpy as np

from weightaudit.formats import hdf5_gheap, hdf5_native
from weightaudit.formats.hdf5_native import Record

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import Finding, Role, TensorInfo, element_count
from weightaudit.rules import get_rule
from weightaudit.safe_read import load_json

if TYPE_CHECKING:
    from weightaudit.formats.keras_names import Naming

Source = tuple[int, int, int]      # (file descriptor, start, size) of the bytes h5py reads
BOMB_FLOOR_BYTES = 1 << 32
BOMB_RATIO = 1000
SAFE_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})  # deflate shuffle fletcher32 szip nbit scaleoffset lzf
MAX_ATTRIBUTE_BYTES = DEFAULT_LIMITS.hdf5_attribute_bytes   # Keras configs are KBs: a huge one is a memory bomb
_DATASET_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, OverflowError, SystemError)

# Keras 3 stores variables by index; these are their names, by auto-name class token, in creation order.
_NUMPY_CODES = {
    ("f", 2): "F16", ("f", 4): "F32", ("f", 8): "F64", ("i", 1): "I8", ("i", 2): "I16", ("i", 4): "I32",
    ("i", 8): "I64", ("u", 1): "U8", ("u", 2): "U16", ("u", 4): "U32", ("u", 8): "U64", ("b", 1): "BOOL",
    ("c", 8): "C64", ("c", 16): "C128",
}


# ---------------------------------------------------------------- attributes and small helpers

def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, np.bytes_)) else str(value)


class AttributeTooLarge(ValueError):
    """An attribute over ``limits.hdf5_attribute_bytes``: not read (WA132 where a config was expected)."""


class AttributeRefused(ValueError):
    """An attribute of a type Keras never writes, not read: libhdf5 decodes some malformed types (a variable-length
    type that is neither a string nor a valid sequence) and then crashes the process reading their values."""


# strings (fixed or variable length) and plain numbers: what Keras stores in attributes, and what h5py reads safely
_ATTRIBUTE_TYPES = (h5py.h5t.TypeStringID, h5py.h5t.TypeIntegerID, h5py.h5t.TypeFloatID)


def read_attr(group: h5py.Group, name: str, max_bytes: int | None = None) -> Any:
    """An attribute's value, refused (AttributeTooLarge) past ``max_bytes`` (``limits.hdf5_attribute_bytes``), or
    when it is not a string or number (AttributeRefused: the file is unreadable, WA171).

    Variable-length strings store only references in the attribute, so their declared count is checked too.
    """
    attr_id = h5py.h5a.open(group.id, name.encode("utf-8"))
    kind = attr_id.get_type()
    if not isinstance(kind, _ATTRIBUTE_TYPES):
        raise AttributeRefused(f"attribute {name!r} of {group.name} has an HDF5 type of class {kind.get_class()} "
                               f"({type(kind).__name__}), not a string or number: its value is not read")
    if isinstance(kind, h5py.h5t.TypeStringID) and kind.is_variable_str():
        _check_global_heap(group, name)
    try:
        stored = attr_id.get_storage_size()
    except RuntimeError:  # HDF5 reports 0 bytes as an error (e.g. empty or scalar variable-length strings)
        stored = 0
    count = attr_id.shape and int(np.prod(attr_id.shape)) or 1
    max_bytes = max_bytes or MAX_ATTRIBUTE_BYTES
    if stored > max_bytes or count > max_bytes // 8:
        raise AttributeTooLarge(f"attribute {name!r} of {group.name} is {stored:,} bytes ({count:,} values): too large "
                                f"to read (limits.hdf5_attribute_bytes = {max_bytes:,})")
    return group.attrs[name]


_WINDOWS: dict[int, Source] = {}      # open file id -> (descriptor, start, size) of a .keras window (keras_h5)


def register_window(handle: h5py.File, source: Source | None) -> None:
    """Tell the attribute guard where the bytes of a file opened through a window are (None: forget it)."""
    if source is None:
        _WINDOWS.pop(handle.id.id, None)
    else:
        _WINDOWS[handle.id.id] = source


def _file_source(handle: h5py.File) -> Source | None:
    if handle.driver == "sec2":
        descriptor = handle.id.get_vfd_handle()
        return descriptor, 0, os.fstat(descriptor).st_size
    return _WINDOWS.get(handle.id.id)


def _check_global_heap(group: h5py.Group, name: str) -> None:
    """A variable-length string's global heap collection checked first (hdf5_gheap.py): libhdf5 hangs on some."""
    handle = group.file
    source = _file_source(handle)
    if source is None:
        return
    try:
        hdf5_gheap.check_vlen_attribute(source, handle.userblock_size, h5py.h5o.get_info(group.id).addr, name)
    except hdf5_gheap.HeapRefused as exc:
        raise AttributeRefused(f"attribute {name!r} of {group.name}: {exc}; its value is not read") from None


def attr_list(group: h5py.Group, name: str) -> list[str] | None:
    """A Keras string-list attribute, joining the ``name0``, ``name1``... chunks of long lists."""
    if name in group.attrs:
        chunks = [read_attr(group, name)]
    elif f"{name}0" in group.attrs:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(read_attr(group, f"{name}{len(chunks)}"))
    else:
        return None
    values: list[str] = []
    for chunk in chunks:
        array = np.asarray(chunk)
        if array.dtype.kind in "SUO":
            values.extend(text(item) for item in array.reshape(-1))
    return values


def json_attr(group: h5py.Group, name: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """A JSON attribute (Keras ``model_config``), parsed depth-bounded; UnsafeDocument when refused."""
    if name not in group.attrs:
        return None
    raw = read_attr(group, name, limits.hdf5_attribute_bytes)
    return load_json(text(raw), limits) if not isinstance(raw, np.ndarray) else None


def dtype_code(dtype: np.dtype, keras_dtype: str | None = None) -> str:
    """Our dtype code for an HDF5 dataset's numpy dtype (Keras marks bfloat16 stored as 2-byte ints)."""
    if keras_dtype == "bfloat16" and dtype.itemsize == 2:
        return "BF16"
    if dtype.kind in "fiucb":                 # numeric: never a string type, whatever its metadata
        return _NUMPY_CODES.get((dtype.kind, dtype.itemsize), "OBJECT")
    if dtype.kind in "SUa" or h5py.check_string_dtype(dtype) is not None:
        return "STRING"
    return _NUMPY_CODES.get((dtype.kind, dtype.itemsize), "OBJECT")


# ---------------------------------------------------------------- one scan of the file

@dataclass
class Scan:
    """Every object of the file, found once: dataset paths (visit order), group paths, soft/external links."""

    datasets: list[str] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)
    links: list[tuple[str, str, str]] = field(default_factory=list)   # (path, kind, target)
    broken: list[tuple[str, str]] = field(default_factory=list)       # (path, why) objects libhdf5 cannot read
    records: dict[str, Record | None] = field(default_factory=dict)  # read natively (None or absent: ask h5py)

    @property
    def dataset_set(self) -> set[str]:
        if not hasattr(self, "_dataset_set"):
            self._dataset_set = set(self.datasets)
        return self._dataset_set


def shown(text: str) -> str:
    """A name or path for reports: HDF5 names are bytes; what is not UTF-8 (kept as lone surrogates so it can be
    encoded back for h5py) is shown as ``\\xNN`` escapes, which every report format can write."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def scan_file(handle: h5py.File, source: Source | None = None) -> Scan:
    """One visit of every object: read natively from the file's bytes (hdf5_native.py) when it understands the
    whole structure, else libhdf5's H5Ovisit; when a corrupt object header stops that, a slower walk group by
    group that isolates the unreadable objects (reported per object) and keeps the rest.

    ``source`` is (descriptor, start, size) of the bytes h5py opened; None: the descriptor of a plain file."""
    native = _native_scan(handle, source)
    if native is not None:
        return native
    try:
        return _visit(handle)
    except _DATASET_ERRORS:
        return _walk_groups(handle)


def _native_scan(handle: h5py.File, source: Source | None) -> Scan | None:
    try:
        if source is None:
            if handle.driver != "sec2":
                return None
            descriptor = handle.id.get_vfd_handle()
            source = (descriptor, 0, os.fstat(descriptor).st_size)
        found = hdf5_native.scan_descriptor(*source, handle.userblock_size)
    except (hdf5_native.Unsupported, struct.error, OSError, ValueError, IndexError, TypeError, OverflowError):
        return None          # not understood (or not a plain file): libhdf5 reads it
    if not _libhdf5_agrees(handle, found):
        return None
    return Scan(datasets=found.datasets, groups=found.groups, records=found.records)


def _libhdf5_agrees(handle: h5py.File, found: hdf5_native.NativeScan) -> bool:
    """H5Ovisit also reads each group's heap and B-tree and each chunked dataset's index (object info with
    metadata sizes); asking libhdf5 for exactly those objects (and the datasets left to h5py) keeps its verdict."""
    aside = [path for path, record in found.records.items() if record is None or record.layout == h5py.h5d.CHUNKED]
    try:
        h5py.h5o.get_info(handle.id)
        for path in [*found.groups, *aside]:
            h5py.h5o.get_info(handle.id, path.encode("utf-8", "surrogateescape"))
    except _DATASET_ERRORS:
        return False
    return True


def _walk_groups(handle: h5py.File) -> Scan:
    scan = Scan()
    seen: set[int] = set()
    stack: list[str] = [""]
    while stack:
        group = stack.pop()
        entries: list[tuple[bytes, int, int]] = []   # h5py reuses the info object: copy its fields
        try:
            gid = h5py.h5g.open(handle.id, group.encode("utf-8", "surrogateescape")) if group else handle.id
            gid.links.iterate(lambda name, info: entries.append((name, info.type, info.u)), info=True)
        except _DATASET_ERRORS as exc:
            scan.broken.append((group or "/", _why(exc)))
            continue
        for raw, kind, address in entries:
            path = f"{group}/{_name(raw)}" if group else _name(raw)
            if kind != h5py.h5l.TYPE_HARD:
                scan.links.append(_link(gid, raw, path, kind))
            elif address not in seen:
                seen.add(address)
                _classify(gid, raw, path, scan, stack)
    return scan


def _classify(gid: Any, raw: bytes, path: str, scan: Scan, stack: list[str]) -> None:
    try:
        kind = h5py.h5o.get_info(gid, raw).type
    except _DATASET_ERRORS as exc:
        scan.broken.append((path, _why(exc)))
        return
    if kind == h5py.h5o.TYPE_DATASET:
        scan.datasets.append(path)
    elif kind == h5py.h5o.TYPE_GROUP:
        scan.groups.add(path)
        stack.append(path)


def _link(gid: Any, raw: bytes, path: str, kind: int) -> tuple[str, str, str]:
    """(path, kind, target) of a soft, external or user-defined link (``raw`` relative to ``gid``)."""
    if kind == h5py.h5l.TYPE_SOFT:
        return path, "SoftLink", text(gid.links.get_val(raw))
    value = gid.links.get_val(raw) if kind == h5py.h5l.TYPE_EXTERNAL else b""
    return path, "ExternalLink", text(value[0]) if isinstance(value, tuple) and value else "?"


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _visit(handle: h5py.File) -> Scan:
    scan = Scan()

    def on_object(name: bytes, info: Any) -> None:
        if info.type == h5py.h5o.TYPE_DATASET:
            scan.datasets.append(_name(name))
        elif info.type == h5py.h5o.TYPE_GROUP:
            scan.groups.add(_name(name))

    def on_link(name: bytes, info: Any) -> None:
        if info.type != h5py.h5l.TYPE_HARD:
            scan.links.append(_link(handle.id, name, _name(name), info.type))

    h5py.h5o.visit(handle.id, on_object, info=True)
    handle.id.links.visit(on_link, info=True)
    return scan


# ---------------------------------------------------------------- inventory of datasets

@dataclass
class Inventory:
    tensors: list[TensorInfo] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)       # tensor name -> dataset path
    findings: list[Finding] = field(default_factory=list)
    datasets: int = 0
    chunked: int = 0
    filters: set[int] = field(default_factory=set)
    verified: bool = True


class _GroupIds:
    """Open group ids by path, so each dataset is opened relative to its parent (no path walk per dataset)."""

    def __init__(self) -> None:
        self.ids: dict[str, Any] = {}

    def get(self, handle: h5py.File, path: str) -> Any:
        if path not in self.ids:
            if len(self.ids) > 4096:
                self.ids.clear()
            self.ids[path] = h5py.h5g.open(handle.id, path.encode("utf-8", "surrogateescape")) if path else handle.id
        return self.ids[path]


def dataset_filters(plist: Any) -> tuple[int, ...]:
    """Filter ids of a dataset creation property list, in pipeline order."""
    return tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))


class _Dataset(NamedTuple):
    """What the inventory needs of one dataset, read once through the low-level API."""

    path: str
    dtype: np.dtype
    shape: tuple[int, ...]
    layout: int
    filters: tuple[int, ...]
    external: bool
    stored: int
    offset: int | None
    keras_dtype: str | None

    @classmethod
    def open(cls, handle: h5py.File, path: str, groups: "_GroupIds") -> "_Dataset":
        parent, _, leaf = path.rpartition("/")
        dsid = h5py.h5d.open(groups.get(handle, parent), leaf.encode("utf-8", "surrogateescape"))
        keras_dtype = None
        if h5py.h5a.exists(dsid, b"dtype"):
            keras_dtype = text(read_attr(h5py.Dataset(dsid), "dtype"))
        offset = dsid.get_offset()
        if offset is not None:   # contiguous and allocated in this file: no filters, no external storage
            layout, filters, external = h5py.h5d.CONTIGUOUS, (), False
        else:
            plist = dsid.get_create_plist()
            layout, filters, external = plist.get_layout(), dataset_filters(plist), plist.get_external_count() > 0
        return cls(path, dsid.dtype, tuple(int(d) for d in (dsid.shape or ())), layout, filters, external,
                   dsid.get_storage_size(), offset, keras_dtype)

    @classmethod
    def native(cls, path: str, record: Record) -> "_Dataset":
        return cls(path, record.dtype, record.shape, record.layout, record.filters, False, record.stored, record.offset,
                   None)

    @property
    def declared(self) -> int:
        return self.dtype.itemsize * element_count(self.shape)


def _check_dataset(data: _Dataset, rel: str, inventory: Inventory) -> bool:
    """Safety checks before any byte is read; False when the dataset must not be read."""
    path = data.path
    if data.layout == h5py.h5d.VIRTUAL or data.external:
        kind = "a virtual dataset" if data.layout == h5py.h5d.VIRTUAL else "stored in external files"
        inventory.findings.append(get_rule("WA435").finding(rel, f"dataset {path!r} is {kind}", where=shown(path)))
        return False
    inventory.filters.update(data.filters)
    unknown = [f for f in data.filters if f not in SAFE_FILTERS]
    if unknown:
        inventory.findings.append(get_rule("WA436").finding(rel, f"dataset {path!r} needs HDF5 filter plugin(s) "
                                                            f"{unknown}", where=shown(path)))
        return False
    if data.declared > BOMB_FLOOR_BYTES and data.declared > BOMB_RATIO * max(data.stored, 1):
        inventory.findings.append(get_rule("WA168").finding(rel, f"dataset {path!r} declares {data.declared} bytes "
                                                            f"but stores {data.stored}", where=shown(path)))
        return False
    return True


def _tensor(data: _Dataset, name: str, rel: str, role: Role, base: int | None) -> TensorInfo:
    code = dtype_code(data.dtype, data.keras_dtype)
    offsets = None
    if base is not None and data.offset is not None and code not in ("STRING", "OBJECT") \
            and data.stored == data.declared:
        offsets = (base + data.offset, base + data.offset + data.stored)
    return TensorInfo(name=name, dtype=code, shape=data.shape, file=rel, data_offsets=offsets, role=role,
                      byte_order="big" if data.dtype.byteorder == ">" else "little")


def inventory_file(handle: h5py.File, rel: str, base: int | None, naming: "Naming",
                   max_datasets: int = DEFAULT_LIMITS.tensors_per_file) -> Inventory:
    """Every dataset of the file (at most ``max_datasets``: then WA132), named by ``naming`` when it knows them,
    else by HDF5 path."""
    inventory = Inventory(findings=list(naming.findings))
    for path, kind, target in naming.scan.links:
        inventory.findings.append(get_rule("WA435").finding(rel, f"{kind} {path!r} -> {target!r}", where=shown(path)))
        inventory.verified = False
    for path, why in naming.scan.broken:
        inventory.findings.append(get_rule("WA171").finding(rel, f"object {path!r} cannot be read ({why})",
                                                            where=shown(path)))
        inventory.verified = False
    groups = _GroupIds()
    if len(naming.scan.datasets) > max_datasets:
        inventory.findings.append(get_rule("WA132").finding(
            rel, f"{len(naming.scan.datasets):,} datasets: only the first {max_datasets:,} were inventoried "
            f"(limits.tensors_per_file = {max_datasets:,})"))
        inventory.verified = False
    records = naming.scan.records
    for path in naming.scan.datasets[:max_datasets]:
        record = records.get(path)
        if record is not None and record.stored and record.layout != h5py.h5d.CHUNKED:   # all its bytes stored
            inventory.datasets += 1
            _add(inventory, naming, path, _native_tensor(record, rel, base))
            continue
        try:
            data = _Dataset.native(path, record) if record is not None else _Dataset.open(handle, path, groups)
        except _DATASET_ERRORS as exc:      # one corrupt object header: report it, inventory the rest
            inventory.findings.append(get_rule("WA171").finding(rel, f"dataset {path!r} cannot be read ({_why(exc)})",
                                                                where=shown(path)))
            inventory.verified = False
            continue
        inventory.datasets += 1
        inventory.chunked += data.layout == h5py.h5d.CHUNKED
        if not _check_dataset(data, rel, inventory):
            inventory.verified = False
            continue
        _add(inventory, naming, path, lambda name, role: _tensor(data, name, rel, role, base))
    return inventory


def _add(inventory: Inventory, naming: "Naming", path: str, make: Any) -> None:
    """The dataset at ``path`` as a tensor, named by ``naming`` (its path when the name is taken)."""
    name, role = naming.names.get(path, (path, Role.PARAMETER))
    name = shown(name)
    if name in inventory.paths:
        name = shown(path)
    if name in inventory.paths:           # two raw names with the same escaped spelling
        name = f"{name}#{len(inventory.paths)}"
    inventory.paths[name] = path
    inventory.tensors.append(make(name, role))


_CODES: dict[np.dtype, tuple[str, str]] = {}


def _native_tensor(record: Record, rel: str, base: int | None) -> Any:
    """A tensor maker for a natively read numeric dataset whose bytes are all stored (as :func:`_tensor` makes)."""
    if record.dtype not in _CODES:
        _CODES[record.dtype] = (dtype_code(record.dtype), "big" if record.dtype.byteorder == ">" else "little")
    code, order = _CODES[record.dtype]
    offsets = None
    if base is not None and record.offset is not None:
        offsets = (base + record.offset, base + record.offset + record.stored)
    return lambda name, role: TensorInfo(name=name, dtype=code, shape=record.shape, file=rel, data_offsets=offsets,
                                         role=role, byte_order=order)
