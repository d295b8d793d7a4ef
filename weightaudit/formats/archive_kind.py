"""Which zip loader claims an archive (by the names in its central directory), and 7z archives.

:func:`zip_kind` answers ``torchscript``, ``pytorch-zip``, ``pickle-archive`` or None from member names alone
(cached per file: the three zip loaders ask in turn). :func:`load_7z` is the body for 7z archives, which are not
unpacked: pickles stored uncompressed are found by their header and scanned, the file is never verified (WA158).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from weightaudit.formats.base import LoadOptions
from weightaudit.formats.mapped_file import FileProblem
from weightaudit.formats.pickle_scan import FileScan, limits_for
from weightaudit.formats.pickle_vm import PickleMachine
from weightaudit.formats.raw_pickle import PICKLE_SUFFIXES, looks_like_pickle
from weightaudit.formats.sevenzip import list_7z_names
from weightaudit.formats.zipread import ZipEntry, read_zip_entries, read_zip_names
from weightaudit.limits import describe
from weightaudit.rules.container_rules import UNSCANNED_ARCHIVE
from weightaudit.rules.integrity import LIMIT_REACHED

__all__ = ["SEVENZIP_MAGIC", "zip_kind", "load_7z"]

SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"


_KIND_CACHE: dict[tuple[str, int, int], str | None] = {}


def zip_kind(path: Path) -> str | None:
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
                kind = _classify_zip_names(path, read_zip_names(view))
                if kind is None:
                    entries = read_zip_entries(view)
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
    return looks_like_pickle(head)


def load_7z(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    """7z archives are not unpacked (no 7z container reader): pickles stored uncompressed are found by their
    protocol 2-5 header and scanned (one opcode budget for all candidates, no recovery scan per candidate, so
    the cost stays linear); the file is always reported as not verified (WA158)."""
    limits = limits_for(options)
    budget = [limits.max_opcodes]
    searched = options.limits.sevenzip_scan_bytes
    if len(view) > searched:
        scan.findings.append(LIMIT_REACHED.finding(
            scan.rel, f"7z archive of {len(view):,} bytes: only the first "
                      f"{describe('sevenzip_scan_bytes', options.limits)} bytes were searched for stored pickles"))
    data = bytes(view[:searched])
    pos = data.find(b"\x80", 6)
    while pos >= 0 and budget[0] > 0:
        if data[pos + 1:pos + 3] in (b"\x04\x95", b"\x05\x95") or data[pos + 1:pos + 2] in (b"\x02", b"\x03"):
            result = PickleMachine(view, pos, limits, True, budget).run()
            if result.ok:
                scan.add_pickle(f"embedded pickle at byte {pos}", 0, result, view)
                pos = result.end - 1
        pos = data.find(b"\x80", pos + 1)
    found = len(scan.results)
    scan.findings.append(UNSCANNED_ARCHIVE.finding(
        scan.rel, f"7z archive: {_describe_members(scan, view)} not unpacked"
                  f"{f'; {found} stored pickles found and scanned' if found else ''}"))
    scan.error = "7z archive: members are not unpacked, so the contents are not verified"


def _describe_members(scan: FileScan, view: memoryview) -> str:
    """'members a.pkl, b.bin (2 of 5 look like pickles)' from the 7z headers, or why they could not be listed."""
    try:
        names = list_7z_names(view)
    except (FileProblem, struct.error, ValueError) as exc:
        return f"members (not listed: {exc})"
    scan.facts["archive_members"] = names[:1000]
    scan.facts["archive_member_count"] = len(names)
    picklish = [n for n in names if n.lower().endswith(tuple(PICKLE_SUFFIXES | {".pkl.gz", ".joblib"}))]
    shown = f": {', '.join(picklish[:5])}" if picklish else ""
    return f"{len(names)} members ({len(picklish)} named like pickles{shown})"
