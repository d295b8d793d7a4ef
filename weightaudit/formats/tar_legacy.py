"""The ``pytorch-tar`` loader: torch's oldest checkpoint format (torch < 0.4), and any other tar of pickles.

``torch.load`` still tries this format first on a seekable file (``serialization._legacy_load``: ``tarfile.open``
and, unless tarfile raises, ``legacy_load``), so a tar is a live way to deliver pickles. The layout:

- ``storages``: a pickle of the storage count, then per storage a pickle ``(key, location, storage_type)``
  followed by an int64 element count and the raw bytes, then a pickle of the storage views;
- ``tensors``: a pickle of the tensor count, then per tensor a pickle ``(key, storage_id, tensor_type)`` followed
  by int32 ndim, 4 skipped bytes, ndim int64 sizes, ndim int64 strides and an int64 storage offset;
- ``pickle``: the object, whose persistent ids are the keys above; ``sys_info``: a pickle torch does not read.

The tar is parsed by hand (:func:`iter_tar_members`: 512-byte headers validated by their checksum as tarfile
does, octal or base-256 sizes, GNU long names and PAX ``path``/``size`` records, a member cap). Every pickle of
every member is scanned. Tensors are inventoried as ``legacy_load`` builds them (the last member of each name,
storages and their views by integer key, tensor records, the object's persistent ids); when they cannot be joined
the file is not verified (WA159, low). Links and names leaving the archive are flagged (tarfile extracts them).
torch >= 2.6 refuses this format with ``weights_only=True``; ``weights_only=False`` runs every pickle in it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.formats.mapped_file import FileLimit, FileProblem
from weightaudit.formats.pickle_scan import FileScan, PickleFamilyLoader, limits_for, safe_load
from weightaudit.formats.object_names import dotted_names
from weightaudit.formats.pickle_values import PersistentId
from weightaudit.formats.pickle_vm import Limits, PickleResult, scan_pickle, scan_stream
from weightaudit.formats.torch_pickle import load_zip_body
from weightaudit.formats.torch_tensors import (
    STORAGE_DTYPES, TENSOR_LAYOUTS, Storage, TensorSpec, build_tensors, itemsize,
)
from weightaudit.formats.zipread import ZIP_MAGIC
from weightaudit.limits import DEFAULT_LIMITS
from weightaudit.model import LoadedFile, Role, Severity
from weightaudit.rules import pickle_rules as R
from weightaudit.rules.container_rules import CONTAINER_LAYOUT, UNSCANNED_ARCHIVE

__all__ = ["TarMember", "iter_tar_members", "is_tar_header", "TarLoader", "LOADER", "load_tar"]

BLOCK = 512
MAX_TAR_MEMBERS = DEFAULT_LIMITS.tar_members      # the user's policy sets limits.tar_members
MAX_PAX_BYTES = DEFAULT_LIMITS.tar_pax_bytes       # the user's policy sets limits.tar_pax_bytes
TORCH_MEMBERS = ("sys_info", "pickle", "tensors", "storages")
REGULAR_TYPES = frozenset({b"0", b"\x00", b"7"})
LINK_TYPES = frozenset({b"1", b"2"})
_STORAGE_ITEMSIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
                     "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16}


@dataclass(frozen=True)
class TarMember:
    name: str
    type: bytes
    offset: int          # of the member's data
    size: int


def _header_checksum_ok(header: bytes) -> bool:
    """tarfile's test: the stored checksum equals the unsigned or the signed byte sum (checksum field as spaces)."""
    try:
        stored = int(header[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    blanked = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return stored in (unsigned, signed)


def is_tar_header(head: bytes) -> bool:
    """True when the first 512 bytes are a tar header tarfile accepts (not all zeros, checksum right)."""
    return len(head) >= BLOCK and head[:BLOCK].count(0) != BLOCK and _header_checksum_ok(head[:BLOCK])


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):            # base-256 (GNU) for big sizes
        value = int.from_bytes(field[1:], "big")
        return value if field[0] == 0x80 else -1
    text = field.split(b"\x00", 1)[0].strip()
    return int(text or b"0", 8)


def _pax_records(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space] or b"0")
        if length <= 0:
            break
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos += length
    return records


def iter_tar_members(view: memoryview, notes: list[str] | None = None,
                     max_members: int = MAX_TAR_MEMBERS, max_pax: int = MAX_PAX_BYTES) -> Iterator[TarMember]:
    """Members in archive order (GNU long names and PAX records applied, not yielded). Raises FileProblem on a
    header tarfile would refuse, FileLimit past ``max_members`` (``limits.tar_members``) or on a PAX/long-name
    header over ``max_pax`` bytes (``limits.tar_pax_bytes``: tarfile reads it whole, a cut one would rename)."""
    pos, count, long_name, pax = 0, 0, None, {}
    while pos + BLOCK <= len(view):
        header = bytes(view[pos:pos + BLOCK])
        if header.count(0) == BLOCK:
            return                                   # end-of-archive marker
        if not _header_checksum_ok(header):
            if pos == 0:
                raise FileProblem("tar header at byte 0 has a bad checksum")
            if notes is not None:                     # tarfile ends the archive here, silently
                notes.append(f"tar header at byte {pos} has a bad checksum: tarfile (and torch) stop reading there, "
                             f"{len(view) - pos} bytes are never read")
            return
        count += 1
        if count > max_members:
            raise FileLimit("tar_members", f"tar archive has more than limits.tar_members = {max_members:,} "
                                           "members: not read")
        try:
            size = _number(header[124:136])
        except ValueError:
            raise FileProblem(f"tar header at byte {pos} has an unreadable size") from None
        kind = header[156:157]
        size = int(pax.get("size", size)) if kind not in (b"x", b"g") and "size" in pax else size
        data = pos + BLOCK
        if size < 0 or data + size > len(view):
            raise FileProblem(f"tar member at byte {pos} extends past the end of the file")
        if kind in (b"L", b"x", b"g"):
            if size > max_pax:
                raise FileLimit("tar_pax_bytes", f"tar member at byte {pos} has a {size:,}-byte PAX/long-name "
                                                 f"header, over limits.tar_pax_bytes = {max_pax:,}: not read")
            body = bytes(view[data:data + size])
            if kind == b"L":
                long_name = body.split(b"\x00", 1)[0].decode("utf-8", "replace")
            elif kind == b"x":
                pax = _pax_records(body)
        else:
            name = long_name or pax.get("path") or _header_name(header)
            yield TarMember(name, kind, data, size)
            long_name, pax = None, {}
        pos = data + (size + BLOCK - 1) // BLOCK * BLOCK


def _header_name(header: bytes) -> str:
    name = header[0:100].split(b"\x00", 1)[0]
    if header[257:262] == b"ustar" and header[345:346] != b"\x00":
        name = header[345:500].split(b"\x00", 1)[0] + b"/" + name
    return name.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------------------
# Reading the members
# --------------------------------------------------------------------------------------------------------------


def load_tar(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    notes: list[str] = []
    members = list(iter_tar_members(view, notes, options.limits.tar_members, options.limits.tar_pax_bytes))
    for note in notes:
        scan.findings.append(CONTAINER_LAYOUT.finding(scan.rel, note))
    scan.facts["tar_members"] = len(members)
    names = [m.name for m in members]
    is_torch = "pickle" in names and ("storages" in names or "tensors" in names)
    scan.facts["torch_tar"] = is_torch
    parts: dict[str, Any] = {}                  # torch reads the last member of each name (tarfile.getmember)
    for member in members:
        _member_checks(scan, member)
        if member.type not in REGULAR_TYPES:
            continue
        data = view[member.offset:member.offset + member.size]
        if is_torch and member.name in ("storages", "tensors"):
            parts[member.name] = _scan_records(scan, data, member.name, options, member.offset)
        else:
            results = _scan_member(scan, data, member, options, is_torch, path_key)
            if member.name == "pickle" and results:
                parts["pickle"] = results[0]
    if is_torch:
        scan.torch_refusals.append("legacy tar checkpoint (torch.load with weights_only=True refuses it)")
        _torch_inventory(scan, parts, path_key)


def _torch_inventory(scan: FileScan, parts: dict[str, Any], path_key: str) -> None:
    """Tensors of a legacy tar checkpoint, joined as legacy_load joins them (else not verified, WA159 low)."""
    main = parts.get("pickle")
    problem = None if main is not None and main.ok and "storages" in parts and "tensors" in parts \
        else "the storages, tensors or pickle member could not be read"
    if problem is None:
        try:
            specs = _tensor_specs(parts["storages"], parts["tensors"], main)
        except FileProblem as exc:
            problem, specs = str(exc), []
    if problem is not None:
        scan.findings.append(CONTAINER_LAYOUT.finding(scan.rel, f"legacy torch tar checkpoint: tensors not "
                                                                f"inventoried ({problem}); every pickle was scanned",
                                                      where="pickle", severity=Severity.LOW))
        scan.verified = False
        return
    infos, shared, ok = build_tensors(specs, path_key, scan.rel, "little", scan.findings)
    scan.tensors.extend(infos)
    scan.facts["shared_storages"] = shared
    scan.verified = scan.verified and ok


def _tensor_specs(storages: Any, tensors: Any, main: PickleResult) -> list[TensorSpec]:
    by_key: dict[int, Storage] = {}
    for value, raw in storages[0]:
        key, location, storage_type = value
        numel = raw[2]
        dtype = STORAGE_DTYPES[storage_type.name]
        by_key[_int_key(key)] = Storage(str(key), dtype, numel, str(location), raw[1] + 8, numel * itemsize(dtype),
                                        f"storages[{key}]")
    for view_record in storages[1] if isinstance(storages[1], list) else ():
        target, root, offset, numel = _view(view_record)
        base = by_key.get(_int_key(root))
        if base is None or base.data_offset is None:
            raise FileProblem(f"storage view of a missing storage {root!r}")
        size = itemsize(base.dtype)
        by_key[_int_key(target)] = Storage(str(target), base.dtype, numel, base.location, base.data_offset + offset * size,
                                           numel * size, f"storages[{target}]")
    by_tensor: dict[int, tuple[Storage, int, tuple[int, ...], tuple[int, ...]]] = {}
    for value, raw in tensors[0]:
        key, storage_id = value[0], value[1]
        storage = by_key.get(_int_key(storage_id))
        if storage is None:
            raise FileProblem(f"tensor {key!r} refers to a missing storage {storage_id!r}")
        by_tensor[_int_key(key)] = (storage, raw[2], raw[3], raw[4])
    specs = []
    for name, pid in dotted_names(main.value, lambda v: isinstance(v, PersistentId)):
        if isinstance(pid.pid, tuple):
            continue                                     # a module's source record, not a tensor
        found = by_tensor.get(_int_key(pid.pid))
        if found is None:
            raise FileProblem(f"persistent id {pid.pid!r} names no tensor")
        storage, offset, size, stride = found
        specs.append(TensorSpec(name or "tensor", storage, storage.dtype, offset, size, stride, Role.PARAMETER))
    return specs


def _int_key(key: Any) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise FileProblem(f"record key {key!r} is not an integer (legacy_load looks keys up with int())") from None


def _view(record: Any) -> tuple[Any, Any, int, int]:
    if not (isinstance(record, tuple) and len(record) == 4 and all(type(x) is int for x in record[2:])):
        raise FileProblem(f"malformed storage view {record!r:.80}")
    return record


def _member_checks(scan: FileScan, member: TarMember) -> None:
    """Names that leave the archive, links (tarfile.extract follows them: torch extracts 'storages' and
    'tensors' to a temporary folder and opens them), and members torch would read twice."""
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith(("/", "\\")) or ".." in parts:
        scan.findings.append(R.PATH_TRAVERSAL.finding(scan.rel, f"tar member name {member.name!r} leaves the archive",
                                                      where=member.name))
    if member.type in LINK_TYPES:
        scan.findings.append(CONTAINER_LAYOUT.finding(scan.rel, f"tar member {member.name!r} is a link: extracting it "
                                                                "reads or writes a file outside the archive",
                                                      where=member.name))
        scan.verified = False


def _scan_member(scan: FileScan, data: memoryview, member: TarMember, options: LoadOptions, is_torch: bool,
                 path_key: str) -> list[PickleResult]:
    """Scan a member that holds (or, for torch's own names, must hold) pickles; its pickle results. A member that
    is a zip (a torch checkpoint inside a NeMo-style tar) is read in place by the zip loaders' body."""
    head = bytes(data[:8])
    if head[:1] == b"\x80" or (is_torch and member.name in TORCH_MEMBERS):
        results, _ = scan_stream(data, limits=limits_for(options))
        for result in results:
            scan.add_pickle(member.name, 0, result, data)
        if results and not results[0].ok:
            scan.error = scan.error or f"{member.name}: not a valid pickle ({results[0].error})"
        if not is_torch or member.name not in TORCH_MEMBERS:
            scan.findings.append(R.HIDDEN_PICKLE.finding(scan.rel, f"tar member {member.name!r} holds a pickle",
                                                         where=member.name))
        return results
    if head.startswith(ZIP_MAGIC):
        _read_zip_member(scan, data, member, options, path_key)
    elif head.startswith((b"7z\xbc\xaf", b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        scan.findings.append(UNSCANNED_ARCHIVE.finding(scan.rel, f"tar member {member.name!r} is an archive or "
                                                                 "compressed stream that was not unpacked",
                                                       where=member.name))
        scan.verified = False
    return []


def _read_zip_member(scan: FileScan, data: memoryview, member: TarMember, options: LoadOptions, path_key: str) -> None:
    """A zip stored in the tar (tar does not compress): read in place; its tensors' byte ranges are shifted to
    file offsets and named ``<member>/<tensor>``."""
    before = len(scan.tensors)
    try:
        load_zip_body(scan, data, options, f"{path_key}#{member.name}")
    except FileProblem as exc:
        scan.findings.append(UNSCANNED_ARCHIVE.finding(scan.rel, f"tar member {member.name!r} is a zip that cannot be "
                                                                 f"read ({exc})", where=member.name))
        scan.verified = False
        return
    for index in range(before, len(scan.tensors)):
        tensor = scan.tensors[index]
        offsets = tensor.data_offsets
        if offsets is None:
            scan.verified = False                       # strided or compressed records: not streamed from here
        scan.tensors[index] = replace(tensor, name=f"{member.name}/{tensor.name}",
                                      data_offsets=None if offsets is None else (offsets[0] + member.offset,
                                                                                 offsets[1] + member.offset))
        if offsets is not None and "#" not in path_key:
            TENSOR_LAYOUTS[(path_key, scan.tensors[index].name)] = None   # a plain range: no reload to stream it


def _scan_records(scan: FileScan, data: memoryview, name: str, options: LoadOptions, base: int) -> tuple[list, Any]:
    """``storages``/``tensors``: a count pickle, then per record a pickle plus raw bytes, then (storages) views.
    Returns ([(record value, raw layout)], views value); raw layouts carry absolute file offsets."""
    limits = limits_for(options)
    budget = [limits.max_opcodes]
    records: list[tuple[Any, tuple]] = []
    first = _record_pickle(scan, data, 0, name, limits, budget)
    count = first.value if first.ok else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        scan.error = scan.error or f"{name}: the record count is not a count ({first.error or first.value!r})"
        return records, None
    pos = first.end
    for index in range(count):
        result = _record_pickle(scan, data, pos, name, limits, budget)
        if not result.ok:
            scan.error = scan.error or f"{name} record {index}: {result.error}"
            return records, None
        raw, pos = _read_raw(data, result, name, index)
        records.append((result.value, (raw[0], base + raw[1], *raw[2:])))
    views = None
    if name == "storages" and pos < len(data):
        result = _record_pickle(scan, data, pos, name, limits, budget)
        views, pos = result.value, result.end
    if pos != len(data):
        scan.findings.append(CONTAINER_LAYOUT.finding(scan.rel, f"{len(data) - pos} bytes follow the last record of "
                                                                f"{name!r}", where=f"{name} byte {pos}"))
    return records, views


def _record_pickle(scan: FileScan, data: memoryview, pos: int, name: str, limits: Limits,
                   budget: list[int]) -> PickleResult:
    result = scan_pickle(data, pos, limits, budget)
    scan.add_pickle(name, 0, result, data)
    return result


def _read_raw(data: memoryview, record: PickleResult, name: str, index: int) -> tuple[tuple, int]:
    """The raw bytes after one record pickle: storages (None, offset, numel); tensors (None, offset,
    storage_offset, sizes, strides). Returns (layout, offset after the bytes)."""
    pos, value = record.end, record.value
    try:
        if name == "storages":
            numel = struct.unpack_from("<q", data, pos)[0]
            end = pos + 8 + numel * _storage_itemsize(value)
            layout: tuple = (None, pos, numel)
        else:
            ndim = struct.unpack_from("<i", data, pos)[0]
            if not 0 <= ndim <= 64:
                raise FileProblem(f"{name} record {index}: {ndim} dimensions")
            dims = struct.unpack_from(f"<{2 * ndim + 1}q", data, pos + 8)
            end = pos + 8 + 16 * ndim + 8
            layout = (None, pos, dims[-1], tuple(dims[:ndim]), tuple(dims[ndim:2 * ndim]))
        if end < pos or end > len(data):
            raise FileProblem(f"{name} record {index}: its raw data runs past the end of the member")
    except struct.error:
        raise FileProblem(f"{name} record {index}: the member ends inside its raw data") from None
    return layout, end


def _storage_itemsize(value: object) -> int:
    storage_type = value[2] if isinstance(value, tuple) and len(value) == 3 else None
    name = getattr(storage_type, "name", "")
    size = _STORAGE_ITEMSIZE.get(name.removesuffix("Storage"))
    if size is None:
        raise FileProblem(f"storage record with an unknown storage type {name or storage_type!r}")
    return size


class TarLoader(PickleFamilyLoader):
    """Tar archives: torch's legacy tar checkpoints and any tar holding pickles."""

    name = "pytorch-tar"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and is_tar_header(probe.head)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return safe_load(self.name, path, rel, options, load_tar)


LOADER = TarLoader()
