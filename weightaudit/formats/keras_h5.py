"""Keras ``.keras`` archives and HDF5 files (legacy Keras ``.h5``, ``.weights.h5``, plain HDF5) via h5py.

Nothing is deserialized: configs are parsed as JSON and walked by the rules; Lambda bytecode stays a string.

Two loaders:

- ``keras-zip``: a ``.keras`` zip holding ``config.json`` + ``model.weights.h5`` (+ ``metadata.json``). The
  inner HDF5 is opened in place, never extracted: for a STORED member through a bounded window on the archive
  (so contiguous datasets get absolute offsets in the ``.keras`` file), for a compressed member through the
  zip stream (offsets None, bytes streamed by ``iter_chunks``).
- ``hdf5``: any HDF5 file. Layout decides the names: legacy full model (``model_config`` + ``model_weights``
  with ``layer_names``/``weight_names``, ``optimizer_weights``), legacy weights-only (``layer_names`` on the
  root), the Keras 3 store (``layers/<auto>/vars/<i>`` mapped back to real layer names through the ``vars``
  ``name`` attribute and per-class variable names), or plain HDF5 (dataset paths).

Every dataset in the file is inventoried, named or not. Tensors are named by layer path (``dense_1/kernel``);
optimizer state has ``role=optimizer``. Contiguous, unfiltered datasets get absolute ``data_offsets``
(``dataset.id.get_offset()``); chunked/compressed ones have None and are streamed in bounded blocks.

``LoadedFile.facts`` keys:

- ``layout``: ``keras-legacy-full`` | ``keras-legacy-weights`` | ``keras3-store`` | ``hdf5``.
- ``keras_version``, ``backend``, ``model_class``, ``date_saved`` (when recorded).
- ``layers``: list of ``{"path", "class_name", "module"}`` from the model config, nested models included.
- ``lambda_layers``: paths of Lambda / ``__lambda__`` objects; ``custom_objects``: ``registered_name`` /
  ``module`` values outside Keras.
- ``keras_config``: the parsed model config (read by rules/keras_tf_rules.py); ``keras_training_config``.
- ``hdf5``: ``{"datasets": n, "chunked": n, "filters": [ids], "inner_offset": int|None}``.
- ``archive`` (keras-zip only): ``{"members": [...], "weights_stored": bool}``.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from weightaudit.formats.base import LoadOptions, Probe, unreadable
from weightaudit.formats.keras_config import config_facts
from weightaudit.model import FileStatus, Finding, LoadedFile, Role, TensorInfo, element_count
from weightaudit.rules import get_rule

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
KERAS_MEMBERS = ("config.json", "model.weights.h5")
MAX_JSON_BYTES = 64 * 1024 * 1024
BOMB_FLOOR_BYTES = 1 << 32
BOMB_RATIO = 1000
SAFE_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})  # deflate shuffle fletcher32 szip nbit scaleoffset lzf

# Keras 3 stores variables by index; these are their names, by auto-name class token, in creation order.
KERAS3_VARIABLE_NAMES: dict[str, tuple[str, ...]] = {
    "dense": ("kernel", "bias"), "einsum_dense": ("kernel", "bias"),
    "conv1d": ("kernel", "bias"), "conv2d": ("kernel", "bias"), "conv3d": ("kernel", "bias"),
    "conv1d_transpose": ("kernel", "bias"), "conv2d_transpose": ("kernel", "bias"),
    "conv3d_transpose": ("kernel", "bias"), "depthwise_conv1d": ("kernel", "bias"),
    "depthwise_conv2d": ("kernel", "bias"), "separable_conv1d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "layer_normalization": ("gamma", "beta"), "group_normalization": ("gamma", "beta"),
    "embedding": ("embeddings",), "p_re_lu": ("alpha",),
    "simple_rnn_cell": ("kernel", "recurrent_kernel", "bias"), "lstm_cell": ("kernel", "recurrent_kernel", "bias"),
    "gru_cell": ("kernel", "recurrent_kernel", "bias"),
}
_NUMPY_CODES = {
    ("f", 2): "F16", ("f", 4): "F32", ("f", 8): "F64", ("i", 1): "I8", ("i", 2): "I16", ("i", 4): "I32",
    ("i", 8): "I64", ("u", 1): "U8", ("u", 2): "U16", ("u", 4): "U32", ("u", 8): "U64", ("b", 1): "BOOL",
    ("c", 8): "C64", ("c", 16): "C128",
}
_OPEN_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError, IndexError, zipfile.BadZipFile,
                UnicodeDecodeError, struct.error, EOFError, NotImplementedError, SystemError, OverflowError,
                AttributeError)  # h5py surfaces corrupt files as any of these (SystemError seen by fuzzing)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``[base, base+size)`` of a file (a STORED zip member), for h5py."""

    def __init__(self, path: Path, base: int, size: int) -> None:
        super().__init__()
        self._handle = open(path, "rb")
        self._base, self._size, self._pos = base, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        anchor = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, anchor + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), max(0, self._size - self._pos))
        if want == 0:
            return 0
        self._handle.seek(self._base + self._pos)
        got = self._handle.readinto(memoryview(buffer)[:want]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._handle.close()
        super().close()


# ---------------------------------------------------------------- small helpers

def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, np.bytes_)) else str(value)


MAX_ATTRIBUTE_BYTES = 64 * 1024 * 1024   # Keras configs are KBs; a huge attribute is a memory bomb, not a model


def _read_attr(group: h5py.Group, name: str) -> Any:
    """An attribute's value, refused (ValueError) when its stored size would cost unbounded memory.

    Variable-length strings store only references in the attribute, so their declared count is checked too.
    """
    attr_id = h5py.h5a.open(group.id, name.encode("utf-8"))
    try:
        stored = attr_id.get_storage_size()
    except RuntimeError:  # HDF5 reports 0 bytes as an error (e.g. empty or scalar variable-length strings)
        stored = 0
    count = attr_id.shape and int(np.prod(attr_id.shape)) or 1
    if stored > MAX_ATTRIBUTE_BYTES or count > MAX_ATTRIBUTE_BYTES // 8:
        raise ValueError(f"attribute {name!r} of {group.name} is {stored:,} bytes ({count:,} values): too large to read")
    return group.attrs[name]


def _attr_list(group: h5py.Group, name: str) -> list[str] | None:
    """A Keras string-list attribute, joining the ``name0``, ``name1``... chunks of long lists."""
    if name in group.attrs:
        chunks = [_read_attr(group, name)]
    elif f"{name}0" in group.attrs:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(_read_attr(group, f"{name}{len(chunks)}"))
    else:
        return None
    values: list[str] = []
    for chunk in chunks:
        array = np.asarray(chunk)
        if array.dtype.kind in "SUO":
            values.extend(_text(item) for item in array.reshape(-1))
    return values


def _json_attr(group: h5py.Group, name: str) -> Any:
    if name not in group.attrs:
        return None
    raw = _read_attr(group, name)
    return json.loads(_text(raw)) if not isinstance(raw, np.ndarray) else None


def dtype_code(dtype: np.dtype, keras_dtype: str | None = None) -> str:
    """Our dtype code for an HDF5 dataset's numpy dtype (Keras marks bfloat16 stored as 2-byte ints)."""
    if keras_dtype == "bfloat16" and dtype.itemsize == 2:
        return "BF16"
    if dtype.kind in "SUa" or h5py.check_string_dtype(dtype) is not None:
        return "STRING"
    return _NUMPY_CODES.get((dtype.kind, dtype.itemsize), "OBJECT")


def _byte_order(dtype: np.dtype) -> str:
    return "big" if dtype.byteorder == ">" else "little"


def legacy_tensor_name(layer: str, weight_name: str) -> str:
    """``dense_1`` + ``seq/dense_1/kernel:0`` or ``dense_1_1/kernel:0`` -> ``dense_1/kernel``."""
    parts = [p for p in weight_name.removesuffix(":0").split("/") if p]
    if layer in parts:
        parts = parts[parts.index(layer) + 1:]
    elif parts and re.fullmatch(re.escape(layer) + r"_\d+", parts[0]):
        parts = parts[1:]
    return "/".join([layer, *parts])


def keras3_variable_names(token: str, count: int) -> tuple[str, ...]:
    """Names of a Keras 3 layer's ``vars/0..n-1`` from its auto-name token (``dense_3`` -> Dense)."""
    names = KERAS3_VARIABLE_NAMES.get(re.sub(r"_\d+$", "", token), ())
    if len(names) == count:
        return names
    if count == len(names) - 1 and names and names[-1] == "bias":
        return names[:-1]
    return tuple(str(i) for i in range(count))


# ---------------------------------------------------------------- naming the datasets

@dataclass
class Naming:
    """HDF5 dataset path -> (tensor name, role); plus problems found while naming."""

    names: dict[str, tuple[str, Role]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    layout: str = "hdf5"


def _name_legacy_group(group: h5py.Group, prefix: str, layers: list[str], naming: Naming, rel: str) -> None:
    for layer in layers:
        layer_group = group.get(layer)
        if not isinstance(layer_group, h5py.Group):
            naming.findings.append(get_rule("WA170").finding(rel, f"layer group {layer!r} listed in layer_names "
                                                             "is missing", where=f"{prefix}{layer}"))
            continue
        for weight in _attr_list(layer_group, "weight_names") or []:
            path = f"{prefix}{layer}/{weight}"
            if not isinstance(group.get(f"{layer}/{weight}"), h5py.Dataset):
                naming.findings.append(get_rule("WA170").finding(rel, f"weight {weight!r} of layer {layer!r} is "
                                                                 "not stored", where=path))
                continue
            naming.names[path] = (legacy_tensor_name(layer, weight), Role.PARAMETER)


def _name_optimizer(group: h5py.Group, prefix: str, naming: Naming) -> None:
    for weight in _attr_list(group, "weight_names") or []:
        if isinstance(group.get(weight), h5py.Dataset):
            naming.names[f"{prefix}{weight}"] = (weight.removesuffix(":0"), Role.OPTIMIZER)


def _vars_name(group: h5py.Group, token: str) -> str:
    holder = group.get("vars")
    if isinstance(holder, h5py.Group) and "name" in holder.attrs:
        return _text(holder.attrs["name"])
    return token


def _name_keras3_object(group: h5py.Group, h5_path: str, display: str, token: str, role: Role,
                        naming: Naming) -> None:
    holder = group.get("vars")
    if isinstance(holder, h5py.Group):
        keys = sorted((k for k in holder if isinstance(holder.get(k), h5py.Dataset)),
                      key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        labels = keras3_variable_names(token, len(keys)) if all(k.isdigit() for k in keys) else tuple(keys)
        for key, label in zip(keys, labels):
            naming.names[f"{h5_path}vars/{key}"] = (f"{display}/{label}" if display else label, role)
    for key in group:
        child = group.get(key)
        if key == "vars" or not isinstance(child, h5py.Group):
            continue
        child_role = Role.OPTIMIZER if (not h5_path and key == "optimizer") else role
        if key == "layers":
            for sub in child:
                sub_group = child.get(sub)
                if isinstance(sub_group, h5py.Group):
                    name = _vars_name(sub_group, sub)
                    _name_keras3_object(sub_group, f"{h5_path}layers/{sub}/", f"{display}/{name}".strip("/"),
                                        sub, child_role, naming)
        else:
            name = _vars_name(child, key)
            _name_keras3_object(child, f"{h5_path}{key}/", f"{display}/{name}".strip("/"), key, child_role, naming)


def name_datasets(handle: h5py.File, rel: str) -> Naming:
    """Recognise the Keras layout and name the datasets it describes."""
    naming = Naming()
    if "model_config" in handle.attrs or isinstance(handle.get("model_weights"), h5py.Group):
        naming.layout = "keras-legacy-full"
        weights = handle.get("model_weights")
        if isinstance(weights, h5py.Group):
            _name_legacy_group(weights, "model_weights/", _attr_list(weights, "layer_names") or [], naming, rel)
        optimizer = handle.get("optimizer_weights")
        if isinstance(optimizer, h5py.Group):
            _name_optimizer(optimizer, "optimizer_weights/", naming)
    elif _attr_list(handle, "layer_names") is not None:
        naming.layout = "keras-legacy-weights"
        _name_legacy_group(handle, "", _attr_list(handle, "layer_names") or [], naming, rel)
    elif isinstance(handle.get("layers"), h5py.Group) or isinstance(handle.get("vars"), h5py.Group):
        naming.layout = "keras3-store"
        root_name = _vars_name(handle, "")
        _name_keras3_object(handle, "", "", "", Role.PARAMETER, naming)
        for path, (name, role) in list(naming.names.items()):
            if path.startswith("vars/"):
                naming.names[path] = (f"{root_name}/{name}" if root_name else name, role)
    return naming


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


def _filters(dataset: h5py.Dataset) -> list[int]:
    plist = dataset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def _check_dataset(dataset: h5py.Dataset, path: str, rel: str, inventory: Inventory) -> bool:
    """Safety checks before any byte is read; False when the dataset must not be read."""
    if dataset.is_virtual or dataset.external:
        kind = "a virtual dataset" if dataset.is_virtual else "stored in external files"
        inventory.findings.append(get_rule("WA435").finding(rel, f"dataset {path!r} is {kind}", where=path))
        return False
    filters = _filters(dataset)
    inventory.filters.update(filters)
    unknown = [f for f in filters if f not in SAFE_FILTERS]
    if unknown:
        inventory.findings.append(get_rule("WA436").finding(rel, f"dataset {path!r} needs HDF5 filter plugin(s) "
                                                            f"{unknown}", where=path))
        return False
    declared = dataset.dtype.itemsize * element_count(tuple(dataset.shape or ()))
    stored = dataset.id.get_storage_size()
    if declared > BOMB_FLOOR_BYTES and declared > BOMB_RATIO * max(stored, 1):
        inventory.findings.append(get_rule("WA168").finding(rel, f"dataset {path!r} declares {declared} bytes but "
                                                            f"stores {stored}", where=path))
        return False
    return True


def _tensor(dataset: h5py.Dataset, name: str, rel: str, role: Role, base: int | None) -> TensorInfo:
    keras_dtype = dataset.attrs.get("dtype") if "dtype" in dataset.attrs else None
    code = dtype_code(dataset.dtype, _text(keras_dtype) if keras_dtype is not None else None)
    offsets = None
    contiguous = dataset.chunks is None and code not in ("STRING", "OBJECT")
    if contiguous and base is not None:
        offset = dataset.id.get_offset()
        size = dataset.id.get_storage_size()
        if offset is not None and size == dataset.dtype.itemsize * element_count(tuple(dataset.shape or ())):
            offsets = (base + offset, base + offset + size)
    return TensorInfo(name=name, dtype=code, shape=tuple(int(d) for d in (dataset.shape or ())), file=rel,
                      data_offsets=offsets, role=role, byte_order=_byte_order(dataset.dtype))


def inventory_file(handle: h5py.File, rel: str, base: int | None, naming: Naming) -> Inventory:
    """Every dataset reachable in the file, named by ``naming`` when it knows them, else by HDF5 path."""
    inventory = Inventory(findings=list(naming.findings))
    links: list[tuple[str, Any]] = []
    handle.visititems_links(lambda path, link: links.append((path, link)))
    seen: set[int] = set()
    for path, link in links:
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            target = link.filename if isinstance(link, h5py.ExternalLink) else link.path
            inventory.findings.append(get_rule("WA435").finding(
                rel, f"{type(link).__name__} {path!r} -> {target!r}", where=path))
            inventory.verified = False
            continue
        obj = handle.get(path)
        if not isinstance(obj, h5py.Dataset) or hash(obj.id) in seen:
            continue
        seen.add(hash(obj.id))
        _add_dataset(obj, path, rel, base, naming, inventory)
    return inventory


def _add_dataset(obj: h5py.Dataset, path: str, rel: str, base: int | None, naming: Naming,
                 inventory: Inventory) -> None:
    inventory.datasets += 1
    inventory.chunked += obj.chunks is not None
    if not _check_dataset(obj, path, rel, inventory):
        inventory.verified = False
        return
    name, role = naming.names.get(path, (path, Role.PARAMETER))
    if name in inventory.paths:
        name = path
    inventory.paths[name] = path
    inventory.tensors.append(_tensor(obj, name, rel, role, base))


# ---------------------------------------------------------------- Keras config facts

def _legacy_facts(handle: h5py.File) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for key in ("keras_version", "backend"):
        source = handle.attrs if key in handle.attrs else handle.get("model_weights", handle).attrs
        if key in source:
            facts[key] = _text(source[key])
    config = _json_attr(handle, "model_config")
    if config is not None:
        facts["keras_config"] = config
        facts.update(config_facts(config))
    training = _json_attr(handle, "training_config")
    if training is not None:
        facts["keras_training_config"] = training
    return facts


# ---------------------------------------------------------------- the loaders

def _describe(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_hdf5(handle: h5py.File, rel: str, base: int | None) -> tuple[Inventory, dict[str, Any]]:
    """Inventory and facts of an open HDF5 file whose bytes start at ``base`` in ``rel`` (None: not addressable)."""
    naming = name_datasets(handle, rel)
    inventory = inventory_file(handle, rel, base, naming)
    facts = _legacy_facts(handle) if naming.layout.startswith("keras-legacy") else {}
    facts["layout"] = naming.layout
    facts["hdf5"] = {"datasets": inventory.datasets, "chunked": inventory.chunked,
                     "filters": sorted(inventory.filters), "inner_offset": base}
    return inventory, facts


def _sniff_hdf5(head: bytes) -> bool:
    return any(head[offset:offset + 8] == HDF5_MAGIC for offset in (0, 512, 1024, 2048))


class Hdf5Loader:
    """Any HDF5 file: Keras legacy/.weights.h5 layouts get layer names, others their dataset paths."""

    name = "hdf5"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and _sniff_hdf5(probe.head)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        size = _size(path)
        try:
            with h5py.File(path, "r") as handle:
                inventory, facts = read_hdf5(handle, rel, 0)
        except _OPEN_ERRORS as exc:
            reason = f"{rel}: not a readable HDF5 file ({_describe(exc)})"
            return unreadable(rel, self.name, size, reason, [get_rule("WA171").finding(rel, reason)])
        return LoadedFile(rel, self.name, size, tuple(inventory.tensors), tuple(inventory.findings), facts,
                          FileStatus.OK, None, inventory.verified)

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
        with h5py.File(path, "r") as handle:
            yield from _stream_named(handle, tensor, chunk_bytes)


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    data_start: int | None      # absolute offset of a STORED member's bytes, else None


def _member_start(path: Path, info: zipfile.ZipInfo) -> int:
    """Absolute offset of a member's data: after its local header (30 bytes + name + extra)."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
    if len(header) != 30 or header[:4] != ZIP_MAGIC:
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _open_weights(path: Path, archive: zipfile.ZipFile, member: _Member) -> tuple[BinaryIO, int | None]:
    if member.data_start is not None:
        return _Window(path, member.data_start, member.info.file_size), member.data_start
    return archive.open(member.info), None  # type: ignore[return-value]


def _read_json_member(archive: zipfile.ZipFile, name: str) -> Any:
    info = archive.getinfo(name)
    if info.file_size > MAX_JSON_BYTES:
        raise ValueError(f"{name} is {info.file_size} bytes (cap {MAX_JSON_BYTES})")
    with archive.open(info) as stream:
        return json.loads(stream.read(MAX_JSON_BYTES + 1).decode("utf-8"))


def _archive_problem(archive: zipfile.ZipFile) -> str | None:
    names = archive.namelist()
    for required in KERAS_MEMBERS:
        if names.count(required) != 1:
            return f"member {required} appears {names.count(required)} times"
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            return f"member {info.filename} is encrypted"
        if info.file_size > BOMB_FLOOR_BYTES and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
            return f"member {info.filename} expands {info.compress_size} -> {info.file_size} bytes (zip bomb)"
    return None


class KerasZipLoader:
    """Keras 3 ``.keras`` archives: config.json facts plus the inner model.weights.h5, read in place."""

    name = "keras-zip"

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir or not probe.head.startswith(ZIP_MAGIC):
            return False
        try:
            with zipfile.ZipFile(probe.path) as archive:
                names = set(archive.namelist())
        except _OPEN_ERRORS:
            return False
        return all(member in names for member in KERAS_MEMBERS)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        size = _size(path)
        try:
            return self._load(path, rel, size)
        except _OPEN_ERRORS as exc:
            reason = f"{rel}: unreadable .keras archive ({_describe(exc)})"
            return unreadable(rel, self.name, size, reason, [get_rule("WA169").finding(rel, reason)])

    def _load(self, path: Path, rel: str, size: int) -> LoadedFile:
        with zipfile.ZipFile(path) as archive:
            problem = _archive_problem(archive)
            if problem:
                reason = f"{rel}: malformed .keras archive: {problem}"
                return unreadable(rel, self.name, size, reason, [get_rule("WA169").finding(rel, reason)])
            config = _read_json_member(archive, "config.json")
            metadata = _read_json_member(archive, "metadata.json") if "metadata.json" in archive.namelist() else {}
            info = archive.getinfo("model.weights.h5")
            stored = info.compress_type == zipfile.ZIP_STORED
            member = _Member(info, _member_start(path, info) if stored else None)
            stream, base = _open_weights(path, archive, member)
            with stream, h5py.File(stream, "r") as handle:
                inventory, facts = read_hdf5(handle, rel, base)
        facts.update(config_facts(config))
        facts["keras_config"] = config
        if isinstance(metadata, dict):
            facts.update({k: metadata[k] for k in ("keras_version", "date_saved") if k in metadata})
        facts["archive"] = {"members": sorted(archive.namelist()), "weights_stored": stored}
        return LoadedFile(rel, self.name, size, tuple(inventory.tensors), tuple(inventory.findings), facts,
                          FileStatus.OK, None, inventory.verified)

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("model.weights.h5")
            start = _member_start(path, info) if info.compress_type == zipfile.ZIP_STORED else None
            stream, _base = _open_weights(path, archive, _Member(info, start))
            with stream, h5py.File(stream, "r") as handle:
                yield from _stream_named(handle, tensor, chunk_bytes)


# ---------------------------------------------------------------- streaming

def _stream_named(handle: h5py.File, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
    """Find the dataset behind ``tensor.name`` (same naming as at load) and stream it in C order."""
    inventory = inventory_file(handle, tensor.file, None, name_datasets(handle, tensor.file))
    path = inventory.paths.get(tensor.name)
    if path is None:
        raise ValueError(f"{tensor.file}: no dataset for tensor {tensor.name!r}")
    yield from iter_dataset_blocks(handle[path], chunk_bytes)


def _blocks(shape: tuple[int, ...], itemsize: int, chunk_bytes: int) -> Iterator[tuple[Any, ...]]:
    """Index tuples covering an array in C order, each block at most ``chunk_bytes`` (or one element)."""
    if not shape:
        yield ()
        return
    inner = itemsize * element_count(shape[1:])
    if inner <= chunk_bytes or len(shape) == 1:
        rows = max(1, chunk_bytes // max(inner, 1))
        for start in range(0, shape[0], rows):
            yield (slice(start, min(start + rows, shape[0])),)
        return
    for index in range(shape[0]):
        for rest in _blocks(shape[1:], itemsize, chunk_bytes):
            yield (index, *rest)


def iter_dataset_blocks(dataset: h5py.Dataset, chunk_bytes: int) -> Iterator[memoryview]:
    """Raw bytes of a dataset (in its stored byte order), block by block with bounded memory."""
    shape = tuple(int(d) for d in (dataset.shape or ()))
    for index in _blocks(shape, dataset.dtype.itemsize, chunk_bytes):
        block = np.ascontiguousarray(dataset[index] if index else dataset[()])
        yield memoryview(block).cast("B")


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


KERAS_ZIP_LOADER = KerasZipLoader()
HDF5_LOADER = Hdf5Loader()
LOADER = HDF5_LOADER
