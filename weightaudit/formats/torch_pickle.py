"""PyTorch checkpoints and other pickle-based weight files, read without executing them.

Loaders (registered in ``formats/__init__.py``; the raw pickle loader must stay last):

- ``pytorch-zip``   — ``torch.save`` zip archives (any top-level folder, ``data.pkl`` + ``data/<key>``;
  ``.pt/.pth/.bin/.ckpt/.pth.tar``). Entries are located like torch's miniz reader: names from the central
  directory, data offsets from the *local* headers, and the *last* of duplicate names wins.
- ``torchscript``   — a zip with ``constants.pkl`` (TorchScript); flagged, its ``data/`` records inventoried.
- ``pickle-archive`` — other zips with pickle or ``.npy`` members (``.npz``, picklescan-style zips), and 7z archives.
  An ``.npz`` is read as numpy reads it: a member that is not an array, or a central directory zipfile refuses,
  is WA157 and the file is not verified.
- ``pytorch-legacy`` — the pre-1.6 stream: magic, protocol, sys_info, object, storage keys, raw storages.
- ``numpy``         — ``.npy`` arrays (object arrays carry a pickle, which is scanned); defined in
  :mod:`~weightaudit.formats.numpy_npy`.
- ``pickle``        — any other pickle stream, read as joblib reads it; defined in
  :mod:`~weightaudit.formats.raw_pickle` (re-exported here as ``LOADER``).

Other pickle containers have their own modules: :mod:`~weightaudit.formats.compressed` (gzip/bz2/xz/zlib/joblib
compression), :mod:`~weightaudit.formats.tar_legacy` (torch's tar checkpoints), :mod:`~weightaudit.formats.joblib_format`
(joblib's arrays after their wrapper), :mod:`~weightaudit.formats.archive_kind` (which zip loader claims an archive;
7z archives).

Pickles run through :mod:`weightaudit.formats.pickle_vm` (symbolic; nothing imported or called). Tensors come
from torch's rebuild calls joined to their storage records; raw bytes are zero-copy ``mmap`` ranges
(``data_offsets``) or, for strided views, compressed records and big-endian files, :meth:`iter_chunks`.

This module holds the loaders and how each claims a file; the pieces they share live next to it:
:mod:`~weightaudit.formats.zipread` (zip entries as torch sees them), :mod:`~weightaudit.formats.torch_tensors`
(tensors found in the pickle graph, their storages and byte layouts), :mod:`~weightaudit.formats.pickle_scan`
(the per-file scan record and the never-raising load wrapper), :mod:`~weightaudit.formats.numpy_npy` (the
``numpy`` loader, also used for ``.npy`` zip members) and :mod:`~weightaudit.formats.mapped_file`. Names that used
to be defined here are re-exported (see ``__all__``).

``LoadedFile.facts`` keys:

- ``pickle_globals``: sorted ``module.name`` strings imported by any pickle of the file;
- ``pickle_calls``: rendered calls outside the weights allowlist (what ``weights_only=False`` would run);
- ``pickles``: list of ``{member, offset, protocol, opcodes, error}`` per pickle scanned;
- ``weights_only_accepts``: would ``torch.load with weights_only=True`` accept the file (bool);
- ``weights_only_reasons``: why not (list of strings);
- ``executes_code``: would ``torch.load with weights_only=False`` / the pickle module import or call anything beyond
  torch's tensor machinery (bool);
- ``torchscript``: the archive is TorchScript (bool); ``zip_members``: member count; ``byteorder``; ``version``;
  ``npz``: the archive is read as numpy.load reads it (bool); ``joblib``/``joblib_arrays``: joblib arrays read;
- ``shared_storages``: storage key -> tensor names, for storages used by more than one tensor (tied weights);
- ``optimizer_parameter_count``: elements of optimizer-state tensors;
- ``storage_locations``: sorted devices the storages were saved from (``cpu``, ``cuda:0``...).
"""

from __future__ import annotations

import codecs
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

from weightaudit.formats.archive_kind import SEVENZIP_MAGIC, load_7z, zip_kind
from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.formats.mapped_file import FileLimit, FileProblem
from weightaudit.formats.numpy_header import NpyRefused
from weightaudit.formats.numpy_npy import NPY_MAGIC, NUMPY, NumpyLoader, scan_npy
from weightaudit.formats.raw_pickle import LOADER, PICKLE_SUFFIXES, RawPickleLoader, looks_like_pickle
from weightaudit.formats.pickle_scan import FileScan, PickleFamilyLoader, limits_for, report_trailing_data, safe_load
from weightaudit.formats.pickle_values import Global, PersistentId, render
from weightaudit.formats.pickle_vm import Limits, PickleResult, run_pickle, scan_pickle, scan_stream
from weightaudit.formats.torch_tensors import (
    STORAGE_DTYPES, TENSOR_LAYOUTS, TORCH_DTYPES, Inventory, Storage, TensorCollector, TensorSpec,
    build_tensors, itemsize, storage_from_pid,
)
from weightaudit.formats.zipread import (
    ZIP_MAGIC, ZipEntry, entries_by_name, member_data, read_zip_entries,
)
from weightaudit.model import LoadedFile
from weightaudit.rules import pickle_rules as R
from weightaudit.rules.container_rules import LOADER_REFUSES, UNSCANNED_ARCHIVE

codecs.lookup("cp437")    # zipfile decodes legacy member names with it: looked up now, not while reading a file
# Members that hide more members: gzip, bz2, xz, zip, 7z, lz4 (not unpacked inside an archive: WA158).
NESTED_CONTAINER_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04", b"7z\xbc\xaf", b"\x04\x22\x4d\x18")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_HEAD = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


# ==============================================================================================================
# Zip loaders
# ==============================================================================================================


def _load_zip(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    try:
        entries = read_zip_entries(view, options.limits.zip_members)
    except FileLimit:
        raise                         # safe_load: WA132, file unverified
    except FileProblem as exc:
        scan.findings.append(R.ZIP_MALFORMED.finding(scan.rel, str(exc)))
        raise
    table, duplicates = entries_by_name(entries)
    scan.facts["zip_members"] = len(entries)
    _zip_member_checks(scan, entries, duplicates)
    pkl_name = _main_pickle_name(table)
    main_entry = table.get(pkl_name) if pkl_name else None
    scan.facts["npz"] = main_entry is None and _is_npz(path_key, entries)
    if main_entry is None:            # not torch's (miniz) archive: numpy and other readers open it with zipfile
        _zipfile_accepts(scan, path_key)
    main: PickleResult | None = None
    for entry in entries:
        scanned = _scan_zip_member(scan, view, entry, options, is_main=entry is main_entry, path_key=path_key)
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
        record = f"{prefix}data/{key}"
        entry = table.get(record)
        referenced.add(record)
        if entry is None:
            return f"storage record {record} is missing"
        offset = entry.data_offset if entry.method == 0 else None
        return Storage(key, dtype, numel, location, offset, entry.size, entry.name, entry)

    _inventory(scan, main, lookup, path_key, byte_order)
    data_prefix = prefix + "data/"
    orphans = sorted(n for n in table if n.startswith(data_prefix) and n not in referenced)
    if orphans and not scan.facts["torchscript"]:
        scan.findings.append(R.ORPHAN_RECORD.finding(scan.rel, f"{len(orphans)} unreferenced records, e.g. {orphans[0]}",
                                                     where=orphans[0]))
    compressed = [t.name for t in scan.tensors if t.data_offsets is None                 # raw ones are stored
                  and (layout := TENSOR_LAYOUTS.get((path_key, t.name))) and layout.storage.data_offset is None]
    if compressed:
        scan.findings.append(R.COMPRESSED_RECORD.finding(scan.rel, f"{len(compressed)} tensors are in compressed records",
                                                         tensor=compressed[0]))


def _is_npz(path_key: str, entries: list[ZipEntry]) -> bool:
    """An archive numpy.load reads: named .npz, or nothing but .npy members."""
    name = path_key.removesuffix("#inflated").lower()
    return name.endswith(".npz") or (bool(entries) and all(e.name.endswith(".npy") for e in entries))


def _zipfile_accepts(scan: FileScan, path_key: str) -> None:
    """numpy.load (and whoever unzips a pickle archive) opens it with zipfile: where zipfile refuses the central
    directory, so do we (WA157, not verified)."""
    if "#" in path_key:                  # inflated content or a member of another archive: not a file on disk
        return
    try:
        with zipfile.ZipFile(path_key) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        scan.findings.append(LOADER_REFUSES.finding(scan.rel, f"zipfile (numpy.load, unzip tools) refuses the "
                                                              f"archive: {exc}"))
        scan.verified = False


def _main_pickle_name(table: dict[str, ZipEntry]) -> str | None:
    candidates = sorted(n for n in table if n == "data.pkl" or n.endswith("/data.pkl"))
    if not candidates:
        return None
    return min(candidates, key=lambda n: (n.count("/"), n))


def _zip_member_checks(scan: FileScan, entries: list[ZipEntry], duplicates: list[str]) -> None:
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
        dotted = ".." in entry.name and ".." in entry.name.replace("\\", "/").split("/")
        if entry.name.startswith(("/", "\\")) or dotted or (len(entry.name) > 1 and entry.name[1] == ":"):
            scan.findings.append(R.PATH_TRAVERSAL.finding(scan.rel, f"member name {entry.name!r} leaves the archive",
                                                          where=entry.name))


def _scan_zip_member(scan: FileScan, view: memoryview, entry: ZipEntry, options: LoadOptions,
                     is_main: bool, path_key: str) -> list[PickleResult]:
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
    cap = options.limits.zip_member_bytes
    if head is None:
        data = member_data(view, entry, cap, "zip_member_bytes")
        head = bytes(data[:16])
    else:
        data = None
    is_pickle = looks_like_pickle(head) or base.endswith((".pkl", ".pickle"))
    is_npy = head.startswith(NPY_MAGIC)
    if encrypted and not (is_pickle and looks_like_pickle(head)) and not is_npy:
        scan.findings.append(R.ENCRYPTED_MEMBER.finding(scan.rel, f"member {entry.name!r} is encrypted",
                                                        where=entry.name))
        scan.verified = False
        scan.error = scan.error or f"member {entry.name!r} is encrypted and cannot be checked"
        return []
    if not (is_pickle or is_npy):
        if scan.facts.get("npz"):
            scan.findings.append(LOADER_REFUSES.finding(scan.rel, f"member {entry.name!r} is not an array: numpy.load "
                                                                  "hands it out as raw bytes", where=entry.name))
            scan.verified = False
        elif head.startswith(NESTED_CONTAINER_MAGIC):
            scan.findings.append(UNSCANNED_ARCHIVE.finding(scan.rel, f"member {entry.name!r} is a compressed stream or "
                                                                     "an archive that was not unpacked",
                                                           where=entry.name))
            scan.verified = False
        return []
    if encrypted:
        scan.findings.append(R.ZIP_FLAGS.finding(scan.rel, f"member {entry.name!r} is flagged encrypted but holds "
                                                           "plain data", where=entry.name))
    data = data if data is not None else member_data(view, entry, cap, "zip_member_bytes")
    if entry.size <= cap and zlib.crc32(data) != entry.crc:
        scan.findings.append(R.ZIP_CRC.finding(scan.rel, f"member {entry.name!r} fails its CRC-32 check",
                                               where=entry.name))
    if is_npy:
        stored = entry.method == 0
        try:
            scan_npy(scan, data, entry.name, options, entry.data_offset if stored else None,
                     compressed=None if stored else (path_key, entry), path_key=path_key)
        except NpyRefused:               # WA157 already reported; the other members are still read
            scan.verified = False
        return []
    if not is_main and not base.endswith((".pkl", ".pickle", ".debug_pkl")):
        scan.findings.append(R.HIDDEN_PICKLE.finding(scan.rel, f"member {entry.name!r} holds a pickle",
                                                     where=entry.name))
    results, stopped = scan_stream(data, limits=limits_for(options))
    for result in results:
        scan.add_pickle(entry.name, 0, result, data)
    report_trailing_data(scan, results, stopped, len(data), entry.name)
    return results


def _torch_layout_checks(scan: FileScan, view: memoryview, table: dict[str, ZipEntry], prefix: str) -> None:
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


def _inventory(scan: FileScan, main: PickleResult, lookup: Any, path_key: str, byte_order: str) -> None:
    problems: list[str] = []

    def resolve(ref: PersistentId) -> Storage | str:
        result = storage_from_pid(ref.pid, lookup)
        if isinstance(result, str) and result.startswith("unexpected persistent id"):
            problems.append(result)
        return result

    inventory = TensorCollector(resolve).collect(main.value)
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


class ZipLoader(PickleFamilyLoader):
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
        return zip_kind(probe.path) == self.name

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        try:
            with open(path, "rb") as handle:
                is_7z = handle.read(6) == SEVENZIP_MAGIC
        except OSError:
            is_7z = False
        return safe_load(self.name, path, rel, options, load_7z if is_7z else _load_zip)


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


def _load_legacy(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    limits = limits_for(options)
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


def _legacy_storages(scan: FileScan, view: memoryview, pos: int, keys: list[str],
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


def _legacy_trailing(scan: FileScan, view: memoryview, pos: int, limits: Limits) -> None:
    results, _ = scan_stream(view, pos, limits=limits)
    clean = [r for r in results if r.ok]
    for result in clean:
        scan.add_pickle("after the storages", 0, result, view)
    scan.findings.append(R.LEGACY_LAYOUT.finding(scan.rel, f"{len(view) - pos} bytes follow the last storage"
                                                           f"{f' ({len(clean)} more pickles)' if clean else ''}",
                                                 where=f"byte {pos}"))


class LegacyLoader(PickleFamilyLoader):
    name = "pytorch-legacy"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and _is_legacy_head(probe.head)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return safe_load(self.name, path, rel, options, _load_legacy)


# Bodies other containers reuse on content they unpacked (formats/container_bodies.py).
load_zip_body = _load_zip
load_legacy_body = _load_legacy
is_legacy_head = _is_legacy_head

PYTORCH_ZIP = ZipLoader("pytorch-zip")
TORCHSCRIPT = ZipLoader("torchscript")
PICKLE_ARCHIVE = ZipLoader("pickle-archive")
LEGACY = LegacyLoader()

# The registry (formats/__init__.py) and other modules import these names from here; several now live in the
# modules split out of this one and are re-exported unchanged.
__all__ = ["PYTORCH_ZIP", "TORCHSCRIPT", "PICKLE_ARCHIVE", "LEGACY", "NUMPY", "LOADER", "read_zip_entries",
           "member_data", "ZipEntry", "Storage", "TensorSpec", "build_tensors", "itemsize",
           "ZipLoader", "LegacyLoader", "NumpyLoader", "RawPickleLoader", "FileProblem", "Inventory",
           "STORAGE_DTYPES", "TORCH_DTYPES", "LEGACY_MAGIC", "LEGACY_PROTOCOL", "LEGACY_HEAD", "ZIP_MAGIC",
           "NPY_MAGIC", "SEVENZIP_MAGIC", "PICKLE_SUFFIXES"]
