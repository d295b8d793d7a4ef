"""Where libhdf5 finds an HDF5 superblock, and what sits in front of it (the *user block*).

libhdf5 looks for the signature at offset 0, then 512, 1024, 2048 ... (every power of two from 512) up to the end
of the file (``H5FD_locate_signature``), so an HDF5 file may begin with any number of arbitrary bytes. A pickle
there makes a polyglot: h5py/Keras load the weights, ``pickle.load``/``torch.load`` run the pickle. The HDF5
loader (:mod:`~weightaudit.formats.keras_h5`) claims the file through :func:`superblock_offset` and adds
:func:`user_block_findings` to its own.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.model import Finding

__all__ = ["HDF5_SIGNATURE", "superblock_offset", "file_superblock_offset", "user_block_findings"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _candidates(size: int) -> list[int]:
    offsets, offset = [0], 512
    while offset + len(HDF5_SIGNATURE) <= size:
        offsets.append(offset)
        offset *= 2
    return offsets


def superblock_offset(probe: Probe) -> int | None:
    """The first offset libhdf5 would find a superblock signature at, or None (reads a few bytes per candidate)."""
    if probe.is_dir:
        return None
    far = []
    for offset in _candidates(max(probe.size, len(probe.head))):
        if offset + 8 <= len(probe.head):
            if probe.head[offset:offset + 8] == HDF5_SIGNATURE:
                return offset
        else:
            far.append(offset)
    return file_superblock_offset(probe.path, far) if far else None


def file_superblock_offset(path: Path, offsets: list[int] | None = None) -> int | None:
    try:
        with open(path, "rb") as handle:
            for offset in offsets if offsets is not None else _candidates(path.stat().st_size):
                handle.seek(offset)
                if handle.read(8) == HDF5_SIGNATURE:
                    return offset
    except OSError:
        return None
    return None


def user_block_findings(path: Path, rel: str, options: LoadOptions | None = None) -> tuple[list[Finding], bool]:
    """Findings for a pickle in the bytes before the superblock, and whether they were fully checked."""
    offset = file_superblock_offset(path)
    if not offset:
        return [], True
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        block = memoryview(mapped)[:offset]
        try:
            return _scan_block(block, rel, offset, options or LoadOptions())
        finally:
            block.release()


def _scan_block(block: memoryview, rel: str, offset: int, options: LoadOptions) -> tuple[list[Finding], bool]:
    first = bytes(block[:2])
    if not (len(first) == 2 and first[0] == 0x80 and first[1] <= 5) and first[:1] not in (b"c", b"(", b"]", b"}"):
        return [], True
    # The pickle machine loads when a user block starts like a pickle: finding a superblock (the registry's HDF5
    # gate asks this module for every unclaimed file) must stay light.
    from weightaudit.formats.pickle_scan import limits_for
    from weightaudit.formats.pickle_vm import scan_stream
    from weightaudit.rules import pickle_rules as R
    from weightaudit.rules.container_rules import USER_BLOCK_PICKLE

    results, _ = scan_stream(block, limits=limits_for(options))
    if not results or (not results[0].ok and not results[0].globals):
        return [], True
    findings = [USER_BLOCK_PICKLE.finding(rel, f"the {offset}-byte user block before the HDF5 superblock holds "
                                               "a pickle", where="byte 0")]
    for result in results:
        findings.extend(R.pickle_findings(result, rel, "user block", 0, block))
    verified = results[0].ok and not any(a.kind == "limit" for r in results for a in r.anomalies)
    return findings, verified
