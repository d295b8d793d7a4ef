"""Keras ``.keras`` archives and HDF5 files (legacy Keras ``.h5``, ``.weights.h5``, plain HDF5) via h5py.

Nothing is deserialized: configs are parsed as JSON (walked by weightaudit/formats/keras_config.py and judged by
weightaudit/rules/keras_rules.py); Lambda bytecode stays a string. HDF5 reading lives in hdf5_read.py (scan,
inventory; hdf5_native.py reads the common structures from the bytes), keras_names.py (Keras names) and
hdf5_stream.py.

Two loaders:

- ``keras-zip``: a ``.keras`` zip holding ``config.json`` + ``model.weights.h5`` (+ ``metadata.json``). A STORED
  inner HDF5 (what Keras writes) is read in place through a bounded window on the archive, so contiguous
  datasets get absolute offsets in the ``.keras`` file. A compressed member is inflated ONCE, front to back, into
  an anonymous temporary file of at most ``limits.bytes_inflated`` bytes (h5py seeks backwards, and every backward seek
  in a deflate stream would inflate it again from the start); past ``limits.bytes_inflated``: WA132 and an
  unverified file.
- ``hdf5``: any HDF5 file, inventoried once (hdf5_read.py).

Contiguous datasets with absolute offsets are streamed straight from the file; others through one cached open
file per process (hdf5_read.open_cached).

``LoadedFile.facts`` keys:

- ``layout``: ``keras-legacy-full`` | ``keras-legacy-weights`` | ``keras3-store`` | ``hdf5``.
- ``keras_version``, ``backend``, ``model_class``, ``date_saved`` (when recorded).
- ``layers``: list of ``{"path", "class_name", "module"}`` from the model config, nested models included.
- ``lambda_layers``: layer paths of Lambda / ``__lambda__`` objects; ``custom_objects``: ``registered_name`` /
  ``module`` values outside Keras; ``keras_config_limit``: the limit the config walk hit (else None).
- ``keras_config``: the parsed model config; ``keras_training_config`` (legacy ``training_config``).
- ``hdf5``: ``{"datasets": n, "chunked": n, "filters": [ids], "inner_offset": int|None}``.
- ``archive`` (keras-zip only): ``{"members": [...], "weights_stored": bool}``.
"""

from __future__ import annotations

import atexit
import io
import os
import struct
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import h5py

from weightaudit.formats import hdf5_read
from weightaudit.formats.base import LoadOptions, Probe, iter_contiguous_chunks, unreadable
from weightaudit.formats.hdf5_read import (  # noqa: F401  (dtype_code re-exported)
    BOMB_FLOOR_BYTES, BOMB_RATIO, AttributeTooLarge, Inventory, dtype_code, inventory_file, json_attr, text,
)
from weightaudit.formats.hdf5_stream import iter_dataset_blocks, open_cached, stream_tensor  # noqa: F401
from weightaudit.formats.hdf5_userblock import superblock_offset, user_block_findings
from weightaudit.formats.keras_config import config_facts
from weightaudit.formats.keras_names import (  # noqa: F401  (names re-exported for callers and tests)
    Naming, keras3_variable_names, legacy_tensor_name, name_datasets,
)
from weightaudit.limits import DEFAULT_LIMITS, Limits, describe
from weightaudit.model import FileStatus, Finding, LoadedFile, TensorInfo
from weightaudit.rules import get_rule
from weightaudit.safe_read import UnsafeDocument, load_json

ZIP_MAGIC = b"PK\x03\x04"
KERAS_MEMBERS = ("config.json", "model.weights.h5")
MAX_JSON_BYTES = DEFAULT_LIMITS.keras_json_bytes   # the user's policy sets limits.keras_json_bytes
_OPEN_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError, IndexError, zipfile.BadZipFile,
                UnicodeDecodeError, struct.error, EOFError, NotImplementedError, SystemError, OverflowError,
                AttributeError)  # h5py surfaces corrupt files as any of these (SystemError seen by fuzzing)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``[base, base+size)`` of a file, for h5py: a STORED zip member (by path) or
    an inflated spool (by descriptor, duplicated). Reads use ``pread``, so no file offset is shared."""

    def __init__(self, source: Path | int, base: int, size: int) -> None:
        super().__init__()
        self._fd = os.dup(source) if isinstance(source, int) else os.open(source, os.O_RDONLY)
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
        got = os.preadv(self._fd, [memoryview(buffer)[:want]], self._base + self._pos)
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()

    @property
    def source(self) -> tuple[int, int, int]:
        """(descriptor, start, size) of the window, for the native HDF5 scan (hdf5_read.scan_file)."""
        return self._fd, self._base, self._size


def _describe(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _cache_key(path: Path, kind: str) -> tuple:
    stat = os.stat(path)
    return (str(path), stat.st_mtime_ns, stat.st_size, kind)


# ---------------------------------------------------------------- facts

def _config_facts(config: Any, rel: str, findings: list[Finding], limits: Limits) -> dict[str, Any]:
    """Facts of a model config; a config too deep or too large to walk whole is WA132 (file unverified)."""
    facts = config_facts(config, limits.nesting_depth, limits.objects_visited)
    hit = facts.get("keras_config_limit")
    if hit:
        findings.append(get_rule("WA132").finding(rel, f"Keras model config not walked whole: {describe(hit, limits)}"))
    return facts


def _legacy_facts(handle: h5py.File, rel: str, findings: list[Finding], limits: Limits) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for key in ("keras_version", "backend"):
        owner = handle if key in handle.attrs else handle.get("model_weights", handle)
        if key in owner.attrs:
            facts[key] = text(hdf5_read.read_attr(owner, key))
    config = _refusable(lambda: json_attr(handle, "model_config", limits), "model_config", rel, findings, facts)
    if config is not None:
        facts["keras_config"] = config
        facts.update(_config_facts(config, rel, findings, limits))
    training = _refusable(lambda: json_attr(handle, "training_config", limits), "training_config", rel, findings,
                          facts)
    if training is not None:
        facts["keras_training_config"] = training
    return facts


def _refusable(parse: Any, name: str, rel: str, findings: list[Finding], facts: dict[str, Any]) -> Any:
    """A config parsed depth- and integer-bounded; refused: WA132 naming it, the file unverified, the rest read."""
    try:
        return parse()
    except (UnsafeDocument, AttributeTooLarge) as exc:
        findings.append(get_rule("WA132").finding(rel, f"Keras {name} refused: {exc}", where=name))
        facts["keras_config_limit"] = getattr(exc, "limit", None) or (
            "hdf5_attribute_bytes" if isinstance(exc, AttributeTooLarge) else "nesting_depth")
        return None


def read_hdf5(handle: h5py.File, rel: str, base: int | None, limits: Limits = DEFAULT_LIMITS,
              source: tuple[int, int, int] | None = None) -> tuple[Inventory, dict[str, Any]]:
    """Inventory and facts of an open HDF5 file whose bytes start at ``base`` in ``rel`` (None: not addressable);
    ``source`` is the (descriptor, start, size) h5py reads through a window (None: a plain file)."""
    naming = name_datasets(handle, rel, hdf5_read.scan_file(handle, source))
    inventory = inventory_file(handle, rel, base, naming, limits.tensors_per_file)
    facts = _legacy_facts(handle, rel, inventory.findings, limits) if naming.layout.startswith("keras-legacy") else {}
    facts["layout"] = naming.layout
    facts["hdf5"] = {"datasets": inventory.datasets, "chunked": inventory.chunked,
                     "filters": sorted(inventory.filters), "inner_offset": base}
    if facts.get("keras_config_limit"):
        inventory.verified = False
    return inventory, facts


def _stream(path: Path, tensor: TensorInfo, chunk_bytes: int, opener: Any, kind: str) -> Iterator[memoryview]:
    """A tensor's bytes: straight from the file when it has a byte range, else via the cached open HDF5."""
    if tensor.data_offsets is not None:
        yield from iter_contiguous_chunks(path, tensor.data_offsets[0], tensor.data_offsets[1], chunk_bytes)
        return
    entry = open_cached(_cache_key(path, kind), opener, tensor.file)
    yield from stream_tensor(entry, tensor, chunk_bytes)


class Hdf5Loader:
    """Any HDF5 file: Keras legacy/.weights.h5 layouts get layer names, others their dataset paths."""

    name = "hdf5"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and superblock_offset(probe) is not None   # 0, 512, 1024 ... as libhdf5 searches

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        size = _size(path)
        try:
            with h5py.File(path, "r") as handle:
                inventory, facts = read_hdf5(handle, rel, 0, options.limits)
        except _OPEN_ERRORS as exc:
            reason = f"{rel}: not a readable HDF5 file ({_describe(exc)})"
            return unreadable(rel, self.name, size, reason, [get_rule("WA171").finding(rel, reason)])
        block_findings, block_checked = user_block_findings(path, rel, options)   # a pickle before the superblock
        return LoadedFile(rel, self.name, size, tuple(inventory.tensors), tuple(inventory.findings) + tuple(block_findings),
                          facts, FileStatus.OK, None, inventory.verified and block_checked)

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
        yield from _stream(path, tensor, chunk_bytes, lambda: (h5py.File(path, "r"), ()), "hdf5")


# ---------------------------------------------------------------- .keras archives

def _member_start(path: Path, info: zipfile.ZipInfo) -> int:
    """Absolute offset of a member's data: after its local header (30 bytes + name + extra)."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
    if len(header) != 30 or header[:4] != ZIP_MAGIC:
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class SpoolLimit(ValueError):
    """The inflated member is larger than the spool bound."""


def spool_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> BinaryIO:
    """Inflate a member front to back into an anonymous temporary file of at most ``limit`` bytes."""
    if info.file_size > limit:
        raise SpoolLimit(f"declares {info.file_size:,} bytes")
    spool = tempfile.TemporaryFile(prefix="weightaudit-keras-")
    try:
        copied = 0
        with archive.open(info) as source:
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if copied > limit:
                    raise SpoolLimit(f"inflates past {limit:,} bytes")
                spool.write(chunk)
        spool.seek(0)
        return spool  # type: ignore[return-value]
    except BaseException:
        spool.close()
        raise


_SPOOLS: OrderedDict[tuple, BinaryIO] = OrderedDict()
MAX_SPOOLS = 2     # inflated weights kept for the audit: load and the statistics workers (forked) share them


def _close_spools() -> None:
    while _SPOOLS:
        _SPOOLS.popitem(last=False)[1].close()


atexit.register(_close_spools)


def _spooled(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> BinaryIO:
    """The member inflated once per audit: forked statistics workers read the parent's spool by descriptor."""
    key = _cache_key(path, "spool")
    if key not in _SPOOLS:
        _SPOOLS[key] = spool_member(archive, info, limit)
        while len(_SPOOLS) > MAX_SPOOLS:
            _SPOOLS.popitem(last=False)[1].close()
    return _SPOOLS[key]


def _open_weights(path: Path, archive: zipfile.ZipFile, limit: int) -> tuple[BinaryIO, int | None]:
    """The inner HDF5 as a seekable file: a window on the archive (STORED) or on its inflated spool."""
    info = archive.getinfo("model.weights.h5")
    if info.compress_type == zipfile.ZIP_STORED:
        start = _member_start(path, info)
        return _Window(path, start, info.file_size), start  # type: ignore[return-value]
    spool = _spooled(path, archive, info, limit)
    return _Window(spool.fileno(), 0, os.fstat(spool.fileno()).st_size), None  # type: ignore[return-value]


class MemberTooLarge(UnsafeDocument):
    """A config.json / metadata.json member over limits.keras_json_bytes: WA132, the rest of the file read."""

    limit = "keras_json_bytes"


def _read_json_member(archive: zipfile.ZipFile, name: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    info = archive.getinfo(name)
    if info.file_size > limits.keras_json_bytes:
        raise MemberTooLarge(f"{name} is {info.file_size:,} bytes, over {describe('keras_json_bytes', limits)}")
    with archive.open(info) as stream:
        return load_json(stream.read(limits.keras_json_bytes + 1).decode("utf-8"), limits)


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
    """Keras 3 ``.keras`` archives: config.json facts plus the inner model.weights.h5, read without re-inflation."""

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
            return self._load(path, rel, size, options.limits)
        except _OPEN_ERRORS as exc:
            reason = f"{rel}: unreadable .keras archive ({_describe(exc)})"
            return unreadable(rel, self.name, size, reason, [get_rule("WA169").finding(rel, reason)])

    def _load(self, path: Path, rel: str, size: int, limits: Limits) -> LoadedFile:
        with zipfile.ZipFile(path) as archive:
            problem = _archive_problem(archive)
            if problem:
                reason = f"{rel}: malformed .keras archive: {problem}"
                return unreadable(rel, self.name, size, reason, [get_rule("WA169").finding(rel, reason)])
            refused: list[Finding] = []
            early: dict[str, Any] = {}
            config = _refusable(lambda: _read_json_member(archive, "config.json", limits), "config.json", rel,
                                refused, early)
            metadata = _refusable(lambda: _read_json_member(archive, "metadata.json", limits), "metadata.json", rel,
                                  refused, early) if "metadata.json" in archive.namelist() else {}
            stored = archive.getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED
            members = sorted(archive.namelist())
            try:
                stream, base = _open_weights(path, archive, limits.bytes_inflated)
            except SpoolLimit as exc:
                inventory, facts = Inventory(verified=False), {"layout": "unread"}
                inventory.findings.append(get_rule("WA132").finding(
                    rel, f"model.weights.h5 is deflated and {exc}: {describe('bytes_inflated', limits)}; its "
                    "weights were not read", where="model.weights.h5"))
            else:
                with stream, h5py.File(stream, "r") as handle:
                    hdf5_read.register_window(handle, stream.source)
                    try:
                        inventory, facts = read_hdf5(handle, rel, base, limits, stream.source)
                    finally:
                        hdf5_read.register_window(handle, None)
        inventory.findings.extend(refused)
        if config is not None:
            facts.update(_config_facts(config, rel, inventory.findings, limits))
        facts.update(early)     # a refused config.json / metadata.json leaves the file unverified
        inventory.verified = inventory.verified and not facts.get("keras_config_limit")
        facts["keras_config"] = config
        if isinstance(metadata, dict):
            facts.update({k: metadata[k] for k in ("keras_version", "date_saved") if k in metadata})
        facts["archive"] = {"members": members, "weights_stored": stored}
        return LoadedFile(rel, self.name, size, tuple(inventory.tensors), tuple(inventory.findings), facts,
                          FileStatus.OK, None, inventory.verified)

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
        def opener() -> tuple[h5py.File, tuple[Any, ...]]:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("model.weights.h5")   # load() already held it to limits.bytes_inflated
                stream, _base = _open_weights(path, archive, info.file_size)
            try:
                return h5py.File(stream, "r"), (stream,)
            except BaseException:
                stream.close()
                raise
        yield from _stream(path, tensor, chunk_bytes, opener, "keras-zip")


KERAS_ZIP_LOADER = KerasZipLoader()
HDF5_LOADER = Hdf5Loader()
LOADER = HDF5_LOADER
__all__ = ["KERAS_ZIP_LOADER", "HDF5_LOADER", "LOADER", "read_hdf5", "spool_member"]
